"""Fine-tuning helpers: supervised fine-tuning (maximum likelihood) and preference fine-tuning of a :class:`~alignjax.policies.sequence.SequencePolicy`.

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

__all__ = ["sft_loss", "make_sft_train", "make_preference_train", "make_online_ipo_train"]


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


# --------------------------------------------------------------------------------------------
# Preference fine-tuning (offline pair losses and online IPO), for the ranking-accuracy suite.
# --------------------------------------------------------------------------------------------

PairLoss = Callable[..., jax.Array]
"""``loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_len, rejected_len, hparams)``
-> per-pair loss ``(B,)``; ``hparams`` is the dict of array hyperparameters of one run."""


def _pair_logps(policy, params, prompts, chosen, chosen_mask, rejected, rejected_mask):
    lc, nc = policy.sequence_logps(params, prompts, chosen, chosen_mask)
    lr, nr = policy.sequence_logps(params, prompts, rejected, rejected_mask)
    return lc, lr, nc, nr


def _eval_logps(policy, params, eval_sets):
    """Policy log-probs of every pair of every eval set: tuple of ``(chosen, rejected)`` arrays."""
    out = []
    for s in eval_sets:
        lc, lr, _, _ = _pair_logps(policy, params, s["prompts"], s["chosen"], s["chosen_mask"],
                                   s["rejected"], s["rejected_mask"])
        out.append((lc, lr))
    return tuple(out)


def _logged_scan(step, carry, key, num_steps, log_every, observe):
    """Run ``step(carry, key_t)`` ``num_steps`` times; observe at 0, log_every, ..., num_steps."""
    num_logs = num_steps // log_every

    def interval(c, k):
        c, _ = jax.lax.scan(step, c, jax.random.split(k, log_every))
        return c, observe(c)

    first = observe(carry)
    carry, rest = jax.lax.scan(interval, carry, jax.random.split(key, num_logs))
    logged = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return carry, logged


def make_preference_train(policy: SequencePolicy, loss: PairLoss, make_optimizer: Callable, *, num_steps: int,
                          batch_size: int, log_every: int) -> Callable:
    """Offline preference fine-tuning on a fixed pair set, minibatched epochs inside ``lax.scan``.

    ``train(params, hparams, data, eval_sets, key) -> (params, logged)``:

    * ``data``: dict with ``prompts (n, P)``, ``chosen``/``rejected (n, L)``, their masks, and the
      precomputed reference log-probs ``ref_chosen``/``ref_rejected (n,)``;
    * each epoch visits ``n // batch_size`` minibatches of a fresh permutation; one step is
      ``optimizer.update`` on ``mean_batch loss(...)`` with ``make_optimizer(hparams)``;
    * ``logged``: at steps ``0, log_every, ..., num_steps``: ``params`` (stacked) and the
      policy log-probs ``(chosen, rejected)`` of every pair of every set in ``eval_sets``.

    All hyperparameters are array leaves of ``hparams``, so ``jax.vmap`` over ``hparams`` (and
    ``key``) sweeps them in one compile.
    """
    if num_steps % log_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of log_every ({log_every})")

    def train(params, hparams, data, eval_sets, key):
        n = data["prompts"].shape[0]
        spe = n // batch_size
        if spe < 1:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} training pairs")
        opt = make_optimizer(hparams)
        kperm, krun = jax.random.split(key)

        def batch_loss(p, idx):
            pc, pr, nc, nr = _pair_logps(policy, p, data["prompts"][idx], data["chosen"][idx],
                                         data["chosen_mask"][idx], data["rejected"][idx], data["rejected_mask"][idx])
            return jnp.mean(loss(pc, pr, data["ref_chosen"][idx], data["ref_rejected"][idx], nc, nr, hparams))

        def step(carry, _):
            p, o, t = carry
            perm = jax.random.permutation(jax.random.fold_in(kperm, t // spe), n)
            idx = jax.lax.dynamic_slice_in_dim(perm, (t % spe) * batch_size, batch_size)
            g = jax.grad(batch_loss)(p, idx)
            upd, o = opt.update(g, o, p)
            return (optax.apply_updates(p, upd), o, t + 1), None

        observe = lambda c: {"params": c[0], "logps": _eval_logps(policy, c[0], eval_sets)}
        (params, _, _), logged = _logged_scan(step, (params, opt.init(params), jnp.int32(0)), krun,
                                              num_steps, log_every, observe)
        return params, logged

    return train


def make_online_ipo_train(policy: SequencePolicy, preference_fn: Callable, make_optimizer: Callable, *,
                          num_steps: int, batch_size: int, log_every: int) -> Callable:
    """Online IPO (Calandriello et al. 2024, arXiv 2403.08635) with samples from the current policy.

    Each step draws ``batch_size`` prompts, two responses per prompt from the current policy
    (stop-gradient), the ground-truth preference ``p = preference_fn(x, y1, m1, y2, m2)``, and
    minimises ``(h(y1, y2) - (p - 1/2) / beta)^2`` with ``h`` the log-ratio margin against
    ``pi_ref`` (``ref_params``). ``train(params, ref_params, hparams, prompts, eval_sets, key)``
    returns ``(params, logged)`` as :func:`make_preference_train`.
    """
    if num_steps % log_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of log_every ({log_every})")

    def train(params, ref_params, hparams, prompts, eval_sets, key):
        opt = make_optimizer(hparams)
        beta = hparams["beta"]
        n = prompts.shape[0]

        def step(carry, k):
            p, o = carry
            k1, k2 = jax.random.split(k)
            x = prompts[jax.random.randint(k1, (batch_size,), 0, n)]
            sp = jax.lax.stop_gradient(p)
            xx = jnp.concatenate([x, x])                  # both responses in one sampling call
            yy, mm = policy.sample(sp, xx, k2)
            y1, y2, m1, m2 = yy[:batch_size], yy[batch_size:], mm[:batch_size], mm[batch_size:]
            target = (preference_fn(x, y1, m1, y2, m2) - 0.5) / beta
            rr, _ = policy.sequence_logps(ref_params, xx, yy, mm)

            def lossf(q):
                lq, _ = policy.sequence_logps(q, xx, yy, mm)
                d = lq - rr
                return jnp.mean(jnp.square(d[:batch_size] - d[batch_size:] - target))

            upd, o = opt.update(jax.grad(lossf)(p), o, p)
            return (optax.apply_updates(p, upd), o), None

        observe = lambda c: {"params": c[0], "logps": _eval_logps(policy, c[0], eval_sets)}
        (params, _), logged = _logged_scan(step, (params, opt.init(params)), key, num_steps, log_every, observe)
        return params, logged

    return train
