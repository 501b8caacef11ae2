"""Orbax checkpoints of a whole sweep state (all grid rows at once).

A checkpoint stores the flattened leaves of the state pytree (PRNG keys as raw key data),
the metrics gathered so far, a fingerprint of the run and a checksum of all of these (see
:func:`checksum`). Saves are synchronous, so a returned :func:`save` is a finished
checkpoint; a process killed mid-save leaves only an orbax temporary folder, which
:func:`latest` never returns.

Faults, and what they become:

* a checkpoint whose files are truncated, deleted or damaged does not restore or does not
  match its checksum: :func:`restore` raises :class:`CorruptCheckpoint`, and
  :func:`restore_latest` falls back to the newest older checkpoint that restores and verifies
  (:class:`NoUsableCheckpoint` when none does);
* a checkpoint of another run (another fingerprint, number or shape of state leaves) is a
  user error: a plain ``ValueError``, never a fallback;
* a save that fails (disk full, quota, I/O error; orbax and tensorstore raise ``ValueError``,
  ``RuntimeError`` or ``OSError``) becomes :class:`CheckpointSaveError`, an ``OSError`` with a
  one-line message; the failed save's partial folder is removed and the older checkpoints are
  untouched (old checkpoints are deleted only after a save has succeeded).

On these failure paths orbax, absl, asyncio and tensorstore would print hundreds of lines on
stderr (log records, "Event loop is closed" tracebacks of tensorstore callbacks that outlive
orbax's event loop); they are silenced, so a caller can report the failure in one line.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["manager", "save", "restore", "restore_latest", "discard", "latest", "checksum",
           "Restored", "CorruptCheckpoint", "NoUsableCheckpoint", "CheckpointSaveError"]

_KEEP_ATTR = "_alignjax_max_to_keep"
_TMP = ".orbax-checkpoint-tmp"
_METADATA_ALLOWANCE = 64 * 1024  # bytes of orbax/zarr metadata files beside the arrays, roughly


class CorruptCheckpoint(ValueError):
    """One checkpoint does not restore (orbax failed to read it) or does not match its checksum.

    ``step`` is the checkpoint's step and ``reason`` a short phrase (e.g. ``"a file is missing"``).
    """

    def __init__(self, step: int, reason: str):
        super().__init__(f"checkpoint {step} does not restore ({reason})")
        self.step, self.reason = step, reason


class NoUsableCheckpoint(ValueError):
    """Resuming found checkpoints, but none of them restores and verifies (one-line message)."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (disk full, quota, I/O error).

    ``str()`` is one line: ``saving checkpoint N in DIR failed: REASON (about X MB needed, Y MB
    free)``. ``errno`` is ``ENOSPC`` when the free space is below what the checkpoint needs or
    the underlying error was ``ENOSPC``, else ``EIO``; ``filename`` is the checkpoints folder;
    ``strerror`` is the message too.
    """

    def __init__(self, code: int, message: str, directory: str):
        super().__init__(code, message, directory)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Restored(NamedTuple):
    """What :func:`restore_latest` found: the ``step`` restored, its ``state`` and ``metrics``,
    and ``skipped``: ``(step, reason)`` of each newer checkpoint that did not restore, newest first."""

    step: int
    state: Any
    metrics: dict[str, np.ndarray]
    skipped: list[tuple[int, str]]


def manager(directory: str | Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """A synchronous ``CheckpointManager`` in ``directory``; :func:`save` keeps the last ``max_to_keep``.

    Old checkpoints are deleted by :func:`save` itself, and only after the new checkpoint was
    written (orbax's own ``max_to_keep`` is not used), so a failed save never costs the previous
    good checkpoint. ``max_to_keep=None`` keeps every checkpoint.
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=False)
    with _quiet():
        mgr = ocp.CheckpointManager(Path(directory).absolute(), options=options)
    setattr(mgr, _KEEP_ATTR, max_to_keep)
    return mgr


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _impl_of(ref: Any):
    """The PRNG implementation of a (possibly abstract) key array."""
    impl = getattr(ref.dtype, "_impl", None)  # jax's key dtype carries its impl
    return impl if impl is not None else jax.random.key_impl(jax.random.key(0))


def _entries(item: dict) -> list[tuple[str, np.ndarray]]:
    """The arrays of a checkpoint item that :func:`checksum` covers, as ``(name, array)``, sorted by name."""
    out = []
    if "fingerprint" in item:
        out.append(("fingerprint", item["fingerprint"]))
    for group in ("metrics", "state"):
        for k, v in (item.get(group) or {}).items():
            out.append((f"{group}/{k}", v))
    return sorted(((name, np.asarray(v)) for name, v in out), key=lambda e: e[0])


