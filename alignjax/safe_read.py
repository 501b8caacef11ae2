"""Reading small JSON files that a user may have replaced with anything.

A results folder's ``config.json``, ``summary.json`` and manifest are read back by ``show``,
``--resume`` and ``--overwrite``. Whatever sits at those paths (a FIFO that would block a
plain ``open`` forever, a device, a folder, a 1 GB file, invalid UTF-8 or JSON) must give
one clear refusal, never a hang, a traceback or a memory blow-up. So a read here:

* opens with ``O_NONBLOCK`` (a FIFO without a writer cannot block the open) and checks with
  ``fstat`` on the opened descriptor that it is a regular file (no race between check and read);
* refuses a file larger than ``max_bytes`` (default :data:`MAX_JSON_BYTES`, 16 MiB) before
  reading it, and reads at most ``max_bytes + 1`` bytes (a file that grows meanwhile is still
  refused);
* decodes UTF-8 and parses JSON.

Every failure is an :class:`UnreadableFile` (a ``ValueError``) with one line naming the path.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["MAX_JSON_BYTES", "UnreadableFile", "read_json", "read_json_or_none"]

MAX_JSON_BYTES = 16 << 20


class UnreadableFile(ValueError):
    """A file that is missing, not a regular file, too large, or not valid JSON (one line)."""


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse the JSON in ``path``; raise :class:`UnreadableFile` for anything but a small regular file.

    The bound: at most ``max_bytes + 1`` bytes are ever read, whatever ``path`` is.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise UnreadableFile(f"cannot read {str(p)!r}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile(f"{str(p)!r} is not a regular file")
        if st.st_size > max_bytes:
            raise UnreadableFile(f"{str(p)!r} is {st.st_size} bytes, more than the {max_bytes} a results file may be")
        chunks, left = [], max_bytes + 1
        while left > 0:
            try:
                b = os.read(fd, min(left, 1 << 20))
            except OSError as e:
                raise UnreadableFile(f"cannot read {str(p)!r}: {e.strerror or e}") from None
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise UnreadableFile(f"{str(p)!r} grew beyond {max_bytes} bytes while being read")
    finally:
        os.close(fd)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UnreadableFile(f"{str(p)!r} is not valid JSON ({type(e).__name__})") from None


def read_json_or_none(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """:func:`read_json`, or ``None`` when the file cannot be read for any reason."""
    try:
        return read_json(path, max_bytes=max_bytes)
    except UnreadableFile:
        return None
