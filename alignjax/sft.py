"""Fine-tuning helpers: supervised fine-tuning (maximum likelihood) and preference fine-tuning of a :class:`~alignjax.policies.sequence.SequencePolicy`.

The SFT loss is the per-token negative log-likelihood of a corpus ``{(x_n, y_n)}``:

    L(theta) = - sum_n log pi_theta(y_n | x_n) / sum_n |y_n|,

with ``log pi(y|x)`` the masked sum of token log-probs (EOS included) and ``|y|`` the mask sum.

Each trainer comes in two forms with the same arithmetic: one update (:func:`sft_step`,
:func:`preference_step`, :func:`online_ipo_step`; e.g. the ``step`` of an engine
:class:`~alignjax.experiment.Program`) and a whole run inside one ``lax.scan`` that scans it
(:func:`make_sft_train`, :func:`make_preference_train`, :func:`make_online_ipo_train`; jittable).

For throughput on CPU: the SFT and offline updates can compute their minibatch gradient in
chunks (``chunk``, :func:`chunked_value_and_grad`: the same gradient up to float rounding, with
activations small enough to stay in cache), and many responses are scored in buckets of similar
length (:func:`length_buckets`, :func:`bucketed_sequence_logps`: exact, the causal model's
log-probs of a response never read the slots after it).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignjax.policies.sequence import SequencePolicy

__all__ = ["sft_loss", "sft_step", "make_sft_train", "preference_step", "make_preference_train", "online_ipo_step",
           "make_online_ipo_train", "eval_logps", "logged_step_keys", "LengthBuckets", "response_lengths",
           "length_buckets", "bucketed_sequence_logps", "chunked_value_and_grad"]


def sft_loss(policy: SequencePolicy, params, prompts: jax.Array, responses: jax.Array,
             mask: jax.Array) -> jax.Array:
    """Per-token NLL ``-sum log pi(y|x) / sum |y|`` over a batch ``(n, P)``, ``(n, L)``; scalar."""
    logps, lengths = policy.sequence_logps(params, prompts, responses, mask)
    return -jnp.sum(logps) / jnp.sum(lengths)


def sft_step(policy: SequencePolicy, optimizer: optax.GradientTransformation, params, opt_state, prompts: jax.Array,
             responses: jax.Array, mask: jax.Array, key: jax.Array, *, batch_size: int, chunk: int | None = None):
    """One SFT update: ``(params, opt_state, loss)`` after one ``optimizer`` step on :func:`sft_loss`
    of ``batch_size`` rows drawn uniformly (with replacement) with ``key``; ``loss`` is that
    minibatch's loss before the update.

    ``chunk``: compute the minibatch's loss and gradient ``chunk`` rows at a time,
    ``L = -(sum_k sum_{n in chunk k} log pi(y_n|x_n)) / sum_n |y_n|`` (:func:`chunked_value_and_grad`):
    the same numbers up to float rounding, with activations ``batch_size / chunk`` times smaller
    (faster on CPU, where they then stay in cache). ``None``: the whole minibatch at once.
    """
    idx = jax.random.randint(key, (batch_size,), 0, prompts.shape[0])
    if chunk is None:
        loss, g = jax.value_and_grad(lambda p: sft_loss(policy, p, prompts[idx], responses[idx], mask[idx]))(params)
    else:
        nll, g = chunked_value_and_grad(
            lambda p, i: -jnp.sum(policy.sequence_logps(p, prompts[i], responses[i], mask[i])[0]), params, idx, chunk)
        total = jnp.sum(jnp.asarray(mask, jnp.float32)[idx]).astype(nll.dtype)   # the tokens, as sft_loss counts
        inv_total = 1.0 / total                                                  # a reciprocal: see alignjax.sweep
        loss, g = nll * inv_total, jax.tree.map(lambda a: a * inv_total, g)
    updates, opt_state = optimizer.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def chunked_value_and_grad(f: Callable, params, idx: jax.Array, chunk: int):
    """``(sum_k f(params, idx_k), sum_k grad f(params, idx_k))``: ``f(params, i)`` a sum over the
    examples ``i``, evaluated on the consecutive chunks ``idx_k`` of ``chunk`` entries of ``idx``
    (a ``lax.scan`` that accumulates), so the value and gradient of ``sum_{i in idx}`` with the
    activations of ``chunk`` examples at a time. ``len(idx)`` must be a multiple of ``chunk``.
    """
    if idx.shape[0] % chunk:
        raise ValueError(f"{idx.shape[0]} examples do not split into chunks of {chunk}")

    def body(acc, i):
        return jax.tree.map(jnp.add, acc, jax.value_and_grad(f)(params, i)), None

    zero = (jnp.zeros((), jnp.result_type(float)), jax.tree.map(jnp.zeros_like, params))
    return jax.lax.scan(body, zero, idx.reshape(-1, chunk))[0]


def make_sft_train(policy: SequencePolicy, optimizer: optax.GradientTransformation, *, num_steps: int,
                   batch_size: int, chunk: int | None = None) -> Callable:
    """``train(params, prompts, responses, mask, key) -> (params, losses (num_steps,))``.

    Step ``t`` is :func:`sft_step` (with ``chunk``) with the key ``split(key, num_steps)[t]``.
    """

    def train(params, prompts, responses, mask, key):
        def step(carry, k):
            params, opt_state, loss = sft_step(policy, optimizer, *carry, prompts, responses, mask, k,
                                               batch_size=batch_size, chunk=chunk)
            return (params, opt_state), loss

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


def eval_logps(policy: SequencePolicy, params, eval_sets, *, chunk: int | None = None) -> tuple:
    """Policy log-probs of every pair of every eval set: tuple of ``(chosen, rejected)`` arrays.

    ``chunk``: evaluate ``chunk`` pairs at a time (``jax.lax.map`` over the pair axis), so that
    the activations held at once scale with ``chunk``, not with the eval set (under a ``vmap``
    over many runs, long responses and big eval sets otherwise need tens of GB). ``None``
    evaluates every pair at once.
    """
    out = []
    for s in eval_sets:
        args = (s["prompts"], s["chosen"], s["chosen_mask"], s["rejected"], s["rejected_mask"])
        if chunk is None or chunk >= s["prompts"].shape[0]:
            lc, lr, _, _ = _pair_logps(policy, params, *args)
        else:
            lc, lr = jax.lax.map(lambda a: _pair_logps(policy, params, *a)[:2], args, batch_size=chunk)
        out.append((lc, lr))
    return tuple(out)


class LengthBuckets(NamedTuple):
    """A static plan for scoring responses of different lengths (:func:`length_buckets`).

    Attributes:
      order: ``(n,)`` int array (host): the responses sorted by length (stable).
      sizes: responses per bucket, in sorted order (they sum to ``n``).
      lengths: each bucket's static response length (its longest response).
    """

    order: np.ndarray
    sizes: tuple[int, ...]
    lengths: tuple[int, ...]


def response_lengths(mask) -> np.ndarray:
    """Host-side ``(n,)`` lengths: one past the last slot with ``mask > 0`` (0 for an empty mask)."""
    m = np.asarray(mask) > 0
    return np.where(m.any(-1), m.shape[-1] - np.argmax(m[..., ::-1], axis=-1), 0)


def length_buckets(mask, max_buckets: int) -> LengthBuckets:
    """Cut responses sorted by length into at most ``max_buckets`` buckets of least padding (host side).

    With ``l_(1) <= ... <= l_(n)`` the sorted lengths (:func:`response_lengths`, at least 1), the
    buckets are contiguous runs of the sorted order, each padded to its longest response; the cut
    minimises the padded slots ``sum_b size_b * length_b`` (exact dynamic programme over the
    distinct lengths; ties go to fewer buckets). Sizes are static, derived from the data alone,
    so the same data always gives the same plan (and the same compiled program).
    """
    lengths = np.maximum(response_lengths(mask), 1)
    order = np.argsort(lengths, kind="stable")
    sl = lengths[order]
    ends = np.flatnonzero(np.diff(sl)) + 1                       # where a new distinct length starts
    cuts = np.concatenate([ends, [len(sl)]])                     # candidate bucket ends (exclusive)
    k = len(cuts)
    # best[j][b]: least padded slots covering sorted[:cuts[j]] with b buckets; a bucket ending at
    # cuts[j] has length sl[cuts[j] - 1]
    inf = float("inf")
    best = [[inf] * (max_buckets + 1) for _ in range(k)]
    prev = [[-1] * (max_buckets + 1) for _ in range(k)]
    for j in range(k):
        best[j][1] = cuts[j] * sl[cuts[j] - 1]
        for b in range(2, max_buckets + 1):
            for i in range(j):
                c = best[i][b - 1] + (cuts[j] - cuts[i]) * sl[cuts[j] - 1]
                if c < best[j][b]:
                    best[j][b], prev[j][b] = c, i
    nb = min(range(1, max_buckets + 1), key=lambda b: (best[k - 1][b], b))
    stops, j = [], k - 1
    for b in range(nb, 0, -1):
        stops.append(int(cuts[j]))
        j = prev[j][b]
    stops = stops[::-1]
    starts = [0] + stops[:-1]
    return LengthBuckets(order, tuple(e - s for s, e in zip(starts, stops)), tuple(int(sl[e - 1]) for e in stops))


def bucketed_sequence_logps(logps_at: Callable[[int], Callable], prompts, responses, mask,
                            plan: LengthBuckets, *, chunk: int | None = None) -> jax.Array:
    """``log pi(y|x)`` of every response ``(n,)``, each bucket of ``plan`` scored at its own length.

    ``logps_at(l)(prompts, responses, mask)`` scores responses of ``l`` slots (e.g. the policy
    built for ``max_len = l`` on the same parameters). Exact: ``log pi(y|x) = sum_{j <= |y|}
    log pi(y_j | x, y_<j)`` reads the causal model's outputs at input positions ``< P + |y|``
    only, and those do not depend on later inputs, so slots past a bucket's longest response
    need not be computed. ``chunk``: score ``chunk`` responses at a time (``lax.map``; a bucket is
    padded with empty responses to a multiple of ``chunk``, their scores dropped), which keeps the
    activations small. Results come back in the input order.
    """
    order = np.asarray(plan.order)
    x, y, m = (jnp.asarray(a)[order] for a in (prompts, responses, mask))
    out, start = [], 0
    for size, length in zip(plan.sizes, plan.lengths):
        args = (x[start:start + size], y[start:start + size, :length], m[start:start + size, :length])
        fn = logps_at(length)
        if chunk is None or chunk >= size:
            out.append(fn(*args))
        else:
            pad = -size % chunk
            args = [jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]).reshape(-1, chunk, *a.shape[1:])
                    for a in args]
            out.append(jax.lax.map(lambda a: fn(*a), args).reshape(-1)[:size])
        start += size
    return jnp.concatenate(out)[np.argsort(order)]


def logged_step_keys(key: jax.Array, num_steps: int, log_every: int) -> jax.Array:
    """The ``(num_steps,)`` step keys of :func:`make_online_ipo_train` (drawn per logged interval):
    step ``t`` gets ``split(split(key, num_steps // log_every)[t // log_every], log_every)[t % log_every]``."""
    intervals = jax.random.split(key, num_steps // log_every)
    return jax.vmap(lambda k: jax.random.split(k, log_every))(intervals).reshape(num_steps)


def _logged_scan(step, carry, key, num_steps, log_every, observe):
    """Run ``step(carry, key_t)`` ``num_steps`` times (keys: :func:`logged_step_keys`); observe at
    0, log_every, ..., num_steps. The engine's observe-scan (:func:`alignjax.sweep.run_program`)
    runs it: the state is ``(carry, t)`` and step ``t`` reads its key from the table."""
    from alignjax.experiment import Program
    from alignjax.sweep import run_program

    keys = logged_step_keys(key, num_steps, log_every)

    def one(state, hp):
        c, t = state
        c, _ = step(c, keys[t])
        return c, t + 1

    program = Program(lambda hp, k: (carry, jnp.zeros((), jnp.int32)), one, lambda state, hp: observe(state[0]))
    (carry, _), logged = run_program(program, {}, jax.random.key(0), num_steps=num_steps, log_every=log_every)
    return carry, logged


def preference_step(policy: SequencePolicy, loss: PairLoss, optimizer: optax.GradientTransformation, params,
                    opt_state, step: jax.Array, hparams, data, perm_key: jax.Array, *, batch_size: int,
                    chunk: int | None = None):
    """Update number ``step`` (0, 1, ...) of offline preference fine-tuning: ``(params, opt_state)``.

    Epoch ``e = step // spe`` (``spe = n // batch_size`` minibatches) visits the pairs of ``data``
    in the order ``permutation(fold_in(perm_key, e), n)``; this update takes minibatch
    ``step % spe`` of it and applies one ``optimizer`` update on ``mean_batch loss(...)``
    (``data`` and ``loss`` as in :func:`make_preference_train`). ``chunk``: its gradient
    ``(1 / batch_size) sum_k grad sum_{i in chunk k} loss_i``, ``chunk`` pairs at a time
    (:func:`chunked_value_and_grad`; the same gradient up to float rounding, smaller activations).
    """
    n = data["prompts"].shape[0]
    spe = n // batch_size
    if spe < 1:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training pairs")

    def pair_losses(p, idx):
        pc, pr, nc, nr = _pair_logps(policy, p, data["prompts"][idx], data["chosen"][idx],
                                     data["chosen_mask"][idx], data["rejected"][idx], data["rejected_mask"][idx])
        return loss(pc, pr, data["ref_chosen"][idx], data["ref_rejected"][idx], nc, nr, hparams)

    perm = jax.random.permutation(jax.random.fold_in(perm_key, step // spe), n)
    idx = jax.lax.dynamic_slice_in_dim(perm, (step % spe) * batch_size, batch_size)
    if chunk is None:
        g = jax.grad(lambda p: jnp.mean(pair_losses(p, idx)))(params)
    else:
        _, g = chunked_value_and_grad(lambda p, i: jnp.sum(pair_losses(p, i)), params, idx, chunk)
        g = jax.tree.map(lambda a: a * (1.0 / batch_size), g)
    upd, opt_state = optimizer.update(g, opt_state, params)
    return optax.apply_updates(params, upd), opt_state


def make_preference_train(policy: SequencePolicy, loss: PairLoss, make_optimizer: Callable, *, num_steps: int,
                          batch_size: int, log_every: int, chunk: int | None = None) -> Callable:
    """Offline preference fine-tuning on a fixed pair set, minibatched epochs inside ``lax.scan``.

    ``train(params, hparams, data, eval_sets, key) -> (params, logged)``:

    * ``data``: dict with ``prompts (n, P)``, ``chosen``/``rejected (n, L)``, their masks, and the
      precomputed reference log-probs ``ref_chosen``/``ref_rejected (n,)``;
    * each epoch visits ``n // batch_size`` minibatches of a fresh permutation; one step is
      :func:`preference_step` (``optimizer.update`` on ``mean_batch loss(...)`` with
      ``make_optimizer(hparams)``; ``chunk`` as there), its permutation key the first of ``split(key)``;
    * ``logged``: at steps ``0, log_every, ..., num_steps``: ``params`` (stacked) and the
      policy log-probs ``(chosen, rejected)`` of every pair of every set in ``eval_sets``.

    All hyperparameters are array leaves of ``hparams``, so ``jax.vmap`` over ``hparams`` (and
    ``key``) sweeps them in one compile.
    """
    if num_steps % log_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of log_every ({log_every})")

    def train(params, hparams, data, eval_sets, key):
        opt = make_optimizer(hparams)
        kperm, krun = jax.random.split(key)

        def step(carry, _):
            p, o, t = carry
            p, o = preference_step(policy, loss, opt, p, o, t, hparams, data, kperm, batch_size=batch_size,
                                   chunk=chunk)
            return (p, o, t + 1), None

        observe = lambda c: {"params": c[0], "logps": eval_logps(policy, c[0], eval_sets)}
        (params, _, _), logged = _logged_scan(step, (params, opt.init(params), jnp.int32(0)), krun,
                                              num_steps, log_every, observe)
        return params, logged

    return train


def online_ipo_step(policy: SequencePolicy, preference_fn: Callable, optimizer: optax.GradientTransformation,
                    params, opt_state, ref_params, hparams, prompts: jax.Array, key: jax.Array, *, batch_size: int):
    """One online-IPO update (see :func:`make_online_ipo_train`) with ``key``: ``(params, opt_state)``."""
    n = prompts.shape[0]
    k1, k2 = jax.random.split(key)
    x = prompts[jax.random.randint(k1, (batch_size,), 0, n)]
    sp = jax.lax.stop_gradient(params)
    xx = jnp.concatenate([x, x])                  # both responses in one sampling call
    yy, mm = policy.sample(sp, xx, k2)
    y1, y2, m1, m2 = yy[:batch_size], yy[batch_size:], mm[:batch_size], mm[batch_size:]
    target = (preference_fn(x, y1, m1, y2, m2) - 0.5) / hparams["beta"]
    rr, _ = policy.sequence_logps(ref_params, xx, yy, mm)

    def lossf(q):
        lq, _ = policy.sequence_logps(q, xx, yy, mm)
        d = lq - rr
        return jnp.mean(jnp.square(d[:batch_size] - d[batch_size:] - target))

    upd, opt_state = optimizer.update(jax.grad(lossf)(params), opt_state, params)
    return optax.apply_updates(params, upd), opt_state


def make_online_ipo_train(policy: SequencePolicy, preference_fn: Callable, make_optimizer: Callable, *,
                          num_steps: int, batch_size: int, log_every: int) -> Callable:
    """Online IPO (Calandriello et al. 2024, arXiv 2403.08635) with samples from the current policy.

    Each step (:func:`online_ipo_step`, keys :func:`logged_step_keys`) draws ``batch_size``
    prompts, two responses per prompt from the current policy (stop-gradient), the ground-truth
    preference ``p = preference_fn(x, y1, m1, y2, m2)``, and minimises
    ``(h(y1, y2) - (p - 1/2) / beta)^2`` with ``h`` the log-ratio margin against ``pi_ref``
    (``ref_params``). ``train(params, ref_params, hparams, prompts, eval_sets, key)`` returns
    ``(params, logged)`` as :func:`make_preference_train`.
    """
    if num_steps % log_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of log_every ({log_every})")

    def train(params, ref_params, hparams, prompts, eval_sets, key):
        opt = make_optimizer(hparams)

        def step(carry, k):
            return online_ipo_step(policy, preference_fn, opt, *carry, ref_params, hparams, prompts, k,
                                   batch_size=batch_size), None

        observe = lambda c: {"params": c[0], "logps": eval_logps(policy, c[0], eval_sets)}
        (params, _), logged = _logged_scan(step, (params, opt.init(params)), key, num_steps, log_every, observe)
        return params, logged

    return train
