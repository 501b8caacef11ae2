"""Where a result came from: code version, software, hardware, command and sessions.

:func:`collect` returns the ``"alignjax"`` block that every ``config.json`` and
``summary.json`` carries; :func:`new_session` / :func:`close_session` record one process's
share of a (possibly resumed) run, and :func:`totals` adds the sessions up.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["collect", "git_state", "now", "new_session", "close_session", "totals"]

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy")


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the git checkout holding ``path``.

    ``path`` defaults to the alignjax package folder; outside a checkout of alignjax itself (an
    installed wheel, even one inside another project's repository) both are None. Tracked
    changes make a tree dirty; untracked files do not.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)

    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0:
            return {"commit": None, "dirty": None}
        if path is None and (Path(top.stdout.strip()) / "alignjax").resolve() != where:
            return {"commit": None, "dirty": None}  # installed inside some other repository
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The provenance block: versions, git state, platform, devices, x64 mode, command line."""
    import jax

    import alignjax

    devices = jax.devices()
    return {
        "version": alignjax.__version__,
        "git": git_state(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind if devices else None,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "x64": bool(jax.config.jax_enable_x64),
        "command": ["alignjax", *(sys.argv[1:] if argv is None else list(argv))],
    }


def new_session(argv: Sequence[str] | None = None, **extra) -> dict[str, Any]:
    """A session record opened now: ``{"start", "end": None, "status": "running", "command", ...}``."""
    return {"start": now(), "end": None, "status": "running",
            "command": ["alignjax", *(sys.argv[1:] if argv is None else list(argv))], "runtime_s": 0.0, **extra}


def close_session(session: Mapping[str, Any], status: str, runtime_s: float, **extra) -> dict[str, Any]:
    """``session`` ended now with ``status`` (``"finished"``, ``"nonfinite"``, ``"failed"``, ...)."""
    return {**session, "end": now(), "status": status, "runtime_s": round(float(runtime_s), 3), **extra}


def totals(sessions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Runtime and compile counts summed over the sessions of a run (resumed or not).

    A session killed before it could record its end counts with the runtime it had reached at
    its last checkpoint.
    """
    compiles: dict[str, int] = {}
    for s in sessions:
        for k, v in (s.get("compiles") or {}).items():
            compiles[k] = compiles.get(k, 0) + int(v)
    return {"sessions": len(sessions), "runtime_s": round(sum(float(s.get("runtime_s") or 0) for s in sessions), 3),
            "compiles": compiles}
