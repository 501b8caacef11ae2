"""The persistent compilation cache: where it lives, how to turn it off, and that the CLI fills it."""

import os
import subprocess
import sys
from pathlib import Path

from alignjax.compile_cache import cache_dir

ROOT = Path(__file__).resolve().parents[1]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNJAX_COMPILE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    for off in ("0", "off", "OFF", "false"):
        monkeypatch.setenv("ALIGNJAX_COMPILE_CACHE", off)
        assert cache_dir() is None
    monkeypatch.delenv("ALIGNJAX_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "alignjax" / "jax"
    assert ROOT not in cache_dir().parents  # never inside the repository


def test_cli_run_writes_the_cache_and_off_writes_nothing(tmp_path):
    args = [sys.executable, "-m", "alignjax", "run", "nash-dynamics", "--set", "num_steps=100", "--no-progress"]
    on, off = tmp_path / "on", tmp_path / "off"
    env = {**os.environ, "ALIGNJAX_COMPILE_CACHE": str(on)}
    assert subprocess.run([*args, "--out", str(tmp_path / "r1")], cwd=ROOT, env=env, capture_output=True).returncode == 0
    assert any(on.iterdir())
    env = {**os.environ, "ALIGNJAX_COMPILE_CACHE": "0", "XDG_CACHE_HOME": str(off)}
    assert subprocess.run([*args, "--out", str(tmp_path / "r2")], cwd=ROOT, env=env, capture_output=True).returncode == 0
    assert not (off / "alignjax").exists()  # (other libraries, e.g. fontconfig, may use XDG_CACHE_HOME)
