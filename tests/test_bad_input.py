"""Odd input gets one ``alignjax: error:`` line, exit 2, before any compute, and leaves nothing.

Results files of the wrong shape (wrong JSON types, a FIFO, a 1 GB file), sweep counts too large
to materialise, unusable ``--out`` names (too long, control characters, a deleted current
folder), memory refusals that name the knob to turn, and a compile cache inside ``--out``.
"""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from alignjax import compile_cache, sweep
from alignjax.cli import main
from alignjax.config import MAX_SWEEP_VALUES, parse_sweep

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=20", "--set", "log_every=10",
         "--no-progress"]
CONFIG = {"alignjax": {"version": "0", "git": {"commit": "abc", "dirty": False}, "packages": {"jax": "0"}},
          "experiment": "dpo-bandit", "config": {"num_steps": 20}, "hparams": {"beta": 0.1}, "sweep": {"beta": [0.1]},
          "seeds": 1, "seed": 0,
          "sessions": [{"start": "s", "end": "e", "status": "finished", "runtime_s": 1.0, "command": ["run"],
                        "compiles": {"run": 1}}]}
SUMMARY = {"experiment": "dpo-bandit", "status": "finished", "final_mean": {"loss": 1.0}, "claims": [],
           "sessions": CONFIG["sessions"], "alignjax": CONFIG["alignjax"]}


