"""Fault injection: nothing a user has is ever deleted, and a signal is honoured at once.

Each case checksums every pre-existing byte (files, links, folders, hidden entries) before the
fault and after, and asserts they are unchanged: a foreign folder with look-alike JSON, the
user's file inside an alignjax folder, a sibling written during a run in a shared parent,
a symlinked or mount-point target, a stale swap of a killed process, and SIGINT/SIGTERM at
some moment of ``run`` and ``reproduce`` (exit 130/143 within 2 s, one line). The randomised
loops (SIGINT and SIGKILL at many random moments) are marked ``slow``; one case of each
class runs by default. A last test audits every deletion call in the library.
"""

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignjax.cli import main
from alignjax.results import write_json
from alignjax.rundir import MANIFEST_NAME, RunDir, is_ours, ownership
from fault_tools import SLOW_SUITE, cli_process, digest, signal_and_time, wait_for, wait_for_handlers

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=20", "--set", "log_every=10",
         "--no-progress"]
# minutes of compute in one jit call (no chunks): a signal must not wait for it. (2e6 steps, used
# until 2026-12-07, took ~1.3 s: a test's signal could arrive after the run had ended.)
LONG = ["run", "dpo-bandit", "--set", "num_prompts=4", "--set", "num_responses=8", "--set", "num_steps=100000000",
        "--set", "log_every=50000000", "--no-progress"]

# A script that registers a suite whose second stage computes for about a minute, then runs the
# CLI with its arguments (``reproduce test-slow-suite --out DIR ...``); SLOW_SUITE_SPIN=1 makes
# that stage instant.



def _one_line(err: str, start: str = "alignjax:") -> None:
    assert err.count("\n") == 1 and err.startswith(start), err


def _signal_and_time(proc, sig=signal.SIGINT) -> tuple[float, str]:
    """Send ``sig``; return the seconds until the process exited and its stderr."""
    dt, _, err = signal_and_time(proc, sig, timeout=60)
    return dt, err


# -- 1. ownership is proved, never guessed ------------------------------------------------------
def test_overwrite_refuses_a_folder_with_look_alike_json(tmp_path, capsys):
    h = tmp_path / "h"
    h.mkdir()
    (h / "config.json").write_text('{"experiment": "resnet", "suite": "x", "alignjax": {}}')
    (h / "summary.json").write_text('{"claims": [], "suite": "x"}')
    (h / "model.ckpt").write_text("weights")
    before = digest(tmp_path)
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(h), "--overwrite"]) == 2
    err = capsys.readouterr().err
    _one_line(err, "alignjax: error: refusing to overwrite")
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(h), "--resume"]) == 2
    assert main(["show", str(h)]) == 2
    assert digest(tmp_path) == before and not is_ours(h)


def test_a_copied_manifest_without_our_config_proves_nothing(tmp_path, capsys):
    ours, other = tmp_path / "ours", tmp_path / "other"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(ours)]) == 0
    other.mkdir()
    (other / MANIFEST_NAME).write_bytes((ours / MANIFEST_NAME).read_bytes())
    (other / "config.json").write_text('{"experiment": "dpo-bandit", "run_id": "0123"}')
    assert ownership(ours) is None and ownership(other) is not None
    before = digest(other)
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(other), "--overwrite"]) == 2
    assert digest(other) == before


