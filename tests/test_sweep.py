"""The sweep runner: one compile, chunking, jit == no-jit, vmap == per-row, determinism,
device-count invariance and kill-and-resume bit-identity."""

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
    g = make_grid({**exp.hparams, "num_pairs": 16.0}, {"beta": [0.1, 1.0]}, seeds=2)
    whole = run_sweep(prog, g, num_steps=40, log_every=4)
    chunked = run_sweep(prog, g, num_steps=40, log_every=4, chunk_logs=3, out_dir=tmp_path)
    assert chunked.num_compiles == {"init": 1, "chunk": 2}  # 10 logged intervals in chunks of 3, 3, 3, 1
    for k in whole.metrics:
        np.testing.assert_array_equal(whole.metrics[k], chunked.metrics[k])


_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from alignjax.registry import EXPERIMENTS
    from alignjax.sweep import make_grid, run_sweep
    out, kill_after, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    exp = EXPERIMENTS.get("dpo-bandit")
    cfg = {**exp.config, "num_prompts": 3, "num_responses": 5, "pairs": "sampled", "labels": "hard", "max_pairs": 16}
    grid = make_grid({**exp.hparams, "num_pairs": 16.0}, {"beta": [0.1, 1.0, 3.0]}, seeds=2)
    def on_chunk(done, total):
        if done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    res = run_sweep(exp.make_program(cfg), grid, num_steps=60, log_every=4, chunk_logs=chunk, out_dir=out,
                    resume=resume, on_chunk=on_chunk)
    np.savez(os.path.join(out, "metrics.npz"), **res.metrics)
    print(sorted(res.num_compiles.items()))
""")


def _python(args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", _SCRIPT, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=ROOT)


def test_kill_and_resume_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    assert _python([str(ref), "0", "0"]).returncode == 0
    run = tmp_path / "killed"
    run.mkdir()
    killed = _python([str(run), "6", "0"])
    assert killed.returncode == -9, killed.stderr  # SIGKILL after the third chunk's checkpoint (6 intervals)
    assert not (run / "metrics.npz").exists()
    resumed = _python([str(run), "-1", "1", "4"])  # resumed with another chunk size
    assert resumed.returncode == 0, resumed.stderr
    a, b = np.load(ref / "metrics.npz"), np.load(run / "metrics.npz")
    assert set(a.files) == set(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_results_do_not_depend_on_device_count(tmp_path):
    one, four = tmp_path / "one", tmp_path / "four"
    one.mkdir()
    four.mkdir()
    r1 = _python([str(one), "-1", "0"], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    r4 = _python([str(four), "-1", "0"], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert r1.returncode == 0 and r4.returncode == 0, r1.stderr + r4.stderr
    check = subprocess.run([sys.executable, "-c", "import jax; print(len(jax.devices()))"], capture_output=True,
                           text=True, env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert check.stdout.strip() == "4"
    a, b = np.load(one / "metrics.npz"), np.load(four / "metrics.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
