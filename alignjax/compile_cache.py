"""JAX's persistent compilation cache, on by default for the CLI and the tests.

A compiled XLA program is stored on disk, keyed by the program, the jax/jaxlib versions and
the device, so a second ``alignjax run``/``reproduce`` or ``make test`` on the same machine
skips most compiles. Results do not change: the cache returns the executable the compiler
would have produced.

Where: ``$ALIGNJAX_COMPILE_CACHE`` if set to a path, else ``$XDG_CACHE_HOME/alignjax/jax`` (or
``~/.cache/alignjax/jax``), always outside the repository. ``ALIGNJAX_COMPILE_CACHE=0`` (or
``off``) turns it off.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "enable", "check_outside"]

_OFF = ("0", "off", "false", "no", "")


def cache_dir() -> Path | None:
    """The cache folder this process would use, or None when turned off."""
    env = os.environ.get("ALIGNJAX_COMPILE_CACHE")
    if env is not None:
        return None if env.strip().lower() in _OFF else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alignjax" / "jax"


def enable(min_compile_time_s: float = 0.2) -> Path | None:
    """Turn the persistent cache on (idempotent); returns its folder, or None when off.

    Programs that compile faster than ``min_compile_time_s`` are not stored (reading them
    back would cost about as much). A cache entry that cannot be written or read only costs a
    compile, silently (JAX's multi-line warning is filtered). The folder is not created here: JAX makes it at the first
    compile, after the command has validated its input (so a refused run leaves no cache
    folder behind, e.g. one inside its ``--out``, see :func:`check_outside`). A folder that
    could not be created (its nearest existing ancestor is not a writable folder) turns the
    cache off rather than failing the run.
    """
    import warnings

    import jax

    where = cache_dir()
    if where is None or not _creatable(where):
        return None
    # A cache entry that cannot be written or read (a full disk, a file-size limit) only costs a
    # compile; JAX warns with several lines, which would break the one-line error contract.
    warnings.filterwarnings("ignore", message=r"Error (writing|reading) persistent compilation cache entry")
    jax.config.update("jax_compilation_cache_dir", str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return where


def _creatable(folder: Path) -> bool:
    """Whether ``folder`` is a writable folder, or could be made as one (without making it)."""
    try:
        p = folder.absolute()
        while not p.exists():
            p = p.parent
        return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    except (OSError, ValueError):
        return False


def check_outside(target: str | os.PathLike, name: str | None = None) -> None:
    """Refuse (``ValueError``, one line) a results folder ``target`` that is, or holds, the cache folder.

    A cache inside ``--out`` would be created by the run's first compile and then either be
    mixed into the results or be taken for foreign files by a later ``--overwrite``. ``name``
    is how the message quotes ``target`` (default its ``repr``). No side effects.
    """
    where = cache_dir()
    if where is None:
        return
    try:
        cache, out = where.expanduser().resolve(), Path(target).expanduser().resolve()
    except (OSError, RuntimeError):
        return  # unresolvable paths: the caller's own path checks refuse them
    if cache == out or out in cache.parents:
        raise ValueError(f"the compile cache folder {str(where)!r} (ALIGNJAX_COMPILE_CACHE) lies inside the results "
                         f"folder {name or repr(str(target))}; point ALIGNJAX_COMPILE_CACHE elsewhere or pick "
                         "another --out")