def checksum(item: dict) -> str:
    """The sha256 (hex) that :func:`save` stores with a checkpoint and :func:`restore` verifies.

    Definition: over the arrays of ``item`` -- ``"fingerprint"`` (if present), ``"metrics/K"``
    for each metric ``K`` and ``"state/I"`` for each state leaf ``I`` (its 5-digit index), taken
    in the sorted order of these names -- sha256 of, for each array in turn, the UTF-8 bytes of
    ``f"{name}\\0{dtype}\\0{shape}\\0{nbytes}\\0"`` (``dtype`` as numpy names it, e.g.
    ``float32``; ``shape`` its dimensions joined by commas) followed by the array's bytes in C
    order. Any other key of ``item`` (the stored checksum itself) is not covered.
    """
    h = hashlib.sha256()
    for name, x in _entries(item):
        x = np.ascontiguousarray(x)
        h.update(f"{name}\0{x.dtype}\0{','.join(map(str, x.shape))}\0{x.nbytes}\0".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def _item(state: Any, metrics: dict[str, np.ndarray], fingerprint: dict | None) -> dict:
    leaves = jax.tree.leaves(state)
    data = {f"{i:05d}": np.asarray(jax.random.key_data(x) if _is_key(x) else x) for i, x in enumerate(leaves)}
    item = {"state": data, "metrics": {k: np.asarray(v) for k, v in metrics.items()}}
    if fingerprint is not None:
        item["fingerprint"] = np.frombuffer(json.dumps(fingerprint, sort_keys=True).encode(), dtype=np.uint8)
    item["checksum"] = np.frombuffer(checksum(item).encode(), dtype=np.uint8)
    return item


def save(mgr: ocp.CheckpointManager, step: int, state: Any, metrics: dict[str, np.ndarray],
         fingerprint: dict | None = None) -> None:
    """Save ``state`` (any pytree, keys allowed) and host ``metrics`` as checkpoint ``step``.

    ``fingerprint`` (a JSON-able dict describing the run) is stored with it; :func:`restore`
    refuses a checkpoint whose fingerprint differs from the resuming run's. The
    :func:`checksum` of the arrays is stored too, and verified on restore.

    After the checkpoint is written, checkpoints older than the newest ``max_to_keep`` (see
    :func:`manager`) are deleted. If writing fails, raises :class:`CheckpointSaveError` (an
    ``OSError``, one line) after removing what the failed save left (orbax's temporary folder
    for ``step``, or a step folder it had just created); older checkpoints are not touched.
    """
    item = _item(state, metrics, fingerprint)
    directory = Path(mgr.directory)
    existed = _step_dir(directory, step) is not None
    _silence_stragglers()  # before the call: a failing write's callbacks may print before it returns
    try:
        with _quiet():
            mgr.save(step, args=ocp.args.StandardSave(item), force=True)
            mgr.wait_until_finished()
    except Exception as e:  # tensorstore raises ValueError/RuntimeError, Python writes OSError
        _silence_stragglers()
        _remove_failed_save(directory, step, existed)
        with contextlib.suppress(Exception), _quiet():
            mgr.reload()
        raise _save_error(directory, step, item, e) from e
    keep = getattr(mgr, _KEEP_ATTR, None)
    if keep:
        with _quiet():
            for old in sorted(mgr.all_steps())[:-keep]:
                mgr.delete(old)


def latest(mgr: ocp.CheckpointManager) -> int | None:
    """The newest finished checkpoint step, or None (it may still be corrupt: see :func:`restore_latest`)."""
    return mgr.latest_step()


def restore(mgr: ocp.CheckpointManager, step: int, like: Any,
            fingerprint: dict | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """Restore checkpoint ``step`` into the structure of ``like`` (e.g. ``jax.eval_shape`` of init).

    Returns host (numpy) leaves, with PRNG-key leaves re-wrapped with their original impl.
    Raises :class:`CorruptCheckpoint` (a ``ValueError``) if orbax cannot read the checkpoint
    or its arrays do not match their stored :func:`checksum` (checkpoints written before
    checksums existed are read unverified). Raises a plain ``ValueError`` if the checkpoint
    was written by another run: a different ``fingerprint`` (when both have one), number of
    leaves, or leaf shape.
    """
    return _unpack(_read_verified(mgr, step), step, like, fingerprint)


def restore_latest(mgr: ocp.CheckpointManager, like: Any, fingerprint: dict | None = None) -> Restored | None:
    """Restore the newest checkpoint that restores and verifies; None if there is no checkpoint.

    Tries the steps newest first; a step that raises :class:`CorruptCheckpoint` (see
    :func:`restore`; orbax may fail in any way) is skipped and reported in
    :attr:`Restored.skipped`. Nothing is deleted here (see :func:`discard`). A checkpoint of
    another run still raises its ``ValueError`` (a user error, no fallback). Raises
    :class:`NoUsableCheckpoint` (one line naming the folder) if no checkpoint restores.
    """
    with _quiet():
        mgr.reload()
    steps = sorted(mgr.all_steps(), reverse=True)
    skipped: list[tuple[int, str]] = []
    for step in steps:
        try:
            state, metrics = restore(mgr, step, like, fingerprint)
        except CorruptCheckpoint as e:
            skipped.append((step, e.reason))
            continue
        return Restored(int(step), state, metrics, skipped)
    if not steps:
        return None
    newest, reason = skipped[0]
    tried = f"{len(steps)} checkpoints tried; the newest, {newest}: {reason}" if len(steps) > 1 else \
        f"checkpoint {newest}: {reason}"
    raise NoUsableCheckpoint(f"no checkpoint in {mgr.directory} restores ({tried}); "
                             "a fresh run without --resume would start over")


def discard(mgr: ocp.CheckpointManager, steps: list[int]) -> list[Path]:
    """Delete the step folders of ``steps`` (unusable checkpoints) from the manager's folder.

    Only a real folder (no symlink) directly inside the checkpoints folder whose name is the
    step number, as orbax names it, is removed; nothing else is touched. Returns the folders
    removed. The manager is reloaded, so it can save these steps again.
    """
    directory = Path(mgr.directory)
    gone = []
    for step in steps:
        p = _step_dir(directory, step)
        if p is not None:
            shutil.rmtree(p)
            gone.append(p)
    with _quiet():
        mgr.reload()
    return gone


# -- reading --------------------------------------------------------------------------------
def _read_verified(mgr: ocp.CheckpointManager, step: int) -> dict:
    """The raw item of checkpoint ``step``, checked against its checksum; CorruptCheckpoint if not."""
    _silence_stragglers()
    try:
        with _quiet():
            item = mgr.restore(step, args=ocp.args.StandardRestore())
    except Exception as e:  # orbax/tensorstore/json raise anything on damaged files
        _silence_stragglers()
        raise CorruptCheckpoint(step, _read_reason(e)) from e
    if not isinstance(item, dict) or not isinstance(item.get("state"), dict) or \
            not isinstance(item.get("metrics", {}), dict):
        raise CorruptCheckpoint(step, "its contents are incomplete")
    if "checksum" in item:
        try:
            stored = np.asarray(item["checksum"], dtype=np.uint8).tobytes().decode()
        except (ValueError, TypeError):
            stored = None
        if stored != checksum(item):
            raise CorruptCheckpoint(step, "its data do not match the stored checksum")
    return item


def _read_reason(e: BaseException) -> str:
    """A short phrase for why orbax could not read a checkpoint."""
    text = str(e)
    if isinstance(e, FileNotFoundError) or "NOT_FOUND" in text or "does not exist" in text:
        return "a file is missing"
    if "OUT_OF_RANGE" in text and "byte range" in text.lower():
        return "a file is truncated"
    if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)) or "DATA_LOSS" in text or "decod" in text.lower():
        return "a file is damaged"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return f"orbax could not read it: {type(e).__name__}"


