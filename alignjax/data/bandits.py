"""Contextual bandits with a hidden reward and offline preference data of controlled support.

The coverage experiments of Song et al. 2024 ("The Importance of Online Data: Understanding
Preference Fine-tuning via Coverage", arXiv 2406.01462) need three ingredients, all generated
here in code from an explicit ``jax.random.key``:

* a **bandit**: ``X`` prompts, ``N`` responses per prompt, a hidden true reward
  ``r(x, y)`` and response features ``phi(x, y) in R^d`` (:func:`linear_bandit`: the reward is
  linear in the features, ``r = <phi, w*>``, so log-linear policies and linear reward models are
  well specified and can extrapolate to responses never seen in the data);
* a **support** ``S(x)``: the responses that appear in the offline data (:func:`support_mask`,
  or :func:`support_without_best` for the extrapolation toy where the best response is unseen),
  and a reference policy ``pi_ref`` that still puts mass ``ref_mass_outside`` outside ``S``
  (:func:`reference_with_outside_mass`);
* **offline pairs** ``(x, y_w, y_l)`` labelled by a Bradley–Terry draw from the hidden reward
  (:func:`sample_pairs`), or the population of all pairs with soft-label weights
  (:func:`population_pairs`).

Global coverage is the mask of all ones (every response appears in some pair); partial
coverage is a strict subset. Every function is pure and jittable; sizes are static Python ints,
while the coverage level (``num_in_support``, ``ref_mass_outside``) may be arrays so a sweep
can ``vmap`` over datasets.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from alignjax.policies.base import sample_from_logps

__all__ = [
    "Bandit", "Pairs", "linear_bandit", "support_mask", "support_without_best",
    "reference_with_outside_mass", "sample_pairs", "population_pairs", "pair_support", "random_features",
]


class Bandit(NamedTuple):
    """A contextual bandit with a hidden reward.

    Attributes:
      rewards: ``(X, N)`` true reward ``r(x, y)`` (never shown to a learner).
      features: ``(X, N, d)`` response features ``phi(x, y)``.
      base_logits: ``(X, N)`` logits of a base reference policy (before the support split).
      reward_weights: ``(d,)`` the hidden ``w*`` with ``r = phi @ w*``.
    """

    rewards: jax.Array
    features: jax.Array
    base_logits: jax.Array
    reward_weights: jax.Array


class Pairs(NamedTuple):
    """Offline preference pairs (one row per pair), weighted.

    Attributes:
      x: ``(M,)`` int prompt index.
      y_w, y_l: ``(M,)`` int chosen / rejected responses.
      weight: ``(M,)`` non-negative weights summing to 1 (a loss over pairs is
        ``sum_m weight[m] * loss_m``); rows with ``y_w == y_l`` carry weight 0.
    """

    x: jax.Array
    y_w: jax.Array
    y_l: jax.Array
    weight: jax.Array


def linear_bandit(key: jax.Array, num_prompts: int, num_responses: int, num_features: int, *,
                  reward_scale: float = 1.0, ref_scale: float = 1.0) -> Bandit:
    """A bandit whose reward is linear in random features: ``r(x, y) = <phi(x, y), w*>``.

    ``phi(x, y) ~ N(0, I_d / d)`` i.i.d., ``w* ~ N(0, I_d)`` rescaled so that the rewards have
    standard deviation about ``reward_scale``; base reference logits ``~ ref_scale * N(0, 1)``
    (independent of the reward, so ``pi_ref`` is not already aligned).

    Args:
      key: ``jax.random.key``.
      num_prompts, num_responses, num_features: ``X``, ``N``, ``d`` (static).
      reward_scale: target std of the rewards.
      ref_scale: std of the base reference logits.

    Returns:
      A :class:`Bandit`.
    """
    k_phi, k_w, k_ref = jax.random.split(key, 3)
    phi = jax.random.normal(k_phi, (num_prompts, num_responses, num_features)) / jnp.sqrt(num_features)
    w = jax.random.normal(k_w, (num_features,))
    w = reward_scale * w * jnp.sqrt(num_features) / jnp.linalg.norm(w)
    rewards = phi @ w
    base = ref_scale * jax.random.normal(k_ref, (num_prompts, num_responses))
    return Bandit(rewards, phi, base, w)


def random_features(key: jax.Array, num_prompts: int, num_responses: int, num_features: int) -> jax.Array:
    """Features ``psi(x, y) ~ N(0, I_d / d)`` independent of any reward, shape ``(X, N, d)``.

    A policy built on them is *misspecified*: its parameters are shared across responses (as an
    LLM's are), so training on the data's responses also moves the unseen ones, in directions
    unrelated to their reward.
    """
    return jax.random.normal(key, (num_prompts, num_responses, num_features)) / jnp.sqrt(num_features)


def support_mask(key: jax.Array, num_prompts: int, num_responses: int, num_in_support: ArrayLike) -> jax.Array:
    """A random support ``S(x)`` of ``num_in_support`` responses per prompt.

    ``S(x) = {y : rank_x(y) < k}`` for an independent uniformly random ranking per prompt, so
    ``k`` may be a traced array (sweeps ``vmap`` over it); ``k >= N`` gives global coverage.

    Returns:
      ``(X, N)`` bool mask.
    """
    u = jax.random.uniform(key, (num_prompts, num_responses))
    ranks = jnp.argsort(jnp.argsort(u, axis=-1), axis=-1)
    return ranks < jnp.asarray(num_in_support)


def support_without_best(key: jax.Array, rewards: ArrayLike, num_in_support: int) -> jax.Array:
    """A random support of ``num_in_support`` responses that never contains ``argmax_y r(x, y)``.

    Used by the extrapolation toy (Song et al. 2024, appendix): the best response is never seen
    in the offline data. Returns an ``(X, N)`` bool mask.
    """
    r = jnp.asarray(rewards)
    best = jax.nn.one_hot(jnp.argmax(r, axis=-1), r.shape[-1], dtype=bool)
    u = jax.random.uniform(key, r.shape)
    u = jnp.where(best, 2.0, u)  # the best ranks last
    ranks = jnp.argsort(jnp.argsort(u, axis=-1), axis=-1)
    return ranks < num_in_support


def reference_with_outside_mass(base_logits: ArrayLike, support: ArrayLike, ref_mass_outside: ArrayLike) -> jax.Array:
    """``log pi_ref`` that puts total mass ``m`` outside the support ``S`` of every prompt.

    ``pi_ref(y) = (1 - m) softmax_S(base)[y]`` for ``y in S`` and ``m softmax_{not S}(base)[y]``
    outside; within each part the base logits keep their relative weights. If ``S`` is the full
    set (global coverage) the base policy is returned unchanged and ``m`` is ignored.

    Args:
      base_logits: ``(X, N)``.
      support: ``(X, N)`` bool.
      ref_mass_outside: ``m in (0, 1)``, scalar or ``(X,)`` (array; sweepable).

    Returns:
      ``(X, N)`` normalised log-probabilities.
    """
    b = jnp.asarray(base_logits)
    s = jnp.asarray(support, bool)
    m = jnp.asarray(ref_mass_outside, b.dtype)
    m = jnp.broadcast_to(m, b.shape[:-1])[..., None]
    neg = jnp.asarray(-jnp.inf, b.dtype)
    in_s = jax.nn.log_softmax(jnp.where(s, b, neg), axis=-1)
    full_inside = jnp.all(s, axis=-1, keepdims=True)
    out_s = jax.nn.log_softmax(jnp.where(s | full_inside, neg, b), axis=-1)
    mixed = jnp.where(s, jnp.log1p(-m) + in_s, jnp.log(m) + out_s)
    return jnp.where(full_inside, jax.nn.log_softmax(b, axis=-1), mixed)


def sample_pairs(key: jax.Array, rewards: ArrayLike, log_pi_ref: ArrayLike, support: ArrayLike,
                 num_pairs: int) -> Pairs:
    """Draw ``M`` offline pairs from ``pi_ref`` restricted to ``S`` with Bradley–Terry labels.

    For each pair: ``x ~ Uniform(X)``, ``y, y' ~ mu_S(.|x)`` i.i.d. where
    ``mu_S ∝ pi_ref * 1[y in S]``, and ``y`` is the winner with probability
    ``sigmoid(r(x, y) - r(x, y'))`` (a single hard label per pair). Pairs with ``y == y'``
    get weight 0; the others share weight equally.

    Args:
      key: ``jax.random.key``.
      rewards, log_pi_ref: ``(X, N)``.
      support: ``(X, N)`` bool, at least two responses per prompt.
      num_pairs: ``M`` (static).

    Returns:
      :class:`Pairs` of length ``M``.
    """
    r = jnp.asarray(rewards)
    lr = jnp.asarray(log_pi_ref)
    k_x, k_y1, k_y2, k_lab = jax.random.split(key, 4)
    x = jax.random.randint(k_x, (num_pairs,), 0, r.shape[0])
    logits = jnp.where(jnp.asarray(support, bool), lr, -jnp.inf)[x]  # (M, N)
    y1 = sample_from_logps(logits, k_y1)
    y2 = sample_from_logps(logits, k_y2)
    r1 = jnp.take_along_axis(r[x], y1[:, None], axis=-1)[:, 0]
    r2 = jnp.take_along_axis(r[x], y2[:, None], axis=-1)[:, 0]
    first_wins = jax.random.bernoulli(k_lab, jax.nn.sigmoid(r1 - r2))
    y_w = jnp.where(first_wins, y1, y2)
    y_l = jnp.where(first_wins, y2, y1)
    valid = (y1 != y2).astype(r.dtype)
    weight = valid / jnp.maximum(valid.sum(), 1.0)
    return Pairs(x, y_w, y_l, weight)


def population_pairs(rewards: ArrayLike, log_pi_ref: ArrayLike, support: ArrayLike) -> Pairs:
    """Every ordered pair ``(x, y, y')`` with its population weight (the infinite-data limit).

    Weight of the row "``y`` beats ``y'``" at prompt ``x``:
    ``(1/X) mu_S(y|x) mu_S(y'|x) sigmoid(r(x,y) - r(x,y'))``, normalised over ``y != y'`` within
    each prompt, so every prompt weighs ``1/X``. A weighted loss over the rows is the expected
    loss of :func:`sample_pairs` data (soft Bradley–Terry labels) exactly when the tie
    probability ``sum_y mu_S(y|x)^2`` is the same for every prompt: :func:`sample_pairs` drops
    ties and shares weight over the remaining pairs, so there a prompt weighs in proportion to
    ``1 - sum_y mu_S(y|x)^2``. Rows: ``M = X * N * N`` (``y == y'`` rows have weight 0).

    Returns:
      :class:`Pairs` of length ``X * N * N``.
    """
    r = jnp.asarray(rewards)
    lr = jnp.asarray(log_pi_ref)
    num_prompts, n = r.shape
    mu = jax.nn.softmax(jnp.where(jnp.asarray(support, bool), lr, -jnp.inf), axis=-1)
    w = mu[:, :, None] * mu[:, None, :] * jax.nn.sigmoid(r[:, :, None] - r[:, None, :])
    w = w * (1.0 - jnp.eye(n, dtype=r.dtype))[None]
    w = w / w.sum(axis=(-1, -2), keepdims=True) / num_prompts
    x, yw, yl = jnp.meshgrid(jnp.arange(num_prompts), jnp.arange(n), jnp.arange(n), indexing="ij")
    return Pairs(x.reshape(-1), yw.reshape(-1), yl.reshape(-1), w.reshape(-1))


def pair_support(pairs: Pairs, num_prompts: int, num_responses: int) -> jax.Array:
    """``(X, N)`` bool: response ``y`` appears (with positive weight) in some pair at prompt ``x``."""
    on = (pairs.weight > 0).astype(jnp.int32)
    count = jnp.zeros((num_prompts, num_responses), jnp.int32)
    count = count.at[pairs.x, pairs.y_w].add(on).at[pairs.x, pairs.y_l].add(on)
    return count > 0
