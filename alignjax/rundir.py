"""Results folders that never destroy what alignjax did not write.

A results folder is *ours* when its ``config.json`` was written by alignjax (it carries the
``"alignjax"`` provenance block, or, for folders from before provenance existed, an
``"experiment"``/``"suite"`` key; a legacy suite folder is recognised by its ``summary.json``).
The rules, applied before any compute:

* the target is never the current directory or one of its parents, never empty (``''``),
  never a file; its nearest existing ancestor must be a writable folder;
* a missing (or empty) target is created and written directly, so a chunked run killed
  half-way can be continued with ``--resume``; a run that fails before its first checkpoint
  removes the folder it created (it holds only our files);
* ``overwrite``: only a folder of ours is replaced, and only at the end: the new run writes
  into a hidden sibling ``.NAME.alignjax-new-*`` that is renamed into place when it has
  finished, so a failed or killed run leaves the old results intact;
* ``resume``: only a folder of ours (its settings are compared by the caller); a missing one
  is refused;
* a lock file (``.alignjax.lock``, ``fcntl.flock``) makes a second process that writes the same
  folder fail at once; stale staging siblings and half-written orbax checkpoints
  (``*.orbax-checkpoint-tmp*``) left by a killed process are removed under the lock.

Every refusal is a :class:`RunDirError` (a ``ValueError``) with one line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["RunDirError", "RunDir", "is_ours", "check_target", "LOCK_NAME"]

LOCK_NAME = ".alignjax.lock"
_STAGE = ".alignjax-new-"
_OLD = ".alignjax-old-"


class RunDirError(ValueError):
    """A results folder that cannot be used as asked (one line, for ``alignjax: error:``)."""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_ours(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a results folder alignjax wrote (see the module docstring)."""
    p = Path(folder)
    cfg = _read_json(p / "config.json")
    if isinstance(cfg, dict) and ("alignjax" in cfg or "experiment" in cfg or "suite" in cfg):
        return True
    summ = _read_json(p / "summary.json")
    return isinstance(summ, dict) and "claims" in summ and ("suite" in summ or "experiment" in summ)


def _contents(p: Path) -> list[str]:
    """Entries of ``p`` other than our lock file (``[]`` when ``p`` does not exist)."""
    if not p.is_dir():
        return []
    return [e.name for e in p.iterdir() if e.name != LOCK_NAME]


def check_target(path: str | os.PathLike) -> Path:
    """Refuse a target that must never be a results folder; return it as a ``Path``.

    Raises :class:`RunDirError` (one line, the name quoted with ``repr``) for ``''``, a name
    with a control character (a newline would split the one-line error contract), a name too
    long for the file system, a relative name while the current folder has been deleted, the
    current directory or one of its parents, an existing non-folder, a path whose nearest
    existing ancestor is not a writable folder, a folder whose ``config.json`` or
    ``summary.json`` is not a small regular file (a FIFO would block the ownership check
    forever, a huge file would be read into memory), and a folder that holds the persistent
    compilation cache (:func:`alignjax.compile_cache.check_outside`). No side effects.
    """
    if str(path).strip() == "":
        raise RunDirError("the results folder must not be empty (--out '')")
    name = _quoted(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in str(path)):
        raise RunDirError(f"refusing results folder {name}: its name holds a control character (newline, tab, ...)")
    try:
        _check_name_lengths(path)
        p = Path(path)
        try:
            resolved = p.expanduser().resolve()
            cwd = Path.cwd().resolve()
        except FileNotFoundError:
            raise RunDirError("the current folder no longer exists (deleted?); cd to an existing folder and "
                              "try again") from None
        if resolved == cwd or resolved in cwd.parents:
            raise RunDirError(f"refusing to use {name} as a results folder: it is the current directory "
                              "or one of its parents; pick a new subfolder, e.g. --out results/NAME")
        if p.exists() and not p.is_dir():
            raise RunDirError(f"results path {name} exists and is not a folder")
        anc = resolved
        while not anc.exists():
            anc = anc.parent
        if not anc.is_dir():
            raise RunDirError(f"cannot create results folder {name}: {_quoted(anc)} is not a folder")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise RunDirError(f"cannot create results folder {name}: {_quoted(anc)} is not writable")
        if p.is_dir():
            _check_own_files(p, name)
    except (OSError, UnicodeError) as e:
        raise RunDirError(f"cannot use {name} as a results folder: {getattr(e, 'strerror', None) or e}") from None
    from alignjax.compile_cache import check_outside

    try:
        check_outside(resolved, name)
    except ValueError as e:
        raise RunDirError(str(e)) from None
    return p


