"""Supervised fine-tuning (maximum likelihood) of a :class:`~alignjax.policies.sequence.SequencePolicy`.

The SFT loss is the per-token negative log-likelihood of a corpus ``{(x_n, y_n)}``:

    L(theta) = - sum_n log pi_theta(y_n | x_n) / sum_n |y_n|,

with ``log pi(y|x)`` the masked sum of token log-probs (EOS included) and ``|y|`` the mask sum.
:func:`make_sft_train` runs minibatch optax updates inside one ``lax.scan`` (jittable).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from alignjax.policies.sequence import SequencePolicy

__all__ = ["sft_loss", "make_sft_train"]


def sft_loss(policy: SequencePolicy, params, prompts: jax.Array, responses: jax.Array,
             mask: jax.Array) -> jax.Array:
    """Per-token NLL ``-sum log pi(y|x) / sum |y|`` over a batch ``(n, P)``, ``(n, L)``; scalar."""
    logps, lengths = policy.sequence_logps(params, prompts, responses, mask)
    return -jnp.sum(logps) / jnp.sum(lengths)


def make_sft_train(policy: SequencePolicy, optimizer: optax.GradientTransformation, *, num_steps: int,
                   batch_size: int) -> Callable:
    """``train(params, prompts, responses, mask, key) -> (params, losses (num_steps,))``.

    Each step draws a minibatch of ``batch_size`` rows uniformly (with replacement) using a
    key split from ``key`` and applies one ``optimizer`` update on :func:`sft_loss`.
    """

    def train(params, prompts, responses, mask, key):
        n = prompts.shape[0]
        grad_fn = jax.value_and_grad(lambda p, x, y, m: sft_loss(policy, p, x, y, m))

        def step(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(k, (batch_size,), 0, n)
            loss, g = grad_fn(params, prompts[idx], responses[idx], mask[idx])
            updates, opt_state = optimizer.update(g, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(key, num_steps))
        return params, losses

    return train