# -- 2. the user's files inside an alignjax folder ----------------------------------------------
def test_overwrite_moves_the_users_files_into_the_new_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    (out / "NOTES.md").write_text("my notes")
    (out / "analysis").mkdir()
    (out / "analysis" / "fig.svg").write_text("<svg/>")
    (out / "summary.json").write_text('{"edited": "by me"}')  # our file, changed by the user: theirs now
    os.symlink("/etc/hostname", out / "link")
    theirs = {k: v for k, v in digest(out).items() if k.split("/")[0] in ("NOTES.md", "analysis", "link")}
    edited = hashlib.sha256((out / "summary.json").read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.3", "--out", str(out), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "NOTES.md" in err and "summary.json -> summary.json.kept" in err, err
    after = digest(out)
    assert all(after.get(k) == v for k, v in theirs.items())
    assert after["summary.json.kept"] == edited
    assert json.loads((out / "config.json").read_text())["hparams"]["beta"] == 0.3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or old sibling left
    assert is_ours(out)


def test_a_failed_fresh_run_removes_only_what_it_wrote(tmp_path, monkeypatch, capsys):
    import alignjax.results

    empty = tmp_path / "mine"
    empty.mkdir()

    def broken(*a, **k):  # a file of the user's appears during the run, then the run fails
        (empty / "NOTES.md").write_text("written while the run ran")
        raise RuntimeError("crashed half-way")

    monkeypatch.setattr(alignjax.results, "write_csv", broken)
    with pytest.raises(RuntimeError):
        main(["run", "dpo-bandit", *SMALL, "--out", str(empty)])
    assert sorted(p.name for p in empty.iterdir()) == ["NOTES.md"]


# -- 3. an interrupted run and its siblings -----------------------------------------------------
def test_ctrl_c_of_a_fresh_run_keeps_a_sibling_written_meanwhile(tmp_path):
    p = tmp_path / "p"
    with cli_process([*LONG, "--out", str(p / "deep" / "x")]) as proc:
        wait_for(lambda: (p / "deep" / "x" / "config.json").exists(), proc)
        assert main(["run", "dpo-bandit", *SMALL, "--out", str(p / "y")]) == 0  # another run, same parent
        (p / "deep" / "theirs.txt").write_text("another process's file")
        before = digest(p / "y")
        dt, err = _signal_and_time(proc)
    assert proc.returncode == 130 and dt < 2.0, (dt, err)
    _one_line(err, "alignjax: interrupted (Ctrl-C); nothing was kept")
    assert digest(p / "y") == before and (p / "deep" / "theirs.txt").exists()
    assert not (p / "deep" / "x").exists()  # removed: it held only this run's files


def test_a_parent_this_run_made_is_removed_only_when_empty(tmp_path):
    rd = RunDir(tmp_path / "a" / "b" / "c")
    write_json(rd.open() / "config.json", {})
    (tmp_path / "a" / "sibling.txt").write_text("keep")
    rd.abort()
    assert sorted(str(q.relative_to(tmp_path)) for q in tmp_path.rglob("*")) == ["a", "a/sibling.txt"]



@pytest.mark.parametrize("many", [False, True])
def test_a_write_refused_half_way_leaves_no_empty_subfolder(tmp_path, monkeypatch, many):
    """An interrupt while a write is between ``mkdir`` of its subfolders and its rename (the CI
    failure of 2026-12-07: ``x/results.zarr/...`` folders outlived the abort)."""
    import alignjax.rundir as rundir

    rd = RunDir(tmp_path / "a" / "x")
    write_json(rd.open() / "config.json", {})
    real = rundir._write_fsynced

    def interrupted(fd, data):  # the signal arrives mid-write: the supervisor aborts the folder
        real(fd, data)
        if data in (b"x", b"1"):  # the data, not the manifest (which records the new subfolders first)
            rd.abort()

    monkeypatch.setattr(rundir, "_write_fsynced", interrupted)
    with pytest.raises(rundir.RunDirClosed):
        if many:
            rundir.write_atomic_many({rd.path / "s.zarr" / "m" / "c" / "0": b"1", rd.path / "s.zarr" / "m" / "zarr.json": b"{}"})
        else:
            rundir.write_atomic(rd.path / "stages" / "deep" / "one.npz", b"x")
    assert list(tmp_path.iterdir()) == []  # the folder and the parent it made are gone



def test_a_signal_after_the_work_ended_gets_one_line_and_keeps_the_results(tmp_path):
    """Ctrl-C while the process shuts down (here: from an exit handler, the step after the
    results were committed): one line, exit 130, the complete results untouched. Before,
    Python's teardown reset the handlers and the process died by SIGINT with no word."""
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, os, signal, sys, time\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)))\n"
        "from alignjax.cli import main\n"
        "sys.exit(main())\n")
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, str(script), "run", "dpo-bandit", *SMALL, "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    _one_line(proc.stderr, "alignjax: interrupted (Ctrl-C) while exiting; the work had already ended with exit code 0")
    assert (out / "summary.json").is_file() and is_ours(out)


# -- 5./6. signals are honoured at once ---------------------------------------------------------
def test_ctrl_c_stops_an_unchunked_run_within_two_seconds(tmp_path):
    out = tmp_path / "run"
    with cli_process([*LONG, "--out", str(out)]) as proc:
        wait_for(lambda: (out / "config.json").exists(), proc)
        time.sleep(1.0)  # inside the compile or the single long jit call
        dt, err = _signal_and_time(proc)
    assert proc.returncode == 130 and dt < 2.0, (dt, err)
    _one_line(err, "alignjax: interrupted (Ctrl-C)")
    assert not out.exists()