def _quoted(path: str | os.PathLike, limit: int = 160) -> str:
    """``repr`` of a path for a one-line message, shortened in the middle past ``limit`` characters."""
    s = os.fsdecode(path)
    if len(s) <= limit:
        return repr(s)
    return f"{s[:limit // 2]!r}...{s[-limit // 4:]!r} ({len(s)} characters)"


def _check_name_lengths(path: str | os.PathLike) -> None:
    """Refuse a path the file system cannot hold (``ENAMETOOLONG``) before any call raises it."""
    raw = os.fsencode(path)
    try:
        name_max, path_max = os.pathconf("/", "PC_NAME_MAX"), os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if longest > name_max:
        raise RunDirError(f"results folder {_quoted(path)} is not a usable name: one of its parts is {longest} "
                          f"bytes long, more than the {name_max} the file system allows")
    if len(raw) >= path_max:
        raise RunDirError(f"results folder {_quoted(path)} is not a usable name: {len(raw)} bytes, more than the "
                          f"{path_max - 1} a path may have")


def _check_own_files(folder: Path, name: str) -> None:
    """Refuse a folder whose ``config.json``/``summary.json`` exists but is not a small regular file."""
    import stat

    from alignjax.safe_read import MAX_JSON_BYTES

    for fname in ("config.json", "summary.json"):
        try:
            st = os.stat(folder / fname)
        except OSError:
            continue  # missing (or unreadable: then it is not ours, which the caller refuses)
        if not stat.S_ISREG(st.st_mode):
            raise RunDirError(f"refusing to use {name} as a results folder: its {fname} is not a regular file")
        if st.st_size > MAX_JSON_BYTES:
            raise RunDirError(f"refusing to use {name} as a results folder: its {fname} is {st.st_size} bytes, "
                              f"more than the {MAX_JSON_BYTES} a results file may be")


