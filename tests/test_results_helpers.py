"""The small helpers of alignjax.results: claim, to_jsonable, format_claims, write_csv, atomic writes."""

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.results import atomic_write_bytes, claim, format_claims, to_jsonable, write_csv


def _claim(holds, **kw):
    return claim("c", "a statement", "a paper", kw.pop("paper_value", 1.0), kw.pop("measured", 1.0), holds, **kw)


@pytest.mark.parametrize("holds", [1.0, 0.0, 1, 0, "yes", None, np.float64(1.0), np.array([True, False]),
                                   np.array([True]), np.int64(1)])
def test_claim_rejects_holds_that_is_not_a_boolean_scalar(holds):
    with pytest.raises(TypeError, match="holds must be a boolean scalar"):
        _claim(holds)


@pytest.mark.parametrize("holds, expected", [(True, True), (False, False), (np.bool_(True), True),
                                             (np.bool_(False), False), (np.array(True), True),
                                             (jnp.asarray(1.0) > 0, True), (np.float32(2.0) < 1.0, False)])
def test_claim_accepts_boolean_scalars_and_stores_a_python_bool(holds, expected):
    c = _claim(holds, measured={"rate": np.float32(0.5), "n": np.int64(3)}, paper_value=(1, 2))
    assert c.holds is expected
    assert c.measured == {"rate": 0.5, "n": 3} and type(c.measured["n"]) is int
    assert c.paper_value == [1, 2]
    json.dumps(asdict(c), allow_nan=False)


def test_to_jsonable_converts_numpy_jax_paths_tuples_and_nonfinite():
    obj = {
        "f32": np.float32(0.5), "f64": np.float64(-2.25), "i": np.int32(7), "b": np.bool_(True), "pb": False,
        "arr": np.arange(6, dtype=np.int64).reshape(2, 3), "jax": jnp.array([1.5, 2.5]), "zero_d": np.array(3.0),
        "nan": float("nan"), "inf": np.float32(np.inf), "-inf": -math.inf, "bad": np.array([1.0, np.nan, -np.inf]),
        "tuple": (1, (np.float64(2.0), "x")), "path": Path("a") / "b.csv", "none": None, "s": "text",
        3: {"nested": [np.float16(0.25), {"deep": np.array([np.inf])}]},
    }
    out = to_jsonable(obj)
    assert out == {
        "f32": 0.5, "f64": -2.25, "i": 7, "b": True, "pb": False,
        "arr": [[0, 1, 2], [3, 4, 5]], "jax": [1.5, 2.5], "zero_d": 3.0,
        "nan": "nan", "inf": "inf", "-inf": "-inf", "bad": [1.0, "nan", "-inf"],
        "tuple": [1, [2.0, "x"]], "path": str(Path("a") / "b.csv"), "none": None, "s": "text",
        "3": {"nested": [0.25, {"deep": ["inf"]}]},
    }
    kinds = {k: type(v) for k, v in out.items()}
    assert kinds["f32"] is float and kinds["i"] is int and kinds["zero_d"] is float
    assert kinds["b"] is bool and kinds["pb"] is bool  # not 1 / 0
    assert type(out["arr"][0][0]) is int and type(out["jax"][0]) is float
    text = json.dumps(out, allow_nan=False)  # strict JSON: no NaN/Infinity tokens
    assert json.loads(text) == out


def test_to_jsonable_of_plain_json_is_unchanged():
    obj = {"a": [1, 2.5, "x", None, True], "b": {"c": []}}
    assert to_jsonable(obj) == obj


def _summary(suite, *claims):
    return {"suite": suite, "claims": [asdict(c) for c in claims]}


