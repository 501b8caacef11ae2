"""Benchmark: the tiny sequence policy (the ranking-accuracy suite's language model).

At the ranking-accuracy quick sizes (read from ``SETTINGS["quick"]``: V = 16, P = 4, L = 96,
dim 48, depth 2, 2 heads) it measures

  (a) sampling: tokens/s of ``policy.sample`` with the key-value cache (the default) and without
      (``sequence_policy(..., kv_cache=False)``, the full forward rerun per token), jitted, on
      ``--sample-batch`` prompts; tokens = ``batch * L`` response slots (post-EOS slots count);
  (b) one SFT step (:func:`alignjax.sft.sft_step`, Adam) on ``--sft-batch`` sequences;
  (c) one DPO step (:func:`alignjax.sft.preference_step` with :func:`alignjax.losses.dpo`,
      RMSProp) on ``--dpo-batch`` pairs (2 sequences each; reference log-probs precomputed);

for (b) and (c) tokens/s (token positions through the model: ``P + L`` per sequence) and the
achieved FLOP/s, from an analytic count of the matmul FLOPs (``3x`` the forward's: the
backward pass costs two forwards)::

    forward per sequence = depth * (16 T d^2 + 4 T^2 d) + 2 T d V,     T = P + L

(``16 T d^2``: the qkv, output, up and down projections, ``8 d^2`` multiply-adds per position;
``4 T^2 d``: the scores ``q k^T`` and ``a v`` over all ``T x T`` pairs, masked ones included;
``2 T d V``: the output head), next to XLA's own count (``compiled.cost_analysis()``), and
compared with the measured FLOP/s of a plain jitted chain of the forward's matmuls at the same
shapes and of one large square matmul. Training steps run ``--steps`` at a time inside one
``lax.scan`` (as the suite's engine does). Times are the best of ``--reps`` warm calls.
Nothing here is asserted; ``python benchmarks/language_model.py --help`` for the flags.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import jax
import jax.numpy as jnp
import optax

from alignjax import losses
from alignjax.policies.sequence import response_mask, sequence_policy
from alignjax.sft import preference_step, sft_step


def best_time(fn, *args, reps: int) -> float:
    """Seconds of the fastest of ``reps`` calls of ``fn(*args)`` (after one warm-up call)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def forward_flops(t: int, *, vocab: int, dim: int, depth: int) -> float:
    """Matmul FLOPs of one forward over ``t`` positions: ``depth (16 t d^2 + 4 t^2 d) + 2 t d V``."""
    return depth * (16 * t * dim ** 2 + 4 * t ** 2 * dim) + 2 * t * dim * vocab


def xla_flops(fn, *args) -> float:
    """XLA's FLOP count of ``jit(fn)(*args)`` (``nan`` where the backend gives none)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


def matmul_chain_rate(rows: int, t: int, *, vocab: int, dim: int, depth: int, heads: int, reps: int) -> float:
    """Measured FLOP/s of the forward's matmuls alone, at its shapes, for ``rows`` sequences of ``t``
    positions: per block ``(rows t, d) @ (d, 3d)``, ``(d, d)``, ``(d, 2d)``, ``(rows t, 2d) @ (2d, d)``
    and the batched ``(t, dh) @ (dh, t)``, ``(t, t) @ (t, dh)`` per sequence and head; then the head."""
    keys = iter(jax.random.split(jax.random.key(0), 16))
    n, dh = rows * t, dim // heads
    ws = [jax.random.normal(next(keys), s) / s[0] for s in ((dim, 3 * dim), (dim, dim), (dim, 2 * dim), (2 * dim, dim))]
    head = jax.random.normal(next(keys), (dim, vocab))
    x = jax.random.normal(next(keys), (n, dim))

    def chain(x):
        bar = jax.lax.optimization_barrier      # keeps XLA from fusing or reassociating the products
        for _ in range(depth):
            q = bar(x @ ws[0]).reshape(rows * heads, t, 3 * dh)[..., :dh]
            a = bar(jnp.einsum("btd,bsd->bts", q, q))
            o = bar(jnp.einsum("bts,bsd->btd", a, q)).reshape(n, dim)
            x = bar(bar(bar(o @ ws[1]) @ ws[2]) @ ws[3])
        return x @ head

    return forward_flops(t, vocab=vocab, dim=dim, depth=depth) * rows / best_time(jax.jit(chain), x, reps=reps)


def square_matmul_rate(n: int = 1024, reps: int = 5) -> float:
    """Measured FLOP/s of one ``(n, n) @ (n, n)`` float32 matmul (``2 n^3`` FLOPs)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    return 2 * n ** 3 / best_time(jax.jit(lambda x: x @ a), a, reps=reps)


