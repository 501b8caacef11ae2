"""End-to-end quick run of the nash-games suite (slow: minutes on 2 shared cores)."""

import json

import pytest

from alignjax.registry import SUITES
from alignjax.results import SuiteContext, summary_dict, write_json

PART_A_IDS = {
    "egpo-regularized-linear-rate", "nash-md-constant-step-plateaus", "nash-md-rate-order",
    "mwu-last-iterate-cycles-average-converges", "omwu-extragradient-last-iterate-beta0",
    "mpo-fixed-magnet-linear-rate", "mpo-magnet-updates-converge-original", "egpo-original-game-small-beta",
    "bt-rlhf-exploitable-on-mixtures", "nothing-beats-the-nash-policy", "three-rater-bt-jumps-nash-continuous",
    "bt-rlhf-depends-on-sampling-distribution",
}


def test_suite_is_registered():
    assert "nash-games" in SUITES.names()


def test_settings_quick_and_full_share_budgets_smoke_shrinks():
    """Quick and full run the same budgets (the authors' iteration counts; 10^6 steps for the
    instance-dependent rates), so their verdicts can agree; full only draws more games."""
    from alignjax_experiments import _nash_sampled as nb
    from alignjax_experiments import nash_games as ng

    assert ng._settings(True) == ng._settings("quick") and ng._settings(False) == ng._settings("full")
    assert nb._settings(True) == nb._settings("quick") and nb._settings(False) == nb._settings("full")
    quick, full, smoke = ng._settings("quick"), ng._settings("full"), ng._settings("smoke")
    budgets = ("configs", "theorem_steps", "beta0_steps", "beta0_eta", "small_steps", "mpo_reset_every", "small_betas",
               "long_steps")
    assert all(quick[k] == full[k] for k in budgets)
    assert [c[1] for c in full["configs"]] == [1000, 5000, 100000]  # authors' simulations/configs.py:4-6
    assert full["num_games"] >= quick["num_games"] and full["beta0_games"] >= quick["beta0_games"]
    assert [c[0] for c in smoke["configs"]] == [c[0] for c in quick["configs"]]  # same betas
    assert smoke["num_games"] < quick["num_games"] and smoke["beta0_steps"] < quick["beta0_steps"]
    for s in (quick, full, smoke):
        assert all(T % s["log_every"] == 0 for _, T, _ in s["configs"])
        assert s["theorem_steps"] % s["theorem_log_every"] == 0 and s["beta0_steps"] % s["beta0_log_every"] == 0
        assert s["small_steps"] % s["small_log_every"] == 0 and s["long_steps"] % s["long_log_every"] == 0
        assert s["beta0_eta"] <= 0.25  # Wei et al.'s eta' <= 1/8 for payoffs in [-1, 1] (ours: A in [-1/2, 1/2])
        es, d = s["three_rater_e"], s["three_rater_delta"]
        assert min(abs(e + d) for e in es) < 1e-9 and min(abs(e - d) for e in es) < 1e-9
    qb, fb = nb._settings("quick"), nb._settings("full")
    assert all(qb[k] == fb[k] for k in ("configs", "sampled_config", "floor_config", "neural_steps", "neural_beta"))
    assert set(nb._settings("smoke")) == set(qb)
    with pytest.raises(ValueError, match="scale"):
        ng._settings("tiny")


def test_algorithms_are_keyed_by_registry_name():
    from alignjax.registry import DYNAMICS
    from alignjax_experiments import _nash_sampled as nb
    from alignjax_experiments import nash_games as ng

    names = set(DYNAMICS.names())
    assert {v[0] for v in ng.EGPO_ALGOS.values()} <= names and {a for a, _ in ng.BETA0_RUNS.values()} <= names
    assert {"sppo", "inpo"} <= set(ng.EGPO_ALGOS)  # INPO and SPPO are in the simulation plot
    assert set(ng.BETA0_RUNS) == set(ng.BETA0_LABELS) and set(nb.ALGOS) <= names
    for scale in ("smoke", "quick", "full"):
        assert set(nb._settings(scale)["sampled_algos"]) <= set(nb.ALGOS)
        assert ng._settings(scale)["mpo_reset_every"] >= 1


def test_linear_envelope_check_separates_geometric_from_sublinear():
    import numpy as np

    from alignjax_experiments import nash_games as ng

    steps = np.arange(0, 1001, 10.0)
    geometric = 0.3 * (1 - 0.02) ** steps
    assert ng._linear_check(steps, geometric, 0.01)[0]  # faster than the envelope's rate
    assert not ng._linear_check(steps, 0.3 / (1 + steps), 0.01)[0]  # 1/T leaves the envelope
    assert not ng._linear_check(steps, np.full_like(steps, 1e-3), 0.01)[0]  # plateau


def test_theorem_slope_is_the_power_of_T():
    import numpy as np

    from alignjax_experiments import nash_games as ng

    steps = np.arange(0, 10001, 10.0)
    kl = np.stack([np.where(steps > 0, 3.0 / np.maximum(steps, 1) ** p, 1.0) for p in (1.0, 2.0)])[None]
    np.testing.assert_allclose(ng._slopes(kl, steps)[0], [-1.0, -2.0], atol=1e-9)


