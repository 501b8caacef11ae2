"""Results folders, atomic writes, tidy tables and the ``summary.json`` reproduction contract.

A results folder holds: ``config.json`` (the resolved configuration), ``metrics.csv`` (one
row per config x seed x logged step), plots (``*.png``) and ``summary.json``::

    {"suite": str, "config": {...}, "runtime_s": float,
     "claims": [{"id", "statement", "source", "paper_value", "measured", "holds", "note"}]}

``holds`` is always computed by the suite's code from measured numbers (see :func:`claim`).
Every write goes to a temporary file in the same folder and is renamed into place, so a
killed process never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "Claim", "claim", "SuiteContext", "atomic_write_bytes", "atomic_write_text", "write_json",
    "write_csv", "prepare_out_dir", "to_jsonable", "format_claims",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + ``os.replace`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/jax scalars and arrays, tuples and Paths to JSON-friendly values.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON).
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    if hasattr(obj, "__array__"):
        a = np.asarray(obj)
        return to_jsonable(a.item() if a.ndim == 0 else a.tolist())
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` (via :func:`to_jsonable`) as indented JSON."""
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> None:
    """Atomically write a table: a list of row dicts or a dict of equal-length columns."""
    if isinstance(rows, Mapping):
        cols = list(rows)
        n = len(next(iter(rows.values()))) if rows else 0
        rows = [{c: rows[c][i] for c in cols} for i in range(n)]
    else:
        cols = []
        for r in rows:
            cols.extend(k for k in r if k not in cols)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: to_jsonable(v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def prepare_out_dir(path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Validate a results folder before any compute and return it as a ``Path``.

    * missing, or an empty folder: fine (created);
    * exists with content and neither flag: ``FileExistsError`` (nothing is touched);
    * ``resume``: kept as is (the runner restores from its checkpoints);
    * ``overwrite``: its content is removed.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise FileExistsError(f"results path {p} exists and is not a folder")
    if p.exists() and any(p.iterdir()):
        if resume:
            return p
        if not overwrite:
            raise FileExistsError(f"results folder {p} already exists; pass --overwrite to replace it or --resume to continue it")
        shutil.rmtree(p)
    p.mkdir(parents=True, exist_ok=True)
    return p


@dataclass(frozen=True)
class Claim:
    """One checked statement of a reproduction suite (one row of ``summary.json``'s claims).

    Attributes:
      id: short stable identifier, e.g. ``"egpo-linear-rate"``.
      statement: the claim in one sentence, as we test it.
      source: paper + location, e.g. ``"Zhou et al. 2025 (arXiv 2502.xxxx), Fig. 1"``.
      paper_value: what the paper reports (number, range or short text).
      measured: what we measured (numbers; computed, never typed in).
      holds: whether the measured value supports the claim (computed by code).
      note: the reason when it does not hold, or how the number was measured.
    """

    id: str
    statement: str
    source: str
    paper_value: Any
    measured: Any
    holds: bool
    note: str = ""


def claim(id: str, statement: str, source: str, paper_value: Any, measured: Any, holds: Any,
          note: str = "") -> Claim:
    """Build a :class:`Claim`; ``holds`` must be a boolean expression over measured numbers."""
    h = np.asarray(holds)
    if h.shape != () or h.dtype != np.bool_:
        raise TypeError(f"claim {id!r}: holds must be a boolean scalar computed from measurements, got {holds!r}")
    return Claim(id, statement, source, to_jsonable(paper_value), to_jsonable(measured), bool(h), note)


@dataclass
class SuiteContext:
    """What a reproduction suite receives: where to write and how big to run.

    A suite is ``run(ctx) -> list[Claim]``; it records its resolved settings in
    ``ctx.config`` and writes tables/plots with the helpers below (all atomic). The CLI
    times it and writes ``summary.json``.
    """

    out_dir: Path
    quick: bool = True
    config: dict = field(default_factory=dict)
    progress: bool = True

    def path(self, name: str) -> Path:
        """A path inside the suite's folder."""
        return self.out_dir / name

    def write_csv(self, name: str, rows) -> Path:
        """Write a table (see :func:`write_csv`) as ``name`` in the folder."""
        write_csv(self.path(name), rows)
        return self.path(name)

    def write_json(self, name: str, obj) -> Path:
        """Write JSON as ``name`` in the folder."""
        write_json(self.path(name), obj)
        return self.path(name)

    def savefig(self, fig, name: str) -> Path:
        """Save a matplotlib figure as PNG ``name`` (atomic) and close it."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(self.path(name), buf.getvalue())
        return self.path(name)


def summary_dict(suite: str, config: Mapping[str, Any], runtime_s: float, claims: Iterable[Claim]) -> dict:
    """The ``summary.json`` object."""
    return {"suite": suite, "config": to_jsonable(config), "runtime_s": round(float(runtime_s), 3),
            "claims": [to_jsonable(asdict(c)) for c in claims]}


def _short(v: Any, width: int = 28) -> str:
    s = json.dumps(to_jsonable(v)) if not isinstance(v, str) else v
    return s if len(s) <= width else s[: width - 1] + "…"


def format_claims(summaries: Iterable[Mapping[str, Any]]) -> str:
    """A plain-text table of every claim of the given summaries."""
    lines = [f"{'suite':<18} {'claim':<34} {'holds':<6} {'paper':<28} {'measured':<28}"]
    lines.append("-" * len(lines[0]))
    for s in summaries:
        for c in s["claims"]:
            lines.append(f"{s['suite']:<18} {c['id']:<34} {('yes' if c['holds'] else 'NO'):<6} "
                         f"{_short(c['paper_value']):<28} {_short(c['measured']):<28}")
    return "\n".join(lines)


Callback = Callable[..., Any]
