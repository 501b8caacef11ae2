"""Every registered reproduction suite, end to end, at smoke scale (in the default run).

``SuiteContext(smoke=True)`` asks a suite for its quick setting shrunk to seconds: every stage,
table, plot and claim runs, so a broken suite fails CI. The cases come from the registry, so a
new suite is covered without editing this file (:data:`CLAIM_IDS` and :data:`HOLD_AT_SMOKE` add
checks for the suites they list). At smoke scale the budgets are tiny and most claims need not
hold; only those in :data:`HOLD_AT_SMOKE` must: identities and closed forms, which hold at any
size, and dpo-bandit's, which hold by orders of magnitude even at smoke size. The other claims
that hold at the quick budget are asserted on the quick setting in each suite's own test file
(``@pytest.mark.slow``).
"""

import json
import math

import jax
import pytest

from alignjax.registry import SUITES
from alignjax.results import Claim, SuiteContext, summary_dict, to_jsonable, write_json
from test_registry import cheap_compiles

HOLD_AT_SMOKE = {
    # closed form in float64 (error ~1e-13 vs 1e-4); gaps 23 -> 3.4 -> 1e-8; hard/soft KL ratios >= 2.5
    "dpo-bandit": {"closed-form-optimum", "sampled-gap-shrinks", "hard-labels-overfit"},
    # Thm 3.1 on tabular policies (quick length kept), Thm 4.1 and its IPO analogue: identities
    "ranking-accuracy": {"thm31-dpo-optimum", "thm41-flip-iff-loss-below-threshold", "ipo-flip-analogue"},
    # a theorem's bound at every logged T; no training in the other two: BT fits, closed-form
    # BT-RLHF policies and LP equilibria (median exploitability 0.155 vs 0.1 at smoke and quick size)
    "nash-games": {"nash-md-theorem-bound", "three-rater-bt-jumps-nash-continuous", "bt-rlhf-exploitable-on-mixtures"},
    # tabular DPO on population pairs (quick length kept): non-unique under partial coverage,
    # the closed form under global coverage
    "coverage": {"non-uniqueness"},
}
CLAIM_IDS = {
    # every stage of a suite returns claims: a skipped or broken stage changes this list
    "dpo-bandit": ["closed-form-optimum", "sampled-gap-shrinks", "hard-labels-overfit"],
    "coverage": ["non-uniqueness", "dpo-drift", "hypo-kl", "hypo-cost", "extrapolation", "coverage-sweep"],
    "ranking-accuracy": [
        "thm31-dpo-optimum", "thm41-flip-iff-loss-below-threshold", "ipo-flip-analogue", "alignment-gap",
        "few-misranked-pairs-flip", "flipped-pairs-are-easy", "winrate-ranking-correlation",
        "alignment-gap-other-methods"],
    "nash-games": [
        "egpo-exact-linear-rate", "nash-md-constant-step-plateaus", "which-stall-at-small-beta",
        "nash-md-theorem-bound", "mwu-last-iterate-cycles-average-converges",
        "optimistic-extragradient-last-iterate", "mpo-magnet-reset-converges", "bt-rlhf-exploitable-on-mixtures",
        "bt-rlhf-loses-to-nash-on-mixtures", "three-rater-bt-jumps-nash-continuous",
        "sampled-egpo-noise-floor-shrinks", "online-ipo2-nash-md-pg-stall-small-beta", "egpo-lowest-gap-every-beta",
        "neural-egpo-reduces-gap"],
}
NONFINITE = {"nan", "inf", "-inf"}  # how to_jsonable spells non-finite floats


def _leaves(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_smoke_scale_of_the_context(tmp_path):
    assert SuiteContext(out_dir=tmp_path).scale == "quick"  # the CLI's SuiteContext(out_dir, quick=...)
    assert SuiteContext(out_dir=tmp_path, quick=False).scale == "full"
    ctx = SuiteContext(out_dir=tmp_path, smoke=True)
    assert ctx.scale == "smoke" and ctx.quick  # smoke shrinks quick: a suite ignoring it runs quick
    with pytest.raises(ValueError, match="smoke"):
        SuiteContext(out_dir=tmp_path, quick=False, smoke=True)


def test_listed_suites_and_claims_exist():
    assert set(HOLD_AT_SMOKE) | set(CLAIM_IDS) <= set(SUITES.names())
    for name, must in HOLD_AT_SMOKE.items():
        assert must <= set(CLAIM_IDS.get(name, must)), name


@pytest.mark.parametrize("name", SUITES.names())
def test_suite_reproduces_end_to_end_at_smoke_scale(name, tmp_path):
    out = tmp_path / name
    ctx = SuiteContext(out_dir=out, smoke=True, progress=False)
    with cheap_compiles():
        claims = SUITES.get(name)(ctx)

    assert isinstance(claims, list) and claims, "a suite returns a non-empty list of claims"
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids)), f"duplicate claim ids: {ids}"
    if name in CLAIM_IDS:
        assert ids == CLAIM_IDS[name]
    for c in claims:
        assert isinstance(c, Claim), type(c)
        assert isinstance(c.holds, bool), (c.id, c.holds)
        assert isinstance(c.id, str) and c.id.strip()
        assert isinstance(c.statement, str) and c.statement.strip(), c.id
        assert isinstance(c.source, str) and c.source.strip(), c.id
        assert c.measured not in (None, "", [], {}), f"{c.id}: nothing measured"
        for field in ("measured", "paper_value"):
            value = getattr(c, field)
            json.dumps(value, allow_nan=False)  # strict JSON as summary.json stores it
            for leaf in _leaves(value):
                assert leaf is None or isinstance(leaf, (str, bool, int, float)), (c.id, field, leaf)
                if isinstance(leaf, float):
                    assert math.isfinite(leaf), (c.id, field, leaf)
        bad = [v for v in _leaves(c.measured) if isinstance(v, str) and v in NONFINITE]
        assert not bad, f"{c.id}: non-finite measurements {bad}: {c.measured}"

    assert ctx.config.get("scale") == "smoke", "the suite records its scale in ctx.config"
    # summary.json the way the CLI writes it, read back as strict JSON
    write_json(out / "summary.json", summary_dict(name, {"quick": True, **ctx.config}, 0.0, claims))
    summary = json.loads((out / "summary.json").read_text(), parse_constant=_reject_constant)
    assert [c["id"] for c in summary["claims"]] == ids
    assert summary["config"] == to_jsonable({"quick": True, **ctx.config})

    tables = sorted(out.glob("*.csv"))
    plots = sorted(out.glob("*.png"))
    assert tables or plots, f"{name} wrote no table or plot: {sorted(p.name for p in out.iterdir())}"
    for p in tables:
        lines = p.read_text().splitlines()
        assert len(lines) >= 2 and lines[0], f"{p.name}: header and at least one row"
    for p in plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p.name

    must = HOLD_AT_SMOKE.get(name, set())
    assert must <= set(ids), f"claims renamed or gone: {sorted(must - set(ids))}"
    failing = {c.id: c.measured for c in claims if c.id in must and not c.holds}
    assert not failing, f"claims that hold at any scale do not hold: {failing}"
