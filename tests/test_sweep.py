"""The sweep runner: one compile, chunking, jit == no-jit, vmap == per-row (bit for bit with
several vmap blocks per device), determinism, device-count invariance, kill-and-resume
continuing from the checkpoint, and refusing a checkpoint of another run."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.experiment import Program
from alignjax.registry import EXPERIMENTS
from alignjax.sweep import make_grid, make_run, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def _bandit(**over):
    exp = EXPERIMENTS.get("dpo-bandit")
    cfg = {**exp.config, "num_prompts": 3, "num_responses": 5, **over}
    return exp, cfg, exp.make_program(cfg)


def _noisy_program():
    """A toy program whose every step consumes randomness: x <- x - lr * (x - beta) + noise."""

    def init(hp, key):
        k1, key = jax.random.split(key)
        return {"x": jax.random.normal(k1, (3,)), "key": key}

    def step(s, hp):
        key, sub = jax.random.split(s["key"])
        x = s["x"] - hp["learning_rate"] * (s["x"] - hp["beta"]) + 0.01 * jax.random.normal(sub, (3,))
        return {"x": x, "key": key}

    def observe(s, hp):
        return {"mean": jnp.mean(s["x"]), "x": s["x"]}

    return Program(init, step, observe)


def test_make_grid_product_and_seeds():
    g = make_grid({"beta": 0.1, "learning_rate": 1.0, "eta": 2.0},
                  {"beta": [0.1, 1.0], "learning_rate": [1, 2, 3]}, seeds=4)
    assert g.num_configs == 6 and g.size == 24 and g.axes == ("beta", "learning_rate")
    np.testing.assert_array_equal(g.hparams["beta"], [0.1, 0.1, 0.1, 1, 1, 1])
    np.testing.assert_array_equal(g.hparams["learning_rate"], [1, 2, 3, 1, 2, 3])
    np.testing.assert_array_equal(g.hparams["eta"], np.full(6, 2.0))
    with pytest.raises(ValueError, match="not hyperparameters"):
        make_grid({"beta": 0.1}, {"gamma": [1]})
    with pytest.raises(ValueError, match="seeds"):
        make_grid({"beta": 0.1}, seeds=0)


def test_run_jit_equals_no_jit_and_logged_steps():
    prog = _noisy_program()
    run = make_run(prog, num_steps=20, log_every=5)
    hp = {"beta": jnp.float32(0.5), "learning_rate": jnp.float32(0.3)}
    key = jax.random.key(3)
    eager = run(hp, key)
    jitted = jax.jit(run)(hp, key)
    assert eager["mean"].shape == (5,) and eager["x"].shape == (5, 3)
    np.testing.assert_allclose(eager["x"], jitted["x"], rtol=1e-6, atol=1e-6)


def test_no_recompile_when_swept_value_changes():
    run = jax.jit(make_run(_noisy_program(), num_steps=10, log_every=5))
    key = jax.random.key(0)
    a = run({"beta": jnp.float32(0.5), "learning_rate": jnp.float32(0.3)}, key)
    b = run({"beta": jnp.float32(2.0), "learning_rate": jnp.float32(0.1)}, key)
    assert run._cache_size() == 1
    assert not np.allclose(a["mean"], b["mean"])


def test_sweep_compiles_once_and_rows_equal_single_runs():
    prog = _noisy_program()
    g = make_grid({"beta": 0.5, "learning_rate": 0.3}, {"beta": [0.1, 1.0, 3.0]}, seeds=2)
    res = run_sweep(prog, g, num_steps=12, log_every=4, seed=7)
    assert res.num_compiles == {"run": 1}
    assert res.metrics["x"].shape == (3, 2, 4, 3)
    np.testing.assert_array_equal(res.steps, [0, 4, 8, 12])
    run = jax.jit(make_run(prog, num_steps=12, log_every=4))
    seed_keys = jax.random.split(jax.random.key(7), 2)
    for c, beta in enumerate([0.1, 1.0, 3.0]):
        for s in range(2):
            single = run({"beta": jnp.float32(beta), "learning_rate": jnp.float32(0.3)}, seed_keys[s])
            np.testing.assert_allclose(res.metrics["x"][c, s], single["x"], rtol=1e-6, atol=1e-7)
    rows = res.table()
    assert len(rows) == 3 * 2 * 4 and {"config", "seed", "step", "beta", "mean"} <= set(rows[0])


def test_same_seed_same_numbers_different_seed_differs():
    prog = _noisy_program()
    g = make_grid({"beta": 0.5, "learning_rate": 0.3}, seeds=2)
    a = run_sweep(prog, g, num_steps=8, log_every=4, seed=1).metrics["x"]
    b = run_sweep(prog, g, num_steps=8, log_every=4, seed=1).metrics["x"]
    c = run_sweep(prog, g, num_steps=8, log_every=4, seed=2).metrics["x"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[0, 0], a[0, 1])  # seeds within a sweep differ


def test_chunked_with_checkpoints_is_bit_identical(tmp_path):
    exp, cfg, prog = _bandit(pairs="sampled", labels="hard", max_pairs=16)
    g = make_grid({**exp.hparams_for(cfg), "num_pairs": 16.0}, {"beta": [0.1, 1.0]}, seeds=2)
    whole = run_sweep(prog, g, num_steps=40, log_every=4)
    chunked = run_sweep(prog, g, num_steps=40, log_every=4, chunk_logs=3, out_dir=tmp_path)
    assert chunked.num_compiles == {"init": 1, "chunk": 2}  # 10 logged intervals in chunks of 3, 3, 3, 1
    for k in whole.metrics:
        np.testing.assert_array_equal(whole.metrics[k], chunked.metrics[k])


def _with_counter(program: Program, start: int = 0) -> Program:
    """``program`` with a step counter in its state, reported as the metric ``"counter"``.

    The counter starts at ``start``. A resumed run takes its state from the checkpoint, so
    the ``init`` it was built with never runs: a resumed run built with another ``start``
    gives the numbers of an uninterrupted run, while one that restarted from scratch would
    count its steps from ``start``.
    """

    def init(hp, key):
        return {"n": jnp.int32(start), "inner": program.init(hp, key)}

    def step(s, hp):
        return {"n": s["n"] + 1, "inner": program.step(s["inner"], hp)}

    def observe(s, hp):
        return {**program.observe(s["inner"], hp), "counter": s["n"]}

    return Program(init, step, observe)


_RUN = {"num_steps": 60, "log_every": 4}  # 15 logged intervals


def _bandit_sweep(start: int = 0):
    """The chunked/killed sweep of the tests below: a sampled-pairs DPO bandit with a step counter."""
    exp, cfg, prog = _bandit(pairs="sampled", labels="hard", max_pairs=16)
    grid = make_grid({**exp.hparams_for(cfg), "num_pairs": 16.0}, {"beta": [0.1, 1.0, 3.0]}, seeds=2)
    return _with_counter(prog, start), grid


# Run in a fresh process: argv = OUT KILL_AFTER. Sweeps `_bandit_sweep()` in chunks of 2 logged
# intervals with checkpoints in OUT; SIGKILLs itself after the chunk ending at KILL_AFTER
# intervals (after its checkpoint is written), else saves the metrics to OUT/metrics.npz and,
# with 4 devices, the sweeps of `_block_cases()` to OUT/blocks.npz.
_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
    import jax
    import numpy as np
    from alignjax.sweep import run_sweep
    from test_sweep import _RUN, _bandit_sweep, _sweep_block_cases
    out, kill_after = sys.argv[1], int(sys.argv[2])
    def on_chunk(done, total):
        if done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    program, grid = _bandit_sweep()
    res = run_sweep(program, grid, **_RUN, chunk_logs=2, out_dir=out, on_chunk=on_chunk)
    np.savez(os.path.join(out, "metrics.npz"), **res.metrics)
    if len(jax.devices()) == 4:
        np.savez(os.path.join(out, "blocks.npz"), **_sweep_block_cases())
    print("devices", len(jax.devices()))
""")


