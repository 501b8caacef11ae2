"""Declared domains of continuous hyperparameters, their checks and their probe points.

A registry entry (:mod:`alignjax.registry`) declares, for each continuous hyperparameter, either a
plain default or a :class:`Domain`: the set ``D = {x : lower <(=) x <(=) upper}`` of values the
entry's math accepts, with its default ``x_0 in D``. Optionally it declares cross-hyperparameter
:class:`Condition` objects, ``q(hp) in [lo, hi]`` for a derived quantity ``q`` (e.g. ``eta * beta <= 1``).
Three things use them:

* the command line and :meth:`alignjax.experiment.Experiment.check` refuse, before any compute, a
  value outside the domain with one line naming the entry, the hyperparameter, the value and the
  domain (:func:`check_values`): ``cdpo needs eps in [0, 0.5); got cdpo.eps = 0.7``;
* the registry-wide tests evaluate every loss and exact dynamic at the domain's **probe points**
  (:func:`probe_points`): its corners and a few interior points, one hyperparameter at a time and
  at the joint corners;
* listings show them (``alignjax list EXPERIMENT``).

Probe points of one domain (:meth:`Domain.probes`), on the closure of ``D`` cut to a finite box:

* **corners** ``(a, b)``: a closed finite end exactly; an open finite end *just inside*,
  ``x +- INSIDE * max(1, |x|)`` with ``INSIDE = 1e-6`` (or ``probe_lower``/``probe_upper`` when
  declared); an infinite end at its declared finite **probe limit** ``probe_lower``/``probe_upper``
  (default ``-+ 100 max(1, |x_0|)``);
* **interior**: ``n`` points strictly between the corners, evenly spaced, geometrically when
  ``log=True`` (then ``a > 0``, or ``a = 0`` closed, when the geometric spacing starts at the
  smallest positive probe ``probe_lower``, default ``1e-3 min(x_0, 1)``, itself probed);
* the default ``x_0``.

**A plain float** ``x_0`` declares a default only. Its domain is inferred conservatively as the
registry behaved before domains existed (:meth:`Domain.from_default`): it *accepts* every finite
value (the command line refused nothing else), and it is *probed* on ``[min(0, x_0), max(0, x_0)]``
(the registry tests probed extra hyperparameters between 0 and their default). Declare a
:class:`Domain` to state more.

Everything here is plain numpy on concrete values (one value per configuration of a sweep), for
use before compute; nothing is traced. This module imports no alignjax module (the foundation floor).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["Domain", "Condition", "INSIDE", "check_values", "probe_points", "describe_point"]

INSIDE = 1e-6
"""Relative step by which an open end's probe corner lies inside the domain: ``x +- INSIDE max(1, |x|)``."""

_PROBE_SPAN = 100.0  # default probe limit of an infinite end: -+ 100 max(1, |default|)


def _num(x: float) -> str:
    """A bound or value for a message: ``0.5``, ``1e-06``, ``inf``."""
    return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{float(x):g}"


def _interval(lower: float, upper: float, lower_open: bool, upper_open: bool) -> str:
    """``[a, b)``-style text of an interval (an infinite end always reads open)."""
    left = "(" if lower_open or lower == -math.inf else "["
    right = ")" if upper_open or upper == math.inf else "]"
    return f"{left}{_num(lower)}, {_num(upper)}{right}"


def _requirement(lower: float, upper: float, lower_open: bool, upper_open: bool) -> str:
    """What membership means, as a message says it: ``> 0``, ``>= 0``, ``<= 1``, ``in [0, 0.5)``, ``finite``."""
    lo_inf, hi_inf = lower == -math.inf, upper == math.inf
    if lo_inf and hi_inf:
        return "finite"
    if hi_inf:
        return f"{'>' if lower_open else '>='} {_num(lower)}"
    if lo_inf:
        return f"{'<' if upper_open else '<='} {_num(upper)}"
    return f"in {_interval(lower, upper, lower_open, upper_open)}"


