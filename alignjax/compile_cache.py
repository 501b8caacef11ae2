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

__all__ = ["cache_dir", "enable"]

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
    back would cost about as much). A folder that cannot be created turns the cache off
    rather than failing the run.
    """
    import jax

    where = cache_dir()
    if where is None:
        return None
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return where