def _python(args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", _SCRIPT, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=ROOT)


def _assert_bitwise_equal(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    np.testing.assert_array_equal(a, b, err_msg=what)
    assert a.tobytes() == b.tobytes(), what  # bit for bit (assert_array_equal lets 0.0 == -0.0)


def test_kill_and_resume_continues_from_the_checkpoint(tmp_path):
    killed = _python([str(tmp_path), "6"])
    assert killed.returncode == -9, killed.stderr  # SIGKILL after the third chunk's checkpoint (6 intervals)
    assert not (tmp_path / "metrics.npz").exists()
    # Resume with another chunk size and a program whose init counts from 1000: a resumed run never
    # calls init, so its counter continues the killed run's (from 0), and it reports its chunks from
    # the checkpoint at 6 intervals on; a run that restarted would count from 1000 and report 4, 8, ...
    program, grid = _bandit_sweep(start=1000)
    chunks = []
    resumed = run_sweep(program, grid, **_RUN, chunk_logs=4, out_dir=tmp_path, resume=True,
                        on_chunk=lambda done, total: chunks.append((done, total)))
    assert chunks == [(10, 15), (14, 15), (15, 15)]
    ref = run_sweep(program, grid, **_RUN)  # uninterrupted, unchunked
    np.testing.assert_array_equal(ref.metrics["counter"], np.broadcast_to(1000 + 4 * np.arange(16), (3, 2, 16)))
    assert set(resumed.metrics) == set(ref.metrics)
    for k in ref.metrics:
        _assert_bitwise_equal(resumed.metrics[k], ref.metrics[k] - 1000 if k == "counter" else ref.metrics[k], k)


def _exact_program(width: int = 2, extra_leaf: bool = False) -> Program:
    """A toy program whose arithmetic is exact: a step counter, PRNG bits mixed by integer
    arithmetic and a float sum of hyperparameters (additions only, no fused multiply-add).

    Its numbers cannot depend on how rows are batched, so any difference between a sweep and
    per-row runs is a row given the wrong hyperparameters or key, or put in the wrong place.
    """

    def init(hp, key):
        k1, key = jax.random.split(key)
        s = {"key": key, "n": jnp.int32(0), "bits": jax.random.bits(k1, (width,), jnp.uint32), "x": hp["beta"]}
        if extra_leaf:
            s["extra"] = jnp.zeros(())
        return s

    def step(s, hp):
        key, sub = jax.random.split(s["key"])
        bits = s["bits"] * jnp.uint32(1664525) + jax.random.bits(sub, (width,), jnp.uint32)
        return {**s, "key": key, "n": s["n"] + 1, "bits": bits, "x": s["x"] + hp["learning_rate"]}

    def observe(s, hp):
        return {"n": s["n"], "bits": s["bits"], "x": s["x"]}

    return Program(init, step, observe)


class _Stop(Exception):
    pass


def _stop_at(n):
    def on_chunk(done, total):
        if done == n:
            raise _Stop  # like a kill right after the checkpoint of `n` intervals
    return on_chunk


_BASE = {"beta": 0.5, "learning_rate": 0.3}


def _interrupted(out, program=None, grid=None):
    """A sweep of 10 logged intervals in chunks of 2, stopped after its checkpoint at 4."""
    grid = grid or make_grid(_BASE, {"beta": [0.1, 1.0, 3.0]}, seeds=2)
    with pytest.raises(_Stop):
        run_sweep(program or _exact_program(), grid, num_steps=40, log_every=4, chunk_logs=2, out_dir=out,
                  on_chunk=_stop_at(4))
    return grid


@pytest.mark.parametrize("change, match", [
    ({"num_steps": 12}, "does not fit a run of 3"),  # the checkpoint is past the end of the run
    ({"program": _exact_program(extra_leaf=True)}, "another run.*state"),  # another state structure
    ({"seed": 6}, "another run.*seed"),  # another master seed
])
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, change, match):
    grid = _interrupted(tmp_path)
    run = {"program": _exact_program(), "num_steps": 40, "log_every": 4, **change}
    with pytest.raises(ValueError, match=match):
        run_sweep(run.pop("program"), grid, **run, chunk_logs=2, out_dir=tmp_path, resume=True)


@pytest.mark.parametrize("change", ["state shape", "log_every", "grid"])
def test_resume_refuses_a_checkpoint_of_another_run_shape_and_interval(tmp_path, change):
    grid = _interrupted(tmp_path)
    run = {"program": _exact_program(), "num_steps": 40, "log_every": 4}
    if change == "state shape":
        run["program"] = _exact_program(width=3)  # same leaves, (3,) bits instead of (2,)
    elif change == "log_every":
        run["log_every"] = 2  # the checkpoint's 4 intervals are 16 steps, not 8
    else:  # 4 x 2 rows pad to the same block of 8 as 3 x 2
        grid = make_grid(_BASE, {"beta": [0.1, 1.0, 3.0, 4.0]}, seeds=2)
    with pytest.raises(ValueError, match="another run"):
        run_sweep(run.pop("program"), grid, **run, chunk_logs=2, out_dir=tmp_path, resume=True)


def _block_cases():
    """``{name: (program, grid, block_size)}``: sweeps with more than one ``vmap`` block per device.

    On 1 device: 3 blocks of 2, 9 blocks of 2, and 300 rows in 2 blocks of the default 256.
    On 4 devices, at most one device per block (:meth:`~alignjax.runner.SweepRunner._mesh`): 3, 4, 2 and
    4 devices (6, 24, 512 and 2048 rows after padding), 1, 3, 1 and 2 blocks per device.
    """
    exact = _exact_program()
    return {
        "noisy-6-rows-block-2": (_noisy_program(), make_grid(_BASE, {"beta": [0.1, 1.0, 3.0]}, seeds=2), 2),
        "exact-18-rows-block-2": (exact, make_grid(_BASE, {"beta": np.linspace(0.1, 3.0, 9)}, seeds=2), 2),
        "exact-300-rows": (exact, make_grid(_BASE, {"beta": np.linspace(0.1, 3.0, 150)}, seeds=2), None),
        "exact-1100-rows": (exact, make_grid(_BASE, {"beta": np.linspace(0.1, 3.0, 550)}, seeds=2), None),
    }


_BLOCK_RUN = {"num_steps": 8, "log_every": 4, "seed": 5}


def _sweep_block_cases(devices=None) -> dict[str, np.ndarray]:
    """Every case of :func:`_block_cases` swept with ``run_sweep``, as ``{"case.metric": array}``."""
    out = {}
    for name, (program, grid, block) in _block_cases().items():
        res = run_sweep(program, grid, **_BLOCK_RUN, block_size=block, devices=devices)
        out.update({f"{name}.{k}": v for k, v in res.metrics.items()})
    return out


def _per_row_block_cases() -> dict[str, np.ndarray]:
    """The same, from ``jax.jit(make_run(...))`` called once per row with that row's hparams and key."""
    out = {}
    cpu = jax.devices("cpu")[0]  # the device the sweeps of the tests below run on
    keys = jax.device_put(jax.random.split(jax.random.key(_BLOCK_RUN["seed"]), 2), cpu)  # row b: key b % seeds
    for name, (program, grid, _) in _block_cases().items():
        assert grid.num_seeds == 2
        run = jax.jit(make_run(program, num_steps=_BLOCK_RUN["num_steps"], log_every=_BLOCK_RUN["log_every"]))
        rows = []
        for c in range(grid.num_configs):
            hp = {k: jax.device_put(np.asarray(v[c], jnp.zeros(()).dtype), cpu) for k, v in grid.hparams.items()}
            rows.append([jax.device_get(run(hp, keys[s])) for s in range(grid.num_seeds)])
        for k in rows[0][0]:
            out[f"{name}.{k}"] = np.stack([np.stack([r[k] for r in cfg]) for cfg in rows])
    return out


def test_blocks_equal_per_row_runs_on_one_device():
    from alignjax.sweep import default_block_size

    assert default_block_size(300) == 256  # so the 300-row case runs 2 blocks
    swept = _sweep_block_cases(devices=jax.devices("cpu")[:1])
    single = _per_row_block_cases()
    assert set(swept) == set(single)
    for k in single:
        _assert_bitwise_equal(swept[k], single[k], k)


def test_results_do_not_depend_on_device_count(tmp_path):
    """4 devices (a fresh process) give the numbers of 1 device: the chunked bandit sweep, and
    the sweeps of `_block_cases()`, which must equal per-row runs bit for bit."""
    r4 = _python([str(tmp_path), "-1"], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                                            "JAX_PLATFORMS": "cpu"})
    assert r4.returncode == 0, r4.stderr
    assert r4.stdout.split() == ["devices", "4"]
    program, grid = _bandit_sweep()
    one = run_sweep(program, grid, **_RUN, chunk_logs=2, out_dir=tmp_path / "one", devices=jax.devices("cpu")[:1])
    four = np.load(tmp_path / "metrics.npz")
    assert set(four.files) == set(one.metrics)
    for k in four.files:
        _assert_bitwise_equal(four[k], one.metrics[k], k)
    blocks, single = np.load(tmp_path / "blocks.npz"), _per_row_block_cases()
    assert set(blocks.files) == set(single)
    for k in single:
        _assert_bitwise_equal(blocks[k], single[k], k)


