"""The sweep runner: a whole hyperparameter grid as one compiled, sharded program.

``make_run(program)`` builds ``run(hparams, key) -> metrics``: one jittable function whose
step loop is ``lax.scan`` (outer scan over logged intervals, inner scan over the steps of
an interval). The engine (:mod:`alignjax.runner`: ``compile_sweep`` then ``run`` under a
``RunPolicy``; ``run_sweep`` is the one-call form) stacks the grid along a leading axis of ``B = configs x seeds``
rows, pads it to a multiple of ``len(jax.devices())``, shards it over a 1-D device mesh
(axis ``"sweep"``) and evaluates ``jit(vmap(run))``:

* one compile for the whole grid (swept values are array leaves, never trace constants);
* row ``b`` is config ``b // seeds`` with seed index ``b % seeds``; every config uses the
  same ``seeds`` keys ``split(key(seed), seeds)`` (common random numbers across configs);
* rows are independent and each device evaluates them in ``vmap`` blocks of a size fixed
  by the grid (``lax.map`` over blocks inside ``shard_map``), so results are bit-identical
  whatever the number of devices. (One caveat, measured here: XLA's simplifier rewrites
  ``x / b`` into ``x * (1 / b)`` when compiling for one device but not when partitioned,
  which changes the last bit; write divisions by a hyperparameter as multiplication by its
  reciprocal, as the built-in programs do, and 1-device and N-device runs agree exactly;
  ``tests/test_sweep.py`` checks it);
* long runs go in chunks of ``chunk_logs`` logged intervals: between chunks the progress
  bar advances, metrics are gathered on the host and (with ``out_dir``) an orbax checkpoint
  of the whole sweep state is written; ``resume=True`` restarts from the newest one and
  gives bit-identical results to an uninterrupted run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from alignjax.experiment import Program

__all__ = ["Grid", "SweepResult", "make_grid", "make_run", "run_program", "run_sweep", "default_block_size", "check_grid_size",
           "estimate_memory", "check_memory", "available_memory"]


@dataclass(frozen=True)
class Grid:
    """A hyperparameter grid: the product of named axes, times ``num_seeds`` seeds.

    Attributes:
      hparams: ``{name: (num_configs, ...) float64 array}`` (cast to the default float dtype on
        device): every continuous hyperparameter (``(num_configs,)``) and any per-config data
        (trailing axes) a program reads from its ``hparams``.
      axes: names of the swept axes, in product order (first varies slowest).
      num_seeds: seeds per config.
    """

    hparams: dict[str, np.ndarray]
    axes: tuple[str, ...]
    num_seeds: int

    @property
    def num_configs(self) -> int:
        return len(next(iter(self.hparams.values()))) if self.hparams else 1

    @property
    def size(self) -> int:
        """Rows of the sweep: ``num_configs * num_seeds``."""
        return self.num_configs * self.num_seeds


def make_grid(base: Mapping[str, float], axes: Mapping[str, Sequence[float]] | None = None, *,
              seeds: int = 1) -> Grid:
    """Grid over the Cartesian product of ``axes``; other hyperparameters take ``base`` values.

    Args:
      base: default value of every continuous hyperparameter.
      axes: ``{name: values}`` for the swept names (each must be in ``base``).
      seeds: number of seeds per config (>= 1).
    """
    axes = dict(axes or {})
    unknown = set(axes) - set(base)
    if unknown:
        raise ValueError(f"swept names {sorted(unknown)} are not hyperparameters; known: {sorted(base)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1; got {seeds}")
    for k, v in axes.items():
        if len(v) == 0:
            raise ValueError(f"sweep axis {k!r} has no values")
    names = list(axes)
    combos = list(itertools.product(*[list(axes[n]) for n in names])) or [()]
    hp = {}
    for k, default in base.items():
        if k in axes:
            hp[k] = np.array([c[names.index(k)] for c in combos], dtype=np.float64)
        else:
            hp[k] = np.full(len(combos), default, dtype=np.float64)
    return Grid(hp, tuple(names), int(seeds))


def make_run(program: Program, *, num_steps: int, log_every: int) -> Callable:
    """``run(hparams, key) -> metrics``, metrics stacked over steps ``0, log_every, ..., num_steps``.

    One jittable function: ``init``, ``observe`` at step 0, then ``num_steps // log_every``
    intervals of ``log_every`` steps (nested ``lax.scan``), observing after each. It is the
    engine's batched run (:func:`_make_batched_run`) on a batch of one row.
    """
    def run(hparams, key):
        return run_program(program, hparams, key, num_steps=num_steps, log_every=log_every)[1]

    return run


def run_program(program: Program, hparams, key, *, num_steps: int, log_every: int):
    """``(final_state, metrics)`` of one run of ``program`` (see :func:`make_run`); jittable.

    For library code that needs the final state too (e.g. :func:`alignjax.rlhf.run_trainer`):
    the same observe-scan as every sweep, on a batch of one row.
    """
    run_b = _make_batched_run(program, num_steps=num_steps, log_every=log_every, with_state=True)
    state, metrics = run_b(jax.tree.map(lambda x: jnp.asarray(x)[None], hparams), key[None])
    return jax.tree.map(lambda x: x[0], state), jax.tree.map(lambda x: x[0], metrics)


def _make_batched_run(program: Program, *, num_steps: int, log_every: int,
                      on_interval: Callable[[], None] | None = None, with_state: bool = False) -> Callable:
    """``run_b(hparams, keys) -> metrics`` for a block of rows: ``(block, T, ...)`` metrics
    (``(final_state, metrics)`` with ``with_state``)."""
    if num_steps % log_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of log_every ({log_every})")
    advance = _make_advance(program, log_every, on_interval)

    def run_b(hparams, keys):
        state = jax.vmap(program.init)(hparams, keys)
        first = jax.vmap(program.observe)(state, hparams)
        state, rest = advance(state, hparams, num_steps // log_every)
        metrics = jax.tree.map(lambda a, b: jnp.concatenate([a[:, None], jnp.moveaxis(b, 0, 1)], axis=1), first, rest)
        return (state, metrics) if with_state else metrics

    return run_b


def _make_advance(program: Program, log_every: int,
                  on_interval: Callable[[], None] | None = None):
    """``advance(state, hparams, n) -> (state, metrics)`` over a *block* of rows (leading axis).

    ``n`` logged intervals of ``log_every`` steps of ``vmap(program.step)`` (nested
    ``lax.scan``), observing after each; metrics come out ``(n, block, ...)``. The scan runs
    outside the ``vmap`` (the same arithmetic as ``vmap`` of the per-row scan), so the optional
    ``on_interval`` host callback fires once per interval and block, not once per row.
    """
    step_b, observe_b = jax.vmap(program.step), jax.vmap(program.observe)

    def advance(state, hparams, num_logs: int):
        def interval(s, _):
            s, _ = jax.lax.scan(lambda c, __: (step_b(c, hparams), None), s, None, length=log_every)
            if on_interval is not None:
                jax.debug.callback(on_interval)
            return s, observe_b(s, hparams)

        return jax.lax.scan(interval, state, None, length=num_logs)

    return advance


@dataclass
class SweepResult:
    """What a sweep returns (host numpy arrays).

    Attributes:
      grid: the :class:`Grid`.
      steps: ``(T,)`` logged step numbers (``0`` included).
      metrics: ``{name: (num_configs, num_seeds, T, ...)}``.
      num_compiles: how many times each program was traced/compiled
        (``{"run": 1}`` unchunked; chunked ``{"init": 1, "chunk": k}`` with ``k`` the number of
        distinct chunk lengths, 1 when ``chunk_logs`` divides the number of logged intervals).
      timings: seconds for ``"compile"`` (first call incl. compile) and ``"total"``.
    """

    grid: Grid
    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    num_compiles: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def hparams(self) -> dict[str, np.ndarray]:
        return self.grid.hparams

    def table(self) -> list[dict[str, Any]]:
        """Tidy rows: one per config x seed x logged step, scalar metrics only."""
        scalars = [k for k, v in self.metrics.items() if v.ndim == 3]
        rows = []
        for c in range(self.grid.num_configs):
            hp = {k: float(v[c]) for k, v in self.grid.hparams.items() if np.ndim(v) == 1}
            for s in range(self.grid.num_seeds):
                for t, step in enumerate(self.steps):
                    row = {"config": c, "seed": s, "step": int(step), **hp}
                    row.update({k: float(self.metrics[k][c, s, t]) for k in scalars})
                    rows.append(row)
        return rows


def default_block_size(num_rows: int, cap: int = 256) -> int:
    """Rows evaluated together by one ``vmap``: ``min(cap, next power of two >= num_rows)``.

    It depends on the grid only, never on the device count, so every device runs blocks of
    the same shape and results are identical on 1 or many devices.
    """
    return int(min(cap, 1 << max(0, int(num_rows - 1).bit_length())))


def _rows(grid: Grid, seed: int, num_devices: int, block: int, key_impl: str | None = None):
    """Flatten the grid to ``B`` rows padded to a multiple of ``num_devices * block``."""
    b = grid.size
    unit = num_devices * block
    padded = -(-b // unit) * unit
    idx = np.minimum(np.arange(padded), b - 1)  # padding repeats the last row
    hp = {k: np.repeat(v, grid.num_seeds, axis=0)[idx] for k, v in grid.hparams.items()}
    seed_keys = jax.random.key_data(jax.random.split(jax.random.key(seed, impl=key_impl), grid.num_seeds))
    keys = np.asarray(seed_keys)[np.tile(np.arange(grid.num_seeds), grid.num_configs)][idx]
    return hp, keys, b


def run_sweep(program: Program, grid: Grid, *, num_steps: int, log_every: int, seed: int = 0,
              out_dir: str | Path | None = None, resume: bool = False, chunk_logs: int | None = None,
              progress: bool = False, devices: Sequence[jax.Device] | None = None,
              block_size: int | None = None,
              on_chunk: Callable[[int, int], None] | None = None,
              key_impl: str | None = None, shared: Mapping[str, Any] | None = None,
              on_metrics: Callable[[int, dict[str, np.ndarray]], None] | None = None) -> SweepResult:
    """Run every row of ``grid`` for ``num_steps`` steps as one sharded ``jit(vmap(...))``: the
    one-call form of :func:`alignjax.runner.compile_sweep` (``program, num_steps, log_every,
    devices, block_size, key_impl``) and :meth:`~alignjax.runner.SweepRunner.run` (``grid, seed,
    shared``) under a :class:`~alignjax.runner.RunPolicy` (``chunk_logs, out_dir, resume,
    progress, on_chunk, on_metrics``); see those for every argument.

    It compiles on every call; to run the same program on several grids or values, keep the
    runner: ``runner = compile_sweep(program, ...)`` then ``runner.run(grid, ...)`` per grid.

    Returns:
      A :class:`SweepResult`: ``metrics[name]`` of shape ``(num_configs, num_seeds, T, ...)`` at
      steps ``0, log_every, ..., num_steps``.
    """
    from alignjax.runner import RunPolicy, compile_sweep

    runner = compile_sweep(program, num_steps=num_steps, log_every=log_every, devices=devices, block_size=block_size,
                           key_impl=key_impl)
    policy = RunPolicy(chunk_logs=chunk_logs, out_dir=out_dir, resume=resume, progress=progress, on_chunk=on_chunk,
                       on_metrics=on_metrics)
    return runner.run(grid, seed=seed, policy=policy, shared=shared)


_GiB = float(1 << 30)


def available_memory() -> dict[str, int]:
    """Bytes this process can use: ``{"host": ..., "device": ...}``.

    Host: ``MemAvailable`` of ``/proc/meminfo`` (else the physical memory). Device: the first
    device's ``bytes_limit`` when it reports one (GPU/TPU), else (CPU devices, which share the
    host's memory) the host figure divided by the number of local devices, since
    :func:`estimate_memory`'s device figure is per device.
    """
    host = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                host = int(line.split()[1]) * 1024
    except OSError:
        pass
    if host is None:
        import os

        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    device = None
    try:
        stats = jax.devices()[0].memory_stats() or {}
        device = int(stats["bytes_limit"]) if "bytes_limit" in stats else None
    except Exception:  # backends without memory_stats
        pass
    if device is None:  # devices that share the host's memory: each gets its share
        device = host // max(1, jax.local_device_count())
    return {"host": int(host), "device": int(device)}


def check_grid_size(num_configs: int, num_seeds: int, num_hparams: int, *, host_bytes: int | None = None) -> None:
    """Refuse a grid whose rows alone do not fit in host memory, before building it.

    The grid holds ``num_configs * num_seeds`` rows of ``num_hparams`` float64 values plus a PRNG
    key each, copied a few times on the way to the devices (counted as 4 copies of 8 bytes per
    value and key word). Raises ``ValueError`` naming the knobs to turn.
    """
    rows = int(num_configs) * int(num_seeds)
    need = rows * (int(num_hparams) + 2) * 8 * 4
    avail = host_bytes if host_bytes is not None else available_memory()["host"]
    if rows >= 2**31 or need > avail:
        raise ValueError(f"the sweep has {rows:.3g} runs ({num_configs:.3g} configs x {num_seeds} seeds): its grid "
                         f"alone needs about {need / _GiB:.3g} GiB of the {avail / _GiB:.3g} GiB available; lower "
                         "--seeds or the number of swept values")


def estimate_memory(program: Program, hparam_names: Sequence[str], *, num_rows: int, num_steps: int,
                    log_every: int, chunked: bool, num_devices: int | None = None,
                    block_size: int | None = None) -> dict[str, float]:
    """Rough bytes a sweep needs, from shapes alone (``jax.eval_shape``: nothing is compiled).

    With ``S`` the bytes of one run's state, ``O`` of one observation, ``T = num_steps //
    log_every + 1``, ``R`` rows padded per device and ``b = min(block, R)`` rows live at once:

    * device: ``4 b S`` (state, next state and step temporaries of a ``vmap`` block)
      ``+ R T O`` (the metrics) ``+ R S`` when chunked (the whole state between chunks);
    * host: ``3 num_rows T O`` (gathered and reshaped metrics), ``120`` bytes per cell of the
      tidy table (``num_rows T`` rows of scalar metrics and hyperparameters, as Python
      objects), plus the state of every row when chunked (checkpoints).

    Returns ``{"state_per_run", "obs_per_run", "device", "host"}`` in bytes, plus the parts of
    ``device`` and ``host`` that grow with the number of logged steps (``"device_metrics"``,
    ``"host_metrics"``: the metrics and the table) and ``"logged_steps"`` (``T``), so that
    :func:`check_memory` can name the knob that drives the estimate.
    """
    dtype = jnp.zeros(()).dtype
    hp = {k: jax.ShapeDtypeStruct((), dtype) for k in hparam_names}
    key = jax.eval_shape(lambda: jax.random.key(0))
    state = jax.eval_shape(program.init, hp, key)
    obs = jax.eval_shape(program.observe, state, hp)

    def nbytes(tree):
        return float(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize if not jax.dtypes.issubdtype(
            x.dtype, jax.dtypes.prng_key) else 8 for x in jax.tree.leaves(tree)))

    S, O = nbytes(state), nbytes(obs)
    T = num_steps // log_every + 1
    nd = int(num_devices or len(jax.devices()))
    block = int(block_size or default_block_size(num_rows))
    R = -(-num_rows // (nd * block)) * block
    live = min(block, R)
    device_metrics = float(R) * T * O
    device = 4 * live * S + device_metrics + (R * S if chunked else 0)
    cells = float(num_rows) * T * (sum(x.shape == () for x in jax.tree.leaves(obs)) + len(hparam_names) + 3)
    host_metrics = 3 * float(num_rows) * T * O + 120 * cells
    host = host_metrics + (num_rows * S if chunked else 0)
    return {"state_per_run": S, "obs_per_run": O, "device": device, "host": host, "device_metrics": device_metrics,
            "host_metrics": host_metrics, "logged_steps": float(T)}


def check_memory(estimate: Mapping[str, float], num_rows: int, *, available: Mapping[str, int] | None = None) -> None:
    """Raise ``ValueError`` if :func:`estimate_memory` exceeds what is free, naming the knob that drives it.

    The hint names what dominates the estimate: one run's state (the experiment's sizes); the
    metrics of the logged steps (``num_steps``/``log_every``), when they are most of it; else the
    number of runs (``--seeds`` and the swept values).
    """
    avail = dict(available or available_memory())
    S = estimate["state_per_run"]
    for where in ("device", "host"):
        if estimate[where] <= avail[where]:
            continue
        raise ValueError(f"the sweep needs about {estimate[where] / _GiB:.3g} GiB of {where} memory ({num_rows} runs, "
                         f"{S / _GiB:.3g} GiB of state per run), more than the {avail[where] / _GiB:.3g} GiB "
                         f"available; {_memory_hint(estimate, where, num_rows, avail[where])}")


def _memory_hint(estimate: Mapping[str, float], where: str, num_rows: int, avail: float) -> str:
    """Which knob to turn when ``estimate[where]`` does not fit in ``avail`` bytes (see :func:`check_memory`)."""
    S, metrics = estimate["state_per_run"], float(estimate.get(f"{where}_metrics", 0.0))
    steps = int(estimate.get("logged_steps", 0))
    if 4 * S > avail:
        return "one run alone is too large: lower the experiment's sizes (e.g. num_prompts, num_responses)"
    if metrics >= estimate[where] / 2:  # metrics of runs x logged steps: name the larger factor first
        if metrics / max(int(num_rows), 1) > avail / 2:
            return (f"one run alone logs too much ({steps:.3g} logged steps): lower num_steps or raise log_every "
                    "(metrics are kept every log_every steps)")
        if steps >= num_rows:
            return (f"most of it is the metrics of {steps:.3g} logged steps per run: lower num_steps or raise "
                    "log_every, or lower --seeds or the number of swept values")
        return (f"most of it is the metrics of {num_rows} runs: lower --seeds or the number of swept values, or "
                f"num_steps/log_every ({steps:.3g} logged steps per run)")
    return "lower --seeds or the number of swept values, or the experiment's sizes"


def _as_run_float(v) -> np.ndarray:
    """Floating leaves in the run's float dtype (float32 unless x64); integer data unchanged."""
    v = np.asarray(v)
    return v.astype(jnp.zeros(()).dtype) if np.issubdtype(v.dtype, np.floating) else v


def _put(x, sharding):
    """Place a host array (every process holds the same full copy) with ``sharding``.

    ``make_array_from_callback`` hands each process only its addressable shards, so the
    same code runs on one device, one host with many, or a multi-host pod slice.
    """
    if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(x))
        impl = jax.random.key_impl(x)
        arr = jax.make_array_from_callback(data.shape, sharding, lambda idx: data[idx])
        return jax.random.wrap_key_data(arr, impl=impl)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _get(tree):
    """Host numpy copy of a sharded pytree (all-gathered across processes when multi-host)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def _unflatten(metrics: Mapping[str, Any], grid: Grid, b: int) -> dict[str, np.ndarray]:
    """``(B_padded, T, ...)`` -> ``(num_configs, num_seeds, T, ...)``, dropping padding."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v)[:b]
        out[k] = v.reshape(grid.num_configs, grid.num_seeds, *v.shape[1:])
    return out
