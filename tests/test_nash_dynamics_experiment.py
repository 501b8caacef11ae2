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
    grid = make_grid({**EXP.hparams_for(cfg), **hp}, axes, seeds=seeds)
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
    with jax.enable_x64(True):  # float64 oracles (float32 cannot reach these residuals at small beta)
        P = prefs.three_rater_cycle(np.float64(e))
        sol = games.regularized_nash(P, np.full(3, 1 / 3), 0.01)
        # beta -> 0: the regularised equilibrium tends to the Nash equilibrium (1/3 + e/2, 1/3 + e/2, 1/3 - e)
        small = games.regularized_nash(P, np.full(3, 1 / 3), 1e-4)
    assert bool(sol.converged) and bool(small.converged)
    np.testing.assert_allclose(res.metrics["pi"][0, 0, -1], sol.pi, atol=1e-4)
    assert res.metrics["gap"][0, 0, -1] < 1e-6
    np.testing.assert_allclose(small.pi, [1 / 3 + e / 2, 1 / 3 + e / 2, 1 / 3 - e], atol=2e-3)


def test_fixed_game_with_uniform_reference_stays_at_uniform_equilibrium():
    res = _run({"algorithm": "omwu", "game": "rps", "reference": "uniform", "num_steps": 40, "log_every": 20,
                "num_responses": 3})
    np.testing.assert_allclose(res.metrics["pi"][0, 0], np.full((3, 3), 1 / 3), atol=1e-6)
    np.testing.assert_allclose(res.metrics["exploitability"][0, 0], 0.0, atol=1e-6)


@pytest.mark.parametrize("override, message", [
    ({"algorithm": "sampled-egpo"}, "not an exact dynamic"),
    ({"algorithm": "nope"}, "not an exact dynamic"),
    ({"game": "chess"}, "game must be one of"),
    ({"reference": "odd"}, "reference must be"),
])
def test_validation(override, message):
    grid = make_grid(EXP.hparams_for())
    with pytest.raises(ValueError, match=message):
        EXP.check({**EXP.config, **override}, grid.hparams)
    with pytest.raises(ValueError, match="rater_e"):
        EXP.check(EXP.config, {**grid.hparams, "rater_e": np.array([0.5])})


@pytest.mark.parametrize("algorithm, eta, ok", [
    ("egpo", [0.4, 10.0], True),  # eta*beta = 1 at beta = 0.1: allowed (weight 0 on log pi_t)
    ("egpo", [0.4, 40.0], False),  # eta*beta = 4
    ("omwu", [10.01], False),
    ("mpo", [40.0], True),  # mpo has no eta*beta limit
    ("mwu", [40.0], True),
])
def test_validation_applies_the_algorithm_hparam_condition(algorithm, eta, ok):
    cfg = {**EXP.config, "algorithm": algorithm}
    grid = make_grid({**EXP.hparams_for(cfg), "eta": eta[0]}, {"eta": eta} if len(eta) > 1 else None)
    if ok:
        EXP.check(cfg, grid.hparams)
    else:
        with pytest.raises(ValueError, match=rf"^{algorithm} needs eta\*beta <= 1 "):
            EXP.check(cfg, grid.hparams)


def test_cli_refuses_eta_40_before_any_compute(tmp_path, capsys):
    from alignjax import cli

    out = tmp_path / "run"
    assert cli.main(["run", "nash-dynamics", "--set", "eta=40", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignjax: error:") and err.count("\n") == 1 and err.endswith("\n")
    assert "egpo needs eta*beta <= 1" in err and "got eta*beta = 4" in err
    assert not out.exists()


# Issue 27's fork dynamic (tests/fork_fixtures/my_optimistic.py, a hyperparameter "lam" of its own) is
# registered in the subprocess and its sweep runs through the command line: ``alignjax run nash-dynamics --set algorithm=my-optimistic --sweep
# my-optimistic.lam=0,1`` (in-process, ``alignjax.cli.main``), on 1 and 4 devices. Every
# exact dynamic (the fork's too) on 1 and 4 devices: test_registry.test_exact_dynamics_agree_on_one_and_four_devices.
_SCRIPT = textwrap.dedent("""
    import importlib, sys
    import jax
    import numpy as np
    # compile-bound (one program per dynamic): XLA's optimisations off in both processes alike
    jax.config.update("jax_disable_most_optimizations", True)
    from alignjax.registry import DYNAMICS, EXPERIMENTS
    from alignjax.sweep import make_grid, run_sweep
    sys.path.insert(0, sys.argv[2])
    if "my-optimistic" not in DYNAMICS:
        importlib.import_module("fork_fixtures.my_optimistic")
    exp = EXPERIMENTS.get("nash-dynamics")
    out = {}
    for game, ref in (("random", "random"), ("rps", "uniform")):
        cfg = {**exp.config, "algorithm": "egpo", "game": game, "reference": ref, "num_responses": 5,
               "num_steps": 60, "log_every": 20}
        grid = make_grid(exp.hparams_for(cfg), {"beta": [0.01, 0.1, 1.0]}, seeds=2)
        res = run_sweep(exp.make_program(cfg), grid, num_steps=60, log_every=20, chunk_logs=2, out_dir=sys.argv[1] + game)
        out.update({f"{game}_{k}": v for k, v in res.metrics.items()})
    np.savez(sys.argv[1] + "metrics.npz", **out)
    from alignjax.cli import main
    code = main(["run", "nash-dynamics", "--set", "algorithm=my-optimistic", "--sweep", "my-optimistic.lam=0,1",
                 "--set", "num_responses=5", "--set", "num_steps=60", "--set", "log_every=20", "--seeds", "2",
                 "--no-progress", "--out", sys.argv[1] + "cli"])
    sys.exit(code)
""")


def test_results_do_not_depend_on_device_count(tmp_path):
    files, cli = {}, {}
    for n in (1, 4):
        prefix = str(tmp_path / f"d{n}_")
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, prefix, str(ROOT / "tests")], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"})
        assert proc.returncode == 0, proc.stderr
        files[n] = np.load(prefix + "metrics.npz")
        cli[n] = np.load(prefix + "cli/arrays.npz")
    for k in files[1].files:
        np.testing.assert_array_equal(files[1][k], files[4][k])
    assert cli[1].files == cli[4].files
    for k in cli[1].files:  # the command line's sweep of the fork's own hyperparameter, bit-identical
        np.testing.assert_array_equal(cli[1][k], cli[4][k], err_msg=k)
    np.testing.assert_array_equal(cli[1]["hparam.my-optimistic.lam"], [0.0, 1.0])
    assert not np.array_equal(cli[1]["pi"][0], cli[1]["pi"][1])  # lam changes the iterates
