"""Direct-alignment losses on preference pairs: pure, elementwise, unreduced.

Every loss takes arrays of per-sequence log-probabilities of the same shape ``(...)``
(one entry per pair) and returns the per-pair loss of that shape; the caller reduces.
Common signature::

    loss(policy_chosen_logps, policy_rejected_logps,
         reference_chosen_logps, reference_rejected_logps, *, beta, **extra)

Notation (``docs/algorithms.md``, offline losses): for a pair ``(y_w, y_l)``
the log-ratio margin is

    h = [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)],

``beta > 0`` is the KL coefficient, and ``log_sigmoid`` is evaluated stably
(``-log_sigmoid(z) = softplus(-z)``), so the losses are finite for ``|beta * h|`` up to
at least ``1e7`` in float32.

Each loss is registered in :data:`alignjax.registry.LOSSES` with the defaults and declared
domains (:class:`alignjax.domains.Domain`) of its extra hyperparameters, so generic code (CLI,
tests) can call any of them and the command line refuses values outside the domains:
``eps`` in ``[0, 1/2)`` (cDPO, rDPO), ``gamma >= 0`` (SimPO, gamma-DPO), ``eta_sft >= 0`` (RPO),
``alpha`` in ``[0, 1]`` (f-DPO), ``z0 >= 0`` and ``lambda_d, lambda_u >= 0`` (KTO); the registry tests
probe each loss at its domains' corners (``beta`` is common to every loss: ``beta > 0``). Two of them declare a
domain (``meta["min_log_ratio"]``): f-DPO's alpha-divergence and forward-KL members
(:func:`fdpo_alpha`, :func:`fdpo_forward_kl`), whose values exceed float32's range for log-ratios
below about -88 (the registry contract tests them down to -60 instead of its full range). KTO's unpaired form and batch reference point (:func:`kto_unpaired`, :func:`kto_reference_point`)
are helpers of the registered pair loss :func:`kto`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from alignjax.domains import Domain
from alignjax.registry import LOSSES

_INF = float("inf")

__all__ = ["margin", "dpo", "ipo", "cdpo", "rdpo", "simpo", "rpo", "gamma_dpo", "slic", "gpo_truncated_quadratic",
           "gpo_savage", "fdpo_js", "fdpo_alpha", "fdpo_forward_kl", "kto", "kto_unpaired", "kto_reference_point",
           "orpo", "orpo_log_odds"]


def _check_logps(*logps) -> None:
    """Trace-time checks (chex; nothing runs per step under ``jit``): the log-probabilities given (``None``
    skipped) are floating and broadcast to one shape ``(...)`` (callers may pass e.g. ``(B, N, 1)`` and
    ``(B, 1, N)`` for all pairs); a mismatch raises ``AssertionError`` naming the shapes or dtypes."""
    xs = [jnp.asarray(x) for x in logps if x is not None]
    chex.assert_type(xs, float)
    shapes = [x.shape for x in xs]
    try:
        target = jnp.broadcast_shapes(*shapes)
    except ValueError:
        raise AssertionError(f"log-probabilities of shapes {shapes} do not broadcast to one shape (...)") from None
    for shape in shapes:
        chex.assert_is_broadcastable(shape, target)


def margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):
    """Log-ratio margin ``h = log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)``, shape ``(...)``.

    The four inputs are floating arrays that broadcast to one shape ``(...)`` (checked at trace time).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.margin(pc, pr, rc, rr)).round(4))
      [ 2. -1.]
    """
    _check_logps(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return (jnp.asarray(policy_chosen_logps) - jnp.asarray(reference_chosen_logps)) - (
        jnp.asarray(policy_rejected_logps) - jnp.asarray(reference_rejected_logps)
    )


@LOSSES.register("dpo")
def dpo(policy_chosen_logps: ArrayLike, policy_rejected_logps: ArrayLike,
        reference_chosen_logps: ArrayLike, reference_rejected_logps: ArrayLike,
        *, beta: ArrayLike) -> jax.Array:
    """DPO (Rafailov et al. 2023): ``l = -log sigmoid(beta * h)``.

    With soft labels ``alpha = P(y_w > y_l)`` the population loss
    ``alpha l(w,l) + (1-alpha) l(l,w)`` is minimised at ``sigmoid(beta h) = alpha``; under a
    Bradley–Terry reward ``r`` the optimum policy is ``pi* ∝ pi_ref exp(r / beta)``.

    Args:
      policy_chosen_logps, policy_rejected_logps: ``log pi(y_w|x)``, ``log pi(y_l|x)``, shape ``(...)``.
      reference_chosen_logps, reference_rejected_logps: the same under ``pi_ref``, shape ``(...)``.
      beta: KL coefficient, > 0, broadcastable to ``(...)``.

    Returns:
      Per-pair loss, shape ``(...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.dpo(pc, pr, rc, rr, beta=0.5)).round(4))
      [0.3133 0.9741]
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return -jax.nn.log_sigmoid(beta * h)


