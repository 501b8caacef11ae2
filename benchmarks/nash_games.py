"""Benchmarks of the exact game dynamics (measured, not tested).

(a) The full exact EGPO simulation: every registered exact dynamic x 3 (beta, lr) configs x 10
    random games, scanned to the longest budget (100,000 steps), wall time including compile.
(b) Large games: exact EGPO and Nash-MD on one random game with N responses, a sweep of C
    (beta, eta) configs, S steps: configs x steps / s for the jitted vmapped runner
    (:func:`alignjax.dynamics.simulate`), a batched numpy loop (same math), torch if
    importable; plus this machine's measured fp32 matmul rate and the fraction of it reached.

Usage (run small on a shared machine)::

    python benchmarks/nash_games.py --part ab --n 1000 --configs 64 --steps 50
    python benchmarks/nash_games.py --part b --n 1000 --configs 1024 --steps 1000   # the full size
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from alignjax import games, prefs
from alignjax.dynamics import exact_names, simulate


def part_a(full_steps: int) -> None:
    from alignjax_experiments.nash_games import egpo_games

    n, G = 10, 10
    configs = [(0.1, 1000, 0.1), (0.01, 5000, 0.02), (0.001, full_steps, 2e-4)]
    P, ref = egpo_games(jax.random.key(0), G, n)
    betas = jnp.asarray([c[0] for c in configs])[:, None]
    etas = jnp.asarray([4 * c[2] / (n * c[0]) for c in configs])[:, None]
    total = time.perf_counter()
    for name in exact_names():
        t0 = time.perf_counter()
        pis = simulate(name, P[None], ref[None], beta=betas, eta=etas, num_steps=full_steps, log_every=50)
        gaps = jax.block_until_ready(games.regularized_gap(P[None, :, None], pis, ref[None, :, None], betas[..., None]))
        print(f"  (a) {name:18s} {time.perf_counter() - t0:6.2f} s  (3 configs x {G} games x {full_steps} steps, "
              f"final median gaps {np.median(np.asarray(gaps)[..., -1], axis=1)})")
    print(f"(a) all {len(exact_names())} exact dynamics, full EGPO simulation incl. compile: "
          f"{time.perf_counter() - total:.2f} s")


def _numpy_run(name, A, log_ref, log_pi, beta, eta, steps):
    """Batched numpy loop (configs x N) of the same update (egpo or nash-md)."""
    def lsm(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))
    b, e = (eta * beta)[:, None], eta[:, None]
    for _ in range(steps):
        if name == "egpo":
            base = (1 - b) * log_pi + b * log_ref
            half = lsm(base + e * (np.exp(log_pi) @ A.T))
            log_pi = lsm(base + e * (np.exp(half) @ A.T))
        else:
            mu = lsm((1 - b) * log_pi + b * log_ref)
            log_pi = lsm(mu + e * (np.exp(mu) @ A.T))
    return log_pi


def matmul_peak(n: int = 1024, reps: int = 5) -> float:
    """Measured fp32 matmul rate of this machine through jax (flop/s)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda x: x @ a)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def part_b(n: int, num_configs: int, steps: int) -> None:
    P = prefs.random_game(jax.random.key(1), n)
    ref = jax.nn.softmax(jax.random.normal(jax.random.key(2), (n,)))
    betas = jnp.asarray(np.geomspace(1e-3, 1.0, num_configs), jnp.float32)
    etas = jnp.asarray(np.full(num_configs, 0.5), jnp.float32)
    peak = matmul_peak()
    print(f"(b) fp32 matmul rate measured here: {peak / 1e9:.1f} GFLOP/s")
    A = np.asarray(0.5 * (P - P.T), np.float32)
    for name, matvecs in (("egpo", 2), ("nash-md", 1)):
        flops = 2.0 * n * n * matvecs * num_configs * steps
        t0 = time.perf_counter()
        simulate(name, P, ref, beta=betas, eta=etas, num_steps=steps, log_every=steps).block_until_ready()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        simulate(name, P, ref, beta=betas, eta=etas, num_steps=steps, log_every=steps).block_until_ready()
        warm = time.perf_counter() - t0
        print(f"  jax   {name:8s} N={n} configs={num_configs} steps={steps}: first call {first:.2f} s (incl. compile), "
              f"warm {warm:.3f} s = {num_configs * steps / warm:,.0f} config-steps/s, "
              f"{flops / warm / 1e9:.1f} GFLOP/s = {flops / warm / peak:.0%} of matmul rate")
        log_ref = np.broadcast_to(np.log(np.asarray(ref, np.float32)), (num_configs, n)).copy()
        t0 = time.perf_counter()
        _numpy_run(name, A, log_ref, log_ref.copy(), np.asarray(betas), np.asarray(etas), steps)
        t = time.perf_counter() - t0
        print(f"  numpy {name:8s}: {t:.3f} s = {num_configs * steps / t:,.0f} config-steps/s")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("  torch: not installed, skipped")
    else:
        print("  torch: installed but no torch baseline is implemented here")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="ab", help="a, b or ab")
    ap.add_argument("--full-steps", type=int, default=100_000, help="(a) longest budget")
    ap.add_argument("--n", type=int, default=1000, help="(b) number of responses")
    ap.add_argument("--configs", type=int, default=64, help="(b) number of (beta, eta) configs (full size: 1024)")
    ap.add_argument("--steps", type=int, default=50, help="(b) steps (full size: 1000)")
    args = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')!r}; cpus={os.cpu_count()}; "
          f"load avg {os.getloadavg()[0]:.1f}")
    if "a" in args.part:
        part_a(args.full_steps)
    if "b" in args.part:
        part_b(args.n, args.configs, args.steps)


if __name__ == "__main__":
    main()
