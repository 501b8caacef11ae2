"""The sweep engine in two steps: compile a program, then run grids under a run policy.

``runner = compile_sweep(program, num_steps=..., log_every=...)`` fixes what shapes the trace
(the program, the step counts, the devices, the ``vmap`` block and the key implementation);
``runner.run(grid, seed=..., policy=RunPolicy(...), shared=...)`` runs one grid and returns a
:class:`~alignjax.sweep.SweepResult`. The policy says *how* to run (chunks, checkpoints and
resume, progress, callbacks) and never changes a number. The runner keeps its compiled
functions, so a second ``run`` with new values (same grid size, same shared names) compiles
nothing; nothing is cached at module level: drop the runner and its programs go with it.

A grid of ``B = configs x seeds`` rows is padded to a multiple of ``devices x block`` and
sharded over a 1-D mesh (axis ``"sweep"``) of at most one device per block (in one process: a
device past the number of blocks would only run padding); each device evaluates ``vmap`` blocks of a size fixed
by the grid (``lax.map`` inside ``shard_map``), so results do not depend on the device count
(see :mod:`alignjax.sweep` for the division caveat). Long runs go in chunks of
``policy.chunk_logs`` logged intervals (a scan of scans: chunk boundaries change no number);
with ``policy.out_dir`` an orbax checkpoint of the whole sweep state follows every chunk.

:func:`alignjax.sweep.run_sweep` is the one-call form (compile and run; compiles every call).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from alignjax.experiment import Program

__all__ = ["RunPolicy", "SweepRunner", "compile_sweep"]


@dataclass(frozen=True)
class RunPolicy:
    """How a compiled sweep runs; no field changes a result.

    Attributes:
      chunk_logs: logged intervals per chunk; ``None`` = the whole run in one call.
      out_dir: where checkpoints go (``out_dir/checkpoints``, after every chunk); ``None`` = none.
      resume: restart from the newest checkpoint in ``out_dir`` that restores and verifies
        (:func:`alignjax.checkpoint.restore_latest`); newer unusable ones are named in one line on
        stderr and removed; none usable raises :class:`~alignjax.checkpoint.NoUsableCheckpoint`.
      progress: a tqdm bar over run-steps (configs x steps per second, ETA).
      on_chunk: ``on_chunk(logged_intervals_done, num_logged_intervals)`` after each chunk (and its
        checkpoint).
      on_metrics: stream the metrics instead of keeping them: ``on_metrics(t0, {name: (rows, n, ...)})``
        gets logged steps ``t0 .. t0 + n - 1`` of every row (padding dropped) as soon as a chunk is
        on the host, in step order, before that chunk's checkpoint; the result's ``metrics`` is then
        empty and host memory holds one chunk at a time (checkpoints carry no metrics).
    """

    chunk_logs: int | None = None
    out_dir: str | Path | None = None
    resume: bool = False
    progress: bool = False
    on_chunk: Callable[[int, int], None] | None = None
    on_metrics: Callable[[int, dict[str, np.ndarray]], None] | None = None


def compile_sweep(program: Program, *, num_steps: int, log_every: int,
                  devices: Sequence[jax.Device] | None = None, block_size: int | None = None,
                  key_impl: str | None = None) -> "SweepRunner":
    """A :class:`SweepRunner` for ``program``: ``num_steps`` steps logged every ``log_every``.

    ``num_steps = log_every * T`` (static; ``T`` logged intervals after step 0). ``devices``:
    the mesh (default ``jax.devices()``); ``block_size``: rows per ``vmap`` block (default
    :func:`~alignjax.sweep.default_block_size` of each grid); ``key_impl``: the PRNG implementation
    of the row keys (``None``: threefry; ``"rbg"`` compiles faster inside large vmapped scans on
    CPU, but under ``vmap`` draws a block's bits from its first key, so rows then depend on their
    block: pass ``block_size=1`` for per-row streams).

    Raises:
      ValueError: ``num_steps`` is not a multiple of ``log_every``.
    """
    if log_every < 1 or num_steps % log_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of log_every ({log_every})")
    return SweepRunner(program, int(num_steps), int(log_every), tuple(devices or jax.devices()),
                       None if block_size is None else int(block_size), key_impl)


class SweepRunner:
    """A program compiled for sweeps (:func:`compile_sweep`); :meth:`run` runs one grid.

    Its jitted functions are kept per (block, shared names, progress, chunk length); JAX keeps one
    executable per input shape inside each, so a new grid size compiles again (and is counted).
    """

    def __init__(self, program: Program, num_steps: int, log_every: int, devices: tuple, block_size: int | None,
                 key_impl: str | None):
        self.program, self.num_steps, self.log_every = program, num_steps, log_every
        self.devices, self.block_size, self.key_impl = devices, block_size, key_impl
        self._meshes: dict[int, Mesh] = {}
        self._fns: dict = {}
        self._counts: dict[str, int] = {}
        self._tick: Callable[[], None] | None = None

    # -- compiled pieces ---------------------------------------------------------------------------
    def _counted(self, name: str, fn):
        def wrapper(*args):
            self._counts[name] = self._counts.get(name, 0) + 1  # runs once per trace
            return fn(*args)
        return wrapper

    def _on_interval(self):
        if self._tick is not None:
            self._tick()

    def _mesh(self, rows: int, block: int) -> Mesh:
        """The mesh a grid of ``rows`` rows runs on: the first ``min(devices, blocks)`` devices, where
        ``blocks = ceil(rows / block)`` (in one process; all of them across processes, where each
        process must hold a part). A device beyond the number of blocks would only evaluate padding
        rows (copies of the last row); each block's numbers are the same on any device, so this
        changes no number, only the work."""
        n = len(self.devices)
        if jax.process_count() == 1:
            n = max(1, min(n, -(-rows // block)))
        if n not in self._meshes:
            self._meshes[n] = Mesh(np.array(self.devices[:n]), ("sweep",))
        return self._meshes[n]

    def _fn(self, what: str, block: int, progress: bool, n: int = 0, *, mesh: Mesh):
        """The jitted ``what`` (``"whole"``, ``"init"`` or ``"chunk"`` of ``n`` logged intervals) on ``mesh``."""
        key = (what, block, progress, n, mesh.size)
        if key not in self._fns:
            from alignjax.sweep import _make_advance, _make_batched_run

            prog, ki, le = self.program, self.key_impl, self.log_every
            tick = self._on_interval if progress else None
            if what == "whole":
                def fn(h, k, s):
                    run_b = _make_batched_run(_with_shared(prog, s), num_steps=self.num_steps, log_every=le,
                                              on_interval=tick)
                    return run_b(h, jax.random.wrap_key_data(k, impl=ki))
                name = "run"
            elif what == "init":
                def fn(h, k, s):
                    p = _with_shared(prog, s)
                    state = jax.vmap(p.init)(h, jax.random.wrap_key_data(k, impl=ki))
                    return state, jax.vmap(p.observe)(state, h)
                name = "init"
            else:
                def fn(state, h, s):
                    state, ms = _make_advance(_with_shared(prog, s), le, tick)(state, h, n)
                    return state, jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), ms)
                name = "chunk"
            self._fns[key] = jax.jit(self._counted(name, _blocked(fn, mesh, block)))
        return self._fns[key]

    # -- running -----------------------------------------------------------------------------------
    def run(self, grid, *, seed: int = 0, policy: RunPolicy = RunPolicy(),
            shared: Mapping[str, Any] | None = None):
        """Run every row of ``grid`` (:func:`~alignjax.sweep.make_grid`) under ``policy``.

        Every leaf of ``grid.hparams`` has a leading axis of ``num_configs`` (trailing axes allowed:
        per-config data); ``shared`` is data every row reads, replicated on every device, whose
        entries join each row's hyperparameters. Row ``b`` is config ``b // seeds`` with seed index
        ``b % seeds``; every config uses the keys ``split(key(seed), seeds)``.

        Returns:
          A :class:`~alignjax.sweep.SweepResult` (``num_compiles``: the traces this call caused).

        Raises:
          ValueError: a name both per-row and shared; a checkpoint of another run or another length.
          alignjax.checkpoint.CheckpointSaveError: (an ``OSError``, one line) a checkpoint could not
            be written; the previous checkpoints are intact.
        """
        from alignjax.sweep import SweepResult, _unflatten, default_block_size

        block = self.block_size or default_block_size(grid.size)
        rows = self._place(grid, seed, block, shared)
        counts, timings, t_start = {}, {}, time.perf_counter()
        self._counts = counts
        bar, self._tick = _progress(policy.progress, rows.b, rows.padded, self.num_steps, self.log_every, block)
        try:
            num_logs = self.num_steps // self.log_every
            chunk_logs = num_logs if policy.chunk_logs is None else max(1, min(int(policy.chunk_logs), num_logs))
            if chunk_logs == num_logs and policy.out_dir is None:
                metrics = self._run_whole(rows, block, bar is not None, policy.on_metrics)
            else:
                metrics = self._run_chunks(rows, block, bar, policy, chunk_logs, seed, timings, t_start)
            timings.setdefault("compile", time.perf_counter() - t_start)
            timings["total"] = time.perf_counter() - t_start
            steps = np.arange(num_logs + 1) * self.log_every
            return SweepResult(grid, steps, {} if metrics is None else _unflatten(metrics, grid, rows.b), counts, timings)
        finally:
            if bar is not None:
                bar.close()
            self._tick = None

    def _place(self, grid, seed: int, block: int, shared) -> "_Rows":
        """The grid as padded rows on its mesh (:meth:`_mesh`; hyperparameters and keys split, shared
        data replicated)."""
        from alignjax.sweep import _as_run_float, _put, _rows

        mesh = self._mesh(grid.size, block)
        sharded = NamedSharding(mesh, PartitionSpec("sweep"))
        hp_np, keys_np, b = _rows(grid, seed, mesh.size, block, self.key_impl)
        hp = {k: _put(_as_run_float(v), sharded) for k, v in hp_np.items()}
        replicated = NamedSharding(mesh, PartitionSpec())
        sh = {k: _put(_as_run_float(v), replicated) for k, v in dict(shared or {}).items()}
        clash = set(sh) & set(hp)
        if clash:
            raise ValueError(f"names both per-row and shared: {sorted(clash)}")
        return _Rows(hp_np, hp, _put(keys_np, sharded), sh, b, len(keys_np), sharded, mesh)

    def _run_whole(self, rows: "_Rows", block: int, progress: bool, on_metrics):
        """The whole run in one call: padded metrics ``(B, T, ...)``, or None when streamed."""
        from alignjax.sweep import _get

        metrics = _get(self._fn("whole", block, progress, mesh=rows.mesh)(rows.hp, rows.keys, rows.shared))
        if on_metrics is None:
            return metrics
        on_metrics(0, {k: np.asarray(v)[:rows.b] for k, v in metrics.items()})
        return None

    def _run_chunks(self, rows: "_Rows", block: int, bar, policy: RunPolicy, chunk_logs: int, seed: int,
                    timings: dict, t_start: float):
        """The run in chunks of ``chunk_logs`` logged intervals, checkpointed after each when
        ``policy.out_dir`` is set (resumed from the newest usable one with ``policy.resume``)."""
        from alignjax.sweep import _get

        num_logs, on_metrics = self.num_steps // self.log_every, policy.on_metrics
        start_fn = lambda h, k: self._fn("init", block, False, mesh=rows.mesh)(h, k, rows.shared)  # noqa: E731
        mgr, done, gathered, state = None, 0, None, None
        if policy.out_dir is not None:
            from alignjax import checkpoint

            mgr = checkpoint.manager(Path(policy.out_dir) / "checkpoints")
            like = jax.eval_shape(start_fn, rows.hp, rows.keys)[0]
            fingerprint = _fingerprint(like, rows.hp_np, rows.b, seed, self.log_every)
            try:
                if policy.resume:
                    done, gathered, state = self._restore(mgr, like, fingerprint, rows, on_metrics)
            except BaseException:
                mgr.close()
                raise
        if gathered is None:
            state, first = start_fn(rows.hp, rows.keys)
            gathered = {k: np.asarray(v)[:, None] for k, v in _get(first).items()}
            if on_metrics is not None:
                on_metrics(0, {k: v[:rows.b] for k, v in gathered.items()})
                gathered = {}
        if bar is not None:
            bar.update(done * self.log_every * bar.total // max(1, self.num_steps))
        try:
            while done < num_logs:
                n = min(chunk_logs, num_logs - done)
                t0 = time.perf_counter()
                state, ms = self._fn("chunk", block, bar is not None, n, mesh=rows.mesh)(state, rows.hp, rows.shared)
                ms = _get(ms)
                timings.setdefault("compile", time.perf_counter() - t0)
                if on_metrics is not None:
                    on_metrics(done + 1, {k: np.asarray(v)[:rows.b] for k, v in ms.items()})
                else:
                    gathered = {k: np.concatenate([gathered[k], np.asarray(ms[k])], axis=1) for k in gathered}
                done += n
                if mgr is not None:
                    from alignjax import checkpoint

                    checkpoint.save(mgr, done, state, gathered, fingerprint)
                if policy.on_chunk is not None:
                    policy.on_chunk(done, num_logs)
        finally:
            if mgr is not None:
                mgr.close()
        return None if on_metrics is not None else gathered

    def _restore(self, mgr, like, fingerprint, rows: "_Rows", on_metrics):
        """``(done, gathered, state)`` from the newest checkpoint that restores, or ``(0, None, None)``."""
        from alignjax import checkpoint
        from alignjax.sweep import _put

        found = checkpoint.restore_latest(mgr, like, fingerprint)
        if found is None:
            return 0, None, None
        gathered, done = found.metrics, found.step
        if on_metrics is not None:  # streamed: the consumer holds steps 0..done
            if gathered:  # a checkpoint written before streaming: hand its metrics over
                on_metrics(0, {k: np.asarray(v)[:rows.b] for k, v in gathered.items()})
            gathered = {}
        num_logs = self.num_steps // self.log_every
        if done > num_logs or any(v.shape[1] != done + 1 for v in gathered.values()):
            raise ValueError(f"checkpoint at {done} logged intervals does not fit a run of {num_logs}")
        if found.skipped:
            bad, why = found.skipped[0]
            checkpoint.discard(mgr, [s for s, _ in found.skipped])
            print(f"alignjax: checkpoint {bad} in {mgr.directory} does not restore ({why}); "
                  f"resuming from checkpoint {done}", file=sys.stderr, flush=True)
        return done, gathered, jax.tree.map(lambda x: _put(x, rows.sharding), found.state)


@dataclass(frozen=True)
class _Rows:
    """A grid placed on the mesh: host hyperparameters (for the checkpoint fingerprint), their
    sharded copies, the row keys, the replicated shared data, ``b`` real rows of ``padded``."""

    hp_np: dict
    hp: dict
    keys: Any
    shared: dict
    b: int
    padded: int
    sharding: Any
    mesh: Any


def _with_shared(program: Program, shared: Mapping[str, Any]) -> Program:
    """``program`` reading ``{**row_hparams, **shared}`` as its hyperparameters."""
    if not shared:
        return program

    def merge(h):
        return {**h, **shared}

    return Program(lambda h, k: program.init(merge(h), k), lambda st, h: program.step(st, merge(h)),
                   lambda st, h: program.observe(st, merge(h)))


def _blocked(fn, mesh: Mesh, block: int):
    """``shard_map`` over the sweep axis; on each device, ``lax.map`` of ``fn`` over blocks.

    ``fn(*row_args, shared)`` takes pytrees whose leaves have a leading axis of ``block`` rows (a
    batched function, e.g. ``vmap`` of a per-row one) and the shared data (its last argument,
    replicated on every device and passed whole). Each device holds a multiple of ``block`` rows
    and evaluates them ``block`` at a time, so the per-block program is the same whatever the
    number of devices. Every other input and every output is split along the sweep axis, so the
    varying-manual-axes type check is off (``check_vma=False``): with it, any ``lax.scan`` or
    ``while_loop`` carry that starts from a constant inside ``init``/``step`` (a fixed game, a
    reward fit's zero start) would need a per-algorithm ``pcast`` to type-check.
    """
    spec = PartitionSpec("sweep")

    def local(*args):
        args, extra = args[:-1], args[-1:]
        rows = jax.tree.leaves(args)[0].shape[0]
        nb = rows // block
        split = jax.tree.map(lambda x: x.reshape(nb, block, *x.shape[1:]), args)
        out = jax.lax.map(lambda a: fn(*a, *extra), split)
        return jax.tree.map(lambda x: x.reshape(nb * block, *x.shape[2:]), out)

    return lambda *args: jax.shard_map(local, mesh=mesh, in_specs=(*([spec] * (len(args) - 1)), PartitionSpec()),
                                       out_specs=spec, check_vma=False)(*args)


def _fingerprint(like, hp_np: Mapping[str, np.ndarray], rows: int, seed: int, log_every: int) -> dict:
    """What a checkpoint must share with the run that resumes it (see :mod:`alignjax.checkpoint`)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(hp_np):
        h.update(k.encode())
        h.update(np.ascontiguousarray(np.asarray(hp_np[k], dtype=np.float64)).tobytes())
    leaves, treedef = jax.tree.flatten(like)
    return {"log_every": int(log_every), "rows": int(rows), "seed": int(seed), "hparams_sha256": h.hexdigest(),
            "state": [[list(x.shape), str(x.dtype)] for x in leaves], "treedef": str(treedef)}


def _progress(enabled: bool, rows: int, padded_rows: int, num_steps: int, log_every: int, block: int):
    """A tqdm bar over run-steps (``rows x num_steps``) and the host callback that advances it.

    The callback fires once per logged interval of each ``block`` (on every device), worth
    ``block * log_every`` run-steps (padding rows discounted), so the bar shows configs x
    steps per second and an ETA whether or not the run is chunked. It appears after 2 s.
    """
    if not enabled:
        return None, None
    from tqdm.auto import tqdm

    bar = tqdm(total=rows * num_steps, unit="run-step", unit_scale=True, delay=2.0, leave=False,
               desc=f"{rows} runs x {num_steps} steps")
    lock = threading.Lock()
    worth = block * log_every * rows / padded_rows

    def on_interval():
        with lock:
            bar.update(worth)

    return bar, on_interval
