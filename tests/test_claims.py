"""The claims contract v3 (alignjax.claims): declared checks, intervals, three-valued verdicts.

Hand-computed verdicts, the bootstrap interval against its definition, the refusals (a
control that is the subject's own measurement, a bool as a measurement, a check without an
origin), the recomputation of every verdict from a summary record alone, and, for every suite
that declares its claims as data, that the declaration is well formed and printable as JSON.
"""

import json

import numpy as np
import pytest

from alignjax import claims as C
from alignjax.cli import main
from alignjax.registry import SUITES
from alignjax.results import format_claims, summary_dict

CHECK = C.Check("gap", "<", 0.1, "Theorem 1 (test)")


@pytest.mark.parametrize("low, high, want", [
    (0.01, 0.05, "holds"),      # the whole interval below the threshold
    (0.2, 0.3, "fails"),        # the whole interval above
    (0.05, 0.2, "inconclusive"),
    (0.1, 0.1, "fails"),        # on the threshold: "<" is strict
])
def test_verdict_by_hand(low, high, want):
    assert C.verdict(CHECK, C.Measurement((low + high) / 2, low, high, 8))[0] == want


def test_inconclusive_says_how_many_units_would_resolve_it():
    m = C.Measurement(0.07, 0.04, 0.10 + 1e-9, 10)  # half-width 0.03, distance 0.03 -> 10 units (ceil of 10.000..)
    v, need = C.verdict(CHECK, m)
    assert v == "inconclusive" and need in (10, 11)
    assert C.verdict(CHECK, C.Measurement(0.1, 0.05, 0.15, 4)) == ("inconclusive", None)  # on the threshold


@pytest.mark.parametrize("op, x, want", [("<", 1, False), ("<=", 1, True), (">", 1, False), (">=", 1, True),
                                         (">", float("nan"), False)])
def test_ops(op, x, want):
    assert C.Check("m", op, 1.0, "test").passes(x) is want


def test_bootstrap_interval_matches_its_definition():
    x = np.random.default_rng(1).normal(size=40)
    m = C.measure(x, seed=3, resamples=500)
    idx = np.random.default_rng(3).integers(0, 40, size=(500, 40))
    stats = x[idx].mean(axis=1)
    lo, hi = np.quantile(stats, [0.025, 0.975])
    assert m.value == pytest.approx(x.mean()) and m.units == 40
    assert m.low == pytest.approx(min(lo, x.mean())) and m.high == pytest.approx(max(hi, x.mean()))
    assert m.low < m.value < m.high
    assert C.measure(x, seed=3, resamples=500) == m  # reproducible
    one = C.measure([2.5])
    assert (one.value, one.low, one.high, one.units) == (2.5, 2.5, 2.5, 1)


def test_refusals():
    spec = C.ClaimSpec("a", "s", "src", 1, "setting", CHECK, "control run")
    m = C.exact(np.float32(0.05))
    with pytest.raises(TypeError):
        C.evaluate(spec, m, m)  # the control must be its own run
    with pytest.raises(TypeError):
        C.exact(True)
    with pytest.raises(TypeError):
        C.exact(np.zeros(3))
    with pytest.raises(ValueError):
        C.Check("m", "==", 1.0, "x")
    with pytest.raises(ValueError):
        C.Check("m", "<", 1.0, " ")
    with pytest.raises(ValueError):
        C.declared([spec, spec])
    with pytest.raises(ValueError):
        C.declared([C.ClaimSpec("b", "s", "src", 1, "setting", CHECK, "")])


def test_a_record_recomputes_from_summary_json_alone():
    old = C.Check("gap", "<", 0.5, "an earlier, easier threshold")
    spec = C.ClaimSpec("a", "s", "src", "0.01", "setting", CHECK, "the reference policy through the same pipeline",
                       history=(C.CheckChange(old, "the paper's Table 2 says 0.1", "abc123", easier=False),))
    rec = C.evaluate(spec, C.measure([0.01, 0.02, 0.03]), C.measure([0.2, 0.4, 0.3]), measured={"x": 1})
    back = json.loads(json.dumps(summary_dict("s", {}, 1.0, [rec])))
    (r,) = back["claims"]
    assert C.recompute(r) == (r["verdict"], r["control"]["verdict"]) == ("holds", "fails")
    assert r["holds"] is True and r["history"][0]["old_verdict"] == "holds"
    assert back["counts"] == {"holds": 1, "fails": 0, "inconclusive": 0}
    table = format_claims([back])
    assert "gap < 0.1" in table and "holds 1, fails 0, inconclusive 0" in table


def _declaring_suites():
    return [n for n in SUITES.names() if SUITES.entry(n).meta.get("claims")]


