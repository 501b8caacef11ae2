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

Each loss is registered in :data:`alignjax.registry.LOSSES` with the defaults of its
extra hyperparameters, so generic code (CLI, tests) can call any of them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from alignjax.registry import LOSSES

__all__ = ["margin", "dpo", "ipo", "cdpo", "rdpo", "simpo", "rpo", "gamma_dpo", "slic", "gpo_truncated_quadratic",
           "gpo_savage"]


def margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps):
    """Log-ratio margin ``h = log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)``, shape ``(...)``."""
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
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return -jax.nn.log_sigmoid(beta * h)


@LOSSES.register("ipo")
def ipo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        *, beta):
    """IPO (Azar et al. 2023): ``l = (h - 1/(2 beta))**2``.

    The regression target ``1/(2 beta)`` is the IPO paper's (its tau is our beta). Shapes as
    :func:`dpo`. Minimised (population, soft label ``alpha``) at ``h = (alpha - 1/2) / beta``.
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return jnp.square(h - 1.0 / (2.0 * beta))


@LOSSES.register("cdpo", hparams={"eps": 0.1})
def cdpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
         *, beta, eps):
    """Conservative DPO (label smoothing ``eps`` in [0, 1/2)).

    ``l = -(1-eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``; ``eps = 0`` is DPO.
    Shapes as :func:`dpo`; ``eps`` broadcastable.
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return -(1.0 - eps) * jax.nn.log_sigmoid(beta * h) - eps * jax.nn.log_sigmoid(-beta * h)


@LOSSES.register("rdpo", hparams={"eps": 0.1})
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
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    forward = -jax.nn.log_sigmoid(beta * h)
    backward = -jax.nn.log_sigmoid(-beta * h)
    return ((1.0 - eps) * forward - eps * backward) / (1.0 - 2.0 * eps)


@LOSSES.register("simpo", hparams={"gamma": 0.5}, meta={"uses_lengths": True, "uses_reference": False})
def simpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps=None,
          reference_rejected_logps=None, *, beta, gamma, chosen_lengths=1.0, rejected_lengths=1.0):
    """SimPO (Meng et al. 2024), reference-free and length-normalised.

    ``l = -log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma)``.
    The reference log-probs are accepted for a uniform signature and ignored. Lengths
    ``|y|`` (token counts, shape broadcastable to ``(...)``) default to 1 (no normalisation).
    """
    del reference_chosen_logps, reference_rejected_logps
    z = beta * jnp.asarray(policy_chosen_logps) / chosen_lengths - beta * jnp.asarray(
        policy_rejected_logps) / rejected_lengths - gamma
    return -jax.nn.log_sigmoid(z)


@LOSSES.register("rpo", hparams={"eta_sft": 0.005})
def rpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
        *, beta, eta_sft):
    """RPO (Pang et al. 2024, official code): DPO plus a weighted NLL of the chosen response.

    ``l = -log sigmoid(beta h) + eta_sft * beta * (-log pi(y_w))`` with the *summed*
    sequence log-prob (TRL's variant averages over tokens and drops beta: not this one).
    """
    return dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
               reference_rejected_logps, beta=beta) - eta_sft * beta * jnp.asarray(policy_chosen_logps)


@LOSSES.register("gamma_dpo", hparams={"gamma": 1.0})
def gamma_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
              *, beta, gamma):
    """gamma-scaled DPO (Chen et al. 2024, eq. 4).

    ``l = -log sigmoid(beta [log pi(y_w)/pi(y_l) + gamma log pi_ref(y_l)/pi_ref(y_w)])``.
    ``gamma = 1`` is DPO; ``gamma = 0`` drops the reference. Shapes as :func:`dpo`.
    """
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
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return jax.nn.relu(1.0 - beta * h)


@LOSSES.register("gpo_truncated_quadratic")
def gpo_truncated_quadratic(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                            reference_rejected_logps, *, beta):
    """GPO's truncated quadratic (Tang et al. 2024): ``l = max(0, 1 - beta * h)^2``.

    A smooth hinge: zero beyond ``h = 1/beta``, quadratic below. Shapes as :func:`dpo`.
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
    """
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return jnp.square(jax.nn.sigmoid(-beta * h))