def _inside(lower, upper, lower_open, upper_open, x, slack=0.0):
    """Elementwise ``x in interval`` (``False`` for NaN; ``slack`` widens both finite ends)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x)
        ok &= (x > lower - slack) if lower_open else (x >= lower - slack)
        ok &= (x < upper + slack) if upper_open else (x <= upper + slack)
    return ok


@dataclass(frozen=True)
class Domain:
    """The declared domain of one continuous hyperparameter (see the module docstring).

    ``D = {x finite : lower <(=) x <(=) upper}`` (``<`` at an open end), with ``default in D``.

    Attributes:
      default: ``x_0``, the registered default.
      lower, upper: the bounds (``-inf``/``inf`` for none; an infinite end is open).
      lower_open, upper_open: whether a finite end is excluded (``eps < 1/2``: ``upper_open=True``).
      log: whether the interior probe points are spaced geometrically (scales such as ``beta``,
        ``eta``, learning rates); needs ``lower >= 0``.
      probe_lower, probe_upper: finite probe limits: the corner probed in place of an infinite (or,
        if given, an open) end; on a log scale with a closed lower end at 0, ``probe_lower`` is the
        smallest positive point probed (where the geometric spacing starts).
      why: the reason for the domain, from the entry's math (shown in refusals).
      inferred: set by :meth:`from_default` (a plain-float declaration), not by hand.
    """

    default: float
    lower: float = -math.inf
    upper: float = math.inf
    lower_open: bool = False
    upper_open: bool = False
    log: bool = False
    probe_lower: float | None = None
    probe_upper: float | None = None
    why: str = ""
    inferred: bool = False

    def __post_init__(self):
        for k in ("default", "lower", "upper"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or math.isnan(v):
                raise TypeError(f"Domain {k} must be a number; got {v!r}")
            object.__setattr__(self, k, float(v))
        for k in ("probe_lower", "probe_upper"):
            v = getattr(self, k)
            if v is not None:
                if isinstance(v, bool) or not np.isfinite(v):
                    raise ValueError(f"Domain {k} must be a finite number; got {v!r}")
                object.__setattr__(self, k, float(v))
        if not self.lower < self.upper:
            raise ValueError(f"Domain needs lower < upper; got {self}")
        if not math.isfinite(self.default) or not self.contains(self.default):
            raise ValueError(f"Domain default {self.default:g} lies outside {self}")
        if self.log and self.lower < 0:
            raise ValueError(f"a log-scaled Domain needs lower >= 0; got {self}")
        if self.probe_lower is not None:
            small_zero = self.log and self.lower == 0 and not self.lower_open
            if not (math.isinf(self.lower) or self.lower_open or small_zero):
                raise ValueError(f"Domain {self}: probe_lower is for an infinite or open lower end, or the "
                                 "smallest positive probe of a log scale closed at 0")
            if not self.contains(self.probe_lower) or self.probe_lower > self.default or (small_zero and self.probe_lower <= 0):
                raise ValueError(f"Domain {self}: probe_lower {self.probe_lower:g} must lie in the domain, "
                                 f"{'> 0, ' if small_zero else ''}at most the default")
        if self.probe_upper is not None:
            if not (math.isinf(self.upper) or self.upper_open):
                raise ValueError(f"Domain {self}: probe_upper is for an infinite or open upper end")
            if not self.contains(self.probe_upper) or self.probe_upper < self.default:
                raise ValueError(f"Domain {self}: probe_upper {self.probe_upper:g} must lie in the domain, "
                                 "at least the default")
        a, b = self.corners()
        if not a < b and not (self.inferred and a == b):
            raise ValueError(f"Domain {self}: its probe corners {a:g}, {b:g} are not ordered")

    @classmethod
    def from_default(cls, default: float) -> "Domain":
        """The domain of a plain-float declaration ``x_0``: accepts every finite value, probed on
        ``[min(0, x_0), max(0, x_0)]`` (the rule of the module docstring)."""
        d = float(default)
        if not math.isfinite(d):
            raise ValueError(f"a hyperparameter default must be finite; got {default!r}")
        return cls(d, probe_lower=min(0.0, d), probe_upper=max(0.0, d), inferred=True)

    @classmethod
    def positive(cls, default: float, probe_upper: float = 100.0, why: str = "") -> "Domain":
        """``(0, inf)`` on a log scale, probed from just above 0 (``INSIDE``) to ``probe_upper``: a
        coefficient or step size that must be ``> 0`` (``beta`` of a rule that divides by it, ``eta``,
        a learning rate)."""
        return cls(default, 0.0, math.inf, lower_open=True, log=True, probe_upper=probe_upper, why=why)

    @classmethod
    def nonnegative(cls, default: float, probe_upper: float = 100.0, smallest: float = 1e-4,
                    why: str = "") -> "Domain":
        """``[0, inf)`` on a log scale: probed at 0, from ``smallest`` geometrically and at
        ``probe_upper`` (a weight or coefficient whose 0 is a valid limit: ``beta = 0`` unregularised)."""
        return cls(default, 0.0, math.inf, log=True, probe_lower=smallest, probe_upper=probe_upper, why=why)

    # ---------------------------------------------------------------- membership
    def contains(self, x: Any) -> np.ndarray | bool:
        """Elementwise ``x in D`` (numpy; ``False`` for NaN and infinities). A scalar gives a bool."""
        a = np.asarray(x, dtype=np.float64)
        ok = _inside(self.lower, self.upper, self.lower_open, self.upper_open, a)
        return bool(ok) if ok.ndim == 0 else ok

    def requirement(self) -> str:
        """The membership condition as text: ``> 0``, ``>= 0``, ``in [0, 0.5)``, ``finite``."""
        return _requirement(self.lower, self.upper, self.lower_open, self.upper_open)

    def refusal(self, owner: str, name: str, value: float, key: str | None = None) -> str:
        """The one-line message refusing ``value`` of hyperparameter ``name`` of entry ``owner``
        (``key``: how the run names it, e.g. ``cdpo.eps``): ``cdpo needs eps in [0, 0.5) (why); got
        cdpo.eps = 0.7``; a half-line names its interval too: ``mpo needs beta > 0 (domain (0, inf));
        got beta = 0``."""
        req = self.requirement()
        notes = [] if req.startswith("in ") else [f"domain {self}"]
        notes += [self.why] if self.why else []
        why = f" ({': '.join(notes)})" if notes else ""
        return f"{owner} needs {name} {req}{why}; got {key or name} = {_num(value)}"

    def __str__(self) -> str:
        return _interval(self.lower, self.upper, self.lower_open, self.upper_open)

    # ---------------------------------------------------------------- probe points
    def corners(self) -> tuple[float, float]:
        """``(a, b)``: closed finite ends exactly, open ends just inside (``INSIDE``) or at the declared
        probe limit, infinite ends at their probe limit (default ``-+ 100 max(1, |x_0|)``)."""
        span = _PROBE_SPAN * max(1.0, abs(self.default))
        if math.isinf(self.lower):
            a = self.probe_lower if self.probe_lower is not None else -span
        elif self.lower_open:
            a = self.probe_lower if self.probe_lower is not None else self.lower + INSIDE * max(1.0, abs(self.lower))
        else:
            a = self.lower
        if math.isinf(self.upper):
            b = self.probe_upper if self.probe_upper is not None else span
        elif self.upper_open:
            b = self.probe_upper if self.probe_upper is not None else self.upper - INSIDE * max(1.0, abs(self.upper))
        else:
            b = self.upper
        return float(a), float(b)

    def smallest_positive(self) -> float:
        """Where a log scale's geometric spacing starts: the lower corner if it is > 0, else
        ``probe_lower`` (default ``1e-3 min(x_0, 1)``, or ``INSIDE`` times the upper corner)."""
        a, b = self.corners()
        if a > 0:
            return a
        if self.probe_lower is not None and self.probe_lower > 0:
            return self.probe_lower
        return 1e-3 * min(self.default, 1.0) if self.default > 0 else INSIDE * max(b, 1.0)

    def interior(self, n: int = 3) -> np.ndarray:
        """``n`` points strictly between the corners: ``linspace`` or, for ``log``, ``geomspace``
        (from :meth:`smallest_positive`, itself included when the lower corner is 0)."""
        a, b = self.corners()
        if n <= 0 or a == b:
            return np.zeros(0)
        if not self.log:
            return np.linspace(a, b, n + 2)[1:-1]
        if a > 0:
            return np.geomspace(a, b, n + 2)[1:-1]
        return np.geomspace(self.smallest_positive(), b, n + 1)[:-1]

    def probes(self, n: int = 3) -> np.ndarray:
        """Sorted distinct probe points: the corners, ``n`` interior points and the default."""
        a, b = self.corners()
        return np.unique(np.array([a, b, self.default, *self.interior(n)], dtype=np.float64))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` random points between the corners: uniform, or log-uniform for ``log`` (from
        :meth:`smallest_positive`)."""
        a, b = self.corners()
        if not self.log:
            return rng.uniform(a, b, size)
        lo = self.smallest_positive()
        return np.exp(rng.uniform(np.log(lo), np.log(b), size))


