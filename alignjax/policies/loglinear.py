"""Log-linear policies over response features."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from alignjax.policies.base import Policy


def loglinear(num_features: int, num_responses: int, *, init_scale: float = 0.0,
              bias: ArrayLike | None = None) -> Policy:
    """Log-linear policy ``pi(y | x) ∝ exp(<phi(x, y), theta> + b(x, y))``.

    ``x`` is the prompt's response-feature matrix ``phi(x, .)`` of shape ``(..., N, d)``, or a
    pair ``(phi, b)`` whose ``b`` ``(..., N)`` is a fixed offset (set ``b = log pi_ref`` to
    parametrise ``pi = pi_ref * exp(<phi, theta>)/Z``, i.e. ``theta = 0`` is the reference).
    ``theta`` has shape ``(d,)``, initialised to ``init_scale * N(0, 1)``.
    """

    def init(key: jax.Array) -> jax.Array:
        return init_scale * jax.random.normal(key, (num_features,))

    def log_probs(params: jax.Array, x) -> jax.Array:
        if isinstance(x, tuple):
            phi, b = x
        else:
            phi, b = x, (0.0 if bias is None else jnp.asarray(bias))
        return jax.nn.log_softmax(jnp.asarray(phi) @ params + b, axis=-1)

    return Policy(init, log_probs, num_responses)
