"""Results you can trust: no destructive writes, no silent NaN, one-line errors, provenance.

Every CLI case a user can cause gets one ``alignjax: error:`` line and exit 2 before any
compute, and leaves nothing behind; a folder alignjax did not write is never replaced; an
overwrite replaces the old results only once the new ones are complete.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.cli import main
from alignjax.experiment import Experiment, Program
from alignjax.registry import EXPERIMENTS
from alignjax.results import write_json
from fault_tools import cli_process, wait_for
from alignjax.rundir import RunDir, RunDirError, is_ours

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=20", "--set", "log_every=10",
         "--no-progress"]
LONG = ["run", "dpo-bandit", "--set", "num_prompts=4", "--set", "num_responses=8", "--set", "num_steps=400000",
        "--set", "log_every=100", "--no-progress"]


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(err: str, code_text: str = "alignjax: error:") -> None:
    assert err.startswith(code_text) and err.count("\n") == 1, err


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    """A working directory that looks like a user's repository (with .git)."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "paper.tex").write_text("my thesis")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    return repo


@pytest.mark.parametrize("out", [".", "..", "", "./", "../."])
def test_overwrite_never_touches_the_current_directory_or_its_parents(fake_repo, out, capsys):
    (fake_repo / "sub" / "notes.txt").write_text("keep")
    before = _tree(fake_repo)
    assert main(["run", "dpo-bandit", *SMALL, "--out", out, "--overwrite"]) == 2
    _one_line(capsys.readouterr().err)
    assert _tree(fake_repo) == before


def test_overwrite_refuses_a_folder_alignjax_did_not_write(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "metrics.csv").write_text("a,b\n1,2\n")
    (d / "config.json").write_text('{"lr": 1}')  # a config.json, but not ours
    before = _tree(d)
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(d), "--overwrite"]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert "not written by alignjax" in err
    assert _tree(d) == before


