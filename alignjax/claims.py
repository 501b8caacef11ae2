"""Claims as declared data, checked by the framework (the claims contract, v3).

A suite declares its claims at the top of its module, before any measurement code, as a
tuple of :class:`ClaimSpec`: what is claimed, where the paper says it, the paper's value and
a :class:`Check` (a metric, a comparison, a threshold and where the threshold comes from).
The suite only *measures*: for each claim it returns the metric for the **subject** and for
the **control** (a second run that could pass the same check: another method, a broken
variant, shuffled or exact labels, the reference policy through the same pipeline), each as a
:class:`Measurement`. The framework applies the same check to both (:func:`evaluate`).

**Uncertainty.** A metric that aggregates units (seeds, games, prompts) is reported with a 95%
bootstrap interval over the units (:func:`measure`); a metric with nothing to aggregate has
``low == high == value`` and ``units == 1`` (:func:`exact`). The verdict has three values:

* ``"holds"``: every point of ``[low, high]`` satisfies ``metric OP threshold``;
* ``"fails"``: every point violates it;
* ``"inconclusive"``: the interval straddles the threshold; ``units_to_resolve`` estimates how
  many units would shrink it past the threshold (the half-width falls as ``1/sqrt(units)``:
  ``units * (half_width / |value - threshold|)^2``).

Since each comparison is monotone in the metric, checking both ends decides the whole
interval. The verdict is recomputable from ``summary.json`` alone (:func:`recompute`).

**Extremes.** A claim "for every unit, x OP threshold" reads an extreme, ``max_i x_i`` or
``min_i x_i``. The percentile bootstrap is no interval for an extreme: a resample can only lower
a maximum (raise a minimum), so a unit that violates the check gives an interval that straddles
the threshold and an "inconclusive" where one counter-example has already refuted the claim.
Such metrics use :func:`every_unit`: the extreme over the measured units is exact
(``low == high == value``, ``units`` = the number of units), so the verdict is ``fails`` as soon
as one unit violates the check and ``holds`` when every measured unit satisfies it (for the
units measured: a universal claim is never proven by a sample). The bootstrap interval a v3
run reported before this rule is kept in the claim's ``history`` with its verdict.

**Discrimination.** When the subject holds and its control holds too, the check did not tell
them apart: the record says so (``control_holds_too``) and the tables print it, so a "holds" that
any run would have earned is not read as evidence.

**History.** A check changed after a run keeps the old one in ``ClaimSpec.history``
(:class:`CheckChange`: old check, why, the commit, whether it made the check easier); when
the old check reads the same metric, its verdict on this run's measurement is reported next
to the new one (otherwise the old run's verdict is on the suite's page).
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["Check", "CheckChange", "ClaimSpec", "Measurement", "measure", "exact", "every_unit", "verdict",
           "evaluate", "judge_old_check", "recompute", "declared", "OPS", "VERDICTS"]

OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                   ">=": operator.ge}
VERDICTS = ("holds", "fails", "inconclusive")


@dataclass(frozen=True)
class Check:
    """``metric OP threshold``, declared before the first run.

    Attributes:
      metric: the measured quantity's name (what :class:`Measurement` values are).
      op: one of ``"<"``, ``"<="``, ``">"``, ``">="``.
      threshold: a number.
      origin: where the threshold comes from: a paper place, or a derivation (``docs/...``).
    """

    metric: str
    op: str
    threshold: float
    origin: str

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"check on {self.metric!r}: op must be one of {sorted(OPS)}; got {self.op!r}")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise ValueError(f"check on {self.metric!r}: the threshold must be a finite number; got {self.threshold!r}")
        if not self.origin.strip():
            raise ValueError(f"check on {self.metric!r}: say where the threshold comes from (origin)")

    def passes(self, x: float) -> bool:
        """Whether the number ``x`` satisfies ``x OP threshold`` (NaN never does)."""
        return bool(OPS[self.op](float(x), float(self.threshold)))


@dataclass(frozen=True)
class CheckChange:
    """A check replaced after a run: the old one stays reported next to the new one."""

    old: Check
    why: str
    commit: str
    easier: bool


@dataclass(frozen=True)
class ClaimSpec:
    """One declared claim (everything but the measurement).

    Attributes:
      id: short stable identifier.
      statement: the claim in one sentence, as checked.
      source: paper + exact place (``"beyond the paper: ..."`` for a finding of ours).
      paper_value: what the paper reports there.
      setting: how our setting maps onto the paper's regime.
      check: the :class:`Check` applied to the subject and to the control.
      control: what the control runs, in one sentence (a run that could pass the check).
      history: earlier checks of this claim (:class:`CheckChange`), oldest first.
      covers: the registered entries (by name) whose numbers the subject and the control read, fixed
        when the claim is declared (a suite over "every registered method" declares today's built-in
        set). The verdict is about these alone: an entry registered later (a fork's) that the suite's
        selection would also read is measured and reported against the check separately
        (:func:`evaluate`'s ``beyond``), and cannot change the published verdict. Empty: the claim reads
        no registry.
    """

    id: str
    statement: str
    source: str
    paper_value: Any
    setting: str
    check: Check
    control: str
    history: tuple[CheckChange, ...] = ()
    covers: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """The declaration as plain JSON data (what ``alignjax list SUITE --claims --json`` prints)."""
        d = asdict(self)
        d["history"] = [{**asdict(h), "old": asdict(h.old)} for h in self.history]
        return d


@dataclass(frozen=True)
class Measurement:
    """A measured metric: its value and 95% interval over ``units`` (seeds, games, prompts).

    ``interval`` says what ``[low, high]`` is: ``"bootstrap"`` (:func:`measure`), ``"exact"``
    (:func:`exact`: nothing to aggregate) or ``"every unit"`` (:func:`every_unit`: an extreme over
    the units, exact). ``bootstrap`` holds, for an ``"every unit"`` measurement, the percentile
    bootstrap interval that the rule replaced (reported in the claim's history).
    """

    value: float
    low: float
    high: float
    units: int
    interval: str = "bootstrap"
    bootstrap: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        """``{"value", "low", "high", "units", "interval"}`` (floats, an int, a string)."""
        return {"value": float(self.value), "low": float(self.low), "high": float(self.high), "units": int(self.units),
                "interval": self.interval}


def exact(value: Any) -> Measurement:
    """A metric with nothing to aggregate: ``low == high == value``, one unit.

    ``value`` must be a number computed from a run (a 0-d array or a float); a bool or a
    non-scalar is refused.
    """
    v = np.asarray(value)
    if v.shape != () or v.dtype == np.bool_ or not np.issubdtype(v.dtype, np.number):
        raise TypeError(f"a measurement is one number; got {value!r}")
    x = float(v)
    return Measurement(x, x, x, 1, "exact")


def measure(per_unit: Any, statistic: Callable[[np.ndarray], float] = np.mean, *, seed: int = 0,
            resamples: int = 2000, level: float = 0.95) -> Measurement:
    """``statistic`` over units with a percentile bootstrap interval.

    ``per_unit`` has the units on its leading axis (one number per seed, game or prompt, or a
    row of numbers per unit that ``statistic`` reduces). The value is ``statistic(per_unit)``;
    the interval is the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of ``statistic`` over
    ``resamples`` resamples of the units with replacement (``numpy.random.default_rng(seed)``,
    so the interval is reproducible). One unit gives ``low == high == value``.
    """
    x = np.asarray(per_unit, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] < 1:
        raise ValueError("measure: per_unit needs a leading axis of at least one unit")
    n = x.shape[0]
    value = float(statistic(x))
    if n == 1:
        return Measurement(value, value, value, 1)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    stats = np.array([statistic(x[i]) for i in idx], dtype=np.float64)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return Measurement(value, float(min(lo, value)), float(max(hi, value)), n)


def every_unit(per_unit: Any, statistic: Callable[[np.ndarray], float], *, seed: int = 0) -> Measurement:
    """An extreme over units, exact: ``low == high == value = statistic(per_unit)``.

    ``statistic`` is a maximum or a minimum over the units (possibly of a per-unit reduction):
    ``max_i f(x_i)`` or ``min_i f(x_i)``. Its value over the measured units is known exactly, so
    a check on it is decided by the units themselves: one unit that violates ``x OP threshold``
    makes the claim fail (a counter-example), and when all satisfy it the claim holds for the
    units measured (see the module docstring, "Extremes"). ``units`` counts the units; the
    percentile bootstrap interval of the same statistic (what :func:`measure` would report) is
    kept in ``bootstrap`` for the claim's history.
    """
    boot = measure(per_unit, statistic, seed=seed)
    return Measurement(boot.value, boot.value, boot.value, boot.units, "every unit", (boot.low, boot.high))


def verdict(check: Check, m: Measurement) -> tuple[str, int | None]:
    """``(verdict, units_to_resolve)`` of ``check`` on ``m`` (see the module docstring).

    ``units_to_resolve`` is None unless the verdict is ``"inconclusive"``; then it is
    ``ceil(units * (half_width / |value - threshold|)^2)`` (or None when the value sits on
    the threshold: no number of units resolves it).
    """
    lo, hi = check.passes(m.low), check.passes(m.high)
    if lo and hi:
        return "holds", None
    if not lo and not hi and not (m.low < check.threshold < m.high):
        return "fails", None
    gap = abs(m.value - check.threshold)
    half = (m.high - m.low) / 2
    need = None if gap == 0 or not math.isfinite(half) else int(math.ceil(m.units * (half / gap) ** 2))
    return "inconclusive", need


def evaluate(spec: ClaimSpec, subject: Measurement, control: Measurement, *, measured: Any = None,
             note: str = "", beyond: Mapping[str, Measurement] | None = None,
             beyond_control: Mapping[str, Measurement] | None = None) -> dict:
    """The ``summary.json`` record of one claim: the declaration, both measurements, both verdicts.

    Raises ``TypeError`` when the control is the subject's own measurement object. ``measured``
    holds any further numbers worth reporting (per-config tables); ``note`` says how the number
    was measured or why the claim fails. ``beyond`` (``beyond_control``): ``{name: Measurement}`` of
    registered entries outside ``spec.covers`` that the subject's (control's) selection would read,
    each measured as the subject (control) alone; recorded with the check's verdict on each in the list
    ``"beyond_declared"`` (``{"entry", "role": "subject"|"control", ...measurement, "verdict"}``), never in
    the claim's verdict.
    """
    if not isinstance(subject, Measurement) or not isinstance(control, Measurement):
        raise TypeError(f"claim {spec.id!r}: subject and control must be Measurements (claims.measure/exact)")
    if subject is control:
        raise TypeError(f"claim {spec.id!r}: the control must be its own run, not the subject's measurement")
    v, need = verdict(spec.check, subject)
    cv, cneed = verdict(spec.check, control)
    from alignjax.results import to_jsonable

    rec = {"id": spec.id, "statement": spec.statement, "source": spec.source, "setting": spec.setting,
           "paper_value": to_jsonable(spec.paper_value), "note": note,
           "check": asdict(spec.check), "subject": subject.as_dict(),
           "control": {"statement": spec.control, **control.as_dict(), "verdict": cv},
            "verdict": v, "holds": v == "holds", "control_holds_too": v == cv == "holds",
            "measured": to_jsonable(measured)}
    if spec.covers:
        rec["covers"] = list(spec.covers)
    extra = [{"entry": n, "role": role, **m.as_dict(), "verdict": verdict(spec.check, m)[0]}
             for role, ms in (("subject", beyond), ("control", beyond_control)) for n, m in (ms or {}).items()]
    if extra:
        rec["beyond_declared"] = extra
    if need is not None:
        rec["units_to_resolve"] = need
    if cneed is not None:
        rec["control"]["units_to_resolve"] = cneed
    history = [{"old_check": asdict(h.old), "why": h.why, "commit": h.commit, "easier": h.easier,
                "old_verdict": _old_verdict(h, spec.check, subject)} for h in spec.history]
    if subject.interval == "every unit" and subject.bootstrap is not None:
        history.append(_bootstrap_history(spec.check, subject))
    if history:
        rec["history"] = history
    return rec


EVERY_UNIT_WHY = ("statistic, not check: the 95% percentile bootstrap interval of a max or min over units "
                  "replaced by the extreme over the measured units, exact (claims.every_unit): resampling can only "
                  "lower a max or raise a min, so a violating unit read as 'inconclusive' where one counter-example "
                  "refutes a claim about every unit. Harder or equal: a violating extreme now fails.")


def _bootstrap_history(check: Check, subject: Measurement) -> dict:
    """The history record of the bootstrap-of-an-extreme rule: the old interval and its verdict."""
    lo, hi = subject.bootstrap
    old = Measurement(subject.value, lo, hi, subject.units)
    return {"old_check": asdict(check), "why": EVERY_UNIT_WHY, "commit": "claims.every_unit (2026-12-07)",
            "easier": False, "old_verdict": verdict(check, old)[0],
            "old_subject": {**old.as_dict(), "interval": "bootstrap"}}


def _old_verdict(change: CheckChange, new: Check, subject: Measurement) -> str:
    """The old check's verdict on this run's measurement, when it reads the same metric; otherwise
    the old verdict belongs to the old run (its suite page reports it)."""
    if change.old.metric != new.metric:
        return "not comparable: the old check read another metric (see the suite's page for its verdict)"
    return verdict(change.old, subject)[0]


def judge_old_check(record: dict, old: Measurement, index: int = 0) -> dict:
    """Give ``record``'s history entry ``index`` the old check's verdict on the old check's *own* metric.

    :func:`evaluate` can judge an old check only on the new subject, which is right when the metric
    is unchanged; when the old check read another statistic ``m_old`` of the same run, the suite
    measures it (``old``) and this records ``verdict(old_check, old)`` (same rule: holds when
    ``low`` and ``high`` both satisfy ``m_old OP t_old``) and the measurement, so the old verdict is
    printed beside the new one instead of "not comparable". Returns ``record``.
    """
    h = record["history"][index]
    c = h["old_check"]
    h["old_subject"] = old.as_dict()
    h["old_verdict"] = verdict(Check(c["metric"], c["op"], c["threshold"], c["origin"]), old)[0]
    return record


def recompute(record: dict) -> tuple[str, str]:
    """``(subject verdict, control verdict)`` recomputed from a ``summary.json`` claim record alone."""
    c = record["check"]
    check = Check(c["metric"], c["op"], c["threshold"], c["origin"])

    def m(d):
        return Measurement(d["value"], d["low"], d["high"], d["units"], d.get("interval", "bootstrap"))

    return verdict(check, m(record["subject"]))[0], verdict(check, m(record["control"]))[0]


def declared(specs: Iterable[ClaimSpec]) -> tuple[ClaimSpec, ...]:
    """A suite's declaration, checked: unique ids, and each a :class:`ClaimSpec` with a control."""
    specs = tuple(specs)
    ids = [s.id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"claim ids declared twice: {dup}")
    for s in specs:
        if not isinstance(s, ClaimSpec):
            raise TypeError(f"a declared claim must be a ClaimSpec; got {type(s).__name__}")
        if not s.control.strip():
            raise ValueError(f"claim {s.id!r}: declare its control (a run that could pass the check)")
        if isinstance(s.covers, str) or not all(isinstance(n, str) for n in s.covers):
            raise TypeError(f"claim {s.id!r}: covers must be a tuple of entry names; got {s.covers!r}")
    return specs


def by_id(specs: Sequence[ClaimSpec], id: str) -> ClaimSpec:
    """The declared claim ``id`` (``KeyError`` naming the declared ids)."""
    for s in specs:
        if s.id == id:
            return s
    raise KeyError(f"no claim {id!r} declared; declared: {[s.id for s in specs]}")
