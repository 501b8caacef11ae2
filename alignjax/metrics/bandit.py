"""Exact limits of offline preference optimisation on a tabular bandit, to check runs against.

A tabular policy over ``N`` responses is a vector of logits ``theta`` (``pi = softmax(theta)``);
``h(y, y') = [theta(y) - log pi_ref(y)] - [theta(y') - log pi_ref(y')]`` is the log-ratio
margin of a pair. All functions are pure, jittable and batched over leading axes ``(...)``
(typically prompts); responses are the last axis.

* :func:`ipo_optimum`: the population IPO optimum (Azar et al. 2023, arXiv 2310.12036, Eq. 9
  with ``Psi`` the identity, ``mu`` uniform), ``pi ∝ pi_ref exp(p(y > mu) / beta)``. It differs
  from DPO's ``pi_ref exp(r / beta)`` (Rafailov et al. 2023, Eq. 4) whenever rewards differ.
* :func:`comparison_reach` / :func:`coverage_limit`: which responses a set of sampled pairs
  connects, and where gradient descent on DPO's loss with *exact* Bradley–Terry labels on
  those pairs ends: ``pi*`` inside each connected component, the reference's logit sum kept
  per component (no pair links two components, so nothing moves mass between them).
* :func:`implicit_reward_mse`: the error of DPO's implicit reward ``beta log pi/pi_ref``
  as an estimate of ``r`` (both centred): the part of a data-size gap that is statistical.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["ipo_optimum", "comparison_reach", "coverage_limit", "implicit_reward_mse"]


def _trailing(beta):
    """``beta`` with a trailing axis to broadcast against ``(..., N)`` (a scalar stays a scalar)."""
    beta = jnp.asarray(beta)
    return beta[..., None] if beta.ndim else beta


def ipo_optimum(log_pi_ref: ArrayLike, P: ArrayLike, beta: ArrayLike) -> jax.Array:
    """Population IPO optimum ``log pi(y) = log pi_ref(y) + p(y > mu) / beta - log Z``.

    ``p(y > mu) = (1/N) sum_{y'} P[y, y']`` is the win rate against the uniform ``mu`` (the
    sum includes ``y' = y``, so ``P`` must carry ``P[y, y] = 1/2``). This is Azar et al.'s
    Eq. 9 with ``Psi(q) = q`` (its ``tau`` is our ``beta``), the unique minimiser of their
    Eq. 13 (Theorem 2). It is also where least squares on every pair with targets
    ``(P[y, y'] - 1/2) / beta`` (the population form of the IPO loss
    ``(h - 1/(2 beta))^2`` with soft labels) ends, because on the complete graph the
    least-squares logits are the row means of the targets.

    Args:
      log_pi_ref: ``(..., N)`` normalised reference log-probabilities.
      P: ``(..., N, N)`` preference matrix, ``P[y, y'] + P[y', y] = 1``, diagonal ``1/2``.
      beta: ``tau`` in the paper, > 0, broadcastable to ``(...)``.

    Returns:
      ``(..., N)`` normalised log-probabilities.
    """
    win = jnp.mean(jnp.asarray(P), axis=-1)
    beta = _trailing(beta)
    return jax.nn.log_softmax(jnp.asarray(log_pi_ref) + win * (1.0 / beta), axis=-1)


def comparison_reach(first: ArrayLike, second: ArrayLike, used: ArrayLike, num_responses: int) -> jax.Array:
    """Which responses the observed pairs connect: ``R[y, y'] = True`` iff a path links them.

    The comparison graph has the ``N`` responses as nodes and an edge ``{first[i], second[i]}``
    for every pair with ``used[i] > 0``; ``R`` is its reflexive transitive closure (same
    connected component), computed by ``ceil(log2 N)`` boolean squarings.

    Args:
      first, second: ``(..., M)`` integer response indices of ``M`` candidate pairs.
      used: ``(..., M)``, > 0 for the pairs that are observed.
      num_responses: ``N`` (static).

    Returns:
      ``(..., N, N)`` boolean, symmetric, with a true diagonal.
    """
    oa = jax.nn.one_hot(first, num_responses) * (jnp.asarray(used) > 0)[..., None]
    ob = jax.nn.one_hot(second, num_responses)
    adj = jnp.einsum("...ma,...mb->...ab", oa, ob)
    reach = (adj + jnp.swapaxes(adj, -1, -2) + jnp.broadcast_to(jnp.eye(num_responses), adj.shape)) > 0
    for _ in range(max(1, math.ceil(math.log2(num_responses)))):
        r = reach.astype(jnp.float32)
        reach = (r @ r) > 0
    return reach


def coverage_limit(theta0: ArrayLike, log_pi_ref: ArrayLike, r: ArrayLike, beta: ArrayLike,
                   reach: ArrayLike) -> jax.Array:
    """Limit of gradient descent on DPO's loss with exact labels on a comparison graph.

    With soft labels ``sigmoid(r(y) - r(y'))`` on the observed pairs, DPO's loss is minimised
    exactly when ``beta h(y, y') = r(y) - r(y')`` on every observed pair, i.e. on each connected
    component ``C``: ``theta = log pi_ref + r / beta + c_C``. The loss depends on ``theta`` only
    through differences inside components, so its gradient sums to zero over each component and
    gradient descent keeps ``sum_{y in C} theta(y)`` at its initial value; that fixes ``c_C``:

        c_C = mean_{y in C} [theta0(y) - log pi_ref(y) - r(y) / beta].

    A response in no observed pair is its own component and keeps ``theta0``. With one component
    (every response connected) the limit is ``pi* ∝ pi_ref exp(r / beta)``.

    Args:
      theta0: ``(..., N)`` initial logits.
      log_pi_ref: ``(..., N)`` reference log-probabilities.
      r: ``(..., N)`` rewards of the Bradley–Terry labels.
      beta: > 0, broadcastable to ``(...)``.
      reach: ``(..., N, N)`` boolean from :func:`comparison_reach`.

    Returns:
      ``(..., N)`` normalised log-probabilities of the limit.
    """
    beta = _trailing(beta)
    base = jnp.asarray(log_pi_ref) + jnp.asarray(r) * (1.0 / beta)
    R = jnp.asarray(reach).astype(base.dtype)
    offset = jnp.einsum("...ab,...b->...a", R, jnp.asarray(theta0) - base) / jnp.sum(R, axis=-1)
    return jax.nn.log_softmax(base + offset, axis=-1)


def implicit_reward_mse(logp: ArrayLike, log_pi_ref: ArrayLike, r: ArrayLike, beta: ArrayLike) -> jax.Array:
    """``(1/N) sum_y [e(y) - mean e]^2`` with ``e = beta (log pi - log pi_ref) - r``.

    DPO's implicit reward ``beta log pi/pi_ref`` (Rafailov et al. 2023, Eq. 5) is defined up to
    a per-prompt constant, hence the centring. On every pair with labels it is the
    Bradley–Terry maximum-likelihood fit, so this is that estimate's squared error.

    Args:
      logp, log_pi_ref: ``(..., N)`` normalised log-probabilities.
      r: ``(..., N)`` true rewards.
      beta: > 0, broadcastable to ``(...)``.

    Returns:
      ``(...)``, >= 0.
    """
    e = _trailing(beta) * (jnp.asarray(logp) - jnp.asarray(log_pi_ref)) - jnp.asarray(r)
    return jnp.mean(jnp.square(e - jnp.mean(e, axis=-1, keepdims=True)), axis=-1)