@LOSSES.register("ipo")
def ipo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        *, beta):
    """IPO (Azar et al. 2023): ``l = (h - 1/(2 beta))**2``.

    The regression target ``1/(2 beta)`` is the IPO paper's (its tau is our beta). Shapes as
    :func:`dpo`. Minimised (population, soft label ``alpha``) at ``h = (alpha - 1/2) / beta``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.ipo(pc, pr, rc, rr, beta=0.5)).round(4))
      [1. 4.]
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return jnp.square(h - 1.0 / (2.0 * beta))


@LOSSES.register("cdpo", hparams={"eps": Domain(0.1, 0.0, 0.5, upper_open=True,
                                                 why="eps = 1/2 ignores the labels, eps > 1/2 reverses them")})
def cdpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
         *, beta, eps):
    """Conservative DPO (label smoothing ``eps`` in [0, 1/2)).

    ``l = -(1-eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``; ``eps = 0`` is DPO.
    Shapes as :func:`dpo`; ``eps`` broadcastable.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.cdpo(pc, pr, rc, rr, beta=0.5, eps=0.1)).round(4))
      [0.4133 0.9241]
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return -(1.0 - eps) * jax.nn.log_sigmoid(beta * h) - eps * jax.nn.log_sigmoid(-beta * h)


@LOSSES.register("rdpo", hparams={"eps": Domain(0.1, 0.0, 0.5, upper_open=True, why="the loss divides by 1 - 2 eps")})
def rdpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
         *, beta, eps):
    """Robust DPO (Chowdhury et al. 2024) for labels flipped with rate ``eps < 1/2``.

    ``l = [(1-eps) l_dpo(w,l) - eps l_dpo(l,w)] / (1 - 2 eps)``. It is an unbiased estimate of
    the clean DPO loss: if the observed label is flipped with probability ``eps``, the
    expectation over flips of ``l`` equals ``l_dpo`` on the clean label. ``eps = 0`` is DPO.
    Note ``l`` can be negative, and the population loss ``alpha l(h) + (1-alpha) l(-h)`` has
    no minimiser when the soft label ``alpha`` lies outside ``(eps, 1-eps)``: it falls without
    bound as ``|h|`` grows. ``eps`` must be < 1/2 (checked by callers, not here). Shapes as
    :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.rdpo(pc, pr, rc, rr, beta=0.5, eps=0.1)).round(4))
      [0.1883 1.0366]
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    forward = -jax.nn.log_sigmoid(beta * h)
    backward = -jax.nn.log_sigmoid(-beta * h)
    return ((1.0 - eps) * forward - eps * backward) / (1.0 - 2.0 * eps)


@LOSSES.register("simpo", hparams={"gamma": Domain(0.5, 0.0, _INF, probe_upper=10.0, why="a target margin")}, meta={"uses_lengths": True, "uses_reference": False})
def simpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps=None,
          reference_rejected_logps=None, *, beta, gamma, chosen_lengths=1.0, rejected_lengths=1.0):
    """SimPO (Meng et al. 2024), reference-free and length-normalised.

    ``l = -log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma)``.
    The reference log-probs are accepted for a uniform signature and ignored. Lengths
    ``|y|`` (token counts, shape broadcastable to ``(...)``) default to 1 (no normalisation).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.simpo(pc, pr, beta=0.5, gamma=0.5)).round(4))
      [0.4741 1.3133]
    """
    _check_logps(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    del reference_chosen_logps, reference_rejected_logps
    z = beta * jnp.asarray(policy_chosen_logps) / chosen_lengths - beta * jnp.asarray(
        policy_rejected_logps) / rejected_lengths - gamma
    return -jax.nn.log_sigmoid(z)


@LOSSES.register("rpo", hparams={"eta_sft": Domain.nonnegative(0.005, probe_upper=10.0, why="the NLL term's weight")})
def rpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        *, beta, eta_sft):
    """RPO (Pang et al. 2024, official code): DPO plus a weighted NLL of the chosen response.

    ``l = -log sigmoid(beta h) + eta_sft * beta * (-log pi(y_w))`` with the *summed*
    sequence log-prob (TRL's variant averages over tokens and drops beta: not this one).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.rpo(pc, pr, rc, rr, beta=0.5, eta_sft=0.005)).round(4))
      [0.3158 0.9791]
    """
    return dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
               reference_rejected_logps, beta=beta) - eta_sft * beta * jnp.asarray(policy_chosen_logps)


@LOSSES.register("gamma_dpo", hparams={"gamma": Domain(1.0, 0.0, _INF, probe_upper=10.0,
                                                      why="the reference log-ratio's weight")})
def gamma_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
              *, beta, gamma):
    """gamma-scaled DPO (Chen et al. 2024, eq. 4).

    ``l = -log sigmoid(beta [log pi(y_w)/pi(y_l) + gamma log pi_ref(y_l)/pi_ref(y_w)])``.
    ``gamma = 1`` is DPO; ``gamma = 0`` drops the reference. Shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.gamma_dpo(pc, pr, rc, rr, beta=0.5, gamma=0.5)).round(4))
      [0.3133 0.9741]
    """
    _check_logps(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    z = (jnp.asarray(policy_chosen_logps) - jnp.asarray(policy_rejected_logps)) + gamma * (
        jnp.asarray(reference_rejected_logps) - jnp.asarray(reference_chosen_logps))
    return -jax.nn.log_sigmoid(beta * z)


# ---------------------------------------------------------------------------- the GPO family
# Tang et al. 2024, "Generalized Preference Optimization: A Unified Approach to Offline Alignment"
# (arXiv 2402.05749): an offline loss is a convex function f of rho = beta * h; f(x) = log(1 + e^-x)
# is DPO, (x - 1)^2 an IPO-like squared loss, max(0, 1 - x) SLiC's hinge. Three members with
# bounded gradients are registered here (the exponential member e^-x overflows float32 for
# beta * h below about -88, so it is left out).


@LOSSES.register("slic")
def slic(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
         *, beta):
    """SLiC hinge (Zhao et al. 2023, calibration loss on the log-ratio margin; GPO's hinge member).

    ``l = max(0, 1 - beta * h)``: zero once the margin reaches ``1/beta``, so unlike DPO it stops
    pushing a pair that is separated by the margin (the same as TRL's ``loss_type="hinge"``).
    Shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.slic(pc, pr, rc, rr, beta=0.25)).round(4))
      [0.5  1.25]
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return jax.nn.relu(1.0 - beta * h)


