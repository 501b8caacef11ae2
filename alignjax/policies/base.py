"""The policy interface shared by every policy family.

A policy over ``N`` responses is a pair of pure functions (like optax's transformations)::

    policy = tabular(num_prompts=8, num_responses=16)
    params = policy.init(key)                   # a pytree
    logp = policy.log_probs(params, x)          # (..., N), log pi(. | x), normalised

``x`` is the family's prompt input (an int index for tabular, a ``(N, d)`` response-feature
matrix for log-linear, a ``(d,)`` prompt-feature vector for the MLP), batched over leading
axes. Sampling is shared: :func:`sample` draws with an explicit key.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Params = Any


class Policy(NamedTuple):
    """A policy family: ``init(key) -> params`` and ``log_probs(params, x) -> (..., N)``.

    Attributes:
      init: builds parameters from a ``jax.random.key`` (pure; usable under ``vmap``).
      log_probs: full log-distribution over the ``N`` responses for prompt input ``x``; the
        last axis sums (in probability) to 1.
      num_responses: ``N``.
    """

    init: Callable[[jax.Array], Params]
    log_probs: Callable[[Params, Any], jax.Array]
    num_responses: int


def sample(policy: Policy, params: Params, x: Any, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Draw responses ``y ~ pi(. | x)``.

    Args:
      policy, params: the policy and its parameters.
      x: prompt input with batch shape ``B`` (so ``log_probs`` is ``(*B, N)``).
      key: a ``jax.random.key`` (consumed; split it beforehand if you need more draws).
      shape: sample shape prepended to ``B``.

    Returns:
      Integer responses of shape ``(*shape, *B)``.
    """
    return sample_from_logps(policy.log_probs(params, x), key, shape)


def sample_from_logps(logp: jax.Array, key: jax.Array, shape: tuple = ()) -> jax.Array:
    """Responses ``y ~ softmax(logp)`` over the last axis: integers of shape ``(*shape, *B)`` for
    ``logp (*B, N)`` (the one home of drawing a response; ``-inf`` entries are never drawn)."""
    return jax.random.categorical(key, logp, axis=-1, shape=(*shape, *logp.shape[:-1]))


def log_prob_of(policy: Policy, params: Params, x: Any, y: jax.Array) -> jax.Array:
    """``log pi(y | x)`` for integer responses ``y`` of batch shape ``B`` (same as ``x``'s)."""
    logp = policy.log_probs(params, x)
    return jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