def _unpack(item: dict, step: int, like: Any, fingerprint: dict | None) -> tuple[Any, dict[str, np.ndarray]]:
    leaves, treedef = jax.tree.flatten(like)
    data = item["state"]
    if fingerprint is not None and "fingerprint" in item:
        try:
            saved = json.loads(np.asarray(item["fingerprint"], dtype=np.uint8).tobytes().decode())
        except (ValueError, TypeError):  # only possible without a checksum (older checkpoints)
            raise CorruptCheckpoint(step, "a file is damaged") from None
        want = json.loads(json.dumps(fingerprint, sort_keys=True))
        diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
        if diff:
            raise ValueError(f"the checkpoint was written by another run (it differs in {', '.join(diff)}); "
                             "a run resumes on the number of devices it started with (alignjax show FOLDER gives it; "
                             "--cpu-devices on a CPU host), otherwise start a new run instead of resuming")
    if len(data) != len(leaves):
        raise ValueError(f"checkpoint has {len(data)} state leaves, the program expects {len(leaves)}")
    out = []
    for i, ref in enumerate(leaves):
        x = np.asarray(data[f"{i:05d}"])
        want_shape = tuple(ref.shape)
        if _is_key(ref):  # raw key data carries the impl's trailing words
            want_shape += tuple(jax.random.key_data(jax.random.key(0, impl=_impl_of(ref))).shape)
        if x.shape != want_shape:
            raise ValueError(f"checkpoint state leaf {i} has shape {x.shape}, the program expects {want_shape}")
        if _is_key(ref):
            out.append(jax.random.wrap_key_data(x, impl=_impl_of(ref)))
        else:
            out.append(x)
    metrics = {k: np.asarray(v) for k, v in item.get("metrics", {}).items()}
    return jax.tree.unflatten(treedef, out), metrics