class RunDir:
    """One results folder being written by this process (see the module docstring).

    Usage::

        rd = RunDir(target, overwrite=..., resume=...)
        rd.check()          # before any compute: raises RunDirError
        path = rd.open()    # lock, create, clean stale leftovers; write into ``path``
        ...
        rd.commit()         # success: staging renamed into place, lock released
        # or rd.abort()     # failure: what this run created is removed, old results kept

    Attributes:
      target: the folder the user named.
      path: where this run writes (``target``, or a staging sibling with ``overwrite``).
      staging: whether ``path`` is a staging sibling.
      created: whether this run created ``target`` (fresh run).
    """

    def __init__(self, target: str | os.PathLike, *, overwrite: bool = False, resume: bool = False):
        self.target = Path(target)
        self.overwrite, self.resume = bool(overwrite), bool(resume)
        self.path: Path | None = None
        self.staging = False
        self.created = False  # this run made the folder (mkdir), or found it empty
        self._made: Path | None = None  # the highest folder this run made (mkdir -p)
        self._locks: list[int] = []

    # -- validation (no side effects) ------------------------------------------------------
    def check(self) -> "RunDir":
        """Every refusal that can be decided without writing; raises :class:`RunDirError`.

        Its one write: a folder that a killed :meth:`commit` left renamed aside (the target
        missing, a ``.NAME.alignjax-old-*`` sibling present) is renamed back first.
        """
        p = check_target(self.target)
        self._recover_interrupted_swap()
        used = bool(_contents(p))
        if self.resume and self.overwrite:
            raise RunDirError("--resume and --overwrite exclude each other")
        if self.resume:
            if not used:
                raise RunDirError(f"--resume: there is no run to continue in {p}; drop --resume to start a new one")
            if not is_ours(p):
                raise RunDirError(f"--resume: {p} is not an alignjax results folder (no config.json of ours)")
        elif used:
            if not self.overwrite:
                raise RunDirError(f"results folder {p} already exists; pass --overwrite to replace it (only when "
                                  "alignjax wrote it) or --resume to continue it")
            if not is_ours(p):
                raise RunDirError(f"refusing to overwrite {p}: it was not written by alignjax (no config.json of "
                                  "ours); move it away or pick another --out")
        return self

    def _recover_interrupted_swap(self) -> None:
        t = self.target
        if t.exists() or not t.parent.is_dir():
            return
        olds = [e for e in t.parent.iterdir() if e.name.startswith(f".{t.name}{_OLD}") and e.is_dir()]
        if olds:
            os.rename(max(olds, key=lambda e: e.stat().st_mtime), t)

    # -- writing ---------------------------------------------------------------------------
    def _lock(self, folder: Path) -> None:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunDirError(f"another alignjax process is writing {self.target}; wait for it or pick "
                                  "another --out") from None
            raise
        self._locks.append(fd)

    def _clean_stale_siblings(self) -> None:
        parent, name = self.target.parent, self.target.name
        if not parent.is_dir():
            return
        for e in parent.iterdir():
            if not (e.name.startswith(f".{name}{_STAGE}") or e.name.startswith(f".{name}{_OLD}")) or not e.is_dir():
                continue
            if e.name.startswith(f".{name}{_OLD}") and not _contents(self.target):
                continue  # never delete old results while the target is empty
            try:  # a staging folder whose lock we can take belongs to a dead process
                fd = os.open(e / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            shutil.rmtree(e, ignore_errors=True)
            os.close(fd)

    def open(self) -> Path:
        """Lock and prepare the folder; returns where to write. Raises :class:`RunDirError`."""
        self.check()
        t = self.target
        try:
            if not t.exists():
                root = t
                while not root.parent.exists():
                    root = root.parent
                self._made = root  # the highest folder this run creates
                t.mkdir(parents=True)
                self.created = True
            self._lock(t)
            self._clean_stale_siblings()
            used = bool(_contents(t))
            if self.resume:
                self.path = t
                _remove_partial_checkpoints(t)
            elif used:  # overwrite of a folder of ours (checked above): stage beside it
                stage = t.parent / f".{t.name}{_STAGE}{uuid.uuid4().hex[:12]}"
                stage.mkdir()
                self._lock(stage)
                self.path, self.staging = stage, True
            else:
                self.path = t
                self.created = True  # empty before: everything in it is ours
        except RunDirError:
            self._release()
            self._remove_created()
            raise
        except OSError as e:
            self._release()
            self._remove_created()
            raise RunDirError(f"cannot write results folder {t}: {e.strerror or e}") from None
        return self.path

    def has_checkpoint(self) -> bool:
        """Whether this run's folder holds a finished checkpoint or suite stage (so ``--resume``
        can continue it)."""
        folder = self.path or self.target
        ck, st = folder / "checkpoints", folder / "stages"
        return (ck.is_dir() and any(e.name.isdigit() for e in ck.iterdir())) or (
            st.is_dir() and any(e.suffix == ".npz" for e in st.iterdir()))

    def commit(self) -> Path:
        """Finish: move a staging folder into place (the old one is removed after); unlock."""
        if self.staging and self.path is not None:
            t = self.target
            old = t.parent / f".{t.name}{_OLD}{uuid.uuid4().hex[:12]}"
            os.rename(t, old)
            os.rename(self.path, t)
            self.path, self.staging = t, False
            shutil.rmtree(old, ignore_errors=True)
        self._release()
        return self.target

    def abort(self, keep_checkpointed: bool = True) -> bool:
        """Undo what this run wrote after a failure; returns whether a resumable folder is kept.

        A staging folder is removed (the old results stay). A folder this run created is
        removed unless ``keep_checkpointed`` and it holds a checkpoint. A resumed folder is kept.
        """
        kept = False
        if self.staging and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.created:
            if keep_checkpointed and self.has_checkpoint():
                kept = True
            else:
                self._remove_created()
        else:
            kept = self.resume
        self._release()
        return kept

    def _remove_created(self) -> None:
        """Remove what a fresh run wrote: the folder if it made it, else only its contents."""
        if not self.created:
            return
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
        elif self.target.is_dir():
            for e in self.target.iterdir():
                shutil.rmtree(e, ignore_errors=True) if e.is_dir() else e.unlink(missing_ok=True)
        self.created, self._made = False, None

    def _release(self) -> None:
        for fd in self._locks:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._locks = []


def _remove_partial_checkpoints(folder: Path) -> list[Path]:
    """Delete orbax temporaries (``*.orbax-checkpoint-tmp*``) that a killed save left behind."""
    ck = folder / "checkpoints"
    gone = []
    if ck.is_dir():
        for e in ck.iterdir():
            if ".orbax-checkpoint-tmp" in e.name:
                shutil.rmtree(e, ignore_errors=True) if e.is_dir() else e.unlink(missing_ok=True)
                gone.append(e)
    return gone