def test_overwrite_replaces_only_at_the_end_and_a_failed_run_keeps_the_old_results(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    before = _tree(out)
    import alignjax.sweep

    seen = {}

    def broken(program, grid, **kw):
        seen["out_dir_during_run"] = sorted(p.name for p in tmp_path.iterdir())
        seen["old_intact"] = _tree(out) == before
        raise RuntimeError("simulated crash in the middle of a run")

    monkeypatch.setattr(alignjax.sweep, "run_sweep", broken)
    with pytest.raises(RuntimeError):
        main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.5", "--out", str(out), "--overwrite"])
    assert seen["old_intact"]  # while the new run computes, the old folder is untouched
    assert any(n.startswith(".run.alignjax-new-") for n in seen["out_dir_during_run"])  # it writes beside it
    assert _tree(out) == before  # and the crash lost nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the staging folder is gone
    monkeypatch.undo()
    assert main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.5", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["hparams"]["beta"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_run_killed_while_overwriting_leaves_the_old_results_intact(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    before = _tree(out)
    with cli_process([*LONG, "--out", str(out), "--overwrite"]) as proc:
        wait_for(lambda: any(p.name.startswith(".run.alignjax-new-") for p in tmp_path.iterdir()), proc)
        time.sleep(1.0)  # well into the run (compiling or computing)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _tree(out) == before
    # the next overwrite cleans the dead run's staging folder and succeeds
    assert main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.5", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_resume_refuses_missing_and_foreign_folders(tmp_path, capsys):
    assert main(["run", "dpo-bandit", *SMALL, "--resume", "--out", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert "no run to continue" in err and "drop --resume" in err
    assert not (tmp_path / "missing").exists()
    d = tmp_path / "foreign"
    d.mkdir()
    (d / "metrics.csv").write_text("mine\n")
    assert main(["run", "dpo-bandit", *SMALL, "--resume", "--out", str(d)]) == 2
    _one_line(capsys.readouterr().err)
    assert (d / "metrics.csv").read_text() == "mine\n" and sorted(p.name for p in d.iterdir()) == ["metrics.csv"]


def test_resume_removes_half_written_checkpoints(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--chunks", "2", "--out", str(out)]) == 0
    stale = out / "checkpoints" / "190.orbax-checkpoint-tmp-123"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("half")
    assert main(["run", "dpo-bandit", *SMALL, "--chunks", "2", "--resume", "--out", str(out)]) == 0
    assert not stale.exists()


def test_a_second_writer_fails_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--chunks", "2", "--out", str(out)]) == 0
    holder = RunDir(out, resume=True)
    holder.open()  # another process (flock conflicts between open file descriptions)
    try:
        before = _tree(out)
        for extra in (["--resume"], ["--overwrite"]):
            capsys.readouterr()
            assert main(["run", "dpo-bandit", *SMALL, "--chunks", "2", *extra, "--out", str(out)]) == 2
            err = capsys.readouterr().err
            _one_line(err)
            assert "another alignjax process" in err
            assert _tree(out) == before
    finally:
        holder.abort()
    assert not [p for p in tmp_path.iterdir() if p.name != "run"]


def test_two_concurrent_cli_writers_one_fails(tmp_path):
    out = tmp_path / "run"
    args = [*LONG, "--chunks", "4000", "--out", str(out)]
    with cli_process(args) as first:
        wait_for(lambda: (out / "config.json").exists(), first)
        second = subprocess.run([sys.executable, "-m", "alignjax", *args, "--resume"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    _one_line(second.stderr)
    assert "another alignjax process" in second.stderr


# -- error contract --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--seed", "99999999999999999999"], "--seed must lie in"),
    (["--seed", "4294967296"], "--seed must lie in"),
    (["--seed", "-1"], "--seed must lie in"),
    (["--seeds", "1000000000"], "lower --seeds"),
    (["--set", "num_responses=3000", "--set", "num_prompts=64", "--seeds", "64"], "GiB"),
    (["--sweep", "beta=1:2:100000", "--sweep", "learning_rate=1:2:100000"], "lower --seeds or the number of swept"),
    (["--sweep", "beta=0.1", "--sweep", "beta=0.2"], "--sweep beta is given twice"),
    (["--set", "beta=1e-30"], "overflows float32"),
    (["--set", "beta=1e39"], "overflows float32"),
    (["--set", "beta=1e-45"], "float32"),
    (["--chunks", "0"], "--chunks must be >= 1"),
])
def test_cli_cases_from_the_issue_exit_2_with_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert main(["run", "dpo-bandit", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert time.perf_counter() - t0 < 30  # refused before compute (a 10^10-row grid took 28 s to fail before)


@pytest.mark.parametrize("kind", ["below-a-file", "a-file", "proc"])
def test_unusable_out_paths_exit_2(kind, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    out = {"below-a-file": tmp_path / "afile" / "sub", "a-file": tmp_path / "afile",
           "proc": Path("/proc/alignjax-x")}[kind]  # /proc refuses new folders
    before = _tree(tmp_path)
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err)
    assert _tree(tmp_path) == before and not Path("/proc/alignjax-x").exists()


def test_read_only_out_exits_2_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == parent else real_access(p, mode))
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(parent / "x")]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert "not writable" in err and list(parent.iterdir()) == []


def test_write_failure_mid_run_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import alignjax.results

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(alignjax.results, "write_csv", full)
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 4  # EXIT_WRITE_FAILED: after compute
    err = capsys.readouterr().err
    _one_line(err)
    assert "No space left" in err and not out.exists()


# -- non-finite results --------------------------------------------------------------------
@pytest.fixture
def blowup():
    """A registered experiment whose state overflows float32 after a few steps: x_t = growth^t."""

    def make_program(config):
        return Program(init=lambda hp, key: jnp.ones(()), step=lambda x, hp: x * hp["growth"],
                       observe=lambda x, hp: {"x": x, "finite_twin": jnp.zeros(())})

    EXPERIMENTS.register("test-blowup", Experiment(
        name="test-blowup", description="x_t = growth^t (test only)", config={"num_steps": 8, "log_every": 1},
        hparams={"growth": 2.0}, make_program=make_program), replace=True)
    yield "test-blowup"
    EXPERIMENTS._entries.pop("test-blowup")


def test_nonfinite_metric_exits_nonzero_naming_metric_config_and_step(blowup, tmp_path, capsys):
    out = tmp_path / "run"
    # growth 1e10: 1e10^3 = 1e30 fits float32, 1e10^4 = 1e40 overflows to inf at step 4
    assert main(["run", blowup, "--sweep", "growth=2,1e10", "--no-progress", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    _one_line(err)
    assert "'x'" in err and "step 4" in err and "config 1" in err and "growth=1e+10" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "nonfinite" and summary["nonfinite"]["step"] == 4
    assert (out / "metrics.csv").exists()  # the results are still written
    assert main(["run", blowup, "--sweep", "growth=2,3", "--no-progress", "--out", str(tmp_path / "ok")]) == 0
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["status"] == "finished"


# -- interruption --------------------------------------------------------------------------
def test_ctrl_c_prints_one_line_with_the_resume_command_and_exits_130(tmp_path):
    out = tmp_path / "run"
    with cli_process([*LONG, "--chunks", "4000", "--out", str(out)]) as proc:
        wait_for(lambda: (out / "checkpoints").is_dir() and any(
            p.name.isdigit() for p in (out / "checkpoints").iterdir()), proc)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130
    assert err.count("\n") == 1 and err.startswith("alignjax: interrupted (Ctrl-C); continue with: alignjax run") and \
        "--resume" in err, err
    assert is_ours(out)


def test_ctrl_c_without_checkpoints_keeps_nothing(tmp_path):
    out = tmp_path / "run"
    with cli_process(["run", "dpo-bandit", "--set", "num_steps=40000", "--no-progress", "--out", str(out)]) as proc:
        wait_for(lambda: (out / "config.json").exists(), proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and err.count("\n") == 1 and "nothing was kept" in err, err
    assert not out.exists()


# -- provenance ----------------------------------------------------------------------------
def test_config_summary_and_arrays_record_where_results_came_from(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--sweep", "beta=0.1,1", "--seeds", "2", "--chunks", "2",
                 "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    prov = cfg["alignjax"]
    import alignjax

    assert prov["version"] == alignjax.__version__
    assert set(prov["packages"]) >= {"jax", "jaxlib", "flax", "optax", "numpy"}
    assert all(prov["packages"][k] for k in ("jax", "jaxlib", "numpy"))
    assert prov["device_count"] == len(jax.devices()) and prov["backend"] == jax.default_backend()
    assert prov["x64"] is False and prov["command"][:3] == ["alignjax", "run", "dpo-bandit"]
    assert len(prov["git"]["commit"] or "") == 40 and isinstance(prov["git"]["dirty"], bool)
    (s1,) = cfg["sessions"]
    assert s1["status"] == "finished" and s1["chunks"] == 2 and s1["end"] >= s1["start"]
    # resume: a second session is recorded and the totals add both up
    assert main(["run", "dpo-bandit", *SMALL, "--sweep", "beta=0.1,1", "--seeds", "2", "--chunks", "2",
                 "--resume", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["sessions"]) == 2
    assert summary["runtime_s"] == pytest.approx(sum(s["runtime_s"] for s in summary["sessions"]), abs=2e-3)
    assert summary["num_compiles"]["init"] == sum(s["compiles"].get("init", 0) for s in summary["sessions"])
    arrays = np.load(out / "arrays.npz")
    assert list(arrays["axes"]) == ["beta"]
    np.testing.assert_array_equal(arrays["hparam.beta"], [0.1, 1.0])
    assert arrays["hparam.learning_rate"].shape == (2,)
    assert list(arrays["dims.loss"]) == ["config", "seed", "step"] and arrays["loss"].shape == (2, 2, 3)


def test_show_prints_the_command_that_reproduces_the_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--sweep", "beta=0.1,1", "--seed", "7", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "reproduce with:" in ln)
    import shlex

    again = shlex.split(line.split("reproduce with:", 1)[1])[1:] + ["--no-progress", "--out", str(tmp_path / "again")]
    assert main(again) == 0
    assert (tmp_path / "again" / "metrics.csv").read_bytes() == (out / "metrics.csv").read_bytes()
    assert main(["show", str(tmp_path)]) == 2  # not a results folder


def test_version_and_list_one_experiment(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    import alignjax

    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"alignjax {alignjax.__version__}"
    assert main(["list", "dpo-bandit"]) == 0
    text = capsys.readouterr().out
    assert "num_responses" in text and "default 16" in text and "beta" in text and "default 0.1" in text
    assert main(["list", "nope"]) == 2


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        out = tmp_path / "run"
        assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    finally:
        os.umask(old)
    for name in ("config.json", "summary.json", "metrics.csv", "arrays.npz", "loss.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


# -- progress ------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_logs", [None, 2])
def test_progress_bar_counts_every_run_step(chunk_logs, monkeypatch, tmp_path):
    import tqdm.auto

    from alignjax.registry import EXPERIMENTS as REG
    from alignjax.sweep import make_grid, run_sweep

    bars = []

    class Bar:
        def __init__(self, total, **kw):
            self.total, self.n = total, 0
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    exp = REG.get("dpo-bandit")
    cfg = {**exp.config, "num_prompts": 2, "num_responses": 3}
    grid = make_grid(exp.hparams_for(cfg), {"beta": [0.1, 0.5, 1.0]}, seeds=3)  # 9 rows, padded to a block of 16
    run_sweep(exp.make_program(cfg), grid, num_steps=40, log_every=10, progress=True, chunk_logs=chunk_logs,
              out_dir=tmp_path if chunk_logs else None)
    (bar,) = bars
    assert bar.total == 9 * 40 and bar.n == pytest.approx(9 * 40)


def test_rundir_unit_rules(tmp_path, monkeypatch):
    with pytest.raises(RunDirError):
        RunDir(tmp_path / "x", resume=True, overwrite=True).check()
    created = RunDir(tmp_path / "a" / "b" / "c")
    created.open()
    created.abort()
    assert list(tmp_path.iterdir()) == []  # parents made by the run are removed too
    empty = tmp_path / "empty"
    empty.mkdir()
    rd = RunDir(empty)
    write_json(rd.open() / "config.json", {})
    rd.abort()
    assert empty.is_dir() and list(empty.iterdir()) == []  # the user's empty folder stays


# -- suites --------------------------------------------------------------------------------
@pytest.fixture
def tiny_suite():
    """A registered suite that writes a table and checks one claim (``fail=True`` crashes it)."""
    from alignjax.registry import SUITES
    from alignjax.results import claim

    state = {"fail": False, "value": 1.0}

    def reproduce(ctx):
        ctx.config["value"] = state["value"]
        ctx.write_csv("table.csv", [{"x": state["value"]}])
        if state["fail"]:
            raise RuntimeError("suite crashed half-way")
        return [claim("one", "x is positive", "test", "> 0", state["value"], state["value"] > 0)]

    SUITES.register("test-tiny", reproduce, meta={"description": "test only"}, replace=True)
    yield state
    SUITES._entries.pop("test-tiny")


def test_reproduce_records_provenance_and_replaces_only_when_finished(tiny_suite, tmp_path, capsys):
    assert main(["reproduce", "test-tiny", "--quick", "--out", str(tmp_path)]) == 0
    d = tmp_path / "test-tiny"
    cfg, summary = (json.loads((d / n).read_text()) for n in ("config.json", "summary.json"))
    assert cfg["suite"] == "test-tiny" and cfg["quick"] is True and cfg["alignjax"]["command"][1] == "reproduce"
    assert summary["status"] == "finished" and summary["alignjax"]["version"] and len(summary["sessions"]) == 1
    assert summary["config"]["value"] == 1.0 and summary["claims"][0]["holds"] is True
    before = _tree(d)
    tiny_suite.update(fail=True, value=2.0)
    with pytest.raises(RuntimeError):
        main(["reproduce", "test-tiny", "--quick", "--out", str(tmp_path), "--overwrite"])
    assert _tree(d) == before and sorted(p.name for p in tmp_path.iterdir()) == ["test-tiny"]
    tiny_suite.update(fail=False)
    capsys.readouterr()
    assert main(["reproduce", "test-tiny", "--quick", "--out", str(tmp_path)]) == 2  # exists, no --overwrite
    _one_line(capsys.readouterr().err)
    assert main(["reproduce", "test-tiny", "--quick", "--out", str(tmp_path), "--overwrite"]) == 0
    assert json.loads((d / "summary.json").read_text())["config"]["value"] == 2.0
    capsys.readouterr()
    assert main(["show", str(d)]) == 0
    assert "alignjax reproduce test-tiny --quick" in capsys.readouterr().out


def test_reproduce_refuses_foreign_suite_folders_and_empty_out(tiny_suite, tmp_path, capsys):
    (tmp_path / "test-tiny").mkdir()
    (tmp_path / "test-tiny" / "thesis.tex").write_text("mine")
    assert main(["reproduce", "test-tiny", "--out", str(tmp_path), "--overwrite"]) == 2
    _one_line(capsys.readouterr().err)
    assert (tmp_path / "test-tiny" / "thesis.tex").read_text() == "mine"
    assert main(["reproduce", "test-tiny", "--out", "", "--overwrite"]) == 2
    _one_line(capsys.readouterr().err)


def test_overwrite_refuses_the_current_directory_even_when_it_is_a_results_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    (out / "inner").mkdir()
    before = _tree(tmp_path)
    for cwd, target in ((out, "."), (out / "inner", "..")):
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        assert main(["run", "dpo-bandit", *SMALL, "--out", target, "--overwrite"]) == 2
        err = capsys.readouterr().err
        _one_line(err)
        assert "current directory" in err
    assert _tree(tmp_path) == before


def test_a_swap_killed_between_its_two_renames_restores_the_old_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    before = _tree(out)
    out.rename(tmp_path / ".run.alignjax-old-0123456789ab")  # what commit() does first
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 2  # restored, so it exists now
    assert "already exists" in capsys.readouterr().err
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_git_state_outside_a_checkout_is_unknown(tmp_path):
    from alignjax.provenance import git_state

    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    subprocess.run(["git", "init", "-q", str(tmp_path / "other")], check=True)
    (tmp_path / "other" / "f").write_text("x")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(tmp_path / "other"), "add", "f"], check=True, env=env)
    subprocess.run(["git", "-C", str(tmp_path / "other"), "commit", "-qm", "x"], check=True, env=env)
    state = git_state(tmp_path / "other")
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "other" / "f").write_text("y")
    assert git_state(tmp_path / "other")["dirty"] is True
