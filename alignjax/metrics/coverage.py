"""Coverage metrics for preference fine-tuning (Song et al. 2024, arXiv 2406.01462).

All functions take full log-distributions over the ``N`` responses (last axis) and are
batched over any leading axes ``(...)`` (typically ``(..., X)`` prompts); they are pure and
jittable. Conventions (``docs/algorithms.md`` §0, §5.2):

* ``KL(p || q) = sum_y p(y) log p(y)/q(y)``; the **reverse KL** of a policy is
  ``KL(pi || pi_ref)`` (expectation under the policy, so it needs on-policy samples to estimate);
* the **density ratio** ``pi(y|x) / pi_ref(y|x)``; the paper's global coverage asks
  ``max_{x,y} pi(y|x)/pi_ref(y|x) <= C`` for every policy considered, partial coverage only for
  policies close to ``pi_ref`` (a KL ball);
* the **support** ``S(x)`` of an offline dataset: the responses appearing in some pair;
* the KL-regularised objective under the true reward ``r``:
  ``J_beta(pi) = E_{y~pi}[r(x, y)] - beta KL(pi(.|x) || pi_ref(.|x))``, maximised by
  ``pi*_beta ∝ pi_ref exp(r / beta)`` with value ``beta log E_{pi_ref}[exp(r/beta)]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "reverse_kl", "max_density_ratio", "mass_outside", "data_coverage", "expected_reward",
    "kl_objective", "optimal_policy", "optimal_objective", "coverage_report", "global_coverage",
    "local_coverage",
]


def reverse_kl(logp: ArrayLike, log_pi_ref: ArrayLike) -> jax.Array:
    """``KL(pi || pi_ref) = sum_y pi(y) [log pi(y) - log pi_ref(y)]``.

    Args:
      logp, log_pi_ref: ``(..., N)`` normalised log-probabilities.

    Returns:
      ``(...)``, >= 0. Terms with ``pi(y) = 0`` contribute 0 (even if ``pi_ref(y) = 0``).
    """
    lp = jnp.asarray(logp)
    p = jnp.exp(lp)
    diff = jnp.where(p > 0, lp - jnp.asarray(log_pi_ref), 0.0)
    return jnp.sum(p * diff, axis=-1)


def max_density_ratio(logp: ArrayLike, log_pi_ref: ArrayLike) -> jax.Array:
    """``max_y pi(y) / pi_ref(y)`` (the per-prompt coverage coefficient of ``pi``), shape ``(...)``.

    Computed as ``exp(max_y [log pi - log pi_ref])``; ``inf`` if ``pi`` puts mass where
    ``pi_ref`` has none. Reduce over prompts with ``max`` for the paper's ``C``.
    """
    return jnp.exp(jnp.max(jnp.asarray(logp) - jnp.asarray(log_pi_ref), axis=-1))


def mass_outside(logp: ArrayLike, support: ArrayLike) -> jax.Array:
    """Probability the policy puts outside the data's support: ``sum_{y not in S} pi(y)``, ``(...)``.

    Args:
      logp: ``(..., N)``.
      support: ``(..., N)`` bool (broadcastable), ``True`` for responses seen in the data.
    """
    p = jnp.exp(jnp.asarray(logp))
    return jnp.sum(jnp.where(jnp.asarray(support, bool), 0.0, p), axis=-1)


def data_coverage(support: ArrayLike, log_pi_ref: ArrayLike | None = None) -> jax.Array:
    """How much of the response space the data covers, per prompt, shape ``(...)``.

    Without ``log_pi_ref``: the fraction of responses in ``S``, ``|S| / N``. With it: the
    reference mass on the support, ``sum_{y in S} pi_ref(y)`` (1 under global coverage).
    """
    s = jnp.asarray(support, bool)
    if log_pi_ref is None:
        return jnp.mean(s.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.where(s, jnp.exp(jnp.asarray(log_pi_ref)), 0.0), axis=-1)


def expected_reward(logp: ArrayLike, rewards: ArrayLike) -> jax.Array:
    """True reward of the policy ``E_{y~pi}[r(y)] = sum_y pi(y) r(y)``, shape ``(...)``."""
    return jnp.sum(jnp.exp(jnp.asarray(logp)) * jnp.asarray(rewards), axis=-1)


def kl_objective(logp: ArrayLike, log_pi_ref: ArrayLike, rewards: ArrayLike, beta: ArrayLike) -> jax.Array:
    """KL-regularised objective ``J_beta(pi) = E_pi[r] - beta KL(pi || pi_ref)``, shape ``(...)``.

    ``beta`` broadcastable to ``(...)``. Its maximum is :func:`optimal_objective`.
    """
    return expected_reward(logp, rewards) - jnp.asarray(beta) * reverse_kl(logp, log_pi_ref)


def optimal_policy(log_pi_ref: ArrayLike, rewards: ArrayLike, beta: ArrayLike) -> jax.Array:
    """``log pi*_beta = log_softmax(log pi_ref + r / beta)``, the maximiser of :func:`kl_objective`.

    The one home of ``pi* ∝ pi_ref exp(r / beta)`` (the KL-regularised RLHF optimum, also DPO's
    population minimiser and BT-RLHF's policy on a preference game).

    ``beta`` broadcastable to ``(...)`` (it is expanded over the response axis). Shape ``(..., N)``.
    """
    b = jnp.asarray(beta)
    b = b[..., None] if b.ndim else b
    # r * (1/beta), not r / beta: XLA rewrites the division differently on one and on several
    # devices (see alignjax.sweep), which would break device-count invariance
    return jax.nn.log_softmax(jnp.asarray(log_pi_ref) + jnp.asarray(rewards) * (1.0 / b), axis=-1)


def optimal_objective(log_pi_ref: ArrayLike, rewards: ArrayLike, beta: ArrayLike) -> jax.Array:
    """``max_pi J_beta(pi) = beta * logsumexp(log pi_ref + r / beta)``, shape ``(...)``."""
    b = jnp.asarray(beta)
    be = b[..., None] if b.ndim else b
    # r * (1/beta) as in optimal_policy (device-count invariance of a traced beta)
    return b * jax.nn.logsumexp(jnp.asarray(log_pi_ref) + jnp.asarray(rewards) * (1.0 / be), axis=-1)


def global_coverage(log_pi_ref: ArrayLike) -> jax.Array:
    """Global coverage coefficient of the **tabular** policy class: ``C_glo = sup_pi max_{x,y} pi/pi_ref``.

    Every policy is allowed, so the supremum puts all of a prompt's mass on its least likely
    response: ``C_glo = max_{x,y} 1 / pi_ref(y|x)`` (``inf`` if ``pi_ref`` has a zero). Scalar.
    """
    return jnp.exp(-jnp.min(jnp.asarray(log_pi_ref)))


def local_coverage(log_pi_ref: ArrayLike, radius: ArrayLike, iters: int = 60) -> jax.Array:
    """Local (KL-ball) coverage coefficient of the tabular class, per prompt:
    ``C(kappa) = sup {pi(y)/pi_ref(y) : y, KL(pi || pi_ref) <= kappa}``, shape ``(...)``.

    For one response ``y`` with ``q = pi_ref(y)`` the KL-cheapest way to give it mass ``p`` keeps
    the other responses in their reference proportions, at cost the binary KL
    ``kl(p, q) = p log(p/q) + (1-p) log((1-p)/(1-q))``, increasing in ``p >= q``; so the sup is
    ``max_y p*(q_y)/q_y`` with ``kl(p*, q) = kappa``, found by bisection on ``p in [q, 1]``
    (``iters`` halvings). If ``kl(1, q) = -log q <= kappa`` the whole mass fits: ``p* = 1``.
    The KL ball here is per prompt; the paper's ball bounds the prompt average.
    """
    q = jnp.exp(jnp.asarray(log_pi_ref, jnp.float32))
    kappa = jnp.asarray(radius, jnp.float32)

    def kl(p):
        return p * jnp.log(p / q) + jnp.where(p < 1, (1 - p) * jnp.log1p(-p) - (1 - p) * jnp.log1p(-q), 0.0)

    def body(_, lo_hi):
        lo, hi = lo_hi
        mid = 0.5 * (lo + hi)
        ok = kl(mid) <= kappa
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iters, body, (q, jnp.ones_like(q)))
    p = jnp.where(-jnp.log(q) <= kappa, 1.0, lo)
    return jnp.max(p / q, axis=-1)


def coverage_report(logp: ArrayLike, log_pi_ref: ArrayLike, rewards: ArrayLike, support: ArrayLike,
                    beta: ArrayLike, rho: ArrayLike | None = None) -> dict[str, jax.Array]:
    """Every coverage metric of a policy table ``(X, N)``, averaged over prompts with weights ``rho``.

    Args:
      logp, log_pi_ref, rewards: ``(X, N)``; ``support``: ``(X, N)`` bool.
      beta: scalar KL coefficient of the objective.
      rho: ``(X,)`` prompt weights summing to 1 (uniform if None).

    Returns:
      Scalars: ``reward`` (``E_x E_pi r``), ``kl`` (``E_x KL(pi||pi_ref)``), ``objective``
      (``reward - beta kl``), ``gap`` (``max J - J >= 0``), ``mass_outside`` (``E_x pi(not S)``),
      ``max_ratio`` (``max_{x,y} pi/pi_ref``), ``log_max_ratio``.
    """
    lp = jnp.asarray(logp)
    num_prompts = lp.shape[-2]
    w = jnp.full((num_prompts,), 1.0 / num_prompts) if rho is None else jnp.asarray(rho)
    rew = expected_reward(lp, rewards) @ w
    kl = reverse_kl(lp, log_pi_ref) @ w
    obj = rew - beta * kl
    best = optimal_objective(log_pi_ref, rewards, jnp.broadcast_to(jnp.asarray(beta), (num_prompts,))) @ w
    log_ratio = jnp.max(lp - jnp.asarray(log_pi_ref))
    return {"reward": rew, "kl": kl, "objective": obj, "gap": best - obj,
            "mass_outside": mass_outside(lp, support) @ w, "max_ratio": jnp.exp(log_ratio),
            "log_max_ratio": log_ratio}
