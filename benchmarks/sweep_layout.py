"""Configs as the major or the minor axis of a vmapped tiny-game sweep (issue 25, item 5).

The EGPO step on one random N-response game (two payoffs, two normalisations), swept over B
(beta, eta) configs for T steps in one ``jit(scan(vmap(step)))``: once with the configs as the
leading axis of the ``(B, N)`` iterate (``vmap`` over axis 0, what the engine does), once as the
trailing axis of an ``(N, B)`` iterate (``vmap(in_axes=1)``: SIMD lanes over configs). Prints
config-steps per second of each and the largest difference of their final log-probabilities.

    python benchmarks/sweep_layout.py [--n 10] [--configs 8192] [--steps 1000]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--configs", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args()
    n, b, t = a.n, a.configs, a.steps
    rng = np.random.default_rng(0)
    skew = rng.normal(size=(n, n))
    P = jnp.asarray(1 / (1 + np.exp(-(skew - skew.T))), jnp.float32)
    log_ref = jnp.full((n,), -np.log(n), jnp.float32)

    def step(log_pi, beta, eta):  # extragradient: half step, then the step from the half step's payoff
        k = eta * beta
        half = jax.nn.log_softmax((1 - k) * log_pi + k * log_ref + eta * (P @ jnp.exp(log_pi)))
        return jax.nn.log_softmax((1 - k) * log_pi + k * log_ref + eta * (P @ jnp.exp(half)))

    def sweep(axis):
        one = jax.vmap(step, in_axes=(axis, 0, 0), out_axes=axis)
        return jax.jit(lambda x, beta, eta: jax.lax.scan(lambda s, _: (one(s, beta, eta), None), x, None, length=t)[0])

    beta = jnp.asarray(10 ** rng.uniform(-3, 0, b), jnp.float32)
    eta = jnp.asarray(10 ** rng.uniform(-2, 0, b), jnp.float32)
    eta = jnp.minimum(eta, 1.0 / beta)  # eta * beta <= 1
    x0 = jnp.tile(log_ref, (b, 1))
    major, minor = sweep(0), sweep(1)
    out_major = major(x0, beta, eta).block_until_ready()
    out_minor = minor(x0.T, beta, eta).block_until_ready()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; N = {n}, {b} configs x {t} steps")
    print(f"largest |difference| of the final log-probabilities: {float(jnp.max(jnp.abs(out_major - out_minor.T))):.3g}")
    for name, fn, x in (("configs major (B, N)", major, x0), ("configs minor (N, B)", minor, x0.T)):
        best = min(_timed(fn, x, beta, eta) for _ in range(2))
        print(f"{name}: {best:.2f} s = {b * t / best / 1e6:.1f} M config-steps/s")


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args).block_until_ready()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