def test_sigterm_during_reproduce_keeps_finished_stages_for_resume(tmp_path):
    out = tmp_path / "res"
    with cli_process(["reproduce", "test-slow-suite", "--out", str(out)], SLOW_SUITE) as proc:
        wait_for(lambda: (out / "test-slow-suite" / "stages" / "first.npz").exists(), proc)
        time.sleep(0.5)
        dt, err = _signal_and_time(proc, signal.SIGTERM)
    assert proc.returncode == 143 and dt < 2.0, (dt, err)
    _one_line(err, "alignjax: interrupted (SIGTERM); continue with: alignjax reproduce test-slow-suite")
    d = out / "test-slow-suite"
    assert is_ours(d) and (d / "stages" / "first.npz").exists()
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["sessions"][-1]["status"] == "interrupted"
    assert not [q for q in d.rglob("*.tmp")]


def test_ctrl_c_during_reproduce_overwrite_leaves_the_old_results(tmp_path):
    out = tmp_path / "res"
    r = subprocess.run([sys.executable, SLOW_SUITE, "reproduce", "test-slow-suite", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "SLOW_SUITE_SPIN": "1"})
    assert r.returncode == 0, r.stderr
    before = digest(out)
    with cli_process(["reproduce", "test-slow-suite", "--out", str(out), "--overwrite"], SLOW_SUITE) as proc:
        wait_for(lambda: any(q.name.startswith(".test-slow-suite.alignjax-new-") for q in out.iterdir()), proc)
        time.sleep(1.0)
        dt, err = _signal_and_time(proc)
    assert proc.returncode == 130 and dt < 2.0, (dt, err)
    _one_line(err, "alignjax: interrupted (Ctrl-C); the previous results")
    assert digest(out) == before


# -- 7. a killed session is shown as interrupted ------------------------------------------------
def test_show_says_a_killed_session_was_interrupted(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "dpo-bandit", "--set", "num_prompts=4", "--set", "num_responses=8", "--set", "num_steps=400000",
            "--set", "log_every=100", "--no-progress", "--chunks", "4000"]
    with cli_process([*args, "--out", str(out)]) as proc:
        wait_for(lambda: (out / "checkpoints").is_dir() and any(
            q.name.isdigit() for q in (out / "checkpoints").iterdir()), proc)
        proc.kill()
        proc.wait()
    assert json.loads((out / "config.json").read_text())["sessions"][-1]["status"] == "running"
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "interrupted" in shown and "running" not in shown, shown


# -- 10./11. targets that cannot be swapped, symlinks -------------------------------------------
def test_overwrite_onto_a_mount_point_is_refused_before_compute(tmp_path, monkeypatch, capsys):
    out = tmp_path / "mnt"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    before = digest(tmp_path)
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda q: str(q) == str(out) or real_ismount(q))
    monkeypatch.setattr("alignjax.sweep.run_sweep", lambda *a, **k: pytest.fail("computed"))
    capsys.readouterr()
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out), "--overwrite"]) == 2
    _one_line(capsys.readouterr().err, "alignjax: error: --overwrite cannot replace")
    assert digest(tmp_path) == before


def test_overwrite_through_a_symlink_replaces_the_links_target_and_keeps_the_link(tmp_path, capsys):
    real, link = tmp_path / "scratch" / "run", tmp_path / "link"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(real)]) == 0
    link.symlink_to(real)
    assert main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.3", "--out", str(link), "--overwrite"]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads((real / "config.json").read_text())["hparams"]["beta"] == 0.3
    assert sorted(q.name for q in tmp_path.iterdir()) == ["link", "scratch"]
    assert sorted(q.name for q in real.parent.iterdir()) == ["run"]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    capsys.readouterr()
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(dangling)]) == 2
    _one_line(capsys.readouterr().err, "alignjax: error:")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()


# -- a killed commit ----------------------------------------------------------------------------
def test_a_commit_killed_after_the_swap_keeps_the_users_file(tmp_path, capsys):
    out, new = tmp_path / "run", tmp_path / "new"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    (out / "NOTES.md").write_text("mine")
    assert main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.2", "--out", str(new)]) == 0
    out.rename(tmp_path / ".run.alignjax-old-0123456789ab")  # the swap's two renames, then a kill
    new.rename(out)
    (out / "other.txt").write_text("also mine")
    assert main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.3", "--out", str(out), "--overwrite"]) == 0
    assert (out / "NOTES.md").read_text() == "mine" and (out / "other.txt").read_text() == "also mine"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["run"]
    assert json.loads((out / "config.json").read_text())["hparams"]["beta"] == 0.3


