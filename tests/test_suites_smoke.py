"""Every registered reproduction suite, end to end, at smoke scale (in the default run).

``SuiteContext(smoke=True)`` asks a suite for its quick setting shrunk to seconds: every stage,
table, plot and claim runs, so a broken suite fails CI. The cases come from the registry, so a
new suite is covered without editing this file (each suite's own test file, listed in
:data:`SUITE_TESTS`, adds checks: ``CLAIM_IDS``, ``HOLD_AT_SMOKE`` and ``MEETS_CLAIMS_CONTRACT``, which
turns on the claims-contract v2 checks: a setting, a located source and a negative control that fails;
a suite that returns contract-v3 records, :func:`alignjax.claims.evaluate`, is checked against its
declared ``meta["claims"]`` instead: the declared check, verdicts recomputable from the record
alone). At smoke scale the budgets are tiny and most claims need not hold; only those in :data:`HOLD_AT_SMOKE` must: identities and closed forms, which hold at any
size, and dpo-bandit's, which hold by orders of magnitude even at smoke size. The other claims
that hold at the quick budget are asserted on the quick setting in each suite's own test file
(``@pytest.mark.slow``).
"""

import importlib
import json
import math
from collections.abc import Mapping

import jax
import pytest

from alignjax.registry import SUITES
from alignjax.results import Claim, SuiteContext, summary_dict, to_jsonable, write_json
from test_registry import cheap_compiles

SUITE_TESTS = {  # each suite's own test file holds its CLAIM_IDS, HOLD_AT_SMOKE and MEETS_CLAIMS_CONTRACT
    "dpo-bandit": "test_dpo_bandit",
    "coverage": "test_coverage_suite",
    "nash-games": "test_nash_suite",
    "ranking-accuracy": "test_ranking_suite",
    "atlas": "test_atlas",
    "preference-models": "test_preference_models",
}
_SUITE_MODULES = {name: importlib.import_module(mod) for name, mod in SUITE_TESTS.items()}
HOLD_AT_SMOKE = {name: set(m.HOLD_AT_SMOKE) for name, m in _SUITE_MODULES.items()}
CLAIM_IDS = {name: list(m.CLAIM_IDS) for name, m in _SUITE_MODULES.items()}
CONTRACT_V2 = {name for name, m in _SUITE_MODULES.items() if m.MEETS_CLAIMS_CONTRACT}
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


def _as_claim(record):
    """A v3 record seen through the v2 :class:`Claim` fields (``holds`` true only for "holds")."""
    keys = {"id", "statement", "source", "paper_value", "measured", "holds", "note", "setting", "control"}
    return Claim(**{k: record[k] for k in keys if k in record})


V3_KEYS = {"id", "statement", "source", "setting", "paper_value", "note", "check", "subject", "control", "verdict",
           "holds", "measured"}


def _check_v3_records(name, records):
    """The claims contract v3: the declared check, numbers that recompute the verdicts, a control of its own."""
    from alignjax import claims as C

    declared = {s.id: s for s in SUITES.entry(name).meta.get("claims") or ()}
    for r in records:
        assert r["id"] in declared, f"{r['id']}: not declared in the suite's meta['claims']"
        spec = declared[r["id"]]
        assert r["check"]["metric"] == spec.check.metric and r["check"]["op"] == spec.check.op
        assert r["check"]["threshold"] == spec.check.threshold, r["id"]
        assert C.recompute(r) == (r["verdict"], r["control"]["verdict"]), r["id"]
        assert r["holds"] is (r["verdict"] == "holds")
        assert r["setting"].strip() and r["control"]["statement"].strip(), r["id"]
        assert r["source"].startswith("beyond the paper") or any(ch.isdigit() for ch in r["source"]), r["id"]
        for m in (r["subject"], r["control"]):
            assert all(math.isfinite(m[k]) for k in ("value", "low", "high")), (r["id"], m)
            assert m["low"] <= m["value"] <= m["high"] and m["units"] >= 1, (r["id"], m)
        assert r["verdict"] in C.VERDICTS, r["id"]
        assert V3_KEYS <= set(r), (r["id"], sorted(V3_KEYS - set(r)))
        json.dumps(to_jsonable(r), allow_nan=False)
        bad = [v for v in _leaves(r["measured"]) if isinstance(v, str) and v in NONFINITE]
        assert not bad, f"{r['id']}: non-finite measurements {bad}"


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


RUN_ELSEWHERE = {  # a suite whose own test file already runs it at smoke scale and applies check_smoke_run to it
    "atlas": "test_atlas.test_the_smoke_run_meets_every_suite_check",
}


@pytest.mark.parametrize("name", [n for n in SUITES.names() if n not in RUN_ELSEWHERE])
def test_suite_reproduces_end_to_end_at_smoke_scale(name, tmp_path):
    out = tmp_path / name
    ctx = SuiteContext(out_dir=out, smoke=True, progress=False)
    with cheap_compiles():
        claims = SUITES.get(name)(ctx)
    check_smoke_run(name, ctx, out, claims)


def check_smoke_run(name, ctx, out, claims):
    """What every suite's smoke run must satisfy: claims in the v2 or v3 contract, strict JSON, the scale
    recorded, at least one table or plot, and the claims of :data:`HOLD_AT_SMOKE` holding."""
    assert isinstance(claims, list) and claims, "a suite returns a non-empty list of claims"
    v3 = [c for c in claims if isinstance(c, Mapping)]  # contract v3 records (alignjax.claims.evaluate)
    assert not v3 or len(v3) == len(claims), "a suite returns v2 Claims or v3 records, not both"
    if v3:
        _check_v3_records(name, v3)
        claims = [_as_claim(r) for r in v3]  # the common checks below read the record's fields
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids)), f"duplicate claim ids: {ids}"
    if name in CLAIM_IDS:
        assert ids == CLAIM_IDS[name]
    for c in claims:
        if isinstance(c, dict):  # claims contract v3: a record of alignjax.claims.evaluate
            _check_v3_record(c)
            continue
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
    write_json(out / "summary.json", summary_dict(name, {"quick": True, **ctx.config}, 0.0, v3 or claims))
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

    if name in CONTRACT_V2 and not v3:  # the claims contract v2: where, in which regime, and a check that can fail
        for c in claims:
            assert c.setting.strip(), f"{c.id}: no setting (how ours maps onto the paper's regime)"
            assert c.control is not None, f"{c.id}: no negative control"
            assert c.control["holds"] is False, f"{c.id}: the negative control passes the check: {c.control}"
            assert c.control["statement"].strip() and c.control["measured"] not in (None, "", [], {}), c.id
            assert c.source.startswith("beyond the paper") or any(ch.isdigit() for ch in c.source), (
                f"{c.id}: source names no place in a paper: {c.source!r}")

    must = HOLD_AT_SMOKE.get(name, set())
    assert must <= set(ids), f"claims renamed or gone: {sorted(must - set(ids))}"
    failing = {c.id: c.measured for c in claims if c.id in must and not c.holds}
    assert not failing, f"claims that hold at any scale do not hold: {failing}"