def test_a_grid_runs_on_at_most_one_device_per_block():
    """A device past the number of ``vmap`` blocks would only evaluate padding: on 4 devices a one-block grid runs
    on one device (no padded copies of its rows), a grid of ``k`` blocks on ``min(4, k)``."""
    code = ("import jax; from alignjax.runner import compile_sweep\n"
            "from alignjax.experiment import Program\n"
            "r = compile_sweep(Program(lambda h, k: 0.0, lambda s, h: s, lambda s, h: {}), num_steps=1, log_every=1)\n"
            "print(len(jax.devices()), *[r._mesh(rows, block).size for rows, block in "
            "((1, 16), (16, 16), (17, 16), (6, 2), (18, 2), (300, 256), (1100, 256))])")
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["4", "1", "1", "2", "3", "4", "2", "4"]


def test_shared_data_equals_per_row_copies_and_a_kept_program_compiles_once():
    """``run_sweep(shared=...)``: data every row reads, replicated rather than copied per row,
    gives the per-row result (to rounding: a shared matrix is one matrix product, per-row copies
    a batched one); a second call with the same program object and new
    values compiles nothing, and a new grid size is counted as a compile again."""
    from alignjax.experiment import Program
    from alignjax.runner import compile_sweep
    from alignjax.sweep import Grid, make_grid, run_sweep

    M = np.arange(12, dtype=np.float32).reshape(3, 4) / 10

    def init(h, key):
        return jnp.zeros(4) + h["c"]

    def step(x, h):
        return jnp.tanh(h["M"].T @ (h["M"] @ x) * h["c"] + 0.1)

    program = Program(init, step, lambda x, h: {"x": x})
    grid = make_grid({"c": 0.5}, {"c": [0.1, 0.5, 0.9]})
    shared = run_sweep(program, grid, num_steps=4, log_every=2, shared={"M": M})
    copied = run_sweep(program, Grid({**grid.hparams, "M": np.broadcast_to(M, (3, 3, 4))}, grid.axes, 1),
                       num_steps=4, log_every=2)
    np.testing.assert_allclose(shared.metrics["x"], copied.metrics["x"], rtol=1e-6, atol=1e-7)
    assert shared.num_compiles == {"run": 1}
    runner = compile_sweep(program, num_steps=4, log_every=2)  # a kept runner: compile once, run many
    first = runner.run(grid, shared={"M": M})
    np.testing.assert_array_equal(first.metrics["x"], shared.metrics["x"])
    again = runner.run(grid, shared={"M": 2 * M})
    assert first.num_compiles == {"run": 1} and again.num_compiles == {}
    assert not np.array_equal(again.metrics["x"], shared.metrics["x"])
    bigger = runner.run(make_grid({"c": 0.5}, {"c": [0.1, 0.2, 0.3, 0.4, 0.5]}), shared={"M": M})
    assert bigger.num_compiles == {"run": 1}
    np.testing.assert_allclose(bigger.metrics["x"][[0, 4]], shared.metrics["x"][[0, 1]], rtol=1e-6)
    with pytest.raises(ValueError, match="both per-row and shared"):
        run_sweep(program, Grid({**grid.hparams, "M": np.broadcast_to(M, (3, 3, 4))}, grid.axes, 1), num_steps=4,
                  log_every=2, shared={"M": M})