@dataclass(frozen=True)
class Condition:
    """A declared cross-hyperparameter condition ``quantity(hp) in [lower, upper]`` (e.g. ``eta * beta <= 1``).

    Attributes:
      label: how messages write the quantity (``"eta*beta"``).
      quantity: ``quantity(hp) -> array``: ``hp`` maps the entry's hyperparameter names to float64
        arrays (broadcast against each other); numpy only.
      lower, upper, lower_open, upper_open: the interval the quantity must lie in.
      slack: accepted excess past a finite end (rounding: ``eta = 1/beta`` gives ``eta*beta`` a few
        ulps above 1), absolute.
      why: the reason, from the entry's math (shown in refusals).
    """

    label: str
    quantity: Callable[[Mapping[str, np.ndarray]], Any]
    lower: float = -math.inf
    upper: float = math.inf
    lower_open: bool = False
    upper_open: bool = False
    slack: float = 0.0
    why: str = ""

    def values(self, hp: Mapping[str, Any]) -> np.ndarray:
        """``quantity(hp)`` as a float64 array (``hp`` cast to float64 first)."""
        with np.errstate(all="ignore"):
            return np.asarray(self.quantity({k: np.asarray(v, dtype=np.float64) for k, v in hp.items()}),
                              dtype=np.float64)

    def holds(self, hp: Mapping[str, Any]) -> np.ndarray:
        """Elementwise: the quantity lies in the interval (within ``slack``)."""
        return _inside(self.lower, self.upper, self.lower_open, self.upper_open, self.values(hp), self.slack)

    def requirement(self) -> str:
        """``eta*beta <= 1``-style text."""
        return f"{self.label} {_requirement(self.lower, self.upper, self.lower_open, self.upper_open)}"

    def refusal(self, owner: str, value: float) -> str:
        """``egpo needs eta*beta <= 1 (why); got eta*beta = 4``."""
        why = f" ({self.why})" if self.why else ""
        return f"{owner} needs {self.requirement()}{why}; got {self.label} = {float(value):.6g}"