# -- writing --------------------------------------------------------------------------------
def _step_dir(directory: Path, step: int) -> Path | None:
    """The folder of checkpoint ``step`` as orbax names it (the step number), if it is a real folder."""
    p = directory / str(int(step))
    return p if p.is_dir() and not p.is_symlink() else None


def _remove_failed_save(directory: Path, step: int, existed: bool) -> None:
    """Remove orbax's temporary folder(s) for ``step`` in ``directory`` (and the step folder if
    the failed save created it); nothing else."""
    prefix = f"{int(step)}{_TMP}"
    with contextlib.suppress(OSError):
        for e in directory.iterdir():
            if e.name.startswith(prefix):
                if e.is_dir() and not e.is_symlink():
                    shutil.rmtree(e, ignore_errors=True)
                else:
                    e.unlink(missing_ok=True)
    if not existed:
        p = _step_dir(directory, step)
        if p is not None:
            shutil.rmtree(p, ignore_errors=True)


def _save_error(directory: Path, step: int, item: dict, e: BaseException) -> CheckpointSaveError:
    needed = sum(x.nbytes for _, x in _entries(item)) + _METADATA_ALLOWANCE
    free = _free_bytes(directory)
    code = _os_error_code(e)
    reason = os.strerror(code) if code else _first_line(e)
    enospc = code == errno_codes.ENOSPC or (free is not None and free < needed)
    space = f"about {_mb(needed)} MB needed, {_mb(free) if free is not None else 'unknown'} MB free"
    return CheckpointSaveError(errno_codes.ENOSPC if enospc else errno_codes.EIO,
                               f"saving checkpoint {step} in {directory} failed: {reason} ({space})", str(directory))


def _os_error_code(e: BaseException) -> int | None:
    """The OS error number behind ``e``: an OSError's errno or tensorstore's ``[os_error_code='N']``."""
    for x in (e, e.__cause__, e.__context__):
        if isinstance(x, OSError) and x.errno:
            return int(x.errno)
        m = re.search(r"os_error_code='?(\d+)", str(x)) if x is not None else None
        if m:
            return int(m.group(1))
    return None


def _first_line(e: BaseException, limit: int = 160) -> str:
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _free_bytes(directory: Path) -> int | None:
    p = directory
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _mb(n: int) -> str:
    v = n / 1e6
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}" if v >= 0.1 else f"{v:.3f}"


# -- quiet failures -------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """Silence orbax's absl log records (warnings, and errors it re-raises) during a call."""
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        log.setLevel(level)


_NOISE = ("Future exception was never retrieved", "Task exception was never retrieved")


class _OrbaxNoise(logging.Filter):
    """Drops asyncio's "exception was never retrieved" records about orbax/tensorstore futures."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if not msg.startswith(_NOISE):
            return True
        text = msg + (str(record.exc_info[1]) if record.exc_info else "")
        return not any(s in text for s in ("orbax", "tensorstore", "OCDBT"))


_STRAGGLERS = {"installed": False}


def _silence_stragglers() -> None:
    """Before any orbax call (a failing write's callbacks can print before the call returns): drop
    the noise that arrives from other threads or later, from other threads or at
    garbage collection -- tensorstore callbacks into orbax's closed event loop ("Event loop is
    closed", reported as unraisable) and asyncio's records of futures nobody awaited. Other
    unraisable exceptions, warnings and log records pass unchanged. Installed once per process."""
    if _STRAGGLERS["installed"]:
        return
    _STRAGGLERS["installed"] = True
    logging.getLogger("asyncio").addFilter(_OrbaxNoise())
    warnings.filterwarnings("ignore", message=r"coroutine '\w*Handler\.\w+' was never awaited", category=RuntimeWarning)
    previous = sys.unraisablehook

    def hook(u, _previous=previous):
        if isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed" and any(
                f.f_code.co_name == "call_soon_threadsafe" for f, _ in traceback.walk_tb(u.exc_traceback)):
            return
        _previous(u)

    sys.unraisablehook = hook
