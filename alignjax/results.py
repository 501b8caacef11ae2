"""Results folders, atomic writes, tidy tables and the ``summary.json`` reproduction contract.

A results folder holds: ``config.json`` (the resolved configuration, the ``"alignjax"``
provenance block of :mod:`alignjax.provenance` and the ``"sessions"`` that wrote it),
``results.zarr`` (every metric as a labelled array, streamed: :mod:`alignjax.store`), for small
tables or on request ``metrics.csv`` (one row per config x seed x logged step) and
``arrays.npz`` (every metric with named axes and the hyperparameters of each config), plots
(``*.png``) and ``summary.json``::

    {"suite" | "experiment": str, "config": {...}, "status": "finished" | "nonfinite",
     "runtime_s": float, "alignjax": {...}, "sessions": [...],
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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "Claim", "claim", "control", "scale_name", "SuiteContext", "atomic_write_bytes", "atomic_write_text", "write_json",
    "write_csv", "to_jsonable", "format_claims", "summary_dict", "claim_counts", "claim_verdict", "write_arrays", "first_nonfinite",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + ``os.replace`` (atomic on POSIX).

    The file gets mode ``0666 & ~umask``, as a plain ``open(path, "wb")`` would. Inside a
    results folder this process has open, the file is recorded in the folder's manifest, which
    is what lets alignjax remove or replace it later (:func:`alignjax.rundir.write_atomic`).
    """
    from alignjax.rundir import write_atomic

    write_atomic(path, data)


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


def write_arrays(path: str | os.PathLike, result) -> None:
    """Write a :class:`~alignjax.sweep.SweepResult` as ``.npz`` with named axes.

    Keys: ``steps (T,)``; one array per metric ``(configs, seeds, T, ...)``; ``axes`` (the swept
    names, slowest first); ``hparam.NAME (configs,)`` the value of every hyperparameter per
    config; ``dims.METRIC`` the axis names of each metric (``config, seed, step`` then
    ``dim3, ...`` for vector metrics).
    """
    arrays: dict[str, np.ndarray] = {"steps": np.asarray(result.steps), "axes": np.array(result.grid.axes, dtype=str)}
    for k, v in result.grid.hparams.items():
        arrays[f"hparam.{k}"] = np.asarray(v)
    for k, v in result.metrics.items():
        arrays[k] = np.asarray(v)
        arrays[f"dims.{k}"] = np.array(["config", "seed", "step", *[f"dim{i}" for i in range(3, np.ndim(v))]])
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def first_nonfinite(result) -> dict | None:
    """The earliest non-finite metric value of a sweep, or None if every value is finite.

    Returns ``{"metric", "config", "seed", "step", "value", "hparams"}`` for the smallest
    logged step at which any metric is NaN or infinite (ties: metric order, then config, seed).
    """
    best = None
    for name, v in result.metrics.items():
        v = np.asarray(v)
        bad = (~np.isfinite(v)).reshape(*v.shape[:3], -1).any(axis=-1)  # (configs, seeds, T)
        if not bad.any():
            continue
        idx = np.argwhere(bad)  # (c, s, t) rows in lexicographic order
        c, s, t = (int(i) for i in idx[idx[:, 2] == idx[:, 2].min()][0])
        if best is None or t < best[0]:
            cell = np.asarray(v[c, s, t])
            value = cell[~np.isfinite(cell)].ravel()[0]
            best = (t, {"metric": name, "config": c, "seed": s, "step": int(result.steps[t]), "value": str(value),
                        "hparams": {k: float(h[c]) for k, h in result.grid.hparams.items()}})
    return None if best is None else best[1]


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
      setting: how our setting maps onto the paper's regime (sizes, budgets, the dimensionless
        quantity that matters), and what we changed where the toy cannot reach it.
      control: the negative control, ``{"statement", "measured", "holds"}``: the same check
        applied to something that must fail it (a method the paper says behaves differently, a
        broken variant, the reference policy); ``holds`` is False when the check works.
        ``None`` for a claim without one (see :func:`control`).
    """

    id: str
    statement: str
    source: str
    paper_value: Any
    measured: Any
    holds: bool
    note: str = ""
    setting: str = ""
    control: dict | None = None


def _computed_bool(what: str, holds: Any) -> bool:
    h = np.asarray(holds)
    if h.shape != () or h.dtype != np.bool_:
        raise TypeError(f"{what}: holds must be a boolean scalar computed from measurements, got {holds!r}")
    return bool(h)


def scale_name(scale: Any) -> str:
    """A suite's scale as ``"full"``, ``"quick"`` or ``"smoke"``: a name, or a bool (True = quick, False =
    full, as the CLI's ``--quick``); ``ValueError`` for anything else."""
    if isinstance(scale, (bool, np.bool_)):
        scale = "quick" if scale else "full"
    if scale not in ("full", "quick", "smoke"):
        raise ValueError(f"scale must be 'full', 'quick' or 'smoke'; got {scale!r}")
    return scale


