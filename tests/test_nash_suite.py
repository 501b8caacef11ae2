"""End-to-end quick run of the nash-games suite (slow: minutes on 2 shared cores)."""

import json

import pytest

from alignjax.registry import SUITES
from alignjax.results import SuiteContext, summary_dict, write_json

PART_A_IDS = {
    "egpo-exact-linear-rate", "nash-md-constant-step-plateaus", "which-stall-at-small-beta",
    "nash-md-theorem-bound", "mwu-last-iterate-cycles-average-converges", "optimistic-extragradient-last-iterate",
    "mpo-magnet-reset-converges", "bt-rlhf-exploitable-on-mixtures", "bt-rlhf-loses-to-nash-on-mixtures",
    "three-rater-bt-jumps-nash-continuous",
}


def test_suite_is_registered():
    assert "nash-games" in SUITES.names()


def test_settings_smoke_shrinks_quick_and_keeps_its_structure():
    from alignjax_experiments import _nash_sampled as nb
    from alignjax_experiments import nash_games as ng

    assert ng._settings(True) == ng._settings("quick") and ng._settings(False) == ng._settings("full")
    assert nb._settings(True) == nb._settings("quick") and nb._settings(False) == nb._settings("full")
    quick, full, smoke = ng._settings("quick"), ng._settings("full"), ng._settings("smoke")
    assert [c[1] for c in quick["configs"]] == [1000, 5000, 20000]  # papers/nash_games.md
    assert [c[1] for c in full["configs"]] == [1000, 5000, 100000]
    assert [c[0] for c in smoke["configs"]] == [c[0] for c in quick["configs"]]  # same betas
    assert smoke["num_games"] < quick["num_games"] and smoke["beta0_steps"] < quick["beta0_steps"]
    for s in (quick, full, smoke):
        assert all(T % s["log_every"] == 0 for _, T, _ in s["configs"])
        assert s["theorem_steps"] % s["theorem_log_every"] == 0 and s["beta0_steps"] % s["beta0_log_every"] == 0
        es, d = s["three_rater_e"], s["three_rater_delta"]
        assert min(abs(e + d) for e in es) < 1e-9 and min(abs(e - d) for e in es) < 1e-9
    qb, sb = nb._settings("quick"), nb._settings("smoke")
    assert set(sb) == set(qb) and sb["floor_config"] == tuple(sb["configs"][0])
    with pytest.raises(ValueError, match="scale"):
        ng._settings("tiny")


def test_algorithms_are_keyed_by_registry_name():
    from alignjax.registry import DYNAMICS
    from alignjax_experiments import _nash_sampled as nb
    from alignjax_experiments import nash_games as ng

    names = set(DYNAMICS.names())
    assert set(ng.EGPO_ALGOS) <= names and {a for a, _ in ng.BETA0_RUNS.values()} <= names
    assert set(ng.BETA0_RUNS) == set(ng.BETA0_LABELS) and set(nb.ALGOS) <= names
    for scale in ("smoke", "quick", "full"):
        assert set(nb._settings(scale)["sampled_algos"]) <= set(nb.ALGOS)
        assert ng._settings(scale)["mpo_reset_every"] == ng.mpo_reset_every() >= 1


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
    "egpo-exact-linear-rate", "nash-md-constant-step-plateaus", "nash-md-theorem-bound",
    "bt-rlhf-exploitable-on-mixtures", "three-rater-bt-jumps-nash-continuous",
    "sampled-egpo-noise-floor-shrinks", "online-ipo2-nash-md-pg-stall-small-beta", "neural-egpo-reduces-gap",
)
"""Claims that hold at the quick budget and in the full run (the quick setting cuts only the
beta = 0.001 config, which these claims do not require). Not here: ``which-stall-at-small-beta``
(holds at 20,000 steps, not at the authors' 100,000: a budget artefact), the beta = 0 last-iterate
claims (they need longer runs on random games, or do not hold), ``bt-rlhf-loses-to-nash-on-mixtures``
(does not hold), and ``egpo-lowest-gap-every-beta`` (checked below up to the float32 floor)."""


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
    assert PART_A_IDS <= set(ids) and len(ids) == len(set(ids))
    for c in summary["claims"]:
        assert set(c) == {"id", "statement", "source", "paper_value", "measured", "holds", "note"}
        assert isinstance(c["holds"], bool) and c["statement"] and c["source"]
    for name in ("egpo_exact_gap.png", "nash_md_theorem.png", "last_vs_average.png", "why_nlhf.png",
                 "egpo_exact_final.csv", "three_rater.csv"):
        assert (out / name).stat().st_size > 0
    assert "eta_mapping" in summary["config"] and summary["config"]["scale"] == "quick"


@pytest.mark.slow
@pytest.mark.parametrize("claim_id", QUICK_HOLDS)
def test_quick_claim_holds(quick_run, claim_id):
    (c,) = [c for c in quick_run[0]["claims"] if c["id"] == claim_id]
    assert c["holds"], c["measured"]


@pytest.mark.slow
def test_quick_egpo_lowest_gap_up_to_the_float_floor(quick_run):
    """``egpo-lowest-gap-every-beta`` holds in quick and full, but at beta = 0.1 EGPO and online
    IPO 1 both end at the float32 floor (1.86e-13 vs 1.90e-13 in quick), where the order is
    rounding. Asserted: EGPO is lowest, or at the floor, at every beta."""
    (c,) = [c for c in quick_run[0]["claims"] if c["id"] == "egpo-lowest-gap-every-beta"]
    for beta, meds in c["measured"].items():
        assert meds["EGPO"] <= min(meds.values()) * (1 + 1e-6) or meds["EGPO"] < 1e-11, (beta, meds)


# Read by tests/test_suites_smoke.py (the suite end to end at smoke scale): the claim ids every run
# must return, in order (a skipped or broken stage changes the list), the claims that must hold even
# at smoke scale, and whether every claim meets the claims contract v2 (a setting and a negative
# control that fails).
CLAIM_IDS = [
    "egpo-exact-linear-rate",
    "nash-md-constant-step-plateaus",
    "which-stall-at-small-beta",
    "nash-md-theorem-bound",
    "mwu-last-iterate-cycles-average-converges",
    "optimistic-extragradient-last-iterate",
    "mpo-magnet-reset-converges",
    "bt-rlhf-exploitable-on-mixtures",
    "bt-rlhf-loses-to-nash-on-mixtures",
    "three-rater-bt-jumps-nash-continuous",
    "sampled-egpo-noise-floor-shrinks",
    "online-ipo2-nash-md-pg-stall-small-beta",
    "egpo-lowest-gap-every-beta",
    "neural-egpo-reduces-gap",
]
# a theorem's bound at every logged T; no training in the other two: BT fits, closed-form
# BT-RLHF policies and LP equilibria (median exploitability 0.155 vs 0.1 at smoke and quick size)
HOLD_AT_SMOKE = {
    "bt-rlhf-exploitable-on-mixtures",
    "nash-md-theorem-bound",
    "three-rater-bt-jumps-nash-continuous",
}
MEETS_CLAIMS_CONTRACT = False
