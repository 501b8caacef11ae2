"""Training throughput of the ranking-accuracy suite's transformer (quick setting) against the matmul rate.

Times, back to back in one process (best of ``--reps``):

* the matrix products of one forward pass alone (the same shapes, jitted): the rate to compare with;
* one SFT step (64 examples of ~100 tokens, Adam), the whole minibatch at once vs in chunks
  (``alignjax.sft.sft_step(chunk=...)``, the suite's ``SFT_CHUNK``);
* one step of the offline sweep (25 rows, 32 pairs each, RMSProp; ``vmap`` over the rows), whole
  minibatches vs chunked gradients (the suite's ``TRAIN_CHUNK``);
* the train/val log-probs of checkpoints: the former ``vmap`` observation (128 pairs at a time,
  full length) vs one checkpoint in length buckets (``alignjax.sft.bucketed_sequence_logps``).

FLOPs are counted analytically (matrix products only; a backward pass is twice its forward):
per response of ``T = P + L`` tokens, a forward pass costs
``depth * (2 T (3 d^2 + d^2 + 4 d^2) + 4 T^2 d) + 2 T d V`` (qkv, proj, MLP; scores and
values; the head). ``python benchmarks/ranking_training.py --reps 5``
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from alignjax_experiments import ranking_accuracy as ra

from alignjax.sft import eval_logps, preference_step, sft_step

CFG = dict(ra.SETTINGS["quick"])


def forward_flops(T: int, n: int = 1) -> float:
    """Matrix-product FLOPs of one forward pass over ``n`` responses of ``T`` input tokens."""
    d, V, depth = CFG["dim"], CFG["vocab_size"], CFG["depth"]
    return n * (depth * (2 * T * 8 * d * d + 4 * T * T * d) + 2 * T * d * V)


def best_of(fn, *args, reps: int) -> float:
    """Best wall time of ``fn(*args)`` (compiled and run once first)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def matmul_skeleton(n: int, T: int):
    """The forward pass's matrix products alone, on random inputs (no elementwise work): ``f(*args) -> outputs``."""
    d, V, H = CFG["dim"], CFG["vocab_size"], CFG["heads"]
    k = iter(jax.random.split(jax.random.key(0), 16))
    x = jax.random.normal(next(k), (n * T, d))
    x2 = jax.random.normal(next(k), (n * T, 2 * d))
    ws = [jax.random.normal(next(k), s) * 0.1 for s in [(d, 3 * d), (d, d), (d, 2 * d), (2 * d, d), (d, V)]]
    q = jax.random.normal(next(k), (n * H, T, d // H))
    a = jax.random.normal(next(k), (n * H, T, T))

    def f(x, x2, ws, q, a):
        per_layer = [(x @ ws[0], x @ ws[1], x @ ws[2], x2 @ ws[3], q @ jnp.swapaxes(q, 1, 2), a @ q)
                     for _ in range(CFG["depth"])]
        return per_layer, x @ ws[4]

    return jax.jit(f), (x, x2, ws, q, a)


def data():
    """Synthetic stand-ins with the quick setting's shapes (responses of ~75 tokens, a third at 96)."""
    V, P, L = CFG["vocab_size"], CFG["prompt_len"], CFG["max_len"]
    rng = np.random.default_rng(0)

    def responses(n):
        lens = np.where(rng.uniform(size=n) < 1 / 3, L, rng.integers(20, L, size=n))
        y = rng.integers(1, V, size=(n, L)).astype(np.int32)
        y[np.arange(L)[None] == (lens - 1)[:, None]] = 0
        m = (np.arange(L)[None] < lens[:, None]).astype(np.float32)
        return y, m

    def pairs(n):
        yc, mc = responses(n)
        yr, mr = responses(n)
        return {"prompts": rng.integers(1, V, size=(n, P)).astype(np.int32), "chosen": yc, "chosen_mask": mc,
                "rejected": yr, "rejected_mask": mr, "ref_chosen": -rng.uniform(50, 300, n).astype(np.float32),
                "ref_rejected": -rng.uniform(50, 300, n).astype(np.float32)}

    return pairs(CFG["num_train"]), pairs(CFG["num_val"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--observe-rows", type=int, default=5, help="rows of the former vmapped observation timed")
    args = ap.parse_args(argv)
    print(f"jax {jax.__version__}, {os.cpu_count()} cpus, load average {os.getloadavg()}")
    T = CFG["prompt_len"] + CFG["max_len"]
    B, pairs_b = CFG["sft_batch"], CFG["batch_size"]
    sft_chunk, train_chunk = ra._chunk(B, ra.SFT_CHUNK), ra._chunk(pairs_b, ra.TRAIN_CHUNK)
    policy = ra._policy(CFG)
    params = policy.init(jax.random.key(0))
    train, val = data()
    rows, hp = ra._rows(CFG)
    R = len(rows)

    print("\n== matrix products of one forward pass (jitted, nothing else), and one 1024^3 product")
    sizes = sorted({B, sft_chunk, pairs_b, train_chunk, ra.EVAL_CHUNK, 128})   # responses per forward pass
    skeletons = {n: matmul_skeleton(n, T) for n in sizes}
    big = jax.jit(lambda a, b: a @ b), (jnp.ones((1024, 1024)), jnp.ones((1024, 1024)))
    times = {n: best_of(f, *a, reps=1) for n, (f, a) in skeletons.items()}
    t_big = best_of(big[0], *big[1], reps=1)
    for _ in range(4 * args.reps):                # interleaved: the machine's load changes from second to second
        for n, (f, a) in skeletons.items():
            times[n] = min(times[n], best_of(f, *a, reps=1))
        t_big = min(t_big, best_of(big[0], *big[1], reps=1))
    rate = {n: forward_flops(T, n) / t for n, t in times.items()}
    for n in sizes:
        print(f"  {n:3d} responses x {T} tokens: {times[n] * 1e3:7.2f} ms  {rate[n] / 1e9:6.1f} GFLOP/s")
    print(f"  1024 x 1024 x 1024: {t_big * 1e3:7.2f} ms  {2 * 1024 ** 3 / t_big / 1e9:6.1f} GFLOP/s")

    with jax.softmax_custom_jvp(True):
        print("\n== SFT step (Adam), 64 examples; 3 x forward FLOPs")
        h = {"learning_rate": jnp.float32(CFG["sft_learning_rate"])}
        opt = ra._adam(h)
        state = opt.init(params)
        flops = 3 * forward_flops(T, B)
        x, y, m = (jnp.asarray(np.concatenate([train[k], val[k]])) for k in ("prompts", "chosen", "chosen_mask"))
        for chunk in (None, sft_chunk):
            f = jax.jit(lambda p, o, k, c=chunk: sft_step(policy, opt, p, o, x, y, m, k, batch_size=B, chunk=c))
            t = best_of(f, params, state, jax.random.key(1), reps=args.reps)
            ref = rate[chunk or B]
            print(f"  chunk {str(chunk):4s}: {t * 1e3:7.1f} ms  {flops / t / 1e9:5.1f} GFLOP/s = "
                  f"{flops / t / ref:4.0%} of the matmul rate at {chunk or B} responses")

        print(f"\n== offline sweep step ({R} rows x {pairs_b} pairs, RMSProp); 3 x forward FLOPs")
        h = {k: jnp.asarray(v) for k, v in hp.items()}
        d = {k: jnp.asarray(v) for k, v in train.items()}
        ps = jax.tree.map(lambda a: jnp.stack([a] * R), params)
        opts = jax.vmap(lambda p, hh: ra._rmsprop(hh).init(p))(ps, h)
        keys = jax.random.split(jax.random.key(2), R)
        flops = 3 * forward_flops(T, 2 * pairs_b) * R

        def row(p, o, hh, k, chunk):
            return preference_step(policy, ra._combined_loss, ra._rmsprop(hh), p, o, jnp.int32(0), hh, d, k,
                                   batch_size=pairs_b, chunk=chunk)   # step 0: the first minibatch

        before = jax.jit(jax.vmap(lambda p, o, hh, k: row(p, o, hh, k, None)))
        after = jax.jit(jax.vmap(lambda p, o, hh, k: row(p, o, hh, k, train_chunk)))
        for name, f, ref in (("vmap over rows, whole minibatch (before)", before, rate[pairs_b]),
                             (f"vmap over rows, chunks of {train_chunk} pairs (now)", after, rate[train_chunk])):
            t = best_of(f, ps, opts, h, keys, reps=max(1, args.reps // 2))
            print(f"  {name}: {t:6.2f} s  {R / t:5.1f} run-steps/s  {flops / t / 1e9:5.1f} GFLOP/s = "
                  f"{flops / t / ref:4.0%} of the matmul rate")

        print("\n== log-probs of the train and val pairs at one checkpoint; forward FLOPs")
        r = args.observe_rows
        sets = {"train": train, "val": val}
        _, (x, y, m) = ra._responses(sets)
        plan = ra.length_buckets(m, ra.EVAL_BUCKETS)
        full = forward_flops(T, len(m))
        bucketed = sum(forward_flops(CFG["prompt_len"] + n, s) for s, n in zip(plan.sizes, plan.lengths))
        sj = {k: jnp.asarray(v) for k, v in val.items()}
        old = jax.jit(jax.vmap(lambda p: eval_logps(policy, p, (d, sj), chunk=128)))
        t_old = best_of(old, jax.tree.map(lambda a: a[:r], ps), reps=max(1, args.reps // 2)) / r
        named = {n: np.stack([v] * r) for n, v in ra._named(policy, params).items()}
        one = ra._logps_one(CFG, plan)
        new = jax.jit(lambda p, x, y, m: jax.lax.map(lambda q: one(q, x, y, m), p))
        t_new = best_of(new, named, x, y, m, reps=max(1, args.reps // 2)) / r
        print(f"  {r} checkpoints vmapped, 128 pairs at a time, full length (before): {t_old:5.2f} s per checkpoint, "
              f"{full / t_old / 1e9:5.1f} GFLOP/s = {full / t_old / rate[128]:4.0%} of the matmul rate")
        print(f"  {r} checkpoints one by one, {len(plan.sizes)} length buckets {plan.lengths}, {ra.EVAL_CHUNK} responses "
              f"at a time (now): {t_new:5.2f} s per checkpoint, {bucketed / t_new / 1e9:5.1f} GFLOP/s = "
              f"{bucketed / t_new / rate[ra.EVAL_CHUNK]:4.0%} of the matmul rate ({bucketed / full:.0%} of the "
              "full-length FLOPs)")


if __name__ == "__main__":
    main()
