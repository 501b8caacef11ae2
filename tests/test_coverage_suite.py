"""The "coverage" suite (experiments/coverage.py): registration, settings, quick path end to end."""

import jax
import numpy as np
import pytest

from alignjax.registry import SUITES
from alignjax.results import SuiteContext

import experiments.coverage as cs


def test_registered_and_settings_consistent():
    assert SUITES.get("coverage") is cs.reproduce
    for quick in (True, False):
        cfg = cs.settings(quick)
        assert cfg["num_steps"] % cfg["log_every"] == 0
        assert cfg["ext_steps"] % 10 == 0
        assert all(2 <= k <= cfg["num_responses"] for k, _ in cfg["levels"])
        assert cfg["levels"][-1][0] == cfg["num_responses"]  # the last level is global coverage


def test_sweep_problems_have_the_requested_coverage():
    cfg = cs.settings(True)
    keys = jax.random.split(cs._key(0), 2)
    rewards, support, probs = cs.make_problems(cfg, keys, np.array([3, 16]), np.array([0.5, 0.0], np.float32))
    np.testing.assert_array_equal(support.sum(-1)[:, 0], [3, 16])
    out_mass = np.where(np.asarray(support), 0, np.exp(np.asarray(probs.log_pi_ref))).sum(-1)
    np.testing.assert_allclose(out_mass[0], 0.5, rtol=1e-5)
    np.testing.assert_allclose(out_mass[1], 0.0, atol=1e-6)


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path):
    ctx = SuiteContext(out_dir=tmp_path, quick=True, progress=False)
    claims = cs.reproduce(ctx)
    ids = [c.id for c in claims]
    assert ids == ["non-uniqueness", "dpo-drift", "hypo-kl", "hypo-cost", "extrapolation", "coverage-sweep"]
    by_id = {c.id: c for c in claims}
    # claim 1 is exact for a tabular policy on population pairs: it must hold
    assert by_id["non-uniqueness"].holds
    assert by_id["non-uniqueness"].measured["global_max_abs_pi_minus_opt"] < 0.01
    for c in claims:
        assert isinstance(c.holds, bool) and c.measured
    for f in ("sweep.csv", "nonuniqueness.csv", "drift_partial.png", "sweep_reward.png", "sweep_kl.png",
              "nonuniqueness.png", "extrapolation.png"):
        assert (tmp_path / f).exists(), f
    assert set(ctx.config["sweep_wall_s"]) == {"dpo", "ipo", "rlhf", "hypo"}
