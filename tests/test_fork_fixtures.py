"""Issue 27: a fork's entries with hyperparameters of their own (``tests/fork_fixtures/``).

* With the fork fixtures registered BEFORE collection (``ALIGNJAX_FORK_FIXTURES=1``, a subprocess),
  the registry-wide tests that concern them pass: the loss and dynamic contracts, the domain probes,
  two steps of every experiment with them chosen, and the experiments' component cases.
* ``alignjax run nash-dynamics --set algorithm=my-optimistic --sweep my-optimistic.lam=0,1`` gives
  bit-identical results on 1 and 4 devices: checked by
  ``tests/test_nash_dynamics_experiment.py::test_results_do_not_depend_on_device_count``, whose
  subprocesses register the fixture (the test issue 27 reported broken).
* The atlas gives both fixtures a row (its families are read from the registries).
* The deliberately broken fixtures (never registered in a normal run) pass the default-value contracts
  but fail the domain probes with a message naming the entry, the hyperparameter and the value.

The whole default suite also passes with the fixtures present:
``ALIGNJAX_FORK_FIXTURES=1 python -m pytest -q -n 2`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignjax.registry import DYNAMICS, EXPERIMENTS, LOSSES, SUITES, TRAINERS
from fork_fixtures import BROKEN, ENTRIES, GOOD
from test_registry import (check_exact_dynamic_contract, check_exact_dynamic_probes, check_loss_contract,
                           check_loss_float32_range)

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
REGISTRIES = (LOSSES, DYNAMICS, EXPERIMENTS, SUITES, TRAINERS)


def _is_registered(module: str) -> bool:
    kind, name = ENTRIES[module]
    return name in {"loss": LOSSES, "dynamics": DYNAMICS}[kind]


@contextlib.contextmanager
def registered(*modules: str):
    """Import fixture modules (registering their entries) unless their entries are registered already
    (``ALIGNJAX_FORK_FIXTURES=1``); afterwards remove what this registered."""
    from alignjax import registry

    registry.load_plugins()  # the built-ins first: the cleanup below removes whatever is not in `before`
    before = [dict(r._entries) for r in REGISTRIES]
    todo = [m for m in modules if not _is_registered(m)]
    try:
        for m in todo:
            sys.modules.pop(m, None)
            importlib.import_module(m)
        yield
    finally:
        for m in todo:
            sys.modules.pop(m, None)
        for r, entries in zip(REGISTRIES, before):
            for extra in set(r._entries) - set(entries):
                r._entries.pop(extra)


def _env(**extra) -> dict:
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *paths]), **extra}


def test_the_broken_fixtures_are_not_registered_in_a_normal_run():
    for m in BROKEN:
        assert not _is_registered(m), m


def test_the_registry_wide_tests_pass_with_the_fork_fixtures_registered_before_collection():
    """The parametrized registry-wide tests see the fixtures only if they are registered before
    collection: run those cases in a subprocess with ``ALIGNJAX_FORK_FIXTURES=1``."""
    names = [ENTRIES[m][1] for m in GOOD]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_registry.py",
           "-k", " or ".join([*names, "every_component_entry_is_a_case"])]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(ALIGNJAX_FORK_FIXTURES="1"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", proc.stdout).group(1))
    # loss: contract; dynamic: contract + probes; experiments: dpo-bandit/loss, nash-dynamics/algorithm; + the case test
    assert passed >= 6 and "failed" not in proc.stdout, proc.stdout[-2000:]


def test_the_atlas_gives_both_fixtures_a_row():
    from alignjax.registry import load_plugins

    load_plugins()
    from alignjax_experiments import atlas as A

    with registered(*GOOD):
        assert "my_margin_dpo" in [e.name for e in A.members("loss")]
        assert "my-optimistic" in [e.name for e in A.members("exact")]
        cfg = {**A.settings("smoke"), "num_steps": 20, "game_steps": 20}
        leaves, _ = A.bandit_rows(cfg)
        leaves = {k: v[:1] for k, v in leaves.items()}
        ents = [LOSSES.entry("my_margin_dpo")]
        lv = {**leaves, **A._leaves_for(ents, {}, 1)}
        assert lv["my_margin_dpo.delta"].tolist() == [0.5]
        out = A._run(A.family_program("loss", ents, cfg, cfg["prompts"], cfg["responses"], A.bandit_observe, 20), lv, 20)
        assert np.all(np.isfinite(out["suboptimality"]))
        games, _ = A.game_rows(cfg)
        ents = [DYNAMICS.entry("my-optimistic")]
        lv = {**games, **A._leaves_for(ents, {}, len(games["beta"]))}
        assert {"my-optimistic.eta", "my-optimistic.lam"} <= set(lv)
        out = A._run(A.family_program("exact", ents, cfg, 1, cfg["game_responses"], A.game_observe, 20), lv, 20)
        assert np.all(np.isfinite(out["gap"]))


def test_hparams_for_includes_the_fixtures_own_hyperparameters():
    """What issue 27's test missed: the run's hyperparameters come from the resolved entry (cheap; the
    contracts themselves run in the subprocess above)."""
    from alignjax.sweep import make_grid

    with registered(*GOOD):
        loss, dyn = LOSSES.entry("my_margin_dpo"), DYNAMICS.entry("my-optimistic")
        assert loss.domains["delta"].inferred and dyn.domains["lam"].inferred  # plain floats: inferred domains
        exp = EXPERIMENTS.get("nash-dynamics")
        cfg = {**exp.config, "algorithm": "my-optimistic"}
        assert exp.hparams_for(cfg) == {**exp.hparams, "my-optimistic.lam": 0.5}  # beta, eta are shared
        exp.check(cfg, make_grid(exp.hparams_for(cfg), {"my-optimistic.lam": [-3.0, 0.0, 7.0]}).hparams)  # any finite
        with pytest.raises(ValueError, match=r"missing hyperparameters \['my-optimistic.lam'\]"):
            exp.check(cfg, make_grid(exp.hparams).hparams)  # issue 27's grid: refused, not a KeyError
        bandit = EXPERIMENTS.get("dpo-bandit")
        assert bandit.hparams_for({**bandit.config, "loss": "my_margin_dpo"})["my_margin_dpo.delta"] == 0.5


def test_a_loss_nan_inside_its_declared_domain_fails_the_probes_naming_entry_hyperparameter_and_value():
    with registered("fork_fixtures.broken_loss"):
        entry = LOSSES.entry("broken_nan_above_one")
        check_loss_contract(entry)  # at its defaults (delta = 0.5) nothing is wrong...
        with pytest.raises(AssertionError) as err:  # ...its domain [0, 2] holds values where it is NaN
            check_loss_float32_range(entry)
    msg = str(err.value)
    m = re.search(r"delta = ([0-9.e+-]+)", msg)
    assert "'broken_nan_above_one'" in msg and "value = nan" in msg and m, msg
    assert 1.0 < float(m.group(1)) <= 2.0, msg
    assert "broken_nan_above_one" not in LOSSES


def test_a_dynamic_nan_at_lam_0_fails_the_probes_naming_entry_hyperparameter_and_value():
    with registered("fork_fixtures.broken_dynamic"):
        entry = DYNAMICS.entry("broken-optimistic")
        check_exact_dynamic_contract(entry)  # defaults, halves and quarters: fine
        with pytest.raises(AssertionError) as err:
            check_exact_dynamic_probes(entry)
    msg = str(err.value)
    assert "'broken-optimistic'" in msg and "lam = 0 (the others at their defaults: beta = 0.1, eta = 0.4)" in msg, msg
    assert "broken-optimistic" not in DYNAMICS
