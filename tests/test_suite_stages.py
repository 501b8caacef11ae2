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
    assert list(ctx.stage_seconds) == ["s1"] and ctx.stage_seconds["s1"] >= 0
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
    # where the time went: the stages each session computed (read-back stages cost nothing)
    assert list(got["sessions"][-1]["stage_seconds"]) == ["evaluate"]
    assert set(ref["sessions"][-1]["stage_seconds"]) == {"sample", "train", "evaluate"}
    assert all(v >= 0 for v in ref["sessions"][-1]["stage_seconds"].values())

    staged_suite.update(calls=[])  # a finished suite is kept as is by --resume
    assert main(["reproduce", "test-staged", "--quick", "--out", str(out), "--resume"]) == 0
    assert staged_suite["calls"] == [] and json.loads((d / "summary.json").read_text()) == got


def test_resume_refuses_a_missing_suite_folder(staged_suite, tmp_path, capsys):
    assert main(["reproduce", "test-staged", "--quick", "--out", str(tmp_path), "--resume"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


_TWO_SUITES = '''
import numpy as np
from alignjax.registry import SUITES
from alignjax.results import claim


def _suite(seed):
    def reproduce(ctx):
        x = ctx.stage("draw", lambda: {"x": np.random.default_rng(seed).normal(size=4)})["x"]
        print("computed", seed, flush=True)
        return [claim("sum-finite", "the sum is finite", "test", "finite", float(x.sum()), bool(np.isfinite(x.sum())))]
    return reproduce


SUITES.register("test-jobs-a", _suite(1), meta={"description": "test only"}, replace=True)
SUITES.register("test-jobs-b", _suite(2), meta={"description": "test only", "quick_seconds": 5}, replace=True)
'''


def test_jobs_run_suites_in_child_processes_with_the_same_results(tmp_path, monkeypatch, capsys):
    """``reproduce all --jobs 2``: each suite in its own ``python -m alignjax`` process (found there
    through ``ALIGNJAX_PLUGINS``), the same summaries as in-process, one claims table at the end."""
    from alignjax.registry import SUITES, _import_plugin

    plugin = tmp_path / "two_suites.py"
    plugin.write_text(_TWO_SUITES)
    monkeypatch.setenv("ALIGNJAX_PLUGINS", str(plugin))
    _import_plugin(str(plugin))
    monkeypatch.setattr(SUITES, "names", lambda: ["test-jobs-a", "test-jobs-b"])
    try:
        assert main(["reproduce", "all", "--quick", "--out", str(tmp_path / "seq")]) == 0
        capsys.readouterr()
        assert main(["reproduce", "all", "--quick", "--out", str(tmp_path / "par"), "--jobs", "2"]) == 0
        out = capsys.readouterr().out
        for n in ("test-jobs-a", "test-jobs-b"):
            seq, par = (json.loads((tmp_path / d / n / "summary.json").read_text()) for d in ("seq", "par"))
            assert _without_timings(par) == _without_timings(seq)
        assert out.index("test-jobs-b") < out.index("test-jobs-a")  # the longer hint starts first
        assert out.count("computed") == 2 and out.count("claims: holds 1") == 2
        assert out.count("suite              claim") == 1  # one table, the parent's
        # a finished suite is kept by --resume; the other folder, removed, is computed afresh
        import shutil
        shutil.rmtree(tmp_path / "par" / "test-jobs-a")
        assert main(["reproduce", "all", "--quick", "--out", str(tmp_path / "par"), "--jobs", "2", "--resume"]) == 0
        out = capsys.readouterr().out
        assert "test-jobs-b (quick)" in out and "finished before, kept" in out and out.count("computed") == 1
    finally:
        SUITES._entries.pop("test-jobs-a", None)
        SUITES._entries.pop("test-jobs-b", None)