@LOSSES.register("gpo_truncated_quadratic")
def gpo_truncated_quadratic(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                            reference_rejected_logps, *, beta):
    """GPO's truncated quadratic (Tang et al. 2024): ``l = max(0, 1 - beta * h)^2``.

    A smooth hinge: zero beyond ``h = 1/beta``, quadratic below. Shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.gpo_truncated_quadratic(pc, pr, rc, rr, beta=0.25)).round(4))
      [0.25   1.5625]
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return jnp.square(jax.nn.relu(1.0 - beta * h))


@LOSSES.register("gpo_savage")
def gpo_savage(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
               *, beta):
    """GPO's Savage loss (Tang et al. 2024; Masnadi-Shirazi & Vasconcelos 2008):
    ``l = 1 / (1 + e^{beta h})^2 = sigmoid(-beta h)^2``.

    Bounded in ``[0, 1]`` (non-convex): a badly misranked pair contributes at most 1 and a
    vanishing gradient, which makes it robust to label noise. Shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.gpo_savage(pc, pr, rc, rr, beta=0.5)).round(4))
      [0.0723 0.3875]
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return jnp.square(jax.nn.sigmoid(-beta * h))


# ---------------------------------------------------------------------------- f-DPO
# Wang et al. 2023, "Beyond Reverse KL: Generalizing Direct Preference Optimization with Diverse
# Divergence Constraints" (arXiv 2309.16240). Regularising with an f-divergence D_f(pi || pi_ref)
# instead of the reverse KL, the optimal policy satisfies r = beta f'(pi/pi_ref) + const, and the
# Bradley-Terry likelihood becomes the f-DPO loss -log sigmoid(beta [psi(u_w) - psi(u_l)]) with
# u = pi/pi_ref and psi = f'. The reverse KL (f = u log u, psi = log u + 1) gives DPO exactly.
# Everything is written on the log-ratio l = log u. Jensen-Shannon is finite everywhere. The
# alpha-divergence and forward-KL members have psi(u) = (1 - u^-alpha)/alpha, which grows like
# e^{-alpha l} as l -> -inf: the loss itself (not just an intermediate) exceeds float32's range for
# log-ratios below about -88/alpha, so no float32 code can be right there. They are registered with
# a declared domain, meta["min_log_ratio"] = -60 (log pi - log pi_ref >= -60 on both responses, a
# factor e^-60 below the reference), which the registry contract tests instead of its full range; a
# run that leaves the domain overflows to inf and is stopped as non-finite, never returned quietly.
# (GPO's exponential member could be registered the same way; it is not yet.)
MIN_LOG_RATIO_FDPO = -60.0