def check_values(owner: str, domains: Mapping[str, Domain], conditions: Sequence[Condition],
                 values: Mapping[str, Any], keys: Mapping[str, str] | None = None) -> None:
    """Raise a one-line ``ValueError`` unless every value lies in its domain and every condition holds.

    ``values[h]`` (a number or an array, one value per configuration of a sweep; arrays broadcast
    against each other) for each hyperparameter ``h`` of ``domains`` (missing names are skipped: the
    caller checks completeness); ``keys[h]``: the name the run uses (``cdpo.eps``) for the message.
    The first value outside its domain is reported, then the first configuration breaking a condition.
    """
    keys = keys or {}
    for h, d in domains.items():
        if h not in values:
            continue
        a = np.asarray(values[h], dtype=np.float64)
        ok = np.asarray(d.contains(a))
        if not np.all(ok):
            raise ValueError(d.refusal(owner, h, float(a[~ok].ravel()[0]) if a.ndim else float(a), keys.get(h, h)))
    if conditions and all(h in values for h in domains):
        hp = {h: np.asarray(values[h], dtype=np.float64) for h in domains}
        for c in conditions:
            ok = np.asarray(c.holds(hp))
            if not np.all(ok):
                q = np.broadcast_to(c.values(hp), ok.shape)
                raise ValueError(c.refusal(owner, float(q[~ok].ravel()[0]) if ok.ndim else float(q)))


