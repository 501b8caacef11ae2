"""Results folders that never destroy what alignjax did not write.

**Ownership is proved, never guessed.** Every folder alignjax writes holds a manifest,
``.alignjax-manifest.json``: the format tag :data:`FORMAT`, a random 128-bit ``run_id`` and,
for every file this library wrote there, its relative path, size and SHA-256, plus the
folders it made whole (``trees``: the orbax ``checkpoints/`` folder) and the subfolders its
writes made (``dirs``, recorded *before* each ``mkdir``, so that a process killed between the
``mkdir`` and its first file leaves nothing a later cleanup cannot prove ours). The folder's
``config.json`` carries the same ``run_id``. A folder is *ours* (:func:`is_ours`) only when
both agree; a ``config.json`` that merely looks like ours (another tool's ``{"experiment":
...}``) proves nothing. Files are recorded as they are written: every write of the library
goes through :func:`write_atomic` (temp file, ``fsync``, ``rename``), which updates the
manifest of the open :class:`RunDir` it writes into.

**Only recorded bytes are ever deleted.** Removing a run's output (a failed fresh run, an
aborted staging folder, the replaced old results) deletes exactly the recorded files whose
size and SHA-256 still match what was written, the recorded trees, and this process's own
in-flight temporary files; then it ``rmdir``s folders that are left empty, and never a
folder that still holds anything. A file the user put there (``NOTES.md``, an edited
``summary.json``) is therefore never deleted: on ``--overwrite`` it is moved into the new
results (renamed ``NAME.kept``, ``NAME.kept2``, ... if the new run wrote a file of that name).

The rules, applied before any compute:

* the target is never the current directory or one of its parents, never empty, never a
  file; its nearest existing ancestor must be a writable folder;
* a symlinked target (or parent) is followed: the run writes into the link's target and the
  link itself is never replaced; a dangling link is refused;
* a missing (or empty) target is created and written directly, so a chunked run killed
  half-way can be continued with ``--resume``; a fresh run that fails or is interrupted before
  its first checkpoint removes its recorded files, then the folders it made, each only if empty
  (so a sibling result another process wrote meanwhile in a shared parent is kept);
* ``overwrite``: only a folder of ours is replaced, and only at the end: the new run writes
  into a hidden sibling ``.NAME.alignjax-new-*`` that is renamed into place when it has
  finished, so a failed or killed run leaves the old results intact; a target that cannot be
  swapped (a mount point, a parent where the sibling cannot be created or renamed) is refused
  at once;
* ``resume``: only a folder of ours (its settings are compared by the caller); a missing one
  is refused;
* a lock file (``.alignjax.lock``, ``fcntl.flock``) makes a second process that writes the same
  folder fail at once; stale staging siblings and half-written orbax checkpoints left by a
  killed process are cleaned under the lock.

Every refusal is a :class:`RunDirError` (a ``ValueError``) with one line.

**Audit of every deletion in the library** (``grep -n "rmtree\\|unlink\\|rmdir" alignjax``):

* :func:`_remove_recorded`: ``unlink`` of a path listed in the folder's own manifest whose
  bytes still hash to the recorded SHA-256 (it is a file this library wrote and nobody
  changed); inside a manifest ``trees`` entry (``checkpoints/``, filled by orbax for this
  library), ``rmtree`` of orbax's own entries only (numbered steps, ``*.orbax-checkpoint-tmp*``),
  never anything else in it, and only when the tree is a real folder inside the results
  folder (never reached through a symlink); ``rmdir`` of the tree when that left it empty;
  ``unlink`` of this process's own in-flight temp files (their names were returned
  to it by ``mkstemp``); ``rmdir`` of the folders holding recorded files and of the
  recorded ``dirs`` (only when empty, and only when reached without a symlink).
* :func:`_finish_removal`: ``unlink`` of the manifest and lock file, only once nothing else is
  left in the folder; ``rmdir`` of the folder, only if this run made it.
* :meth:`RunDir.abort` / :meth:`RunDir._remove_made`: ``rmdir`` of the parents this run made,
  innermost first, stopping at the first that is not empty.
* :meth:`RunDir.abort` / :meth:`RunDir._remove_subdirs`: ``rmdir`` (only if empty) of the
  subfolders of the results folder that this run's own writes made (``mkdir`` recorded as it
  happened), so a write refused half-way by an interrupt leaves no empty folder behind.
* :func:`_remove_recorded` also unlinks temp files named ``.NAME.RUN_ID.*.tmp`` with the
  folder's own 128-bit ``run_id`` (the temp files of a killed writer of that folder: every temp
  file :func:`write_atomic` makes in a results folder carries its run id).
* :func:`write_atomic`: ``unlink`` of its own temp file when the write fails.
* :func:`_remove_partial_checkpoints`: ``*.orbax-checkpoint-tmp*`` entries inside a
  ``checkpoints/`` tree that the folder's manifest lists (orbax's own temporaries).
* :mod:`alignjax.checkpoint`: unusable numbered step folders inside that same tree.
* orbax itself deletes its older numbered checkpoints inside ``checkpoints/`` (``max_to_keep``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
from pathlib import Path

__all__ = ["RunDirError", "RunDirClosed", "RunDir", "is_ours", "ownership", "check_target", "write_atomic", "write_atomic_many",
           "open_rundirs", "read_manifest", "is_locked", "LOCK_NAME", "MANIFEST_NAME", "FORMAT"]

LOCK_NAME = ".alignjax.lock"
MANIFEST_NAME = ".alignjax-manifest.json"
FORMAT = "alignjax-results/1"
_HOUSEKEEPING = (LOCK_NAME, MANIFEST_NAME)
_STAGE = ".alignjax-new-"
_OLD = ".alignjax-old-"
_RUN_ID = re.compile(r"[0-9a-f]{32}")

_REGISTRY_LOCK = threading.RLock()  # guards _OPEN and every RunDir's seal, manifest and in-flight set
_OPEN: list["RunDir"] = []


class RunDirError(ValueError):
    """A results folder that cannot be used as asked (one line, for ``alignjax: error:``)."""


class RunDirClosed(BaseException):
    """A write into a results folder whose run was interrupted and cleaned up (the writer stops).

    A ``BaseException`` so that no ``except Exception`` in a suite swallows it.
    """


# -- the manifest -------------------------------------------------------------------------------
def _new_manifest(run_id: str | None = None) -> dict:
    return {"format": FORMAT, "run_id": run_id or uuid.uuid4().hex, "files": {}, "trees": [], "dirs": []}


def _safe_rel(rel) -> bool:
    """A manifest path: relative, normalised, no ``..``, not a housekeeping file."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel:
        return False
    parts = rel.split("/")
    return all(p not in ("", ".", "..") for p in parts) and rel not in _HOUSEKEEPING


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The folder's manifest if it is well formed (format, run id, file records), else None."""
    from alignjax.safe_read import read_json_or_none

    m = read_json_or_none(Path(folder) / MANIFEST_NAME)
    if not (isinstance(m, dict) and m.get("format") == FORMAT and isinstance(m.get("run_id"), str)
            and _RUN_ID.fullmatch(m["run_id"]) and isinstance(m.get("files"), dict)
            and isinstance(m.get("trees"), list)):
        return None
    for rel, rec in m["files"].items():
        if not (_safe_rel(rel) and isinstance(rec, dict) and isinstance(rec.get("size"), int)
                and isinstance(rec.get("sha256"), str)):
            return None
    if not all(_safe_rel(t) for t in m["trees"]):
        return None
    dirs = m.setdefault("dirs", [])  # absent in manifests written before 2026-12-07
    if not (isinstance(dirs, list) and all(_safe_rel(d) for d in dirs)):
        return None
    return m


