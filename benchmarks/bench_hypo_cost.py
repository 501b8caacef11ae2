"""Benchmark: wall time of one update of DPO, HyPO and RLHF (the coverage suite's trainers).

The coverage suite counts what an update holds and draws (``update_counts`` in
``experiments/coverage.py``, asserted by ``tests/test_coverage_suite.py``; the ``hypo-cost`` claim
before claims v3); time is measured here instead, never asserted. For each trainer
(tabular policy, population pairs of the suite's problem, RLOO with ``k`` samples per prompt for
HyPO and RLHF) one update is jitted, run once to compile, then timed over ``--repeats`` blocks of
``--steps`` updates inside one ``lax.scan`` (per-update seconds = block time / steps; the median
and the spread over blocks are printed). On a shared CPU the spread is large: compare medians of
one run, and rerun before reading anything into a ratio.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import alignjax_experiments.coverage as cs
from alignjax.data import bandits
from alignjax.policies import tabular
from alignjax.reward_model import tabular_reward
from alignjax.rlhf import TRAINERS, Problem


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="updates per timed block")
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per trainer")
    p.add_argument("--samples", type=int, default=4, help="online samples per prompt (HyPO, RLHF)")
    args = p.parse_args()

    cfg = {**cs.settings("quick"), "num_samples": args.samples, "reward_steps": 10}
    lv = cs.tabular_leaves(cfg, np.full(1, 1e-6), np.zeros(1, bool), np.zeros(1, int))
    h = {k: jnp.asarray(v[0]) for k, v in lv.items()}
    X, N = cfg["sub_prompts"], cfg["sub_responses"]
    prob = Problem(jnp.arange(X), h["log_pi_ref"],
                   bandits.Pairs(h["pair_x"], h["pair_y_w"], h["pair_y_l"], h["pair_weight"]), h["features"])
    pol = tabular(X, N)
    print(f"devices: {jax.devices()}; {X} prompts x {N} responses, k = {args.samples}, "
          f"{args.repeats} blocks of {args.steps} updates")
    print(f"{'trainer':<8} {'median us/update':>18} {'min':>8} {'max':>8} {'vs dpo':>8}")
    base = None
    for name in ("dpo", "hypo", "rlhf"):
        trainer = TRAINERS.get(name)(pol, reward_model=tabular_reward(X, N), mode="sampled",
                                     num_samples=args.samples, reward_steps=cfg["reward_steps"])
        state = trainer.init(jnp.zeros((X, N)), prob, h, jax.random.key(0))

        @jax.jit
        def block(st, key):
            return jax.lax.scan(lambda c, k: (trainer.update(c, prob, h, k)[0], None), st,
                                jax.random.split(key, args.steps))[0]

        jax.block_until_ready(block(state, jax.random.key(1)))
        times = []
        for r in range(args.repeats):
            t = time.perf_counter()
            jax.block_until_ready(block(state, jax.random.key(2 + r)))
            times.append((time.perf_counter() - t) / args.steps * 1e6)
        med = float(np.median(times))
        base = base or med
        print(f"{name:<8} {med:>18.2f} {min(times):>8.2f} {max(times):>8.2f} {med / base:>7.2f}x")


if __name__ == "__main__":
    main()
