"""Suite stages: a killed reproduction continues with ``alignjax reproduce --resume``.

``SuiteContext.stage`` saves each stage's arrays; resuming reads finished stages back instead
of recomputing them and ends with the same summary.json (timings and sessions aside).
"""

import json

import numpy as np
import pytest

from alignjax.cli import main
from alignjax.results import SuiteContext, claim


def test_stage_saves_and_reads_back_exactly(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(3, dtype=np.float32) / 3, "nested": {"b": 2.5, "c": np.ones((2, 2), np.int32)},
                "empty": {}}

    ctx = SuiteContext(out_dir=tmp_path)
    first = ctx.stage("s1", compute)
    assert (tmp_path / "stages" / "s1.npz").is_file() and len(calls) == 1
    assert first["a"].dtype == np.float32 and np.array_equal(first["a"], np.arange(3, dtype=np.float32) / 3)
    assert float(first["nested"]["b"]) == 2.5 and first["nested"]["c"].dtype == np.int32 and first["empty"] == {}
    again = SuiteContext(out_dir=tmp_path).stage("s1", compute)  # no resume: recomputed
    assert len(calls) == 2
    resumed = SuiteContext(out_dir=tmp_path, resume=True).stage("s1", compute)  # read back
    assert len(calls) == 2
    for got in (again, resumed):
        assert np.array_equal(got["a"], first["a"]) and np.array_equal(got["nested"]["c"], first["nested"]["c"])


@pytest.mark.parametrize("bad, err", [([1, 2], TypeError), ({"a/b": 1}, ValueError), ({"a": object()}, TypeError)])
def test_stage_refuses_what_it_cannot_store(tmp_path, bad, err):
    with pytest.raises(err):
        SuiteContext(out_dir=tmp_path).stage("s", lambda: bad)
    with pytest.raises(ValueError):
        SuiteContext(out_dir=tmp_path).stage("../up", dict)


@pytest.fixture
def staged_suite():
    """A registered suite of three stages; ``kill_at`` raises KeyboardInterrupt in that stage."""
    from alignjax.registry import SUITES

    state = {"kill_at": None, "calls": []}

    def stage(ctx, name, make):
        def compute():
            state["calls"].append(name)
            if state["kill_at"] == name:
                raise KeyboardInterrupt
            return make()
        return ctx.stage(name, compute)

    def reproduce(ctx):
        rng = np.random.default_rng(0)
        a = stage(ctx, "sample", lambda: {"x": rng.normal(size=5).astype(np.float32)})["x"]
        b = stage(ctx, "train", lambda: {"y": np.cumsum(a) * 2})["y"]
        c = stage(ctx, "evaluate", lambda: {"z": float(np.sum(b ** 2))})["z"]
        ctx.config["n"] = 5
        ctx.write_csv("table.csv", [{"z": float(c)}])
        return [claim("z-positive", "z > 0", "test", "> 0", float(c), float(c) > 0)]

    SUITES.register("test-staged", reproduce, meta={"description": "test only"}, replace=True)
    yield state
    SUITES._entries.pop("test-staged")


def _without_timings(summary):
    return {k: v for k, v in summary.items() if k not in ("runtime_s", "sessions", "alignjax", "run_id")}


def test_killed_reproduction_resumes_stage_by_stage(staged_suite, tmp_path, capsys):
    assert main(["reproduce", "test-staged", "--quick", "--out", str(tmp_path / "ref")]) == 0
    ref = json.loads((tmp_path / "ref" / "test-staged" / "summary.json").read_text())

    out = tmp_path / "killed"
    staged_suite.update(kill_at="evaluate", calls=[])
    assert main(["reproduce", "test-staged", "--quick", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and staged_suite["calls"] == ["sample", "train", "evaluate"]
    d = out / "test-staged"
    assert sorted(p.name for p in (d / "stages").iterdir()) == ["sample.npz", "train.npz"]
    assert not (d / "summary.json").exists()
    assert main(["reproduce", "test-staged", "--quick", "--out", str(out)]) == 2  # exists: needs --resume
    assert main(["reproduce", "test-staged", "--out", str(out), "--resume"]) == 2  # other scale: refused
    capsys.readouterr()

    staged_suite.update(kill_at=None, calls=[])
    assert main(["reproduce", "test-staged", "--quick", "--out", str(out), "--resume"]) == 0
    assert staged_suite["calls"] == ["evaluate"]  # the finished stages were read back
    got = json.loads((d / "summary.json").read_text())
    assert _without_timings(got) == _without_timings(ref)
    assert [s["status"] for s in got["sessions"]] == ["interrupted", "finished"]

    staged_suite.update(calls=[])  # a finished suite is kept as is by --resume
    assert main(["reproduce", "test-staged", "--quick", "--out", str(out), "--resume"]) == 0
    assert staged_suite["calls"] == [] and json.loads((d / "summary.json").read_text()) == got


def test_resume_refuses_a_missing_suite_folder(staged_suite, tmp_path, capsys):
    assert main(["reproduce", "test-staged", "--quick", "--out", str(tmp_path), "--resume"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