def sampling_rows(policy_args: dict, batch: int, *, reps: int, uncached_reps: int) -> list[tuple]:
    """(a): ``(name, seconds, tokens/s)`` for the cached and the uncached sampler."""
    out = []
    for name, cache, r in (("cached (`policy.sample`)", True, reps), ("uncached (`kv_cache=False`)", False, uncached_reps)):
        if r < 1:
            continue
        pol = sequence_policy(**policy_args, kv_cache=cache)
        params = pol.init(jax.random.key(0))
        x = jax.random.randint(jax.random.key(1), (batch, pol.prompt_len), 1, pol.vocab_size)
        sec = best_time(jax.jit(pol.sample), params, x, jax.random.key(2), reps=r)
        out.append((name, sec, batch * pol.max_len / sec))
    return out


def _train_run(step, steps: int):
    """``run(params, opt_state, key)``: ``steps`` calls of ``step(params, opt_state, key_t)`` in one scan."""
    def run(params, opt_state, key):
        def body(carry, k):
            return step(*carry, k), None
        return jax.lax.scan(body, (params, opt_state), jax.random.split(key, steps))[0]
    return run


def sft_case(pol, batch: int, steps: int):
    """(b): ``(one_step, run, args)`` for :func:`sft_step` (Adam 3e-3) on random tokens."""
    k = jax.random.split(jax.random.key(3), 2)
    x = jax.random.randint(k[0], (8192, pol.prompt_len), 1, pol.vocab_size)
    y = jax.random.randint(k[1], (8192, pol.max_len), 0, pol.vocab_size)
    m = jnp.ones_like(y, jnp.float32)          # every slot scored: the compute does not depend on the mask
    opt = optax.adam(3e-3)

    def step(params, opt_state, key):
        return sft_step(pol, opt, params, opt_state, x, y, m, key, batch_size=batch)[:2]

    params = pol.init(jax.random.key(0))
    return step, _train_run(step, steps), (params, opt.init(params), jax.random.key(4))


def dpo_case(pol, batch: int, steps: int):
    """(c): ``(one_step, run, args)`` for :func:`preference_step` with the DPO loss (RMSProp 1e-4)."""
    k = jax.random.split(jax.random.key(5), 3)
    n = 512
    chosen = jax.random.randint(k[0], (n, pol.max_len), 0, pol.vocab_size)
    rejected = jax.random.randint(k[1], (n, pol.max_len), 0, pol.vocab_size)
    data = {"prompts": jax.random.randint(k[2], (n, pol.prompt_len), 1, pol.vocab_size),
            "chosen": chosen, "chosen_mask": response_mask(chosen),
            "rejected": rejected, "rejected_mask": response_mask(rejected),
            "ref_chosen": jnp.zeros(n), "ref_rejected": jnp.zeros(n)}
    loss = lambda pc, pr, rc, rr, nc, nr, h: losses.dpo(pc, pr, rc, rr, beta=h["beta"])
    opt = optax.rmsprop(1e-4)
    hp = {"beta": jnp.float32(0.1)}

    def step(params, opt_state, key):
        t = jax.random.randint(key, (), 0, 1 << 20)
        return preference_step(pol, loss, opt, params, opt_state, t, hp, data, jax.random.key(6), batch_size=batch)

    params = pol.init(jax.random.key(0))
    return step, _train_run(step, steps), (params, opt.init(params), jax.random.key(7))


