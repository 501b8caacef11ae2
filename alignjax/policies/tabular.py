"""Tabular softmax policies: one logit per (prompt, response)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from alignjax.policies.base import Policy


def tabular(num_prompts: int, num_responses: int, *, init_logits: ArrayLike | None = None,
            init_scale: float = 0.0) -> Policy:
    """Tabular policy ``pi(y | x) = softmax(theta[x])[y]``, ``theta`` of shape ``(num_prompts, N)``.

    ``x`` is an integer prompt index (any batch shape). Parameters are initialised to
    ``init_logits`` if given (e.g. ``log pi_ref`` to start at the reference), else to
    ``init_scale * N(0, 1)`` logits (uniform for ``init_scale = 0``).
    """

    def init(key: jax.Array) -> jax.Array:
        if init_logits is not None:
            return jnp.broadcast_to(jnp.asarray(init_logits, jnp.result_type(float)), (num_prompts, num_responses))
        return init_scale * jax.random.normal(key, (num_prompts, num_responses))

    def log_probs(params: jax.Array, x: ArrayLike) -> jax.Array:
        return jax.nn.log_softmax(params[jnp.asarray(x)], axis=-1)

    return Policy(init, log_probs, num_responses)
