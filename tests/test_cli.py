"""The command line: bad input gives one line on stderr, exit code 2, and writes nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignjax.cli import main
from alignjax.registry import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=20", "--set", "log_every=10",
         "--no-progress"]


@pytest.mark.parametrize("argv, message", [
    (["run", "nope"], "unknown experiment 'nope'"),
    (["run", "dpo-bandit", "--set", "beta=-1"], "beta must be > 0"),
    (["run", "dpo-bandit", "--set", "beta=abc"], "bad value for beta"),
    (["run", "dpo-bandit", "--set", "beta"], "malformed override"),
    (["run", "dpo-bandit", "--set", "gamma=1"], "unknown setting 'gamma'"),
    (["run", "dpo-bandit", "--set", "num_steps=2.5"], "bad value for num_steps"),
    (["run", "dpo-bandit", "--set", "num_steps=25"], "multiple of log_every"),
    (["run", "dpo-bandit", "--sweep", "beta=1:2"], "bad sweep spec"),
    (["run", "dpo-bandit", "--sweep", "beta=-1:2:3:log"], "bad sweep spec"),
    (["run", "dpo-bandit", "--sweep", "beta=0.1,-0.1"], "beta must be > 0"),
    (["run", "dpo-bandit", "--sweep", "num_steps=1,2"], "cannot sweep 'num_steps'"),
    (["run", "dpo-bandit", "--sweep", "beta=0.1,nan"], "bad sweep spec"),
    (["run", "dpo-bandit", "--seeds", "0"], "--seeds must be >= 1"),
    (["run", "dpo-bandit", "--set", "pairs=bogus"], "pairs must be"),
    (["reproduce", "nope"], "unknown suite 'nope'"),
    (["run", "dpo-bandit", "--cpu-devices", "0"], "--cpu-devices must be a whole number from 1 to 512"),
    (["run", "dpo-bandit", "--cpu-devices", "many"], "--cpu-devices must be a whole number from 1 to 512"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [*argv, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("alignjax: error:")
    assert not out.exists()


def test_run_writes_results_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--sweep", "beta=0.1,1", "--seeds", "2", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.csv", "summary.json", "loss.png"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["sweep"] == {"beta": [0.1, 1.0]} and config["config"]["num_prompts"] == 2
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * 2 * 3  # header + configs x seeds x logged steps
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_compiles"] == {"run": 1}
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing lost
    assert main(["run", "dpo-bandit", *SMALL, "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["sweep"] == {}


def test_resume_with_different_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--chunks", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", "dpo-bandit", *SMALL, "--set", "beta=0.5", "--resume", "--out", str(out)]) == 2
    assert "settings differ" in capsys.readouterr().err
    assert main(["run", "dpo-bandit", *SMALL, "--chunks", "2", "--resume", "--out", str(out)]) == 0


def test_reproduce_refuses_existing_folder_before_running(tmp_path, capsys):
    (tmp_path / "dpo-bandit").mkdir()
    (tmp_path / "dpo-bandit" / "keep.txt").write_text("mine")
    assert main(["reproduce", "dpo-bandit", "--quick", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "dpo-bandit" / "keep.txt").read_text() == "mine"


def test_list_and_console_script(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "dpo-bandit" in out and "dpo" in out
    proc = subprocess.run([sys.executable, "-m", "alignjax", "run", "nope"], capture_output=True, text=True,
                          cwd=ROOT, env=os.environ.copy())
    names = EXPERIMENTS.names()
    assert "dpo-bandit" in names
    assert proc.returncode == 2
    assert proc.stderr.strip() == "alignjax: error: unknown experiment 'nope'; known: " + ", ".join(names)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 4.0, 8.0])
def test_cli_killed_at_any_moment_resumes_bit_identical(tmp_path, delay):
    import signal
    import time

    args = ["run", "dpo-bandit", "--set", "num_prompts=3", "--set", "num_responses=6", "--set", "num_steps=4000",
            "--set", "log_every=20", "--set", "pairs=sampled", "--set", "labels=hard", "--set", "max_pairs=32",
            "--sweep", "num_pairs=4,32", "--seeds", "2", "--chunks", "40", "--no-progress"]
    ref = tmp_path / "ref"
    assert main([*args, "--out", str(ref)]) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "alignjax", *args, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not out.exists():
        # killed before it wrote anything (a slow start on a loaded machine): there is nothing to
        # continue, --resume says so before any compute, and a plain run starts it
        assert main([*args, "--out", str(out), "--resume"]) == 2
        assert not out.exists()
        assert main([*args, "--out", str(out)]) == 0
    else:
        assert main([*args, "--out", str(out), "--resume"]) == 0
    assert (out / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()


def test_another_projects_experiments_folder_in_the_cwd_is_never_imported(tmp_path):
    # `python -m alignjax` puts the current directory first on sys.path: a generic top-level
    # `experiments` package there must not shadow ours (ours is installed as alignjax_experiments)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("raise SystemExit('imported the wrong experiments')\n")
    proc = subprocess.run([sys.executable, "-m", "alignjax", "list"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dpo-bandit" in proc.stdout and "nash-games" in proc.stdout
