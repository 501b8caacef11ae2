"""Exact tabular (full-information) dynamics of the KL-regularised preference game.

Every rule works in log space; ``lsm`` is ``log_softmax`` (the ``+ c`` renormalisation of
``/work/shared/spec/algorithms.md`` §2), ``A = (P - P^T)/2`` (``A @ pi = P @ pi - 1/2``), and
``b = eta * beta``. Registered in ``DYNAMICS`` with ``meta={"kind": "exact"}``; all take
``beta``/``eta`` as arrays, so one compile sweeps them (:func:`alignjax.dynamics.simulate`).
Shapes: ``log_pi, log_pi_ref (..., N)``, ``P (..., N, N)``, ``beta, eta (...)``.

=================  ==========================================================================
name               update ``log pi_t -> log pi_{t+1}``
=================  ==========================================================================
omd                ``lsm((1-b) log pi_t + b log pi_ref + eta A pi_t)``  (= exact INPO, = one
                   population step of online IPO; Zhang et al. arXiv 2407.00617)
nash-md            ``log mu = lsm((1-b) log pi_t + b log pi_ref)``; ``lsm(log mu + eta A mu)``
                   (Munos et al. arXiv 2312.00886, constant eta: biased fixed point)
nash-md-schedule   as nash-md with ``eta_t = 2/(beta (t+2))`` (the theorem's schedule; the
                   ``eta`` argument is ignored); ``KL(pi* || pi_T) <= 8/(beta^2 (T+1))``
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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignjax.dynamics.base import ExactDynamics, ExactState, payoff
from alignjax.prefs import fit_bradley_terry
from alignjax.registry import DYNAMICS

__all__ = ["omd", "nash_md", "nash_md_schedule", "egpo", "omwu", "mpo", "mwu", "bt_rlhf"]

_lsm = jax.nn.log_softmax


def _col(x):
    """``(...)`` -> ``(..., 1)`` for broadcasting against ``(..., N)``."""
    return jnp.asarray(x)[..., None]


def _t0(log_pi):
    return jnp.zeros(log_pi.shape[:-1], jnp.int32)


def _simple_init(log_pi0, P, log_pi_ref, beta, eta):
    return ExactState(_lsm(jnp.asarray(log_pi0)), _t0(log_pi0), ())


def _omd_target(log_pi, P, log_pi_ref, beta, eta, pay):
    """``(1-b) log pi + b log pi_ref + eta * pay``, ``b = eta beta``."""
    b = _col(eta * beta)
    return _lsm((1.0 - b) * log_pi + b * log_pi_ref + _col(eta) * pay)


def omd() -> ExactDynamics:
    """Regularised online mirror descent / MWU = exact INPO = one online-IPO population step.

    ``log pi_{t+1} = lsm((1 - eta beta) log pi_t + eta beta log pi_ref + eta P @ pi_t)``.
    """

    def update(s, P, log_pi_ref, beta, eta):
        return ExactState(_omd_target(s.log_pi, P, log_pi_ref, beta, eta, payoff(P, s.log_pi)), s.t + 1, ())

    return ExactDynamics(_simple_init, update)


def _nash_md_step(log_pi, P, log_pi_ref, beta, eta):
    b = _col(eta * beta)
    log_mu = _lsm((1.0 - b) * log_pi + b * log_pi_ref)
    return _lsm(log_mu + _col(eta) * payoff(P, log_mu))


def nash_md() -> ExactDynamics:
    """Nash-MD with a constant step (NLHF, arXiv 2312.00886 §6).

    ``log mu_t = lsm((1 - eta beta) log pi_t + eta beta log pi_ref)`` (geometric mixture),
    ``log pi_{t+1} = lsm(log mu_t + eta P @ mu_t)``. Its fixed point is not ``pi*_beta``
    (biased by ``O(eta)``): it plateaus above the equilibrium.
    """

    def update(s, P, log_pi_ref, beta, eta):
        return ExactState(_nash_md_step(s.log_pi, P, log_pi_ref, beta, eta), s.t + 1, ())

    return ExactDynamics(_simple_init, update)


def nash_md_schedule() -> ExactDynamics:
    """Nash-MD with the schedule of its convergence theorem (NLHF arXiv 2312.00886, Thm 1).

    As :func:`nash_md` with ``eta_t = 2 / (beta (t + 2))`` (``t = 0, 1, ...``; the ``eta``
    argument is ignored). Theorem: ``KL(pi*_beta || pi_T) <= 8 / (beta^2 (T + 1))``.
    """

    def update(s, P, log_pi_ref, beta, eta):
        eta_t = 2.0 / (beta * (s.t + 2).astype(s.log_pi.dtype))
        return ExactState(_nash_md_step(s.log_pi, P, log_pi_ref, beta, eta_t), s.t + 1, ())

    return ExactDynamics(_simple_init, update)


def egpo() -> ExactDynamics:
    """Extragradient preference optimisation, exact form (Zhou et al. arXiv 2503.08942).

    ``log h_t = lsm((1 - eta beta) log pi_t + eta beta log pi_ref + eta P @ pi_t)``,
    ``log pi_{t+1} = lsm((1 - eta beta) log pi_t + eta beta log pi_ref + eta P @ h_t)``.
    Last-iterate linear convergence to ``pi*_beta``.
    """

    def update(s, P, log_pi_ref, beta, eta):
        half = _omd_target(s.log_pi, P, log_pi_ref, beta, eta, payoff(P, s.log_pi))
        return ExactState(_omd_target(s.log_pi, P, log_pi_ref, beta, eta, payoff(P, half)), s.t + 1, ())

    return ExactDynamics(_simple_init, update)


def omwu() -> ExactDynamics:
    """Optimistic (regularised) MWU.

    ``log pi_{t+1} = lsm((1 - eta beta) log pi_t + eta beta log pi_ref + eta (2 P@pi_t - P@pi_{t-1}))``
    with ``P@pi_{-1} = P@pi_0``; ``state.extra`` holds ``A @ pi_{t-1}``.
    """

    def init(log_pi0, P, log_pi_ref, beta, eta):
        lp = _lsm(jnp.asarray(log_pi0))
        return ExactState(lp, _t0(lp), payoff(P, lp))

    def update(s, P, log_pi_ref, beta, eta):
        pay = payoff(P, s.log_pi)
        return ExactState(_omd_target(s.log_pi, P, log_pi_ref, beta, eta, 2.0 * pay - s.extra), s.t + 1, pay)

    return ExactDynamics(init, update)


def mpo(reset_every: int = 50) -> ExactDynamics:
    """Magnetic mirror descent with periodic magnet resets (MPO, Wang et al. arXiv 2410.16714).

    ``log pi_{t+1} = lsm((log pi_t + eta beta log m_k + eta P @ pi_t) / (1 + eta beta))``;
    the magnet starts at ``m_0 = pi_ref`` and is set to ``pi_{t+1}`` after every
    ``reset_every``-th update (static), so the iterates approach the unregularised Nash
    equilibrium (a proximal-point outer loop). ``state.extra`` is ``log m``.
    """
    K = int(reset_every)
    if K < 1:
        raise ValueError(f"reset_every must be >= 1; got {reset_every!r}")

    def init(log_pi0, P, log_pi_ref, beta, eta):
        lp = _lsm(jnp.asarray(log_pi0))
        return ExactState(lp, _t0(lp), jnp.broadcast_to(jnp.asarray(log_pi_ref, lp.dtype), lp.shape))

    def update(s, P, log_pi_ref, beta, eta):
        b = _col(eta * beta)
        new = _lsm((s.log_pi + b * s.extra + _col(eta) * payoff(P, s.log_pi)) / (1.0 + b))
        t = s.t + 1
        magnet = jnp.where(_col(t % K == 0), new, s.extra)
        return ExactState(new, t, magnet)

    return ExactDynamics(init, update)


def mwu() -> ExactDynamics:
    """Plain multiplicative weights / exact SPPO (no reference, ``beta`` unused).

    ``log pi_{t+1} = lsm(log pi_t + eta P @ pi_t)``; ``state.extra`` is the average iterate
    ``(1/(t+1)) sum_{s<=t} pi_s`` (the last iterate cycles on cyclic games, the average
    converges to a Nash equilibrium).
    """

    def init(log_pi0, P, log_pi_ref, beta, eta):
        lp = _lsm(jnp.asarray(log_pi0))
        return ExactState(lp, _t0(lp), jnp.exp(lp))

    def update(s, P, log_pi_ref, beta, eta):
        new = _lsm(s.log_pi + _col(eta) * payoff(P, s.log_pi))
        t = s.t + 1
        avg = s.extra + (jnp.exp(new) - s.extra) / _col(t + 1).astype(new.dtype)
        return ExactState(new, t, avg)

    return ExactDynamics(init, update)


def bt_rlhf(num_fit_steps: int = 50) -> ExactDynamics:
    """Reward-model RLHF on a preference matrix: Bradley–Terry fit, then the KL-regularised optimum.

    ``init`` fits ``r = argmax sum_{y != y'} P[y, y'] log sigmoid(r_y - r_y')``
    (:func:`alignjax.prefs.fit_bradley_terry`, Newton) and keeps it in ``state.extra``;
    ``update`` returns ``log pi = lsm(log pi_ref + r / beta)`` (the maximiser of
    ``E_pi r - beta KL(pi || pi_ref)``), whatever the current iterate.
    """

    def init(log_pi0, P, log_pi_ref, beta, eta):
        lp = _lsm(jnp.asarray(log_pi0))
        return ExactState(lp, _t0(lp), fit_bradley_terry(P, num_steps=num_fit_steps).astype(lp.dtype))

    def update(s, P, log_pi_ref, beta, eta):
        return ExactState(_lsm(log_pi_ref + s.extra / _col(beta)), s.t + 1, s.extra)

    return ExactDynamics(init, update)


_META = {"kind": "exact"}
DYNAMICS.register("omd", omd(), hparams={"beta": 0.1, "eta": 0.4}, meta=dict(_META, aliases=["inpo", "online-ipo-exact"]))
DYNAMICS.register("nash-md", nash_md(), hparams={"beta": 0.1, "eta": 0.4}, meta=dict(_META))
DYNAMICS.register("nash-md-schedule", nash_md_schedule(), hparams={"beta": 0.1, "eta": 1.0},
                  meta=dict(_META, needs_positive_beta=True, ignores=["eta"]))
DYNAMICS.register("egpo", egpo(), hparams={"beta": 0.1, "eta": 0.4}, meta=dict(_META))
DYNAMICS.register("omwu", omwu(), hparams={"beta": 0.1, "eta": 0.4}, meta=dict(_META))
DYNAMICS.register("mpo", mpo(), hparams={"beta": 0.1, "eta": 0.4},
                  meta=dict(_META, needs_positive_beta=True, reset_every=50))
DYNAMICS.register("mwu", mwu(), hparams={"beta": 0.1, "eta": 0.4}, meta=dict(_META, ignores=["beta", "pi_ref"]))
DYNAMICS.register("bt-rlhf", bt_rlhf(), hparams={"beta": 0.1, "eta": 1.0},
                  meta=dict(_META, needs_positive_beta=True, ignores=["eta"]))
