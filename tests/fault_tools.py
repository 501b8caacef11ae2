"""Helpers shared by ``tests/test_faults.py`` and ``benchmarks/faults.py`` (fault injection)."""

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A script that registers a suite whose second stage computes for about a minute, then runs the
# CLI with its arguments (``reproduce test-slow-suite --out DIR ...``); SLOW_SUITE_SPIN=1 makes
# that stage instant.
SLOW_SUITE = str(ROOT / "tests" / "slow_suite.py")


def digest(folder: Path) -> dict:
    """Every entry under ``folder``, hidden ones too: relative path -> sha256 (regular files), link
    target, ``"dir"`` or the file type of anything else (FIFOs, sockets: never opened)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        mode = p.lstat().st_mode
        out[rel] = ("link:" + os.readlink(p) if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode)
                    else hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(mode)
                    else f"special:{stat.S_IFMT(mode):o}")  # a FIFO is never opened
    return out


def wait_for_handlers(proc, limit: float = 30.0) -> None:
    """Wait until ``proc`` catches SIGTERM (Linux: ``SigCgt`` in ``/proc/PID/status``): alignjax's
    signal handlers are installed (Python itself catches only SIGINT, so SIGTERM marks ours).
    Elsewhere, wait one second."""
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        try:
            caught = int(next(ln for ln in status.read_text().splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
        except (OSError, StopIteration, ValueError):
            time.sleep(1.0)
            return
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)


def signal_and_time(proc, sig=signal.SIGINT, timeout: float = 120.0) -> tuple[float, int, str]:
    """Send ``sig`` to ``proc``; ``(seconds until it exited, its exit code, its stderr)``."""
    t0 = time.perf_counter()
    proc.send_signal(sig)
    err = proc.communicate(timeout=timeout)[1]
    return time.perf_counter() - t0, proc.returncode, err


@contextlib.contextmanager
def cli_process(args, script: str | None = None, **kw):
    """``python -m alignjax ARGS`` (or ``python SCRIPT ARGS``) in the background, stderr piped;
    killed on the way out whatever happens."""
    cmd = [sys.executable, script, *args] if script else [sys.executable, "-m", "alignjax", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def wait_for(cond, proc, limit: float = 180.0) -> None:
    """Poll ``cond()`` every 20 ms; fail if ``proc`` ends first (with its stderr) or after ``limit`` s."""
    deadline = time.time() + limit
    while not cond():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def sigterm_after_checkpoint(args, out, step: int = 2, **kw) -> tuple[int, str]:
    """Run ``python -m alignjax ARGS --out OUT`` (a chunked ``run``), SIGTERM it once checkpoint ``step``
    (or a later one) is on disk; ``(exit code, stderr)``. ``kw`` goes to :func:`cli_process` (e.g. ``env``)."""
    with cli_process([*args, "--out", str(out)], **kw) as proc:
        wait_for_handlers(proc)
        ck = Path(out) / "checkpoints"
        wait_for(lambda: ck.is_dir() and any(p.name.isdigit() and int(p.name) >= step for p in ck.iterdir()), proc)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    return proc.returncode, err
