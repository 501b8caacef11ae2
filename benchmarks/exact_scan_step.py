"""Benchmark: the cost of one step of the exact tabular scans (measured, not tested).

nash-games quick spends most of its time in 10^7-step exact scans on 10 games of N = 10
responses (stages ``beta0`` and ``mpo``). This separates what one step costs: an empty scan step,
the log-softmax of the ``(G, N)`` iterates, the batched payoff matvec ``A @ pi`` per game, one
whole MWU step ``log pi <- lsm(log pi + eta A pi)``, for ``G = 1, 10, 100`` rows; then the
registered dynamics through :func:`alignjax.dynamics.simulate` on the suite's own games (RPS and
10 random games). Process CPU time per step, best of 3 (steadier than wall time on a shared
machine).

    python benchmarks/exact_scan_step.py [--steps 200000]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def _per_step_us(f, *args, steps: int) -> float:
    run = jax.jit(f, static_argnums=len(args))
    run(*args, steps).block_until_ready()
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        run(*args, steps).block_until_ready()
        best = min(best, time.process_time() - t)
    return best / steps * 1e6


def _scan(body):
    def run(A, lp, steps):
        return jax.lax.scan(lambda c, _: (body(A, c), None), lp, None, length=steps)[0]
    return run


def micro(steps: int) -> None:
    bodies = {
        "empty scan step (x * 0.999)": lambda A, lp: lp * 0.999,
        "log-softmax of (G, 10)": lambda A, lp: jax.nn.log_softmax(lp * 0.999),
        "batched matvec (G,10,10) x (G,10)": lambda A, lp: jnp.einsum("gij,gj->gi", A, lp),
        "one MWU step": lambda A, lp: jax.nn.log_softmax(lp + 0.25 * jnp.einsum("gij,gj->gi", A, jnp.exp(lp))),
    }
    print("| per step, G rows of N = 10 | G = 1 | G = 10 | G = 100 |\n|---|---:|---:|---:|")
    for name, body in bodies.items():
        cells = []
        for G in (1, 10, 100):
            A = jax.random.normal(jax.random.key(0), (G, 10, 10))
            lp = jnp.full((G, 10), -np.log(10.0), jnp.float32)
            cells.append(f"{_per_step_us(_scan(body), A, lp, steps=steps):.3f} us")
        print(f"| {name} | " + " | ".join(cells) + " |")


def through_simulate(steps: int) -> None:
    from alignjax.dynamics import simulate
    from alignjax_experiments import nash_games as ng

    games = ng._beta0_games(ng._settings("quick"))
    for fam, (P, pi0) in games.items():
        for name in ("egpo", "omwu", "mwu"):
            run = lambda: simulate(name, P, pi0, beta=0.0, eta=0.25, num_steps=steps, log_every=steps // 10)  # noqa: E731
            run().block_until_ready()  # compile
            t = time.process_time()
            run().block_until_ready()
            print(f"simulate {name:5s} on {fam:6s} ({P.shape[0]} game(s), N = {P.shape[-1]}): "
                  f"{(time.process_time() - t) / steps * 1e6:.3f} us/step")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200_000)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, jax {jax.__version__}")
    micro(a.steps)
    through_simulate(a.steps)