def ownership(folder: str | os.PathLike) -> str | None:
    """``None`` when ``folder`` is a results folder alignjax wrote, else why not (a short phrase).

    Ours means: a well-formed manifest (:func:`read_manifest`) and a ``config.json`` that is
    a JSON object whose ``run_id`` equals the manifest's.
    """
    from alignjax.safe_read import read_json_or_none

    p = Path(folder)
    m = read_manifest(p)
    if m is None:
        return "it has no alignjax manifest (.alignjax-manifest.json); folders from older alignjax versions lack it"
    cfg = read_json_or_none(p / "config.json")
    if not isinstance(cfg, dict) or cfg.get("run_id") != m["run_id"]:
        return "its config.json does not carry the run id of its alignjax manifest"
    return None


def is_ours(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a results folder alignjax wrote (see :func:`ownership`)."""
    return Path(folder).is_dir() and ownership(folder) is None


def _sha256_file(p: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _recorded_intact(p: Path, rec: dict) -> bool:
    """Whether ``p`` is a regular file (not a link) with the recorded size and SHA-256."""
    try:
        st = os.lstat(p)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == rec["size"] and _sha256_file(p) == rec["sha256"]


def _inside(folder: Path, p: Path) -> bool:
    """``p`` lies inside ``folder`` once symlinks are resolved (never reached through a link)."""
    real_f, real_p = os.path.realpath(folder), os.path.realpath(p)
    return real_p.startswith(real_f + os.sep) and os.path.realpath(p.parent) == os.path.dirname(real_p)


def _orbax_entry(name: str) -> bool:
    """An entry orbax makes in a checkpoint folder: a numbered step or its temporary."""
    return name.isdigit() or ".orbax-checkpoint-tmp" in name


def _remove_tree(folder: Path, rel: str) -> None:
    """Remove the orbax entries of the recorded tree ``folder/rel``, then the tree if left empty.

    Anything else in it (a file of the user's) stays, and so does the tree. A tree reached
    through a symlink is never touched.
    """
    p = folder / rel
    if not (_inside(folder, p) and p.is_dir() and not p.is_symlink()):
        return
    for e in list(p.iterdir()):
        if _orbax_entry(e.name):
            shutil.rmtree(e, ignore_errors=True) if e.is_dir() and not e.is_symlink() else e.unlink(missing_ok=True)
    try:
        os.rmdir(p)
    except OSError:
        pass


def _remove_recorded(folder: Path, manifest: dict, inflight=()) -> None:
    """Delete what ``manifest`` proves this library wrote in ``folder`` (see the module docstring)."""
    for t in inflight:
        try:
            os.unlink(t)
        except OSError:
            pass
    for rel in manifest.get("trees", []):
        _remove_tree(folder, rel)
    parents = set()
    for rel, rec in manifest.get("files", {}).items():
        p = folder / rel
        if not _inside(folder, p):
            continue
        parents.update(q for q in p.parents if q != folder and folder in q.parents)
        if _recorded_intact(p, rec):
            try:
                os.unlink(p)
            except OSError:
                pass
    for rel in manifest.get("dirs", []):  # subfolders its writes made (recorded before the mkdir)
        p = folder / rel
        if _safe_rel(rel) and _inside(folder, p):
            parents.update([p, *(q for q in p.parents if q != folder and folder in q.parents)])
    if _tmp_pattern(manifest) is not None:  # temp files of a killed writer of this folder
        for d, dirs, names in os.walk(folder):  # os.walk never follows links
            for n in names:
                if _tmp_pattern(manifest).fullmatch(n):
                    try:
                        os.unlink(os.path.join(d, n))
                    except OSError:
                        pass
    real_folder = os.path.realpath(folder)
    for d in sorted(parents, key=lambda q: len(q.parts), reverse=True):
        if os.path.realpath(d) != os.path.join(real_folder, os.path.relpath(d, folder)):
            continue  # reached through a symlink: not ours
        try:
            os.rmdir(d)  # only if empty
        except OSError:
            pass


def _tmp_pattern(manifest: dict):
    """The names of :func:`write_atomic`'s temp files in a folder with this manifest's run id."""
    run_id = manifest.get("run_id")
    if not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id)):
        return None
    return re.compile(r"\..+\." + run_id + r"\.[A-Za-z0-9_]+\.tmp")


def _foreign(folder: Path) -> list[str]:
    """Entries of ``folder`` other than our housekeeping files (``[]`` when it does not exist)."""
    try:
        return [e.name for e in folder.iterdir() if e.name not in _HOUSEKEEPING]
    except OSError:
        return []


def _finish_removal(folder: Path, remove_dir: bool, manifest: dict | None = None) -> bool:
    """Remove the housekeeping files (manifest, lock) once none of ``manifest``'s entries is left
    (with no manifest given: once nothing else is left); then ``rmdir`` the folder if
    ``remove_dir`` (which fails, keeping it, while it holds anything of the user's).

    Returns whether the housekeeping files were removed."""
    if manifest is None:
        if _foreign(folder):
            return False
    elif any(os.path.lexists(folder / rel) for rel in [*manifest.get("files", {}), *manifest.get("trees", [])]):
        return False
    for name in _HOUSEKEEPING:
        try:
            os.unlink(folder / name)
        except OSError:
            pass
    if remove_dir:
        try:
            os.rmdir(folder)
        except OSError:
            pass
    return True


def _kept_name(dest: Path) -> Path:
    k, cand = 1, dest.with_name(dest.name + ".kept")
    while os.path.lexists(cand):
        k += 1
        cand = dest.with_name(f"{dest.name}.kept{k}")
    return cand


def _move_foreign(old: Path, new: Path, manifest: dict, rel: str = "",
                  failed: list | None = None) -> list[str]:
    """Move every entry of ``old`` that ``manifest`` does not prove ours to the same place in ``new``.

    Returns the moved paths as ``"REL"`` or ``"REL -> REL.kept"`` when the new run wrote a file
    of that name. Folders holding recorded files, and recorded trees, are walked (in a tree,
    orbax's own entries are ours, anything else is the user's). An entry that cannot be moved
    stays where it is and is appended to ``failed`` as ``"REL (reason)"``.
    """
    moved = []
    files, trees, dirs = manifest.get("files", {}), set(manifest.get("trees", [])), set(manifest.get("dirs", []))
    tmp = _tmp_pattern(manifest)
    src_dir = old / rel if rel else old
    in_tree = rel in trees
    for e in sorted(src_dir.iterdir(), key=lambda q: q.name):
        r = f"{rel}/{e.name}" if rel else e.name
        if not rel and e.name in _HOUSEKEEPING:
            continue
        if (in_tree and _orbax_entry(e.name)) or (tmp is not None and tmp.fullmatch(e.name)):
            continue
        if r in files and _recorded_intact(e, files[r]):
            continue
        if e.is_dir() and not e.is_symlink() and (r in trees or r in dirs
                                                  or any(f.startswith(r + "/") for f in [*files, *trees])):
            moved += _move_foreign(old, new, manifest, r, failed)
            continue
        dest = new / r
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            clash = os.path.lexists(dest)
            if clash:
                dest = _kept_name(dest)
            os.rename(e, dest)
        except OSError as err:
            if failed is not None:
                failed.append(f"{r} ({err.strerror or err})")
            continue
        moved.append(f"{r} -> {dest.relative_to(new)}" if clash else r)
    return moved


# -- writing ------------------------------------------------------------------------------------
def _write_fsynced(fd: int, data: bytes) -> None:
    """Write ``data`` to the fresh temporary file ``fd`` (from ``mkstemp``, mode 0600) with the permissions
    ``open()`` would give under the umask, flush and fsync it; ``fd`` is closed on every path."""
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_rundirs() -> list["RunDir"]:
    """The results folders this process is writing now (opened, not yet committed or aborted)."""
    with _REGISTRY_LOCK:
        return list(_OPEN)


def _owner_of(path: Path) -> "RunDir | None":
    real = os.path.realpath(path.parent)
    with _REGISTRY_LOCK:
        for rd in _OPEN:
            root = str(rd.path)
            if rd.path is not None and (real == root or real.startswith(root + os.sep)):
                return rd
    return None


def _make_parents(folder: "Path | list[Path]", owner: "RunDir | None") -> None:
    """``mkdir -p`` of ``folder`` (or of each of a list, with one manifest save for all); inside
    ``owner``'s open folder, each subfolder made is recorded in the manifest before it is made, so
    that an abort (or a later cleanup after a kill) can ``rmdir`` it again."""
    folders = folder if isinstance(folder, list) else [folder]
    if owner is None or owner.path is None:
        for f in folders:
            f.mkdir(parents=True, exist_ok=True)
        return
    missing = []
    for f in folders:
        d, here = f, []
        while not d.exists() and d != d.parent:
            here.append(d)
            d = d.parent
        missing += [x for x in reversed(here) if x not in missing]  # parents before children
    if missing and owner._manifest is not None:  # recorded before it exists: a kill cannot orphan it
        for d in missing:
            rel = owner._rel(d)
            if _safe_rel(rel) and rel not in owner._manifest["dirs"]:
                owner._manifest["dirs"].append(rel)
        owner._save_manifest()
        if owner._sealed:  # aborted meanwhile (a signal handler in this thread, during the save): make nothing
            raise RunDirClosed(str(folders[0]))
    foreign = []
    for d in missing:
        try:
            d.mkdir()
        except FileExistsError:  # made meanwhile by someone else: not ours to remove
            foreign.append(d)
            continue
        owner._subdirs.append(d)
    if foreign and owner._manifest is not None:  # unrecord them (the next record saves the manifest)
        gone = {owner._rel(d) for d in foreign}
        owner._manifest["dirs"] = [r for r in owner._manifest["dirs"] if r not in gone]


def write_atomic(path: str | os.PathLike, data: bytes, *, _force: bool = False) -> None:
    """Write ``data`` to ``path`` via a temp file, ``fsync`` and ``os.replace`` (atomic on POSIX).

    The file gets mode ``0666 & ~umask``, as ``open(path, "wb")`` would. When ``path`` lies in
    a results folder this process has open (:class:`RunDir`), the file is recorded in its
    manifest (path, size, SHA-256) as part of the same locked step as the rename; a folder
    whose run was interrupted and cleaned up refuses the write (:class:`RunDirClosed`), so a
    cleanup never races a late write.
    """
    path = Path(path)
    owner = _owner_of(path)
    with _REGISTRY_LOCK:
        if owner is not None and owner._sealed and not _force:
            raise RunDirClosed(str(path))
        _make_parents(path.parent, owner)
        tag = f"{owner.run_id}." if owner is not None and owner.run_id else ""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{tag}", suffix=".tmp")
        if owner is not None:
            owner._inflight.add(tmp)
    try:
        _write_fsynced(fd, data)
        with _REGISTRY_LOCK:
            if owner is not None and owner._sealed and not _force:
                raise RunDirClosed(str(path))
            os.replace(tmp, path)
            if owner is not None:
                owner._record(path, len(data), hashlib.sha256(data).hexdigest())
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        if owner is not None:
            with _REGISTRY_LOCK:
                owner._inflight.discard(tmp)


def write_atomic_many(files: "dict[Path, bytes]") -> None:
    """:func:`write_atomic` for a batch of files (a streamed store's chunk): one manifest update.

    Every file goes to its own temp file (``fsync``\\ ed) first; then, under the registry lock,
    they are renamed into place in the order given (data before the metadata that points at it)
    and recorded in the open :class:`RunDir`'s manifest with a single save. Each file is
    replaced atomically; a killed batch leaves some files renamed and the rest as temp files
    carrying the folder's run id (cleaned like :func:`write_atomic`'s).
    """
    if not files:
        return
    paths = [Path(p) for p in files]
    owner = _owner_of(paths[0])
    if owner is not None and any(_owner_of(p) is not owner for p in paths):
        raise ValueError("write_atomic_many: the files must lie in one results folder")
    tmps: list[str] = []
    try:
        with _REGISTRY_LOCK:  # every new subfolder of the batch, with one manifest save
            if owner is not None and owner._sealed:
                raise RunDirClosed(str(paths[0]))
            _make_parents(sorted({p.parent for p in paths}), owner)
        for p, data in zip(paths, files.values()):
            with _REGISTRY_LOCK:
                if owner is not None and owner._sealed:
                    raise RunDirClosed(str(p))
                _make_parents(p.parent, owner)
                tag = f"{owner.run_id}." if owner is not None and owner.run_id else ""
                fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.{tag}", suffix=".tmp")
                tmps.append(tmp)
                if owner is not None:
                    owner._inflight.add(tmp)
            _write_fsynced(fd, data)
        with _REGISTRY_LOCK:
            if owner is not None and owner._sealed:
                raise RunDirClosed(str(paths[0]))
            for tmp, p in zip(tmps, paths):
                os.replace(tmp, p)
            if owner is not None:
                for p, data in zip(paths, files.values()):
                    rel = owner._rel(p)
                    if _safe_rel(rel) and owner._manifest is not None:
                        owner._manifest["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                owner._save_manifest()
    except BaseException:
        for tmp in tmps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    finally:
        if owner is not None:
            with _REGISTRY_LOCK:
                owner._inflight.difference_update(tmps)


# -- the target ---------------------------------------------------------------------------------
def check_target(path: str | os.PathLike) -> Path:
    """Refuse a target that must never be a results folder; return it as a ``Path``.

    Raises :class:`RunDirError` (one line, the name quoted with ``repr``) for ``''``, a name
    with a control character (a newline would split the one-line error contract), a name too
    long for the file system, a relative name while the current folder has been deleted, the
    current directory or one of its parents, an existing non-folder, a path whose nearest
    existing ancestor is not a writable folder, a dangling symlink, a folder whose ``config.json`` or
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
        if p.is_symlink() and not p.exists():
            raise RunDirError(f"results path {name} is a symlink to nothing; remove it or pick another --out")
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
    except (OSError, UnicodeError, RuntimeError) as e:  # RuntimeError: '~nouser' has no home folder
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


def _check_swappable(user: Path, real: Path) -> None:
    """Refuse (before compute) an existing folder that ``--overwrite`` could not swap at the end."""
    if os.path.ismount(real):
        raise RunDirError(f"--overwrite cannot replace {_quoted(user)}: it is a mount point (the new results could "
                          "not be renamed into place); write into a subfolder of it instead")
    parent = real.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirError(f"--overwrite cannot replace {_quoted(user)}: its parent {_quoted(parent)} is not writable "
                          "(the new results are staged beside it)")
    st_parent, st = os.stat(parent), os.stat(real)
    if st_parent.st_mode & stat.S_ISVTX and os.geteuid() not in (0, st.st_uid, st_parent.st_uid):
        raise RunDirError(f"--overwrite cannot replace {_quoted(user)}: its parent has the sticky bit and the folder "
                          "is not yours, so it cannot be renamed")


class RunDir:
    """One results folder being written by this process (see the module docstring).

    Usage::

        rd = RunDir(target, overwrite=..., resume=...)
        rd.check()          # before any compute: raises RunDirError
        path = rd.open()    # lock, create, clean stale leftovers; write into ``path``
        ...                 # every write through write_atomic is recorded in the manifest
        rd.commit()         # success: staging swapped into place, the user's files moved in
        # or rd.abort()     # failure: what this run wrote is removed, old results kept

    Attributes:
      target: the folder the user named (messages use it).
      real: ``target`` with symlinks resolved (where the files go).
      path: where this run writes (``real``, or a staging sibling with ``overwrite``).
      staging: whether ``path`` is a staging sibling.
      created: whether this is a fresh run (a new or empty folder).
      run_id: the folder's random id (kept across ``--resume``; new for a replacement).
      moved: after :meth:`commit`, the user's files moved from the old folder into the new one.
    """

    def __init__(self, target: str | os.PathLike, *, overwrite: bool = False, resume: bool = False):
        self.target = Path(target)
        self.overwrite, self.resume = bool(overwrite), bool(resume)
        self.real: Path | None = None
        self.path: Path | None = None
        self.staging = False
        self.created = False
        self.run_id: str | None = None
        self.moved: list[str] = []
        self._made: list[Path] = []  # folders this run made (mkdir), outermost first
        self._locks: list[int] = []
        self._manifest: dict | None = None
        self._sealed = False
        self._inflight: set[str] = set()
        self._subdirs: list[Path] = []  # subfolders of the results folder its writes made, in order
        self._mutex = threading.RLock()  # commit and abort exclude each other (abort may come from a signal)
        self._closed = False
        self._kept = False
        self.committed = False
        self.left_behind: tuple[Path, list[str]] | None = None  # (old folder, entries that did not move)

    # -- validation (no side effects) ------------------------------------------------------
    def check(self) -> "RunDir":
        """Every refusal that can be decided without writing; raises :class:`RunDirError`.

        Its one write: a folder that a killed :meth:`commit` left renamed aside (the target
        missing, a ``.NAME.alignjax-old-*`` sibling of ours present) is renamed back first.
        """
        p = check_target(self.target)
        self.real = Path(os.path.realpath(p.expanduser()))
        if self.resume and self.overwrite:
            raise RunDirError("--resume and --overwrite exclude each other")
        self._recover_interrupted_swap()
        used = bool(_foreign(self.real))
        shown = _quoted(self.target)
        if self.resume:
            if not used:
                raise RunDirError(f"--resume: there is no run to continue in {shown}; drop --resume to start a new one")
            why = ownership(self.real)
            if why is not None:
                raise RunDirError(f"--resume: {shown} is not an alignjax results folder: {why}")
        elif used:
            if not self.overwrite:
                raise RunDirError(f"results folder {shown} already exists; pass --overwrite to replace it (only "
                                  "when alignjax wrote it) or --resume to continue it")
            why = ownership(self.real)
            if why is not None:
                raise RunDirError(f"refusing to overwrite {shown}: it was not written by alignjax ({why}); move "
                                  "it away or pick another --out")
            _check_swappable(self.target, self.real)
        return self

    def _recover_interrupted_swap(self) -> None:
        t = self.real
        if os.path.lexists(t) or not t.parent.is_dir():
            return
        olds = [e for e in t.parent.iterdir()
                if e.name.startswith(f".{t.name}{_OLD}") and e.is_dir() and read_manifest(e) is not None
                and not is_locked(e)]  # a live process between its two renames holds that lock
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
                raise RunDirError(f"another alignjax process is writing {_quoted(self.target)}; wait for it or pick "
                                  "another --out") from None
            raise
        self._locks.append(fd)

    def _clean_stale_siblings(self) -> None:
        """Under the target's lock: finish what a killed process left beside the target.

        A staging sibling whose lock can be taken belongs to a dead process: its recorded files
        and folders go. An old sibling (a killed commit, after the swap) has the user's files
        moved into the target first, then its recorded files go. A sibling without a manifest is
        left alone, except a staging sibling holding nothing but its lock file (killed between
        its ``mkdir`` and its first manifest write).
        """
        t = self.real
        for e in list(t.parent.iterdir()):
            stage, old = e.name.startswith(f".{t.name}{_STAGE}"), e.name.startswith(f".{t.name}{_OLD}")
            if not (stage or old) or e.is_symlink() or not e.is_dir():
                continue
            man = read_manifest(e)
            if man is None and not (stage and not _foreign(e)):
                continue  # a staging sibling killed before its manifest holds nothing but the lock file
            try:
                fd = os.open(e / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            try:
                if man is None:
                    _finish_removal(e, remove_dir=True)
                    continue
                if old:
                    if ownership(t) is not None:
                        continue  # the target is not a finished folder of ours: keep the old results
                    _move_foreign(e, t, man)
                _remove_recorded(e, man)
                _finish_removal(e, remove_dir=True, manifest=man)
            except OSError:
                pass
            finally:
                os.close(fd)

    def open(self) -> Path:
        """Lock and prepare the folder; returns where to write. Raises :class:`RunDirError`.

        The folder is registered as open from the start (under its mutex), so an interrupt
        arriving mid-way finds it and :meth:`abort` undoes what was done so far.
        """
        with self._mutex:
            with _REGISTRY_LOCK:
                _OPEN.append(self)
            try:
                return self._open()
            except BaseException:
                self._close()
                raise

    def _open(self) -> Path:
        self.check()
        t = self.real
        try:
            if not t.exists():
                missing, d = [], t
                while not d.exists():
                    missing.append(d)
                    d = d.parent
                for d in reversed(missing):
                    try:
                        d.mkdir()
                        self._made.append(d)
                    except FileExistsError:  # made by someone else meanwhile: not ours to remove
                        pass
            self._lock(t)
            self._clean_stale_siblings()
            used = bool(_foreign(t))
            if self.resume:
                self._manifest = read_manifest(t)
                if self._manifest is None or ownership(t) is not None:
                    raise RunDirError(f"--resume: {_quoted(self.target)} is not an alignjax results folder")
                self.path = t
                _remove_partial_checkpoints(t, self._manifest)
            elif used:  # overwrite of a folder of ours (checked above): stage beside it
                stage = t.parent / f".{t.name}{_STAGE}{uuid.uuid4().hex[:12]}"
                stage.mkdir()
                self.path, self.staging = stage, True
                self._lock(stage)
                self._manifest = _new_manifest()
            else:
                self.path = t
                self.created = True
                self._manifest = _new_manifest()
            self.run_id = self._manifest["run_id"]
            self._save_manifest()
        except RunDirError:
            self._undo_open()
            raise
        except OSError as e:
            self._undo_open()
            raise RunDirError(f"cannot write results folder {_quoted(self.target)}: {e.strerror or e}") from None
        return self.path

    def _undo_open(self) -> None:
        if self.staging and self.path is not None:
            _finish_removal(self.path, remove_dir=True)
        elif self.path is not None and not self.resume:
            _finish_removal(self.path, remove_dir=False)
        self._release()
        self._remove_made()

    def _save_manifest(self) -> None:
        """Write the manifest (atomically; never recorded in itself, never refused by the seal)."""
        write_atomic(self.path / MANIFEST_NAME, json.dumps(self._manifest, indent=1, sort_keys=True).encode(),
                     _force=True)

    def _rel(self, path) -> str:
        """``path`` as a manifest entry: relative to the open folder, links resolved, ``/``-separated."""
        return os.path.relpath(os.path.realpath(path), self.path).replace(os.sep, "/")

    def _record(self, path: Path, size: int, sha256: str) -> None:
        """Record a file this process wrote (called by :func:`write_atomic` under the registry lock)."""
        rel = self._rel(path)
        if not _safe_rel(rel) or self._manifest is None:
            return
        self._manifest["files"][rel] = {"size": int(size), "sha256": sha256}
        self._save_manifest()

    def record_tree(self, rel: str) -> None:
        """Record ``rel`` (e.g. ``"checkpoints"``) as a folder this library fills whole (orbax)."""
        if not _safe_rel(rel):
            raise ValueError(f"bad tree name {rel!r}")
        with _REGISTRY_LOCK:
            if self._manifest is not None and rel not in self._manifest["trees"]:
                self._manifest["trees"].append(rel)
                self._save_manifest()

    def has_checkpoint(self) -> bool:
        """Whether this run's folder holds a finished checkpoint or suite stage (so ``--resume``
        can continue it)."""
        folder = self.path or self.real or self.target
        ck, st = folder / "checkpoints", folder / "stages"
        try:
            return (ck.is_dir() and any(e.name.isdigit() for e in ck.iterdir())) or (
                st.is_dir() and any(e.suffix == ".npz" for e in st.iterdir()))
        except OSError:
            return False

    def commit(self) -> Path:
        """Finish: swap a staging folder into place, move the user's files from the old one into
        it, remove the old one's recorded files; unlock. Returns the target."""
        with self._mutex:
            if self._closed:
                return self.target
            if self.staging and self.path is not None:
                t = self.real
                old_man = read_manifest(t)
                if old_man is None or ownership(t) is not None:
                    raise RunDirError(f"{_quoted(self.target)} changed during the run and is no longer an alignjax "
                                      f"folder; the new results are in {_quoted(self.path)}")
                old = t.parent / f".{t.name}{_OLD}{uuid.uuid4().hex[:12]}"
                os.rename(t, old)
                try:
                    os.rename(self.path, t)
                except OSError:
                    os.rename(old, t)  # put the old results back; the new ones stay in staging
                    raise
                with _REGISTRY_LOCK:
                    self.path, self.staging = t, False
                self.committed = True  # the new results are in place: nothing below may remove them
                failed: list[str] = []
                try:
                    self.moved = _move_foreign(old, t, old_man, failed=failed)
                except OSError as err:
                    failed.append(f"{old.name} ({err.strerror or err})")
                if failed:  # keep the old folder whole: the user's files that did not move are in it
                    self.left_behind = (old, failed)
                else:
                    try:
                        _remove_recorded(old, old_man)
                        _finish_removal(old, remove_dir=True, manifest=old_man)
                    except OSError as err:
                        self.left_behind = (old, [f"the old results ({err.strerror or err})"])
            self.committed = True
            self._close()
        return self.target

    def abort(self, keep_checkpointed: bool = True, *, interrupted: bool = False) -> bool:
        """Undo what this run wrote after a failure; returns whether a resumable folder is kept.

        Writes into the folder stop first (:class:`RunDirClosed`). A staging folder's recorded
        files are removed (the old results stay). A fresh run's folder is kept when
        ``keep_checkpointed`` and it holds a checkpoint or stage; otherwise its recorded files
        and then the folders it made (only if empty) are removed. A resumed folder is kept. With
        ``interrupted``, a kept folder's last session is marked ``"interrupted"``.
        """
        with self._mutex:
            if self._closed or self.committed:
                if not self._closed:
                    self._close()
                return self._kept
            with _REGISTRY_LOCK:
                self._sealed = True
                inflight = set(self._inflight)
            kept = False
            if self.path is not None and self._manifest is not None:
                if self.staging:
                    _remove_recorded(self.path, self._manifest, inflight)
                    self._remove_subdirs()
                    _finish_removal(self.path, remove_dir=True, manifest=self._manifest)
                elif self.resume or (keep_checkpointed and self.has_checkpoint()):
                    kept = True
                    _remove_recorded(self.path, {"files": {}, "trees": []}, inflight)
                    if interrupted:
                        self._mark_interrupted()
                else:
                    _remove_recorded(self.path, self._manifest, inflight)
                    if any((self.path / t).exists() for t in self._manifest["trees"]):
                        time.sleep(0.2)  # an orbax save may still be finishing in another thread: once more
                        _remove_recorded(self.path, self._manifest, inflight)
                    self._remove_subdirs()
                    _finish_removal(self.path, remove_dir=False, manifest=self._manifest)
            self._kept = kept
            self._close()
            if not kept:
                self._remove_made()
            return kept

    def _remove_subdirs(self) -> None:
        """``rmdir`` the subfolders this run's writes made, innermost first, where empty (a write
        refused by the seal may have made one and written nothing into it)."""
        for d in reversed(self._subdirs):
            try:
                os.rmdir(d)
            except OSError:
                pass
        self._subdirs = []

    def _mark_interrupted(self) -> None:
        from alignjax.safe_read import read_json_or_none

        cfg = read_json_or_none(self.path / "config.json")
        sessions = cfg.get("sessions") if isinstance(cfg, dict) else None
        if not (isinstance(sessions, list) and sessions and isinstance(sessions[-1], dict)
                and sessions[-1].get("status") == "running"):
            return
        sessions[-1] = {**sessions[-1], "status": "interrupted",
                        "end": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            write_atomic(self.path / "config.json", (json.dumps(cfg, indent=2) + "\n").encode(), _force=True)
        except OSError:
            pass

    def _remove_made(self) -> None:
        """``rmdir`` the folders this run made, innermost first; stop at the first that is not empty
        (the innermost first loses our housekeeping files if nothing else is in it)."""
        for d in reversed(self._made):
            if d == self.real:
                _finish_removal(d, remove_dir=False)
            try:
                os.rmdir(d)
            except OSError:
                break
        self._made = []

    def _close(self) -> None:
        with _REGISTRY_LOCK:
            if self in _OPEN:
                _OPEN.remove(self)
        self._release()
        self._closed = True

    def _release(self) -> None:
        for fd in self._locks:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._locks = []


def is_locked(folder: str | os.PathLike) -> bool:
    """Whether a live process holds ``folder``'s lock (is writing it now); never creates the lock file."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def _remove_partial_checkpoints(folder: Path, manifest: dict) -> list[Path]:
    """Delete orbax temporaries (``*.orbax-checkpoint-tmp*``) that a killed save left behind,
    inside a ``checkpoints/`` tree that ``manifest`` lists as ours."""
    ck = folder / "checkpoints"
    gone = []
    if "checkpoints" in manifest.get("trees", []) and ck.is_dir() and not ck.is_symlink():
        for e in ck.iterdir():
            if ".orbax-checkpoint-tmp" in e.name:
                shutil.rmtree(e, ignore_errors=True) if e.is_dir() and not e.is_symlink() else e.unlink(missing_ok=True)
                gone.append(e)
    return gone