# -- 4. every deletion in the library is audited ------------------------------------------------
def test_every_deletion_call_is_in_the_audited_places():
    """``rundir.py``'s docstring documents each deletion; a new one elsewhere must be added there."""
    allowed = {"rundir.py", "checkpoint.py"}
    pattern = re.compile(r"\b(rmtree|unlink|rmdir|os\.remove|removedirs)\(")
    found = sorted(f"{p.relative_to(ROOT)}:{i}" for p in [*ROOT.joinpath("alignjax").rglob("*.py"),
                                                          *ROOT.joinpath("experiments").rglob("*.py")]
                   for i, line in enumerate(p.read_text().splitlines(), 1)
                   if pattern.search(line) and p.name not in allowed)
    assert found == [], found


# -- the randomised loops (make test-slow) ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "reproduce"])
def test_sigint_at_random_moments_is_honoured_within_two_seconds(command, tmp_path):
    rng = random.Random(21)
    latencies = []
    for i in range(20):
        out = tmp_path / f"r{i}"
        args = ([*LONG, "--out", str(out)] if command == "run"
                else ["reproduce", "test-slow-suite", "--out", str(out)])
        with cli_process(args, None if command == "run" else SLOW_SUITE) as proc:
            wait_for_handlers(proc)  # alignjax's handlers are in place ~0.1 s after start, before jax loads
            time.sleep(rng.uniform(0.0, 8.0))
            if proc.poll() is not None:
                continue
            dt, err = _signal_and_time(proc)
        assert proc.returncode == 130, err
        _one_line(err, "alignjax: interrupted")
        latencies.append(dt)
    assert len(latencies) >= 15 and max(latencies) < 2.0, latencies


@pytest.mark.slow
def test_sigkill_at_random_moments_of_an_overwrite_never_loses_a_byte(tmp_path):
    rng = random.Random(7)
    root = tmp_path / "p"
    out = root / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    (out / "NOTES.md").write_text("mine")
    (root / "sibling.txt").write_text("a sibling")
    for i in range(10):
        theirs = {"NOTES.md": (out / "NOTES.md").read_bytes(), "../sibling.txt": (root / "sibling.txt").read_bytes()}
        args = ["run", "dpo-bandit", *SMALL[:-3], "--set", "num_steps=20000", "--set", "log_every=1000",
                "--chunks", "4", "--set", f"beta={0.1 + i / 100}", "--out", str(out), "--overwrite", "--no-progress"]
        with cli_process(args) as proc:
            time.sleep(rng.uniform(0.5, 6.0))
            proc.kill()
            proc.wait()
        assert main(["run", "dpo-bandit", *SMALL, "--out", str(out), "--overwrite"]) == 0  # cleans up
        assert (out / "NOTES.md").read_bytes() == theirs["NOTES.md"]
        assert (root / "sibling.txt").read_bytes() == theirs["../sibling.txt"]
        assert sorted(q.name for q in root.iterdir()) == ["run", "sibling.txt"]


def test_an_abort_during_the_manifest_save_of_a_new_subfolder_makes_no_folder(tmp_path):
    """A signal handler of this thread aborting the folder while a write records its new subfolders (found by a
    review): the write is refused and no subfolder is made behind the abort's back."""
    import alignjax.rundir as rundir

    rd = RunDir(tmp_path / "a" / "x")
    write_json(rd.open() / "config.json", {})
    save, fired = rd._save_manifest, []

    def interrupted():
        save()
        if not fired and rd._manifest and rd._manifest.get("dirs"):
            fired.append(True)
            rd.abort()

    rd._save_manifest = interrupted
    with pytest.raises(rundir.RunDirClosed):
        rundir.write_atomic(rd.path / "stages" / "deep" / "one.npz", b"x")
    assert fired and list(tmp_path.iterdir()) == []