def test_sampled_rows_draw_from_their_own_key():
    """Sampled runs go one row per vmap block (a vmapped rbg draw takes a whole block's bits from
    its first key), so every row draws from the sweep's seed key: two rows with the same game and
    config follow the same noisy path."""
    import jax
    import numpy as np

    from alignjax.dynamics import sampled as S
    from alignjax.policies import tabular
    from alignjax_experiments import _nash_sampled as nb

    n = 5
    P, logp_ref = (np.concatenate([np.asarray(a)] * 2) for a in nb._tabular_games(jax.random.key(0), 1, n))
    pol = tabular(1, n)
    dyn = S.sampled_egpo(pol, mode="sampled", num_samples=10, bernoulli=False)
    g = nb._run(dyn, pol, nb._tabular_start, [(0.1, 20, 0.1)], n, {"P": P, "logp_ref": logp_ref},
                num_steps=20, log_every=10, sampled=True)
    assert g.shape == (1, 2, 1, 3) and np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[0, 0], g[0, 1])


# ---- the quick setting (the numbers of papers/nash_games.md), run once for the tests below
QUICK_HOLDS = (
    "egpo-regularized-linear-rate", "nash-md-constant-step-plateaus", "nash-md-rate-order",
    "mwu-last-iterate-cycles-average-converges", "omwu-extragradient-last-iterate-beta0",
    "mpo-fixed-magnet-linear-rate", "mpo-magnet-updates-converge-original", "egpo-original-game-small-beta",
    "bt-rlhf-exploitable-on-mixtures", "nothing-beats-the-nash-policy", "three-rater-bt-jumps-nash-continuous",
    "bt-rlhf-depends-on-sampling-distribution", "sampled-egpo-noise-floor-shrinks",
    "online-ipo2-nash-md-pg-stall-small-beta", "egpo-lowest-gap-every-beta", "sampled-egpo-lowest-gap",
    "nash-md-pg-stall-every-mixture", "sampled-inpo-bernoulli-feedback", "neural-egpo-reduces-gap",
)
"""Claims that hold at the quick setting (and in the full run: papers/nash_games.md has both tables)."""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nash-quick")
    ctx = SuiteContext(out_dir=out, quick=True, progress=False)
    claims = SUITES.get("nash-games")(ctx)
    write_json(out / "summary.json", summary_dict("nash-games", ctx.config, 0.0, claims))
    return json.loads((out / "summary.json").read_text()), out


@pytest.mark.slow
def test_quick_suite_end_to_end(quick_run):
    summary, out = quick_run
    ids = [c["id"] for c in summary["claims"]]
    assert ids == CLAIM_IDS
    for c in summary["claims"]:
        assert {"id", "statement", "source", "paper_value", "measured", "holds", "note", "setting", "control"} <= set(c)
        assert isinstance(c["holds"], bool) and c["statement"] and c["source"] and c["setting"]
        assert c["control"]["holds"] is False, c["id"]
    for name in ("egpo_exact_gap.png", "nash_md_theorem.png", "last_vs_average.png", "mpo_stages.png",
                 "egpo_small_beta.png", "why_nlhf.png", "egpo_exact_final.csv", "three_rater.csv", "mpo_reset_sweep.csv",
                 "sampled_tabular.png", "sampled_inpo_bernoulli.png", "sampled_neural.png",
                 "sampled_nash_md_pg_mixture.png"):
        assert (out / name).stat().st_size > 0
    assert "eta_mapping" in summary["config"] and summary["config"]["scale"] == "quick"


@pytest.mark.slow
@pytest.mark.parametrize("claim_id", QUICK_HOLDS)
def test_quick_claim_holds(quick_run, claim_id):
    (c,) = [c for c in quick_run[0]["claims"] if c["id"] == claim_id]
    assert c["holds"], c["measured"]


# Read by tests/test_suites_smoke.py (the suite end to end at smoke scale): the claim ids every run
# must return, in order (a skipped or broken stage changes the list), the claims that must hold even
# at smoke scale, and whether every claim meets the claims contract v2 (a setting and a negative
# control that fails).
CLAIM_IDS = [
    "egpo-regularized-linear-rate",
    "nash-md-constant-step-plateaus",
    "nash-md-rate-order",
    "mwu-last-iterate-cycles-average-converges",
    "omwu-extragradient-last-iterate-beta0",
    "mpo-fixed-magnet-linear-rate",
    "mpo-magnet-updates-converge-original",
    "egpo-original-game-small-beta",
    "bt-rlhf-exploitable-on-mixtures",
    "nothing-beats-the-nash-policy",
    "three-rater-bt-jumps-nash-continuous",
    "bt-rlhf-depends-on-sampling-distribution",
    "sampled-egpo-noise-floor-shrinks",
    "online-ipo2-nash-md-pg-stall-small-beta",
    "egpo-lowest-gap-every-beta",
    "sampled-egpo-lowest-gap",
    "nash-md-pg-stall-every-mixture",
    "sampled-inpo-bernoulli-feedback",
    "neural-egpo-reduces-gap",
]
# hold at any budget: float64 slopes of the theorem (its budget is not cut at smoke), fixed-magnet MPO,
# and the why-NLHF claims (LP equilibria, BT fits, closed-form BT-RLHF policies; no training)
HOLD_AT_SMOKE = {
    "nash-md-rate-order",
    "mpo-fixed-magnet-linear-rate",
    "bt-rlhf-exploitable-on-mixtures",
    "nothing-beats-the-nash-policy",
    "three-rater-bt-jumps-nash-continuous",
}
MEETS_CLAIMS_CONTRACT = True
