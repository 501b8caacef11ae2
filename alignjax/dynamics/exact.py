"""Exact tabular (full-information) dynamics of the KL-regularised preference game.

Every rule works in log space; ``lsm`` is ``log_softmax`` (the ``+ c`` renormalisation of
the project's algorithm spec, §2), ``A = (P - P^T)/2`` (``A @ pi = P @ pi - 1/2``), and
``b = eta * beta``. Each rule is a factory (its static knobs as keyword arguments, e.g.
``mpo(reset_every=50)``) returning an :class:`~alignjax.dynamics.base.ExactDynamics` pair
``init(log_pi0, P, log_pi_ref, hparams)``, ``update(state, P, log_pi_ref, hparams)``; the
factories are registered in ``DYNAMICS`` with ``meta={"kind": "exact"}``, the hyperparameters
each rule reads (``hparams=``, array leaves, so one compile sweeps them) and its static knobs
(``static=``). Build one with :func:`alignjax.dynamics.exact_dynamics` (``name, **static``).
Shapes: ``log_pi, log_pi_ref (..., N)``, ``P (..., N, N)``, ``hparams[k] (...)``.

=================  ==========================================================================
name               update ``log pi_t -> log pi_{t+1}``
=================  ==========================================================================
omd                ``lsm((1-b) log pi_t + b log pi_ref + eta A pi_t)``  (= exact INPO, = one
                   population step of online IPO; Zhang et al. arXiv 2407.00617)
nash-md            ``log mu = lsm((1-b) log pi_t + b log pi_ref)``; ``lsm(log mu + eta A mu)``
                   (Munos et al. arXiv 2312.00886, constant eta: biased fixed point)
nash-md-schedule   as nash-md with ``eta_t = 2/(beta (t+2))`` (the theorem's schedule; no
                   ``eta`` hyperparameter); ``KL(pi* || pi_T) <= 8/(beta^2 (T+1))``
egpo               extragradient: ``h = lsm((1-b) log pi_t + b log pi_ref + eta A pi_t)``,
                   ``lsm((1-b) log pi_t + b log pi_ref + eta A h)`` (Zhou et al. arXiv 2503.08942)
omwu               optimistic: ``lsm((1-b) log pi_t + b log pi_ref + eta (2 A pi_t - A pi_{t-1}))``
                   (``A pi_{-1} = A pi_0``)
mpo                magnetic mirror descent: ``lsm((log pi_t + b log m + eta A pi_t)/(1 + b))``,
                   magnet ``m = pi_ref`` at first, reset to ``pi_{t+1}`` after every ``K``-th
                   update (K static; Wang et al. arXiv 2410.16714) -> unregularised Nash
mwu                plain MWU / exact SPPO, no reference: ``lsm(log pi_t + eta A pi_t)``; the
                   state also tracks the average iterate ``(1/(t+1)) sum_{s<=t} pi_s``
bt-rlhf            fit Bradley–Terry rewards ``r`` to ``P`` (max. likelihood on all pairs, at
                   ``init``), then ``lsm(log pi_ref + r / beta)`` (the KL-regularised RLHF
                   optimum; reached after one update)
=================  ==========================================================================

With ``beta = 0`` omd, egpo and omwu are the unregularised MWU, extragradient MWU and
optimistic MWU. nash-md-schedule, mpo and bt-rlhf need ``beta > 0``.

Hyperparameter conditions (each entry's ``meta["check"]``, applied by
:func:`alignjax.dynamics.check_hparams` before any compute), derived from the update rules:

=================  ==========================================================================
omd, nash-md,      ``beta >= 0``, ``eta > 0`` and ``eta * beta <= 1`` (``1 + 1e-6`` accepted: an
egpo, omwu         ``eta = 1/beta`` rounds a few ulps above 1, harmlessly). The rule mixes
                   ``(1 - b) log pi_t + b log pi_ref``, the geometric mixture
                   ``pi_t^(1-b) pi_ref^b``; its weight on ``pi_t`` is ``>= 0`` iff ``b <= 1``.
                   Then ``osc(log pi_{t+1} - log pi_ref) <= (1 - b) osc(log pi_t - log pi_ref)
                   + c eta`` (``osc x = max x - min x``; ``c = 1``, 3 for omwu since
                   ``|A pi| <= 1/2`` entrywise), so the log-policies stay within
                   ``max(osc_0, c / beta)`` for ``beta > 0`` and grow at most like ``c eta t``
                   for ``beta = 0``: finite. ``b = 1`` exactly is allowed (weight 0: the
                   regularised best response ``lsm(log pi_ref + eta g)``, online IPO's
                   population step). For ``b > 1`` the weight is negative: each step flips
                   the order of ``pi_t / pi_ref`` and multiplies its log-spread by ``b - 1``
                   (exactly so on the tie game ``P = 1/2``): for ``1 < b < 2`` this still
                   contracts but is no longer the geometric mixture the rules are defined
                   with (an extrapolation past ``pi_ref``), ``b = 2`` oscillates, ``b > 2``
                   diverges and overflows to NaN (float32: about 80 steps at ``b = 4``, 210
                   at ``b = 2.5``).
nash-md-schedule   ``beta > 0`` with ``2/beta`` finite (implied by ``beta`` being a normal
                   float of the dtype, checked for every value; no ``eta``):
                   ``eta_t beta = 2/(t+2) <= 1`` for every ``t`` (``= 1`` at ``t = 0``: the
                   first mixture is ``pi_ref``), so the bound above gives ``osc <= 1/beta``,
                   and the logits formed before a normalisation stay within ``1.5/beta``.
mpo                ``beta > 0``, ``eta > 0``; no upper limit on ``eta * beta``: the weights
                   ``1/(1+b)``, ``b/(1+b)`` lie in ``[0, 1]`` for every ``b >= 0`` and the
                   payoff coefficient ``eta/(1+b) = 1/(1/eta + beta)`` is at most ``1/beta``
                   (computed in that form, finite even where ``b`` overflows).
mwu                ``eta > 0`` (no ``beta``; ``osc`` grows at most like ``eta t``).
bt-rlhf            ``beta > 0`` (no ``eta``): the reward is shifted to ``r - max r`` before
                   the division, so any ``beta > 0`` is finite (tiny ``beta``: the argmax).
=================  ==========================================================================

Every condition is checked on the values as cast to the run's dtype (float32 unless x64):
a value that is not finite there, or is non-zero but 0 or subnormal there (XLA flushes
subnormals to 0: ``0 / beta`` is NaN), is rejected too.

**Writing a rule.** A rule is one function ``step(state, P, log_pi_ref, hp)`` returning
``log pi_{t+1}`` (or ``(log pi_{t+1}, memory)``); :func:`exact_rule` wires it into an
``(init, update)`` pair, keeping the rule's memory in ``ExactState.extra``. The helpers
:func:`payoff` (``A pi``), :func:`mirror_step`, :func:`geometric_mixture` and :func:`col` are the
math the rules share; :data:`MIXTURE` is the declared domain of a rule built on them. OMWU, as
written below::

    def omwu():
        def step(s, P, log_pi_ref, hp):  # memory: the last payoff A pi_{t-1}
            pay = payoff(P, s.log_pi)
            return mirror_step(s.log_pi, log_pi_ref, hp["beta"], hp["eta"], 2.0 * pay - s.extra), pay
        return exact_rule(step, memory=lambda log_pi0, P, log_pi_ref, hp: payoff(P, log_pi0))

    DYNAMICS.register("omwu", omwu, **MIXTURE, meta={"kind": "exact"})
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from alignjax.domains import Condition, Domain
from alignjax.dynamics.base import ExactDynamics, ExactState, payoff
from alignjax.metrics.coverage import optimal_policy
from alignjax.prefs import fit_bradley_terry
from alignjax.registry import DYNAMICS

__all__ = ["omd", "nash_md", "nash_md_schedule", "egpo", "omwu", "mpo", "mwu", "bt_rlhf",
           # helpers for writing a rule (see "Writing a rule" below and docs/extending.md)
           "exact_rule", "mirror_step", "geometric_mixture", "payoff", "col", "need", "mixture_check",
           "MIXTURE", "MIXTURE_HPARAMS", "MIXTURE_WEIGHT"]

_lsm = jax.nn.log_softmax


# ------------------------------------------------------------------ writing a rule
# An exact dynamic is its update rule and its domain: the wiring (normalising the start, counting
# steps, carrying the rule's memory in ``ExactState.extra``) is :func:`exact_rule`'s, the math is
# one function ``step(state, P, log_pi_ref, hp)``; the rules below are written with these helpers.
def col(x: ArrayLike) -> jax.Array:
    """``(...)`` -> ``(..., 1)``: a per-row hyperparameter broadcast against ``(..., N)`` policies."""
    return jnp.asarray(x)[..., None]


def mirror_step(log_pi: jax.Array, log_pi_ref: jax.Array, beta: ArrayLike, eta: ArrayLike,
                g: jax.Array) -> jax.Array:
    """One regularised mirror-descent step towards the payoff ``g``:

    ``lsm((1 - b) log pi + b log pi_ref + eta g)``, ``b = eta beta``, ``lsm`` = log_softmax over the
    last axis. ``log_pi, log_pi_ref, g (..., N)``; ``beta, eta (...)``; returns ``(..., N)``. With
    ``g = A pi`` (:func:`payoff`) it is OMD's update; ``eta beta <= 1`` keeps the weight of
    ``log pi`` non-negative (:data:`MIXTURE_WEIGHT`).
    """
    b = col(eta * beta)
    return _lsm((1.0 - b) * log_pi + b * log_pi_ref + col(eta) * g)


def geometric_mixture(log_pi: jax.Array, log_pi_ref: jax.Array, beta: ArrayLike, eta: ArrayLike) -> jax.Array:
    """``log mu = lsm((1 - b) log pi + b log pi_ref)``, ``b = eta beta``: the normalised geometric mixture
    ``mu ∝ pi^(1-b) pi_ref^b`` (Nash-MD's regularised policy); shapes as :func:`mirror_step`."""
    b = col(eta * beta)
    return _lsm((1.0 - b) * log_pi + b * log_pi_ref)


def exact_rule(step: Callable[..., Any], memory: Callable[..., Any] | None = None) -> ExactDynamics:
    """The :class:`~alignjax.dynamics.base.ExactDynamics` pair of an update rule.

    ``step(state, P, log_pi_ref, hp)`` returns ``log pi_{t+1}`` (``(..., N)``, normalised), or the pair
    ``(log pi_{t+1}, memory_{t+1})`` for a rule with memory; ``state`` is the
    :class:`~alignjax.dynamics.base.ExactState` ``(log_pi, t, extra)`` of step ``t``, ``extra`` the
    rule's memory. ``memory(log_pi0, P, log_pi_ref, hp)`` gives the memory at ``t = 0`` (from the
    normalised start ``log_pi0``; default none, ``()``): any pytree whose structure, shapes and dtypes
    every step keeps (it is a ``lax.scan`` carry, vmapped over a sweep's rows). ``init`` normalises the
    start, ``lsm(log_pi0)``, and sets ``t = 0``; ``update`` applies ``step`` and counts ``t + 1``; a
    ``step`` that returns ``log pi_{t+1}`` alone keeps the memory unchanged.
    """

    def init(log_pi0, P, log_pi_ref, hp):
        lp = _lsm(jnp.asarray(log_pi0))
        return ExactState(lp, _t0(lp), () if memory is None else memory(lp, P, log_pi_ref, hp))

    def update(s, P, log_pi_ref, hp):
        out = step(s, P, log_pi_ref, hp)
        new, extra = out if isinstance(out, tuple) else (out, s.extra)
        return ExactState(new, s.t + 1, extra)

    return ExactDynamics(init, update)


_col = col  # the names before issue 24 (kept for code that imports them)


def _t0(log_pi):
    return jnp.zeros(log_pi.shape[:-1], jnp.int32)


def _simple_init(log_pi0, P, log_pi_ref, hparams):
    return ExactState(_lsm(jnp.asarray(log_pi0)), _t0(log_pi0), ())


def _omd_target(log_pi, P, log_pi_ref, beta, eta, pay):
    """``(1-b) log pi + b log pi_ref + eta * pay``, ``b = eta beta`` (:func:`mirror_step`; ``P`` unused)."""
    return mirror_step(log_pi, log_pi_ref, beta, eta, pay)


def omd() -> ExactDynamics:
    """Regularised online mirror descent / MWU = exact INPO = one online-IPO population step.

    ``log pi_{t+1} = lsm((1 - eta beta) log pi_t + eta beta log pi_ref + eta P @ pi_t)``.

    Needs ``beta >= 0``, ``eta > 0``, ``eta beta <= 1`` (the weight ``1 - eta beta`` of
    ``log pi_t`` must be ``>= 0``; see the module docstring for the derivation).
    """

    def step(s, P, log_pi_ref, hp):
        return mirror_step(s.log_pi, log_pi_ref, hp["beta"], hp["eta"], payoff(P, s.log_pi))

    return exact_rule(step)


def _nash_md_step(log_pi, P, log_pi_ref, beta, eta):
    b = _col(eta * beta)
    log_mu = _lsm((1.0 - b) * log_pi + b * log_pi_ref)
    return _lsm(log_mu + _col(eta) * payoff(P, log_mu))


def nash_md() -> ExactDynamics:
    """Nash-MD with a constant step (NLHF, arXiv 2312.00886 §6).

    ``log mu_t = lsm((1 - eta beta) log pi_t + eta beta log pi_ref)`` (geometric mixture),
    ``log pi_{t+1} = lsm(log mu_t + eta P @ mu_t)``. Its fixed point is not ``pi*_beta``
    (biased by ``O(eta)``): it plateaus above the equilibrium.

    Needs ``beta >= 0``, ``eta > 0``, ``eta beta <= 1`` (``mu_t = pi_t^(1 - eta beta) pi_ref^(eta beta)``
    is a geometric mixture only for a weight ``1 - eta beta >= 0`` on ``pi_t``).
    """

    def update(s, P, log_pi_ref, hp):
        return ExactState(_nash_md_step(s.log_pi, P, log_pi_ref, hp["beta"], hp["eta"]), s.t + 1, ())

    return ExactDynamics(_simple_init, update)


def nash_md_schedule() -> ExactDynamics:
    """Nash-MD with the schedule of its convergence theorem (NLHF arXiv 2312.00886, Thm 1).

    As :func:`nash_md` with ``eta_t = 2 / (beta (t + 2))`` (``t = 0, 1, ...``; the ``eta``
    hyperparameter). Theorem: ``KL(pi*_beta || pi_T) <= 8 / (beta^2 (T + 1))``.

    Needs ``beta > 0`` with ``2/beta`` finite in the dtype (true for every normal float); the mixture weight
    ``eta_t beta = 2/(t + 2)`` is ``<= 1`` by construction (``= 1`` at ``t = 0``), so the
    log-policies stay within ``osc(log pi_t - log pi_ref) <= 1/beta`` of the reference, and
    the logits formed before each normalisation within ``1.5/beta`` (``eta_t |A mu| <= 1/(2 beta)``).
    """

    def update(s, P, log_pi_ref, hp):
        beta = hp["beta"]
        # products of reciprocals, not a division by beta (see alignjax.sweep: device-count invariance)
        eta_t = (2.0 * (1.0 / beta)) * (1.0 / (s.t + 2).astype(s.log_pi.dtype))
        return ExactState(_nash_md_step(s.log_pi, P, log_pi_ref, beta, eta_t), s.t + 1, ())

    return ExactDynamics(_simple_init, update)


def egpo() -> ExactDynamics:
    """Extragradient preference optimisation, exact form (Zhou et al. arXiv 2503.08942).

    ``log h_t = lsm((1 - eta beta) log pi_t + eta beta log pi_ref + eta P @ pi_t)``,
    ``log pi_{t+1} = lsm((1 - eta beta) log pi_t + eta beta log pi_ref + eta P @ h_t)``.
    Last-iterate linear convergence to ``pi*_beta``.

    Needs ``beta >= 0``, ``eta > 0``, ``eta beta <= 1`` (both steps weight ``log pi_t`` by
    ``1 - eta beta``, which must be ``>= 0``).
    """

    def update(s, P, log_pi_ref, hp):
        beta, eta = hp["beta"], hp["eta"]
        half = _omd_target(s.log_pi, P, log_pi_ref, beta, eta, payoff(P, s.log_pi))
        return ExactState(_omd_target(s.log_pi, P, log_pi_ref, beta, eta, payoff(P, half)), s.t + 1, ())

    return ExactDynamics(_simple_init, update)


def omwu() -> ExactDynamics:
    """Optimistic (regularised) MWU.

    ``log pi_{t+1} = lsm((1 - eta beta) log pi_t + eta beta log pi_ref + eta (2 P@pi_t - P@pi_{t-1}))``
    with ``P@pi_{-1} = P@pi_0``; ``state.extra`` holds ``A @ pi_{t-1}``.

    Needs ``beta >= 0``, ``eta > 0``, ``eta beta <= 1`` (the weight ``1 - eta beta`` of
    ``log pi_t`` must be ``>= 0``).
    """

    def step(s, P, log_pi_ref, hp):  # memory: the last payoff A pi_{t-1}
        pay = payoff(P, s.log_pi)
        return mirror_step(s.log_pi, log_pi_ref, hp["beta"], hp["eta"], 2.0 * pay - s.extra), pay

    return exact_rule(step, memory=lambda log_pi0, P, log_pi_ref, hp: payoff(P, log_pi0))


def mpo(reset_every: int = 50) -> ExactDynamics:
    """Magnetic mirror descent with periodic magnet resets (MPO, Wang et al. arXiv 2410.16714).

    ``log pi_{t+1} = lsm((log pi_t + eta beta log m_k + eta P @ pi_t) / (1 + eta beta))``;
    the magnet starts at ``m_0 = pi_ref`` and is set to ``pi_{t+1}`` after every
    ``reset_every``-th update (static), so the iterates approach the unregularised Nash
    equilibrium (a proximal-point outer loop). ``state.extra`` is ``log m``.

    Needs ``beta > 0`` and ``eta > 0``; no upper limit on ``eta beta``: the weights
    ``1/(1 + eta beta)`` and ``eta beta/(1 + eta beta)`` lie in ``[0, 1]`` for every
    ``eta beta >= 0`` and the payoff's ``eta/(1 + eta beta) = 1/(1/eta + beta)`` is bounded by
    ``1/beta`` (computed in that form, so it stays finite even where ``eta beta`` overflows).
    """
    K = int(reset_every)
    if K < 1:
        raise ValueError(f"reset_every must be >= 1; got {reset_every!r}")

    def init(log_pi0, P, log_pi_ref, hp):
        lp = _lsm(jnp.asarray(log_pi0))
        return ExactState(lp, _t0(lp), jnp.broadcast_to(jnp.asarray(log_pi_ref, lp.dtype), lp.shape))

    def update(s, P, log_pi_ref, hp):
        # the same rule with bounded coefficients: 1/(1+b), b/(1+b) in [0, 1] and
        # eta/(1+b) = 1/(1/eta + beta) <= min(eta, 1/beta), so no inf/inf for huge eta*beta
        beta, eta = hp["beta"], hp["eta"]
        w = _col(1.0 / (1.0 + eta * beta))
        step = _col(1.0 / (1.0 / eta + beta))
        new = _lsm(w * s.log_pi + (1.0 - w) * s.extra + step * payoff(P, s.log_pi))
        t = s.t + 1
        magnet = jnp.where(_col(t % K == 0), new, s.extra)
        return ExactState(new, t, magnet)

    return ExactDynamics(init, update)


def mwu() -> ExactDynamics:
    """Plain multiplicative weights / exact SPPO (no reference, ``beta`` unused).

    ``log pi_{t+1} = lsm(log pi_t + eta P @ pi_t)``; ``state.extra`` is the average iterate
    ``(1/(t+1)) sum_{s<=t} pi_s`` (the last iterate cycles on cyclic games, the average
    converges to a Nash equilibrium).

    Needs ``eta > 0``; no condition on ``beta`` (unused).
    """

    def init(log_pi0, P, log_pi_ref, hp):
        lp = _lsm(jnp.asarray(log_pi0))
        return ExactState(lp, _t0(lp), jnp.exp(lp))

    def update(s, P, log_pi_ref, hp):
        new = _lsm(s.log_pi + _col(hp["eta"]) * payoff(P, s.log_pi))
        t = s.t + 1
        avg = s.extra + (jnp.exp(new) - s.extra) * (1.0 / _col(t + 1).astype(new.dtype))
        return ExactState(new, t, avg)

    return ExactDynamics(init, update)


def bt_rlhf(num_fit_steps: int = 50) -> ExactDynamics:
    """Reward-model RLHF on a preference matrix: Bradley–Terry fit, then the KL-regularised optimum.

    ``init`` fits ``r = argmax sum_{y != y'} P[y, y'] log sigmoid(r_y - r_y')``
    (:func:`alignjax.prefs.fit_bradley_terry`, Newton) and keeps it in ``state.extra``;
    ``update`` returns ``log pi = lsm(log pi_ref + r / beta)`` (the maximiser of
    ``E_pi r - beta KL(pi || pi_ref)``), whatever the current iterate.

    Needs ``beta > 0`` (no ``eta``); any positive normal ``beta`` is safe: the reward is shifted
    to ``r - max r <= 0`` before the division (``lsm`` is shift-invariant), so a tiny ``beta``
    gives probability 0 (log ``-inf``) to the non-maximisers, never ``inf - inf``.
    """

    def init(log_pi0, P, log_pi_ref, hp):
        lp = _lsm(jnp.asarray(log_pi0))
        return ExactState(lp, _t0(lp), fit_bradley_terry(P, num_steps=num_fit_steps).astype(lp.dtype))

    def update(s, P, log_pi_ref, hp):
        # r - max r <= 0 before dividing: a tiny beta gives -inf (probability 0), never inf - inf
        r = s.extra - jnp.max(s.extra, axis=-1, keepdims=True)
        return ExactState(optimal_policy(log_pi_ref, r, hp["beta"]), s.t + 1, s.extra)

    return ExactDynamics(init, update)


# ------------------------------------------------------------------ hyperparameter conditions
# Each ``check(hp, dtype)`` gets ``hp``: the entry's declared hyperparameters as float64 arrays
# holding the values as cast to the run's ``dtype`` (finite there), and raises a one-line
# ``ValueError`` naming the violated condition.

_ROUNDING = 1e-6  # eta*beta meant to be exactly 1 (e.g. eta = 1/beta) may round above 1 by ulps


def _first(a, bad):
    return float(np.asarray(a)[np.asarray(bad)].ravel()[0])


def need(name: str, label: str, a: ArrayLike, ok: ArrayLike, cond: str) -> None:
    """Raise ``ValueError("NAME needs LABEL COND; got LABEL = v")`` unless every ``ok`` holds (``v``: the first
    value of ``a`` where it does not): one line for a ``meta["check"]`` (numpy, before any compute)."""
    if not np.all(ok):
        raise ValueError(f"{name} needs {label} {cond}; got {label} = {_first(a, ~np.asarray(ok)):g}")


_need = need


def _finite_in(dtype, x):
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return np.isfinite(np.asarray(x, np.float64).astype(dtype))


def mixture_check(name: str) -> Callable[[Mapping[str, np.ndarray], Any], None]:
    """A ``meta["check"](hp, dtype)`` for rule ``name``: ``beta >= 0``, ``eta > 0``, ``eta * beta <= 1`` (the
    ``(1 - eta beta) log pi_t`` weight is >= 0; ``1 + 1e-6`` accepted for rounding). The same as declaring
    :data:`MIXTURE`'s domains and condition, which a new rule should do instead."""

    def check(hp, dtype):
        beta, eta = hp["beta"], hp["eta"]
        _need(name, "beta", beta, beta >= 0, ">= 0")
        _need(name, "eta", eta, eta > 0, "> 0")
        b = np.asarray(eta * beta)
        if np.any(b > 1.0 + _ROUNDING):
            raise ValueError(f"{name} needs eta*beta <= 1 (the (1 - eta*beta) weight of log pi_t must be >= 0); "
                             f"got eta*beta = {float(b.max()):.6g}")

    return check


_mixture_check = mixture_check


def _schedule_check(hp, dtype):
    """nash-md-schedule: ``beta > 0`` with ``2/beta`` finite in the dtype."""
    beta = hp["beta"]
    _need("nash-md-schedule", "beta", beta, beta > 0, "> 0")
    with np.errstate(divide="ignore"):
        ok = _finite_in(dtype, 2.0 / beta)
    _need("nash-md-schedule", "beta", beta, ok, f"> 0 with 2/beta finite in {np.dtype(dtype).name} (eta_0 = 1/beta)")


def _positive_check(name):
    """Every declared hyperparameter ``> 0`` (no other condition: see the rule's docstring)."""

    def check(hp, dtype):
        for label, v in hp.items():
            _need(name, label, v, v > 0, "> 0")

    return check


def _mpo_static(reset_every):
    if int(reset_every) != reset_every or reset_every < 1:
        raise ValueError(f"mpo needs reset_every >= 1 (an integer); got {reset_every!r}")


# ------------------------------------------------------------------ declared domains
# Each hyperparameter's domain (alignjax.domains), read off the conditions above and agreeing with
# each ``meta["check"]`` (tests/test_domains.py checks the agreement): beta >= 0 for the mixture rules
# (beta = 0 is the unregularised rule), beta > 0 where the rule divides by it (nash-md-schedule,
# bt-rlhf) or needs a magnet weight (mpo), eta > 0 everywhere; eta*beta <= 1 as a declared condition
# of the mixture rules. The probe limits (where the registry tests stop on an infinite end): beta and
# eta up to 100 (beta = 100: pi_t ~ pi_ref; eta = 100: ~100 times the payoff per step), the smallest
# positive beta probed 1e-4 (an open end at 0 is probed just inside, at 1e-6).
def _beta(open_at_0: bool) -> Domain:
    return Domain.positive(0.1) if open_at_0 else Domain.nonnegative(0.1, smallest=1e-4)


_ETA = Domain.positive(0.4)
MIXTURE_WEIGHT = Condition("eta*beta", lambda hp: hp["eta"] * hp["beta"], upper=1.0, slack=_ROUNDING,
                           why="the (1 - eta*beta) weight of log pi_t must be >= 0")
"""``eta * beta <= 1`` (a few ulps above accepted): the weight ``1 - eta beta`` of ``log pi_t`` in
:func:`mirror_step` and :func:`geometric_mixture` is non-negative."""
MIXTURE_HPARAMS = {"beta": _beta(False), "eta": _ETA}
"""``beta`` in ``[0, inf)`` (default 0.1; 0 is the unregularised rule), ``eta`` in ``(0, inf)`` (default 0.4)."""
MIXTURE = {"hparams": MIXTURE_HPARAMS, "conditions": (MIXTURE_WEIGHT,)}
"""The domain of a rule built on :func:`mirror_step` or :func:`geometric_mixture`, as ``register`` keywords:
``DYNAMICS.register(NAME, factory, **MIXTURE, meta={"kind": "exact"})`` (omd, nash-md, egpo, omwu)."""
_MIXTURE_WEIGHT, _MIXTURE = MIXTURE_WEIGHT, MIXTURE

_META = {"kind": "exact"}
DYNAMICS.register("omd", omd, **_MIXTURE,
                  meta=dict(_META, aliases=["inpo", "online-ipo-exact"], check=_mixture_check("omd")))
DYNAMICS.register("nash-md", nash_md, **_MIXTURE, meta=dict(_META, check=_mixture_check("nash-md")))
DYNAMICS.register("nash-md-schedule", nash_md_schedule, hparams={"beta": _beta(True)},
                  meta=dict(_META, check=_schedule_check))
DYNAMICS.register("egpo", egpo, **_MIXTURE, meta=dict(_META, check=_mixture_check("egpo")))
DYNAMICS.register("omwu", omwu, **_MIXTURE, meta=dict(_META, check=_mixture_check("omwu")))
DYNAMICS.register("mpo", mpo, hparams={"beta": _beta(True), "eta": _ETA}, static={"reset_every": 50},
                  meta=dict(_META, check=_positive_check("mpo"), check_static=_mpo_static))
DYNAMICS.register("mwu", mwu, hparams={"eta": _ETA}, meta=dict(_META, ignores=["pi_ref"], check=_positive_check("mwu")))
DYNAMICS.register("bt-rlhf", bt_rlhf, hparams={"beta": _beta(True)}, static={"num_fit_steps": 50},
                  meta=dict(_META, fits="bradley-terry", check=_positive_check("bt-rlhf")))