def _killed_after(tmp_path, code: str) -> None:
    """Run ``code`` in a child that opened ``tmp_path/r`` with ``--overwrite`` (as ``rd``), then SIGKILL it."""
    script = ("import os, signal\nfrom pathlib import Path\nfrom alignjax.rundir import RunDir\n"
              f"rd = RunDir({str(tmp_path / 'r')!r}, overwrite=True)\nrd.check()\nrd.open()\n{code}\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def test_a_staging_folder_killed_between_mkdir_and_its_first_file_is_cleaned(tmp_path):
    # Found by the slow SIGKILL loop (2026-12-07): a write killed after making its chunk folders
    # and before recording a file left a staging sibling of empty folders that no cleanup removed.
    out = tmp_path / "r"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    (out / "NOTES.md").write_text("mine")
    _killed_after(tmp_path, "from alignjax.rundir import _make_parents\n"
                            "_make_parents(rd.path / 'results.zarr' / 'logp' / 'c' / '0' / '8', rd)")
    (stage,) = [q for q in tmp_path.iterdir() if q.name.startswith(".r.alignjax-new-")]
    assert (stage / "results.zarr" / "logp" / "c" / "0" / "8").is_dir()
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out), "--overwrite"]) == 0
    assert sorted(q.name for q in tmp_path.iterdir()) == ["r"]
    assert (out / "NOTES.md").read_text() == "mine"


def test_a_staging_folder_killed_before_its_manifest_is_cleaned(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    _killed_after(tmp_path, "from alignjax.rundir import MANIFEST_NAME\nos.unlink(rd.path / MANIFEST_NAME)")
    (stage,) = [q for q in tmp_path.iterdir() if q.name.startswith(".r.alignjax-new-")]
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out), "--overwrite"]) == 0
    assert sorted(q.name for q in tmp_path.iterdir()) == ["r"]
    # one holding anything else is not provably ours: it stays
    _killed_after(tmp_path, "from alignjax.rundir import MANIFEST_NAME\nos.unlink(rd.path / MANIFEST_NAME)\n"
                            "(rd.path / 'x').write_text('x')")
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out), "--overwrite"]) == 0
    (stage,) = [q for q in tmp_path.iterdir() if q.name.startswith(".r.alignjax-new-")]
    assert (stage / "x").read_text() == "x"


# -- found by review ----------------------------------------------------------------------------
def test_a_user_entry_that_cannot_be_moved_keeps_the_old_folder_whole(tmp_path, monkeypatch, capsys):
    import alignjax.rundir as rundir

    out = tmp_path / "r"
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 0
    (out / "data").mkdir()
    (out / "data" / "x").write_text("x")
    real_rename = os.rename

    def stuck(src, dst):  # as an immutable folder or a mount point inside the results would be
        if Path(src).name == "data":
            raise OSError(1, "Operation not permitted")
        return real_rename(src, dst)

    monkeypatch.setattr(rundir.os, "rename", stuck)
    capsys.readouterr()
    assert main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.3", "--out", str(out), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "could not be moved" in err and "data" in err, err
    assert json.loads((out / "config.json").read_text())["hparams"]["beta"] == 0.3  # the new results stay
    (old,) = [q for q in tmp_path.iterdir() if q.name.startswith(".r.alignjax-old-")]
    assert (old / "data" / "x").read_text() == "x" and (old / "config.json").exists()  # kept whole


def test_a_planted_manifest_cannot_reach_outside_through_a_symlink(tmp_path):
    from alignjax.rundir import FORMAT

    outside = tmp_path / "outside"
    (outside / "sub" / "deeper").mkdir(parents=True)
    (outside / "sub" / "deeper" / "x").write_bytes(b"")
    stale = tmp_path / ".r.alignjax-new-deadbeef0000"
    stale.mkdir()
    (stale / "link").symlink_to(outside)
    empty = hashlib.sha256(b"").hexdigest()
    (stale / MANIFEST_NAME).write_text(json.dumps({"format": FORMAT, "run_id": "0" * 32, "trees": ["link"],
                                                   "files": {"link/sub/deeper/x": {"size": 0, "sha256": empty}}}))
    before = digest(outside)
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(tmp_path / "r")]) == 0  # cleans the stale sibling
    assert digest(outside) == before


def test_a_users_file_inside_checkpoints_survives_overwrite(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "dpo-bandit", *SMALL, "--chunks", "2", "--out", str(out)]) == 0
    (out / "checkpoints" / "NOTES.txt").write_text("notes")
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out), "--overwrite"]) == 0
    assert (out / "checkpoints" / "NOTES.txt").read_text() == "notes"


def test_a_closed_stdout_and_a_homeless_tilde_give_no_traceback(tmp_path, capsys):
    proc = subprocess.Popen([sys.executable, "-m", "alignjax", "list"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == "", err
    assert main(["run", "dpo-bandit", *SMALL, "--out", "~nosuchuser-alignjax/x"]) == 2
    _one_line(capsys.readouterr().err, "alignjax: error:")