def training_rows(pol, args, peak_chain) -> list[tuple]:
    """(b), (c): ``(name, seconds per step, tokens/s, analytic GFLOP/step, XLA GFLOP/step, GFLOP/s,
    fraction of the same-shape matmul chain)``."""
    t = pol.prompt_len + pol.max_len
    fwd = forward_flops(t, vocab=pol.vocab_size, dim=args.dim, depth=args.depth)
    out = []
    for name, case, batch, seqs in (("SFT step (`sft_step`)", sft_case, args.sft_batch, args.sft_batch),
                                    ("DPO step (`preference_step`)", dpo_case, args.dpo_batch, 2 * args.dpo_batch)):
        step, run, init = case(pol, batch, args.steps)
        sec = best_time(jax.jit(run), *init, reps=args.reps) / args.steps
        flops = 3 * fwd * seqs
        out.append((name, sec, seqs * t / sec, flops / 1e9, xla_flops(step, *init) / 1e9, flops / sec / 1e9,
                    flops / sec / peak_chain[seqs]))
    return out


def main() -> None:
    from alignjax_experiments.ranking_accuracy import SETTINGS

    q = SETTINGS["quick"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=q["vocab_size"])
    ap.add_argument("--prompt-len", type=int, default=q["prompt_len"])
    ap.add_argument("--max-len", type=int, default=q["max_len"])
    ap.add_argument("--dim", type=int, default=q["dim"])
    ap.add_argument("--depth", type=int, default=q["depth"])
    ap.add_argument("--heads", type=int, default=q["heads"])
    ap.add_argument("--sample-batch", type=int, default=2 * q["num_train"],
                    help="prompts per sampling call (default: the suite's pairs stage, 2 x num_train)")
    ap.add_argument("--sft-batch", type=int, default=q["sft_batch"])
    ap.add_argument("--dpo-batch", type=int, default=q["batch_size"], help="pairs per DPO step")
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed call (one lax.scan)")
    ap.add_argument("--reps", type=int, default=3, help="timed calls (best kept), after a warm-up")
    ap.add_argument("--uncached-reps", type=int, default=1, help="timed calls of the uncached sampler (0: skip)")
    args = ap.parse_args()

    sizes = dict(vocab_size=args.vocab, prompt_len=args.prompt_len, max_len=args.max_len, dim=args.dim,
                 depth=args.depth, heads=args.heads)
    print(f"{datetime.date.today()}; jax {jax.__version__} on {jax.devices()}; cpus={os.cpu_count()}; "
          f"load avg {os.getloadavg()[0]:.1f}; sizes {sizes}")
    samp = sampling_rows(sizes, args.sample_batch, reps=args.reps, uncached_reps=args.uncached_reps)
    t = args.prompt_len + args.max_len
    chain = {s: matmul_chain_rate(s, t, vocab=args.vocab, dim=args.dim, depth=args.depth, heads=args.heads,
                                  reps=args.reps) for s in {args.sft_batch, 2 * args.dpo_batch}}
    square = square_matmul_rate()
    train = training_rows(sequence_policy(**sizes), args, chain)

    print(f"\n(a) sampling, {args.sample_batch} prompts x L = {args.max_len} slots\n")
    print("| sampler | s / call | tokens / s | vs uncached |")
    print("|---|---:|---:|---:|")
    base = next((r[2] for r in samp if r[0].startswith("uncached")), None)
    for name, sec, tps in samp:
        print(f"| {name} | {sec:.3f} | {tps:,.0f} | {f'{tps / base:.1f}x' if base else 'n/a'} |")
    print(f"\n(b), (c) training steps, T = P + L = {t} positions per sequence, {args.steps} steps per scan\n")
    print("| step | sequences | ms / step | tokens / s | GFLOP / step (analytic) | GFLOP / step (XLA) | GFLOP/s "
          "| of matmul chain | of square matmul |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, sec, tps, fl, xfl, rate, frac), seqs in zip(train, (args.sft_batch, 2 * args.dpo_batch)):
        print(f"| {name} | {seqs} | {1e3 * sec:.1f} | {tps:,.0f} | {fl:.3g} | {xfl:.3g} | {rate:.1f} | {frac:.0%} "
              f"| {rate * 1e9 / square:.0%} |")
    print("\nmeasured matmul rates: " + ", ".join(f"forward's matmul chain at {s} sequences {r / 1e9:.1f} GFLOP/s"
                                                   for s, r in sorted(chain.items()))
          + f", 1024^3 square matmul {square / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