def _listing(folder: Path) -> dict:
    """Every entry under ``folder``: relative path -> kind and (for small regular files) a checksum."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        if p.is_file() and not p.is_symlink() and st.st_size < (1 << 20):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p.relative_to(folder))] = (oct(st.st_mode), st.st_size)
    return out


def _one_line(err: str) -> None:
    assert err.startswith("alignjax: error:") and err.count("\n") == 1 and "Traceback" not in err, err


@contextlib.contextmanager
def _no_hang(seconds: int = 20):
    """Fail (instead of blocking the test run) when the body takes longer than ``seconds``."""
    def boom(signum, frame):
        raise TimeoutError(f"hung for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _refused(argv, tmp_path, capsys, contains=()):
    """``main(argv)`` exits 2 with one line holding every string of ``contains``, and ``tmp_path`` is unchanged."""
    capsys.readouterr()
    before = _listing(tmp_path)
    with _no_hang():
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    _one_line(err)
    for text in contains:
        assert text in err, err
    assert _listing(tmp_path) == before
    return err


def _results_folder(tmp_path: Path, config=CONFIG, summary=SUMMARY) -> Path:
    """A folder alignjax would own (a manifest and the same run id in config.json), with these docs."""
    from alignjax.rundir import FORMAT, MANIFEST_NAME

    d = tmp_path / "res"
    d.mkdir()
    run_id = "0123456789abcdef0123456789abcdef"
    (d / MANIFEST_NAME).write_text(json.dumps({"format": FORMAT, "run_id": run_id, "files": {}, "trees": []}))
    if isinstance(config, dict):
        config = {**config, "run_id": run_id}
    for name, doc in (("config.json", config), ("summary.json", summary)):
        if doc is not None:
            (d / name).write_text(json.dumps(doc))
    return d


# -- 13: show / --overwrite on results files of the wrong shape ------------------------------
@pytest.mark.parametrize("file, change, field", [
    ("config.json", {"sessions": "abc"}, "'sessions'"),
    ("config.json", {"experiment": 3}, "'experiment'"),
    ("config.json", {"alignjax": [1, 2]}, "'alignjax'"),
    ("config.json", {"alignjax": {"git": "x"}}, "'alignjax.git'"),
    ("config.json", {"sweep": {"beta": ["a"]}}, "'sweep.beta'"),
    ("config.json", {"sessions": [{"command": "run"}]}, "'sessions[0].command'"),
    ("config.json", {"sessions": [{"runtime_s": "long"}]}, "'sessions[0].runtime_s'"),
    ("config.json", {"sessions": [{"stage_seconds": "abc"}]}, "'sessions[0].stage_seconds'"),
    ("config.json", {"sessions": [{"stage_seconds": {"sft": "x"}}]}, "'sessions[0].stage_seconds'"),
    ("config.json", {"sessions": [{"stage_seconds": {"sft": True}}]}, "'sessions[0].stage_seconds'"),
    ("config.json", {"sessions": [{"stage_seconds": {"sft": -5}}]}, "'sessions[0].stage_seconds'"),
    ("config.json", {"sessions": [{"stage_seconds": {"sft": float("nan")}}]}, "'sessions[0].stage_seconds'"),
    ("config.json", {"sessions": [{"stage_seconds": {"a\nb": 1.0}}]}, "'sessions[0].stage_seconds'"),
    ("config.json", {"config": [1]}, "'config'"),
    ("config.json", {"seeds": "two"}, "'seeds'"),
    ("summary.json", {"claims": 5}, "'claims'"),
    ("summary.json", {"claims": [{"id": 1}]}, "'claims[0]'"),
    ("summary.json", {"final_mean": [1.0]}, "'final_mean'"),
    ("summary.json", {"sessions": [3]}, "'sessions[0]'"),
])
def test_show_refuses_a_results_file_with_wrong_types(file, change, field, tmp_path, capsys):
    docs = {"config.json": dict(CONFIG), "summary.json": dict(SUMMARY)}
    docs[file].update(change)
    d = _results_folder(tmp_path, docs["config.json"], docs["summary.json"])
    _refused(["show", str(d)], tmp_path, capsys, contains=(file, field, "malformed"))


@pytest.mark.parametrize("file, doc", [("config.json", [1, 2]), ("config.json", "x"), ("summary.json", 7)])
def test_show_refuses_a_results_file_that_is_not_an_object(file, doc, tmp_path, capsys):
    d = _results_folder(tmp_path)
    (d / file).write_text(json.dumps(doc))
    _refused(["show", str(d)], tmp_path, capsys, contains=(file, "JSON object"))


def test_show_still_prints_a_well_formed_folder_and_tolerates_nulls(tmp_path, capsys):
    d = _results_folder(tmp_path, {**CONFIG, "sweep": None, "sessions": None, "config": None},
                        {**SUMMARY, "claims": [{"id": "c", "holds": True, "paper_value": 1, "measured": 1}]})
    assert main(["show", str(d)]) == 0
    out = capsys.readouterr().out
    assert "experiment dpo-bandit" in out and "reproduce with: alignjax run dpo-bandit" in out


@pytest.mark.parametrize("kind", ["fifo", "huge", "folder"])
@pytest.mark.parametrize("command", ["show", "overwrite", "resume"])
def test_a_fifo_or_huge_config_json_never_hangs_or_is_read(kind, command, tmp_path, capsys):
    d = _results_folder(tmp_path)
    cfg = d / "config.json"
    cfg.unlink()
    if kind == "fifo":
        os.mkfifo(cfg)  # a plain open() of it blocks forever
    elif kind == "huge":
        with open(cfg, "wb") as f:
            f.truncate(1 << 30)  # sparse: 1 GB that must not be read into memory
    else:
        cfg.mkdir()
    argv = {"show": ["show", str(d)],
            "overwrite": ["run", "dpo-bandit", *SMALL, "--out", str(d), "--overwrite"],
            "resume": ["run", "dpo-bandit", *SMALL, "--out", str(d), "--resume"]}[command]
    tracemalloc.start()
    try:
        err = _refused(argv, tmp_path, capsys, contains=("config.json",))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    assert repr(str(d)) in err or repr(str(cfg)) in err


def test_resume_refuses_a_config_json_with_wrong_types(tmp_path, capsys):
    d = _results_folder(tmp_path, {**CONFIG, "sessions": "abc"})
    _refused(["run", "dpo-bandit", *SMALL, "--out", str(d), "--resume"], tmp_path, capsys)


# -- 14: sweep sizes are checked from the specs, before anything is allocated -----------------
@pytest.mark.parametrize("n", ["300000000", "3e8", "1e13", "10000000000000", "1e400"])
def test_a_huge_sweep_count_is_refused_before_allocating(n, tmp_path, capsys):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="bad sweep spec") as e:
            parse_sweep(f"beta=0.1:1:{n}", {"beta": 0.1})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20 and "\n" not in str(e.value)
    _refused(["run", "dpo-bandit", "--sweep", f"beta=0.1:1:{n}", "--out", str(tmp_path / "o")], tmp_path, capsys,
             contains=("bad sweep spec",))


def test_a_whole_count_in_float_notation_is_accepted_a_fraction_is_not():
    np.testing.assert_array_equal(parse_sweep("beta=1:2:1e1", {"beta": 0.1})[1], np.linspace(1, 2, 10))
    assert len(parse_sweep(f"beta=1:2:{MAX_SWEEP_VALUES:.0e}", {"beta": 0.1})[1]) == MAX_SWEEP_VALUES
    for n in ("2.5", "1e-1", "inf", "nan", "0e0"):
        with pytest.raises(ValueError, match="bad sweep spec"):
            parse_sweep(f"beta=1:2:{n}", {"beta": 0.1})


def test_the_grid_size_is_checked_before_the_grid_is_built(tmp_path, capsys, monkeypatch):
    def never(*a, **k):
        raise AssertionError("make_grid called before the size check")

    monkeypatch.setattr(sweep, "make_grid", never)
    _refused(["run", "dpo-bandit", "--sweep", "beta=1:2:1e6", "--sweep", "learning_rate=1:2:1e6", "--seeds", "9",
              "--out", str(tmp_path / "o")], tmp_path, capsys, contains=("lower --seeds or the number of swept",))


# -- 15: unusable --out names, a deleted current folder, control characters -------------------
@pytest.mark.parametrize("kind", ["long-name", "long-path", "newline", "newline-exists", "tab-parent", "escape",
                                  "surrogate-under-a-file", "proc-self", "below-a-file"])
def test_unusable_out_names_give_one_line(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    if kind == "newline-exists":
        (tmp_path / "x\ny").write_text("x")
    out = {"long-name": str(tmp_path / ("a" * 300)), "long-path": str(tmp_path) + "/a" * 2100,
           "newline": "a\nb", "newline-exists": "x\ny", "tab-parent": "p\tq/sub", "escape": "a\x1b[2Jb",
           "surrogate-under-a-file": "afile/\udcff", "proc-self": "/proc/self", "below-a-file": "afile/sub"}[kind]
    _refused(["run", "dpo-bandit", *SMALL, "--out", out], tmp_path, capsys)
    _refused(["reproduce", "dpo-bandit", "--smoke", "--out", out], tmp_path, capsys)


def test_show_of_a_long_or_odd_name_gives_one_line(tmp_path, capsys):
    for name in ("a" * 300, "a\nb", "/a" * 2100):
        _refused(["show", str(tmp_path / name.lstrip("/"))], tmp_path, capsys)


@pytest.mark.parametrize("argv", [
    ["run", "dpo-bandit", "--out", "o"],
    ["run", "dpo-bandit"],
    ["run", "dpo-bandit", "--out", "ABS"],
    ["reproduce", "dpo-bandit", "--out", "r"],
])
def test_a_deleted_current_folder_gives_one_line(argv, tmp_path):
    argv = [str(tmp_path / "abs") if a == "ABS" else a for a in argv]
    code = ("import os, sys\n"
            f"os.mkdir({str(tmp_path / 'gone')!r}); os.chdir({str(tmp_path / 'gone')!r}); "
            f"os.rmdir({str(tmp_path / 'gone')!r})\n"
            "from alignjax.cli import main\n"
            f"sys.exit(main({argv!r}))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALIGNJAX_COMPILE_CACHE": "0"}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    _one_line(p.stderr)
    assert "current folder no longer exists" in p.stderr
    assert list(tmp_path.iterdir()) == []


# -- 15: memory refusals name the knob that drives the estimate -------------------------------
@pytest.mark.parametrize("argv, knob", [
    (["--set", "num_steps=100000000000", "--set", "log_every=1"], "num_steps"),
    (["--set", "num_steps=2000000", "--set", "log_every=1", "--seeds", "2"], "num_steps"),
    (["--seeds", "400000"], "--seeds"),
])
def test_memory_refusal_names_the_knob(argv, knob, tmp_path, capsys, monkeypatch):
    """1 GiB of memory and of disk: metrics stream to disk, so many logged steps are refused for the
    disk they need; many runs for the memory."""
    import alignjax.cli as cli

    monkeypatch.setattr(sweep, "available_memory", lambda: {"host": 1 << 30, "device": 1 << 30})
    monkeypatch.setattr(cli, "_free_disk", lambda path: 1 << 30)
    t0 = time.perf_counter()
    err = _refused(["run", "dpo-bandit", *argv, "--out", str(tmp_path / "o")], tmp_path, capsys, contains=(knob,))
    assert "GiB" in err and time.perf_counter() - t0 < 30


def test_check_memory_hints():
    est = {"state_per_run": 1e3, "obs_per_run": 8.0, "device": 1e12, "host": 1.0, "device_metrics": 0.9e12,
           "host_metrics": 0.5, "logged_steps": 1e11}
    with pytest.raises(ValueError, match="one run alone logs too much"):
        sweep.check_memory(est, 1, available={"device": 1 << 30, "host": 1 << 30})
    with pytest.raises(ValueError, match="metrics of 1000000 runs: lower --seeds"):
        sweep.check_memory({**est, "logged_steps": 21.0}, 10**6, available={"device": 1 << 30, "host": 1 << 30})
    with pytest.raises(ValueError, match="sizes"):
        sweep.check_memory({**est, "state_per_run": 1e12}, 1, available={"device": 1 << 30, "host": 1 << 30})
    old_style = {"state_per_run": 1e3, "obs_per_run": 8.0, "device": 1e12, "host": 1.0}  # no breakdown
    with pytest.raises(ValueError, match="lower --seeds"):
        sweep.check_memory(old_style, 10, available={"device": 1 << 30, "host": 1 << 30})


def test_sizes_too_large_to_build_the_program_give_one_line(tmp_path, capsys):
    _refused(["run", "dpo-bandit", "--set", "num_responses=300000", "--set", "num_prompts=6400", "--out",
              str(tmp_path / "o")], tmp_path, capsys, contains=("sizes",))


# -- 15: a compile cache inside --out ---------------------------------------------------------
def test_check_outside(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNJAX_COMPILE_CACHE", str(tmp_path / "out" / "cache"))
    for target in (tmp_path / "out", tmp_path / "out" / "cache", tmp_path):
        with pytest.raises(ValueError, match="ALIGNJAX_COMPILE_CACHE"):
            compile_cache.check_outside(target)
    compile_cache.check_outside(tmp_path / "other")
    compile_cache.check_outside(tmp_path / "out" / "cache" / "inner")  # the cache holds the results: harmless
    monkeypatch.setenv("ALIGNJAX_COMPILE_CACHE", "0")
    compile_cache.check_outside(tmp_path)


@pytest.mark.parametrize("command", ["run", "reproduce"])
def test_a_compile_cache_inside_out_is_refused_before_it_is_created(command, tmp_path):
    out = tmp_path / "out"
    cache = out / "cache" if command == "run" else out / "dpo-bandit" / "cache"
    args = ["run", "dpo-bandit", *SMALL] if command == "run" else ["reproduce", "dpo-bandit", "--smoke"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALIGNJAX_COMPILE_CACHE": str(cache)}
    p = subprocess.run([sys.executable, "-m", "alignjax", *args, "--out", str(out)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    _one_line(p.stderr)
    assert "ALIGNJAX_COMPILE_CACHE" in p.stderr
    assert list(tmp_path.iterdir()) == []


def test_enable_does_not_create_the_cache_folder(tmp_path, monkeypatch):
    import jax

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("ALIGNJAX_COMPILE_CACHE", str(tmp_path / "a" / "b"))
    try:
        assert compile_cache.enable() == tmp_path / "a" / "b"
        assert list(tmp_path.iterdir()) == []
        (tmp_path / "f").write_text("x")
        monkeypatch.setenv("ALIGNJAX_COMPILE_CACHE", str(tmp_path / "f" / "c"))
        assert compile_cache.enable() is None  # cannot be created: off, not a failure
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


# -- other odd input ---------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["run", "\udcff"],
    ["run", "dpo-bandit", "--set", "beta=\udcff"],
    ["run", "dpo-bandit", "--set", "\udcff=1"],
    ["run", "dpo-bandit", "--sweep", "beta=\udcff"],
    ["list", "\udcff"],
    ["show", "\udcff"],
    ["run", "dpo-bandit", "--seeds", "100000000000000000000"],
    ["run", "dpo-bandit", "--seed", "1" * 40],
    ["run", "dpo-bandit", "--chunks", "-5"],
    ["run", "dpo-bandit", "--set", "num_responses=1" + "0" * 30],
    ["reproduce", "\udcff"],
])
def test_other_odd_arguments_give_one_line(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(argv if argv[0] in ("list", "show") else [*argv, "--out", "o"], tmp_path, capsys)
