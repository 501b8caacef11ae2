"""The nash-dynamics experiment: exact dynamics behind the generic sweep runner."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from alignjax import games, prefs
from alignjax.dynamics import simulate
from alignjax.registry import EXPERIMENTS
from alignjax.sweep import make_grid, run_sweep

EXP = EXPERIMENTS.get("nash-dynamics")
ROOT = Path(__file__).resolve().parents[1]


def _run(config, axes=None, seeds=1, **hp):
    cfg = {**EXP.config, **config}
    grid = make_grid({**EXP.hparams, **hp}, axes, seeds=seeds)
    EXP.check(cfg, grid.hparams)
    return run_sweep(EXP.make_program(cfg), grid, num_steps=cfg["num_steps"], log_every=cfg["log_every"])


def test_sweep_matches_simulate_on_the_same_random_game():
    res = _run({"algorithm": "nash-md", "num_responses": 6, "num_steps": 200, "log_every": 50},
               {"beta": [0.05, 0.5]}, seeds=1, eta=0.3)
    k_game, k_ref = jax.random.split(jax.random.split(jax.random.key(0), 1)[0])
    P = prefs.random_game(k_game, 6)
    pi_ref = jax.nn.softmax(jax.random.normal(k_ref, (6,)))
    for c, beta in enumerate([0.05, 0.5]):
        ref = simulate("nash-md", P, pi_ref, beta=beta, eta=0.3, num_steps=200, log_every=50)
        np.testing.assert_allclose(res.metrics["pi"][c, 0], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("e", [-0.2, 0.0, 0.25])
def test_egpo_reaches_the_regularized_equilibrium_of_the_three_rater_game(e):
    res = _run({"algorithm": "egpo", "game": "three-rater", "reference": "uniform", "num_steps": 2000,
                "log_every": 2000}, beta=0.01, eta=1.0, rater_e=e)
    P = prefs.three_rater_cycle(e)
    star = games.regularized_nash(P, np.full(3, 1 / 3), 0.01, tol=1e-7).pi
    np.testing.assert_allclose(res.metrics["pi"][0, 0, -1], star, atol=1e-4)
    assert res.metrics["gap"][0, 0, -1] < 1e-6
    # beta -> 0: the regularised equilibrium tends to the Nash equilibrium (1/3 + e/2, 1/3 + e/2, 1/3 - e)
    small = games.regularized_nash(P, np.full(3, 1 / 3), 1e-4, tol=1e-6).pi
    np.testing.assert_allclose(small, [1 / 3 + e / 2, 1 / 3 + e / 2, 1 / 3 - e], atol=2e-3)


def test_fixed_game_with_uniform_reference_stays_at_uniform_equilibrium():
    res = _run({"algorithm": "omwu", "game": "rps", "reference": "uniform", "num_steps": 40, "log_every": 20,
                "num_responses": 3})
    np.testing.assert_allclose(res.metrics["pi"][0, 0], np.full((3, 3), 1 / 3), atol=1e-6)
    np.testing.assert_allclose(res.metrics["exploitability"][0, 0], 0.0, atol=1e-6)


@pytest.mark.parametrize("override, message", [
    ({"algorithm": "sampled-egpo"}, "not an exact dynamic"),
    ({"algorithm": "nope"}, "unknown dynamics 'nope'"),
    ({"game": "chess"}, "game must be one of"),
    ({"reference": "odd"}, "reference must be"),
])
def test_validation(override, message):
    grid = make_grid(EXP.hparams)
    with pytest.raises(ValueError, match=message):
        EXP.check({**EXP.config, **override}, grid.hparams)
    with pytest.raises(ValueError, match="rater_e"):
        EXP.check(EXP.config, {**grid.hparams, "rater_e": np.array([0.5])})


_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from alignjax.registry import EXPERIMENTS
    from alignjax.sweep import make_grid, run_sweep
    exp = EXPERIMENTS.get("nash-dynamics")
    out = {}
    for game, ref in (("random", "random"), ("rps", "uniform")):
        cfg = {**exp.config, "algorithm": "egpo", "game": game, "reference": ref, "num_responses": 5,
               "num_steps": 60, "log_every": 20}
        grid = make_grid(exp.hparams, {"beta": [0.01, 0.1, 1.0]}, seeds=2)
        res = run_sweep(exp.make_program(cfg), grid, num_steps=60, log_every=20, chunk_logs=2, out_dir=sys.argv[1] + game)
        out.update({f"{game}_{k}": v for k, v in res.metrics.items()})
    np.savez(sys.argv[1] + "metrics.npz", **out)
""")


def test_results_do_not_depend_on_device_count(tmp_path):
    files = {}
    for n in (1, 4):
        prefix = str(tmp_path / f"d{n}_")
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, prefix], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"})
        assert proc.returncode == 0, proc.stderr
        files[n] = np.load(prefix + "metrics.npz")
    for k in files[1].files:
        np.testing.assert_array_equal(files[1][k], files[4][k])