def test_format_claims_one_row_per_claim_with_verdicts_truncation_and_counts():
    long = list(range(40))
    a = claim("first-claim", "s", "p", 0.5, 0.4375, True)
    b = claim("second-claim", "s", "p", "about 2", long, False)
    c = claim("third", "s", "p", {"k": 1}, "x" * 26, np.bool_(True))
    text = format_claims([_summary("suite-one", a, b), _summary("suite-two", c)])
    lines = text.splitlines()
    assert len(lines) == 2 + 3 + 1 + 2  # header, rule, one row per claim, blank, counts per suite
    assert lines[0].split() == ["suite", "claim", "verdict", "check", "subject", "control"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    rows = [line.split() for line in lines[2:5]]
    assert rows[0][:3] == ["suite-one", "first-claim", "holds"] and rows[0][-2:] == ["0.4375", "-"]
    assert rows[1][:3] == ["suite-one", "second-claim", "fails"]
    assert rows[2][:3] == ["suite-two", "third", "holds"] and "x" * 26 in rows[2]  # 26 characters fit
    start = lines[0].index("subject")
    subject = lines[3][start:start + 26]
    assert subject == json.dumps(long)[:25] + "…"  # truncated to 26 characters
    assert lines[5] == "" and lines[6:] == ["suite-one          holds 1, fails 1, inconclusive 0",
                                            "suite-two          holds 1, fails 0, inconclusive 0"]


def test_a_claim_carries_its_setting_and_negative_control():
    from alignjax.results import control

    ok = control("the same check on IPO's optimum", {"max_err": 0.3}, np.float64(0.3) < 1e-4)
    assert ok == {"statement": "the same check on IPO's optimum", "measured": {"max_err": 0.3}, "holds": False}
    c = claim("closed-form", "s", "p", "exact", 1e-6, 1e-6 < 1e-4, setting="tabular, beta in {0.01, 1}", control=ok)
    row = asdict(c)
    assert row["setting"].startswith("tabular") and row["control"]["holds"] is False
    bad = control("a control that passes", 1e-6, np.bool_(True))
    lines = format_claims([_summary("s", c, claim("weak", "s", "p", 0, 0, True, control=bad))]).splitlines()
    assert lines[2].split()[-1] == "fails" and lines[3].split()[-1] == "PASSES"  # the control column
    with pytest.raises(TypeError):
        control("s", 0.3, 0.3 < 1 and "yes")  # a verdict must be a computed boolean
    with pytest.raises(ValueError):
        claim("x", "s", "p", 0, 0, True, control={"holds": False})


def test_format_claims_of_no_claims_is_the_header_and_zero_counts():
    lines = format_claims([{"suite": "s", "claims": []}]).splitlines()
    assert len(lines) == 4 and lines[3].split() == ["s", "holds", "0,", "fails", "0,", "inconclusive", "0"]


def test_write_csv_columns_and_rows_give_the_same_file(tmp_path):
    columns = {"config": [0, 0, 1], "beta": np.array([0.1, 0.1, 1.0]), "loss": [np.float32(0.5), np.nan, np.inf],
               "name": ["a", "b,c", 'd"e']}
    rows = [{k: v[i] for k, v in columns.items()} for i in range(3)]
    write_csv(tmp_path / "cols.csv", columns)
    write_csv(tmp_path / "rows.csv", rows)
    text = (tmp_path / "cols.csv").read_text()
    assert text == (tmp_path / "rows.csv").read_text()
    assert text == ('config,beta,loss,name\n0,0.1,0.5,a\n0,0.1,nan,"b,c"\n1,1.0,inf,"d""e"\n')


def test_write_csv_rows_with_different_keys_take_the_union_of_columns(tmp_path):
    write_csv(tmp_path / "t.csv", [{"a": 1}, {"b": 2, "a": 3}])
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,\n3,2\n"


def test_atomic_write_leaves_only_the_file(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["out.bin"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("fail", ["replace", "fsync"])
def test_atomic_write_failure_leaves_no_temp_file_and_the_old_content(tmp_path, monkeypatch, fail):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise OSError(f"{fail} failed")

    monkeypatch.setattr(os, fail, boom)
    with pytest.raises(OSError, match=f"{fail} failed"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["out.bin"]
    assert target.read_bytes() == b"old"


def test_atomic_write_interrupted_leaves_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "new.bin", b"data")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