def control(statement: str, measured: Any, holds: Any) -> dict:
    """A claim's negative control: the claim's check applied to something that must fail it.

    ``holds`` is the check's verdict on that case (a boolean computed from ``measured``); a
    working check gives ``False``.
    """
    return {"statement": statement, "measured": to_jsonable(measured), "holds": _computed_bool("control", holds)}


def claim(id: str, statement: str, source: str, paper_value: Any, measured: Any, holds: Any,
          note: str = "", *, setting: str = "", control: dict | None = None) -> Claim:
    """Build a :class:`Claim`; ``holds`` must be a boolean expression over measured numbers.

    ``control`` (from :func:`control`) is the negative control; ``setting`` maps our setting
    onto the paper's regime.
    """
    if control is not None and set(control) != {"statement", "measured", "holds"}:
        raise ValueError(f"claim {id!r}: control must be built by results.control(statement, measured, holds)")
    return Claim(id, statement, source, to_jsonable(paper_value), to_jsonable(measured),
                 _computed_bool(f"claim {id!r}", holds), note, setting, control)


@dataclass
class SuiteContext:
    """What a reproduction suite receives: where to write and how big to run.

    A suite is ``run(ctx) -> list[Claim]``; it records its resolved settings in
    ``ctx.config`` and writes tables/plots with the helpers below (all atomic). The CLI
    times it and writes ``summary.json``.

    How big: :attr:`scale` is ``"full"`` (``quick=False``), ``"quick"`` (the CLI's
    ``--quick``) or ``"smoke"`` (``smoke=True``): the quick setting shrunk (fewer seeds, steps
    and sizes) so that the whole suite, every stage, table, plot and claim, runs in seconds.
    Smoke is for tests only: it checks that the suite runs end to end, not that its
    budget-dependent claims hold. A smoke context is a quick one (``quick`` stays True), so a
    suite that ignores ``smoke`` runs its quick setting.

    Stages: a suite made of several computations (an SFT run, pair generation, a sweep of
    trainings, an evaluation) wraps each in :meth:`stage`, which saves what the stage returns
    in ``stages/NAME.npz``. With ``resume=True`` (``alignjax reproduce --resume``) a finished
    stage is read back instead of recomputed, so a killed reproduction continues where it
    stopped and ends with the same numbers.

    ``writes=False`` (the processes other than 0 of a multi-process reproduction) computes
    everything and writes nothing: stages are converted as if read back, tables, JSON and
    figures are dropped.
    """

    out_dir: Path
    quick: bool = True
    config: dict = field(default_factory=dict)
    progress: bool = True
    smoke: bool = False
    resume: bool = False
    writes: bool = True
    stage_seconds: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.smoke and not self.quick:
            raise ValueError("SuiteContext: smoke=True shrinks the quick setting; it needs quick=True")

    @property
    def scale(self) -> str:
        """``"smoke"``, ``"quick"`` or ``"full"`` (see the class docstring)."""
        return "smoke" if self.smoke else "quick" if self.quick else "full"

    def stage(self, name: str, compute: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        """Run (or, when resuming, read back) one stage of the suite.

        ``compute()`` returns a (nested) mapping of arrays and numbers; it is saved to
        ``stages/NAME.npz`` (atomic) and returned *as read back* (``numpy`` arrays, nested
        dicts), in a fresh run too, so later stages see exactly the same values whether this
        stage was computed now or in a killed session. With ``resume=True`` and a saved
        ``stages/NAME.npz``, ``compute`` is not called. The wall seconds of every stage computed
        in this session are kept in :attr:`stage_seconds` (``{name: seconds}``; the session record
        of ``summary.json`` holds them), so a slow suite says where its time goes.
        """
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad stage name {name!r}")
        path = self.path("stages") / f"{name}.npz"
        if not self.writes:
            return _unflatten_stage({k: np.array(v) for k, v in _flatten_stage(self._timed(name, compute), name).items()})
        if not (self.resume and path.is_file()):
            flat = _flatten_stage(self._timed(name, compute), name)
            buf = io.BytesIO()
            np.savez(buf, **flat)
            atomic_write_bytes(path, buf.getvalue())
        with np.load(path, allow_pickle=False) as z:
            return _unflatten_stage({k: z[k] for k in z.files})

    def _timed(self, name: str, compute: Callable[[], Mapping[str, Any]]) -> Mapping[str, Any]:
        t0 = time.perf_counter()
        out = compute()
        self.stage_seconds[name] = round(time.perf_counter() - t0, 3)
        return out

    def path(self, name: str) -> Path:
        """A path inside the suite's folder."""
        return self.out_dir / name

    def write_csv(self, name: str, rows) -> Path:
        """Write a table (see :func:`write_csv`) as ``name`` in the folder."""
        if self.writes:
            write_csv(self.path(name), rows)
        return self.path(name)

    def write_json(self, name: str, obj) -> Path:
        """Write JSON as ``name`` in the folder."""
        if self.writes:
            write_json(self.path(name), obj)
        return self.path(name)

    def savefig(self, fig, name: str) -> Path:
        """Save a matplotlib figure as PNG ``name`` (atomic) and close it."""
        import matplotlib.pyplot as plt

        if not self.writes:
            plt.close(fig)
            return self.path(name)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(self.path(name), buf.getvalue())
        return self.path(name)


def _flatten_stage(tree: Any, where: str, prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a": {"b": x}}`` -> ``{"a/b": np.asarray(x)}``; only mappings, arrays and numbers."""
    if not isinstance(tree, Mapping):
        raise TypeError(f"stage {where!r} must return a mapping of arrays; got {type(tree).__name__}")
    flat: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        if not isinstance(k, str) or not k or "/" in k:
            raise ValueError(f"stage {where!r}: keys must be non-empty strings without '/'; got {k!r}")
        if isinstance(v, Mapping):
            flat.update(_flatten_stage(v, where, f"{prefix}{k}/"))
            if not v:
                flat[f"{prefix}{k}/"] = np.zeros(0)  # keep an empty mapping
        else:
            a = np.asarray(v)
            if a.dtype == object:
                raise TypeError(f"stage {where!r}: {prefix}{k} is not an array of numbers")
            flat[prefix + k] = a
    return flat


def _unflatten_stage(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        *parents, leaf = key.split("/")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        if leaf:
            d[leaf] = v
    return out


def summary_dict(suite: str, config: Mapping[str, Any], runtime_s: float, claims: Iterable[Claim | Mapping],
                 **extra: Any) -> dict:
    """The ``summary.json`` object of a suite; ``extra`` (provenance, sessions, ...) is added.

    ``claims`` holds :class:`Claim` objects (contract v2) or the records of
    :func:`alignjax.claims.evaluate` (contract v3: declared check, subject and control with
    intervals, a three-valued verdict); ``"counts"`` gives how many claims hold, fail or are
    inconclusive.
    """
    records = [to_jsonable(c if isinstance(c, Mapping) else asdict(c)) for c in claims]
    return {"suite": suite, "config": to_jsonable(config), "runtime_s": round(float(runtime_s), 3),
            **to_jsonable(extra), "counts": claim_counts(records), "claims": records}


def claim_verdict(record: Mapping) -> str:
    """A claim record's verdict: its ``"verdict"`` (v3), else ``"holds"``/``"fails"`` from ``holds``."""
    return record.get("verdict") or ("holds" if record.get("holds") else "fails")


def claim_counts(records: Iterable[Mapping]) -> dict[str, int]:
    """``{"holds": h, "fails": f, "inconclusive": i}`` over claim records."""
    out = {"holds": 0, "fails": 0, "inconclusive": 0}
    for r in records:
        out[claim_verdict(r)] += 1
    return out


def _short(v: Any, width: int = 28) -> str:
    s = json.dumps(to_jsonable(v)) if not isinstance(v, str) else v
    return s if len(s) <= width else s[: width - 1] + "…"


def _interval(m: Mapping) -> str:
    """``value [low, high] (n=units)``, or ``value (n=units, every unit)`` for an extreme over units."""
    v, lo, hi = (float(m[k]) for k in ("value", "low", "high"))
    n = int(m.get("units", 1))
    if n == 1:
        return f"{v:.3g}"
    if lo == hi:
        return f"{v:.3g} (n={n}, every unit)" if m.get("interval") == "every unit" else f"{v:.3g} (n={n})"
    return f"{v:.3g} [{lo:.3g}, {hi:.3g}] (n={n})"


def format_claims(summaries: Iterable[Mapping[str, Any]]) -> str:
    """A plain-text table of every claim of the given summaries, then the verdict counts.

    Contract v3 records: one row with the verdict, the comparison (``op threshold``), the subject
    and the control (value, 95% interval and units; ``every unit`` for an extreme over units) and
    the control's verdict, nothing truncated; under it, indented, the check in full
    (``metric op threshold``). Contract v2 records show the paper's value and the measurement;
    their control column says ``fails`` (the negative control fails the check, as it must),
    ``PASSES`` (it does not: the check cannot tell) or ``-`` (no control).
    """
    lines = [f"{'suite':<18} {'claim':<40} {'verdict':<12} {'check':<12} {'subject':<34} control"]
    lines.append("-" * len(lines[0]))
    counts: dict[str, dict[str, int]] = {}
    for s in summaries:
        counts[s["suite"]] = claim_counts(s["claims"])
        for c in s["claims"]:
            if "check" in c:
                ck = c["check"]
                cmp_ = f"{ck['op']} {ck['threshold']:g}"
                control = f"{_interval(c['control'])}: {c['control']['verdict']}"
                if c["verdict"] == c["control"]["verdict"] == "holds":
                    control += " (too: the check does not tell them apart)"
                lines.append(f"{s['suite']:<18} {c['id']:<40} {claim_verdict(c):<12} {cmp_:<12} "
                             f"{_interval(c['subject']):<34} {control}")
                lines.append(f"{'':<18}   check: {ck['metric']} {cmp_}")
            else:  # contract v2
                ctrl = c.get("control")
                check = _short(f"(v2) paper: {_short(c['paper_value'], 200)}", 12)
                control = "-" if not ctrl else "fails" if not ctrl["holds"] else "PASSES"
                lines.append(f"{s['suite']:<18} {c['id']:<40} {claim_verdict(c):<12} {check:<12} "
                             f"{_short(c['measured'], 26):<34} {control}")
    lines.append("")
    for s in summaries:
        n = counts[s["suite"]]
        both = sum(1 for c in s["claims"] if "check" in c and c["verdict"] == c["control"]["verdict"] == "holds")
        extra = f" ({both} of the holds with a control that holds too)" if both else ""
        lines.append(f"{s['suite']:<18} holds {n['holds']}, fails {n['fails']}, inconclusive {n['inconclusive']}{extra}")
    return "\n".join(lines)


Callback = Callable[..., Any]