def _exprel(x):
    """``(e^x - 1) / x`` with its limit 1 at ``x = 0``; Taylor series (to ``x^4``) for ``|x| < 1e-3``
    so that values and gradients are exact to float64 rounding there."""
    small = jnp.abs(x) < 1e-3
    safe = jnp.where(small, 1.0, x)
    series = 1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0))))
    return jnp.where(small, series, jnp.expm1(safe) / safe)


@LOSSES.register("fdpo_js")
def fdpo_js(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
            *, beta):
    """f-DPO with the Jensen–Shannon divergence (Wang et al. 2023, the f-DPO loss with Table 1's JS row).

    ``f(u) = u log u - (u + 1) log((u + 1)/2)``, ``psi(u) = f'(u) = log(2u / (1 + u)) = log 2 +
    log sigmoid(l)`` with ``l = log pi(y)/pi_ref(y)``, so

    ``l = -log sigmoid(beta [log sigmoid(l_w) - log sigmoid(l_l)])``.

    The score is bounded above (``psi <= log 2``) and falls linearly, like DPO's ``log u``, as
    ``l -> -inf``: the gradient in ``l_w`` carries a factor ``sigmoid(-l_w)``, so a chosen response
    whose ratio is already large is no longer pushed up, while the rejected one is pushed down as
    in DPO. Values and gradients are finite in float32 for any inputs. TRL's
    ``f_divergence_type="js_divergence"`` is the same formula. Shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.fdpo_js(pc, pr, rc, rr, beta=0.5)).round(4))
      [0.4741 0.7926]
    """
    _check_logps(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    lw = jnp.asarray(policy_chosen_logps) - jnp.asarray(reference_chosen_logps)
    ll = jnp.asarray(policy_rejected_logps) - jnp.asarray(reference_rejected_logps)
    return -jax.nn.log_sigmoid(beta * (jax.nn.log_sigmoid(lw) - jax.nn.log_sigmoid(ll)))


@LOSSES.register("fdpo_alpha", hparams={"alpha": Domain(0.5, 0.0, 1.0, why="alpha-divergence from reverse (0) to forward KL (1)")},
                 meta={"min_log_ratio": MIN_LOG_RATIO_FDPO})
def fdpo_alpha(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
               *, beta, alpha):
    """f-DPO with the alpha-divergence, ``alpha`` in ``[0, 1]`` (Wang et al. 2023, Table 1's alpha row).

    ``psi(u) = f'(u) = (1 - u^{-alpha}) / alpha``; on log-ratios ``l`` and with the margin
    ``h = l_w - l_l``,

    ``psi(u_w) - psi(u_l) = (e^{-alpha l_l} - e^{-alpha l_w}) / alpha
                          = h * exprel(-alpha |h|) * exp(-alpha min(l_w, l_l))``,

    ``exprel(x) = (e^x - 1)/x``, and ``l = -log sigmoid(beta (psi_w - psi_l))``. The factored form is
    free of cancellation for small ``alpha`` and exact at the ends: ``alpha = 0`` is DPO (``psi =
    log u``) and ``alpha = 1`` is the forward KL (``psi = 1 - 1/u``, :func:`fdpo_forward_kl`).

    Registered with the declared domain ``log pi - log pi_ref >= -60`` (see the section comment): the
    loss is finite in float32 only while
    ``beta |psi_w - psi_l|`` stays below float32's maximum, which holds for ``alpha (-l) <= 60`` on
    both responses with ``beta <= 1e3`` and ``|h| <= 1e4`` (``tests/test_losses.py`` checks this
    domain, and that the value overflows beyond it). TRL's ``alpha_divergence`` has used both
    orientations: newer versions write the score as ``(t^{a - 1} - 1)/(a - 1)`` with the coefficient
    ``a = 1 - alpha`` (``a = 1`` the reverse KL), older ones ``(e^{-a l_l} - e^{-a l_w})/a`` with
    ``a = alpha`` (``a = 1``, their default, the forward KL); the f-DPO authors' code
    (``alpha_dpo_loss``, score ``-u^{-alpha}/alpha``) is oriented as here. ``alpha`` is
    broadcastable to ``(...)``; shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.fdpo_alpha(pc, pr, rc, rr, beta=0.5, alpha=0.5)).round(4))
      [0.3021 0.9091]
    """
    _check_logps(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    lw = jnp.asarray(policy_chosen_logps) - jnp.asarray(reference_chosen_logps)
    ll = jnp.asarray(policy_rejected_logps) - jnp.asarray(reference_rejected_logps)
    h = lw - ll
    d = h * _exprel(-alpha * jnp.abs(h)) * jnp.exp(-alpha * jnp.minimum(lw, ll))
    return -jax.nn.log_sigmoid(beta * d)


@LOSSES.register("fdpo_forward_kl", meta={"min_log_ratio": MIN_LOG_RATIO_FDPO})
def fdpo_forward_kl(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                    *, beta):
    """f-DPO with the forward KL ``KL(pi_ref || pi)`` (Wang et al. 2023, Table 1's forward-KL row).

    ``f(u) = -log u``, ``psi(u) = -1/u``: ``l = -log sigmoid(beta (e^{-l_l} - e^{-l_w}))``, i.e.
    :func:`fdpo_alpha` at ``alpha = 1`` (computed by it). Registered with the declared domain: finite
    in float32 for log-ratios above about -60 (see :func:`fdpo_alpha`). TRL's ``f_divergence_type="forward_kl"``
    (score ``1 - 1/t``) is the same loss. Shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.fdpo_forward_kl(pc, pr, rc, rr, beta=0.5)).round(4))
      [0.2691 0.8636]
    """
    return fdpo_alpha(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                      beta=beta, alpha=1.0)


# ---------------------------------------------------------------------------- KTO
# Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization" (arXiv 2402.01306,
# Sec. 4, the KTO loss): unpaired feedback, each example desirable or undesirable, valued against a
# reference point z0 = KL(pi || pi_ref) that receives no gradient.


def kto_unpaired(policy_logps, reference_logps, desirable, *, beta, z0, lambda_d, lambda_u):
    """KTO on unpaired examples (Ethayarajh et al. 2024, Sec. 4: ``L_KTO = E[lambda_y - v(x, y)]``).

    With ``r = log pi(y|x) - log pi_ref(y|x)``,
    ``v = lambda_D sigmoid(beta (r - z0))`` for a desirable ``y`` and ``lambda_U sigmoid(beta (z0 - r))``
    for an undesirable one, so the per-example loss is

    ``lambda_D sigmoid(beta (z0 - r))`` (desirable), ``lambda_U sigmoid(beta (r - z0))`` (undesirable)

    (``lambda_y - lambda_y sigmoid(x) = lambda_y sigmoid(-x)``). Bounded by ``lambda_y``, gradients
    bounded by ``beta lambda_y / 4``: finite in float32 for any inputs.

    Args:
      policy_logps, reference_logps: ``log pi(y|x)``, ``log pi_ref(y|x)``, shape ``(...)``.
      desirable: bool (or 0/1) array broadcastable to ``(...)``; True for a desirable example.
      beta: > 0. z0: the reference point (a hyperparameter here; :func:`kto_reference_point` gives
        the paper's batch estimate). lambda_d, lambda_u: the weights of desirable and undesirable
        examples. All broadcastable to ``(...)``.

    Returns:
      Per-example loss, shape ``(...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.kto_unpaired(pc, rc, jnp.array([True, False]), beta=0.5, z0=0.0, lambda_d=1.0, lambda_u=1.0)).round(4))
      [0.3775 0.5   ]
    """
    _check_logps(policy_logps, reference_logps)
    r = jnp.asarray(policy_logps) - jnp.asarray(reference_logps)
    good = lambda_d * jax.nn.sigmoid(beta * (z0 - r))
    bad = lambda_u * jax.nn.sigmoid(beta * (r - z0))
    return jnp.where(jnp.asarray(desirable, bool), good, bad)


def kto_reference_point(policy_logps, reference_logps):
    """KTO's reference point as the paper and TRL estimate it: ``z0 = max(0, mean(log pi - log pi_ref))``
    over a batch of *mismatched* completions (each prompt paired with another example's completion,
    TRL shifts the batch by one), with no gradient (``stop_gradient``). Returns a scalar.

    This couples the examples of a batch, so the registered per-pair :func:`kto` takes ``z0`` as a
    hyperparameter instead; pass this estimate as ``z0`` to reproduce TRL's batch loss.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.kto_reference_point(pc, rc)).round(4))
      0.5
    """
    _check_logps(policy_logps, reference_logps)
    kl = jnp.mean(jnp.asarray(policy_logps) - jnp.asarray(reference_logps))
    return jax.lax.stop_gradient(jnp.maximum(kl, 0.0))


@LOSSES.register("kto", hparams={"z0": Domain(0.0, 0.0, _INF, probe_upper=100.0, why="a KL estimate, max(0, .)"),
                                 "lambda_d": Domain.nonnegative(1.0, probe_upper=10.0, why="a weight"),
                                 "lambda_u": Domain.nonnegative(1.0, probe_upper=10.0, why="a weight")})
def kto(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        *, beta, z0, lambda_d, lambda_u):
    """KTO on a pair (Ethayarajh et al. 2024, Sec. 4): the chosen response as a desirable example, the
    rejected one as an undesirable example, the two averaged:

    ``l = 1/2 [lambda_D sigmoid(beta (z0 - r_w)) + lambda_U sigmoid(beta (r_l - z0))]``,
    ``r = log pi(y) - log pi_ref(y)``.

    The mean of ``l`` over pairs is the paper's expectation over the ``2n`` examples (TRL's batch
    loss on a balanced batch). The reference point ``z0`` is a hyperparameter (default 0), not the
    batch estimate, so that the loss stays elementwise; :func:`kto_reference_point` computes the
    estimate. ``z0 = 0``, ``lambda = 1`` is the sum ``sigmoid(-beta r_w) + sigmoid(beta r_l)``, not
    a function of the margin ``h`` alone (unlike DPO). Shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.kto(pc, pr, rc, rr, beta=0.5, z0=0.0, lambda_d=1.0, lambda_u=1.0)).round(4))
      [0.3775 0.5612]
    """
    _check_logps(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    good = kto_unpaired(policy_chosen_logps, reference_chosen_logps, True, beta=beta, z0=z0, lambda_d=lambda_d,
                        lambda_u=lambda_u)
    bad = kto_unpaired(policy_rejected_logps, reference_rejected_logps, False, beta=beta, z0=z0, lambda_d=lambda_d,
                       lambda_u=lambda_u)
    return 0.5 * (good + bad)


# ---------------------------------------------------------------------------- ORPO
# Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model" (arXiv
# 2403.07691): supervised fine-tuning on the chosen response plus an odds-ratio penalty, no reference.


def orpo_log_odds(avg_logps):
    """``log odds(y) = log [P / (1 - P)] = a - log(1 - e^a)`` for the length-averaged log-prob
    ``a = log pi(y)/|y|`` (``P = e^a``; Hong et al. 2024, Eq. 4, not re-checked), shape ``(...)``.

    ``log(1 - e^a)`` is computed stably (``log(-expm1(a))`` for ``a > -log 2``, ``log1p(-e^a)``
    below). A probability of exactly 1 has infinite odds, so ``a`` is first capped at ``-eps``, the
    dtype's machine epsilon (an average log-prob within one ulp of 0 is rounding noise): the log-odds
    are then at most ``-log eps`` (about 15.9 in float32, 36 in float64) and their derivative at most
    ``1/eps``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.orpo_log_odds(jnp.array([-0.1, -2.0]))).round(4))
      [ 2.2522 -1.8546]
    """
    _check_logps(avg_logps)
    a = jnp.asarray(avg_logps)
    a = jnp.minimum(a, -jnp.finfo(a.dtype).eps)
    log1mexp = jnp.where(a > -0.6931471805599453, jnp.log(-jnp.expm1(a)), jnp.log1p(-jnp.exp(a)))
    return a - log1mexp


@LOSSES.register("orpo", meta={"uses_lengths": True, "uses_reference": False})
def orpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps=None, reference_rejected_logps=None,
         *, beta, chosen_lengths=1.0, rejected_lengths=1.0):
    """ORPO (Hong et al. 2024, Eqs. 6-7), reference-free:

    ``l = -log pi(y_w)/|y_w| - beta log sigmoid(log odds(y_w) - log odds(y_l))``

    with the odds of :func:`orpo_log_odds` on length-averaged log-probs. The first term is
    ``L_SFT`` (the chosen response's NLL, averaged over its tokens), the second ``lambda L_OR`` with
    the paper's ``lambda`` as our ``beta`` (TRL's ORPO ``beta`` is the same weight). The reference
    log-probs are accepted for a uniform signature and ignored; lengths ``|y|`` (token counts,
    broadcastable to ``(...)``) default to 1. Finite in float32 for any log-probs ``<= 0`` and any
    ``beta <= 1e3`` (the log-odds cap of :func:`orpo_log_odds`). Shapes as :func:`dpo`.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import losses
      >>> pc, pr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0])  # log pi(y_w), log pi(y_l)
      >>> rc = rr = jnp.array([-2.0, -2.0])  # under pi_ref: margins h = 2 and -1
      >>> print(np.asarray(losses.orpo(pc, pr, beta=0.5)).round(4))
      [1.0431 2.7757]
    """
    _check_logps(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    del reference_chosen_logps, reference_rejected_logps
    aw = jnp.asarray(policy_chosen_logps) / chosen_lengths
    al = jnp.asarray(policy_rejected_logps) / rejected_lengths
    return -aw - beta * jax.nn.log_sigmoid(orpo_log_odds(aw) - orpo_log_odds(al))
