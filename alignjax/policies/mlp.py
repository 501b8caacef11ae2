"""A small Flax NNX network policy over prompt features."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from alignjax.policies.base import Policy


class MLP(nnx.Module):
    """``features (..., d) -> logits (..., N)`` with ``depth`` tanh hidden layers of ``width``."""

    def __init__(self, num_features: int, num_responses: int, *, width: int, depth: int, rngs: nnx.Rngs):
        dims = [num_features] + [width] * depth
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.out = nnx.Linear(dims[-1], num_responses, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden:
            x = jnp.tanh(layer(x))
        return self.out(x)


def mlp(num_features: int, num_responses: int, *, width: int = 64, depth: int = 2) -> Policy:
    """Neural policy ``pi(y | x) = softmax(f_theta(x))[y]`` with ``f`` an :class:`MLP`.

    ``x`` is a prompt-feature vector ``(..., d)``. Parameters are the NNX ``State`` of the
    module (a pytree; ``nnx.split`` once, then plain ``jax`` transforms), so the policy works
    under ``jit``/``vmap``/``grad`` like the other families.
    """
    graphdef, _ = nnx.split(MLP(num_features, num_responses, width=width, depth=depth, rngs=nnx.Rngs(0)))

    def init(key: jax.Array):
        module = MLP(num_features, num_responses, width=width, depth=depth, rngs=nnx.Rngs(params=key))
        return nnx.state(module, nnx.Param)

    def log_probs(params, x) -> jax.Array:
        module = nnx.merge(graphdef, params)
        return jax.nn.log_softmax(module(jnp.asarray(x)), axis=-1)

    return Policy(init, log_probs, num_responses)