@pytest.mark.parametrize("name", _declaring_suites() or ["(none yet)"])
def test_declared_claims_are_well_formed_and_listed_as_json(name, capsys):
    if name == "(none yet)":
        pytest.skip("no suite declares its claims as data yet")
    specs = C.declared(SUITES.entry(name).meta["claims"])
    assert main(["list", name, "--claims", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in listed] == [s.id for s in specs]
    for d in listed:
        assert set(d["check"]) == {"metric", "op", "threshold", "origin"} and d["check"]["origin"].strip()


@pytest.mark.parametrize("name", _declaring_suites() or ["(none yet)"])
def test_no_two_claims_of_a_suite_declare_the_same_control(name):
    """One control per claim, not shared (issue 22): the declared control runs differ within a suite."""
    if name == "(none yet)":
        pytest.skip("no suite declares its claims as data yet")
    controls = [" ".join(s.control.lower().split()) for s in C.declared(SUITES.entry(name).meta["claims"])]
    shared = {c for c in controls if controls.count(c) > 1}
    assert not shared, shared


def test_show_and_resume_accept_a_v3_summary(tmp_path):
    """``summary.json`` read back (``show``, ``--resume``) accepts v3 records and still refuses junk."""
    from alignjax.cli import _check_results_doc

    spec = C.ClaimSpec("a", "s", "src 1", 1, "setting", CHECK, "control run")
    rec = C.evaluate(spec, C.measure([0.01, 0.02]), C.measure([0.3, 0.2]))
    doc = json.loads(json.dumps(summary_dict("s", {}, 1.0, [rec])))
    assert _check_results_doc(tmp_path / "summary.json", doc) is doc
    bad = {**doc, "claims": [{**doc["claims"][0], "subject": {"value": "x"}}]}
    with pytest.raises(ValueError, match="claims"):
        _check_results_doc(tmp_path / "summary.json", bad)


def test_an_extreme_over_units_is_decided_by_the_units_not_by_a_bootstrap():
    """One unit above the threshold refutes "every unit <= t": every_unit says fails where the percentile
    bootstrap of the max straddles the threshold (a resample can only lower a max); the old interval and its
    verdict stay in the record's history, and the verdict recomputes from the record alone."""
    per_unit = np.array([1.0, 1.1, 1.2, 1.3, 1.6])  # one counter-example to "max <= 1.5"
    check = C.Check("max exponent", "<=", 1.5, "derived")
    boot = C.measure(per_unit, np.max)
    assert boot.low < 1.5 < boot.high and C.verdict(check, boot)[0] == "inconclusive"
    m = C.every_unit(per_unit, np.max)
    assert (m.value, m.low, m.high, m.units, m.interval) == (1.6, 1.6, 1.6, 5, "every unit")
    assert C.verdict(check, m) == ("fails", None)
    assert C.verdict(check, C.every_unit(per_unit[:-1], np.max))[0] == "holds"
    spec = C.ClaimSpec("x", "s", "src", 1, "setting", check, "another run")
    rec = json.loads(json.dumps(C.evaluate(spec, m, C.every_unit(per_unit - 1, np.max))))
    assert C.recompute(rec) == ("fails", "holds")
    (h,) = rec["history"]
    assert h["old_verdict"] == "inconclusive" and h["old_subject"]["low"] == boot.low and h["easier"] is False
    assert rec["subject"]["interval"] == "every unit"


def test_a_holds_whose_control_holds_too_is_flagged_everywhere():
    """Subject and control both holding: the record, the terminal table and the count line say the check did
    not tell them apart."""
    spec = C.ClaimSpec("weak", "s", "src", 1, "setting", CHECK, "another run")
    rec = json.loads(json.dumps(C.evaluate(spec, C.measure([0.01, 0.02]), C.measure([0.03, 0.04]))))
    assert rec["verdict"] == rec["control"]["verdict"] == "holds" and rec["control_holds_too"] is True
    table = format_claims([summary_dict("s", {}, 1.0, [rec])])
    assert "does not tell them apart" in table and "1 of the holds with a control that holds too" in table
    ok = C.evaluate(spec, C.measure([0.01, 0.02]), C.measure([0.3, 0.4]))
    assert ok["control_holds_too"] is False


def test_an_old_check_on_another_metric_is_judged_on_that_metric():
    """judge_old_check: the history entry gets the old check's verdict on the old metric's own measurement
    (evaluate alone can only say 'not comparable' when the old check read another statistic)."""
    old = C.Check("fraction of games that flip", ">=", 0.1, "v2")
    spec = C.ClaimSpec("a", "s", "src 1", 1, "setting", CHECK, "control run",
                       history=(C.CheckChange(old, "restated", "v2", easier=False),))
    rec = C.evaluate(spec, C.measure([0.01, 0.02, 0.03]), C.measure([0.3, 0.2, 0.4]))
    assert rec["history"][0]["old_verdict"].startswith("not comparable")
    C.judge_old_check(rec, C.exact(0.25))
    assert rec["history"][0]["old_verdict"] == "holds" and rec["history"][0]["old_subject"]["value"] == 0.25
    C.judge_old_check(rec, C.exact(0.05))
    assert rec["history"][0]["old_verdict"] == "fails"
    assert C.recompute(rec) == (rec["verdict"], rec["control"]["verdict"])  # the new verdicts are untouched