def _project(defaults: np.ndarray, point: np.ndarray, names: Sequence[str], conditions: Sequence[Condition],
             iters: int = 60) -> np.ndarray | None:
    """The point of the segment ``defaults -> point`` farthest from the defaults where every condition
    holds (bisection; the conditions hold at the defaults): a corner projected onto the conditions'
    boundary. ``None`` if only the defaults qualify."""
    def ok(t):
        p = defaults + t * (point - defaults)
        hp = dict(zip(names, p))
        return all(bool(np.all(c.holds(hp))) for c in conditions)

    if ok(1.0):
        return point
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    if lo == 0.0:
        return None
    return defaults + lo * (point - defaults)


def probe_points(domains: Mapping[str, Domain], conditions: Sequence[Condition] = (), n: int = 3
                 ) -> tuple[dict[str, np.ndarray], list[tuple[str, ...]]]:
    """Probe points of an entry's hyperparameters: ``({name: (K,) float64}, varied)``.

    Points, in this order (duplicates dropped): the defaults; **one at a time**: each hyperparameter
    at each of its :meth:`Domain.probes` (corners, ``n`` interior points), the others at their
    defaults; **joint corners**: every combination of each hyperparameter's corners and default that
    varies two or more. A point breaking a condition is replaced by the farthest point of the
    segment from the defaults to it where the conditions hold (so the conditions' boundary, e.g.
    ``eta * beta = 1``, is probed too), or dropped. ``varied[k]`` names the hyperparameters that
    differ from their defaults at point ``k`` (for messages: :func:`describe_point`).
    """
    names = list(domains)
    if not names:
        return {}, [()]
    x0 = np.array([domains[h].default for h in names], dtype=np.float64)
    candidates = [x0.copy()]
    for i, h in enumerate(names):
        for v in domains[h].probes(n):
            p = x0.copy()
            p[i] = v
            candidates.append(p)
    choices = [sorted({*domains[h].corners(), domains[h].default}) for h in names]
    for combo in itertools.product(*choices):
        p = np.array(combo, dtype=np.float64)
        if np.count_nonzero(p != x0) >= 2:
            candidates.append(p)
    points, seen = [], set()
    for p in candidates:
        q = _project(x0, p, names, conditions) if conditions else p
        if q is None:
            continue
        t = tuple(q.tolist())
        if t not in seen:
            seen.add(t)
            points.append(q)
    arr = np.stack(points)
    varied = [tuple(h for i, h in enumerate(names) if p[i] != x0[i]) for p in arr]
    return {h: arr[:, i] for i, h in enumerate(names)}, varied


def describe_point(points: Mapping[str, np.ndarray], varied: Iterable[tuple[str, ...]], k: int) -> str:
    """Point ``k`` of :func:`probe_points` for a message: ``lam = 0 (the others at their defaults:
    beta = 0.1, eta = 0.4)``, or ``beta = 100, eta = 0.01`` when every one varies."""
    vary = list(varied)[k]
    shown = ", ".join(f"{h} = {_num(points[h][k])}" for h in vary) or "the defaults"
    rest = [h for h in points if h not in vary]
    if vary and rest:
        shown += " (the others at their defaults: " + ", ".join(f"{h} = {_num(points[h][k])}" for h in rest) + ")"
    elif not vary and rest:
        shown += " (" + ", ".join(f"{h} = {_num(points[h][k])}" for h in rest) + ")"
    return shown
