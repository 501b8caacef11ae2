"""Benchmark: the dpo-bandit sweep (population DPO, 8 prompts x 16 responses).

Throughput in configs x steps per second for
  1. the sweep runner: the whole grid as one jit(vmap) program (compiled once),
  2. a per-config numpy loop doing the same math (hand-written gradient),
  3. the same jitted JAX step called per config and per step from Python.
Baselines 2 and 3 are timed on a subset of configs and reported as throughput (they scale
linearly in the number of configs). Compile time is reported separately. Nothing here is
asserted; run it with `make bench` or `python benchmarks/dpo_bandit_sweep.py --help`.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from alignjax.registry import EXPERIMENTS
from alignjax.sweep import default_block_size, make_grid, make_run, run_sweep


def numpy_run(r, log_ref, beta, lr, steps):
    """Full-batch GD on the population DPO loss for one config, in numpy (same math as the program).

    Dense over ordered pairs: ``dL/dtheta_y = (beta/N) sum_{y'} (sigmoid(beta h_yy') - alpha_yy')``
    (the gradient of ``(1/N) sum_{y != y'} alpha_yy' l(beta h_yy')``, using ``alpha_y'y = 1 - alpha_yy'``).
    """
    n = r.shape[-1]
    alpha = 1.0 / (1.0 + np.exp(-(r[:, :, None] - r[:, None, :])))
    theta = log_ref.copy()
    step = lr / beta**2
    for _ in range(steps):
        delta = theta - log_ref
        h = delta[:, :, None] - delta[:, None, :]
        grad = (beta / n) * (1.0 / (1.0 + np.exp(-beta * h)) - alpha).sum(axis=-1)
        theta -= step * grad
    return theta


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", type=int, default=1024)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--baseline-configs", type=int, default=4, help="configs timed for the per-config baselines")
    p.add_argument("--sizes", default="8x16,2x4", help="problem sizes PROMPTSxRESPONSES, comma-separated")
    args = p.parse_args()
    print(f"devices: {jax.devices()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')!r}; load average {os.getloadavg()}")
    for size in args.sizes.split(","):
        prompts, responses = (int(v) for v in size.split("x"))
        bench(args, prompts, responses)


def bench(args, prompts, responses):

    exp = EXPERIMENTS.get("dpo-bandit")
    cfg = {**exp.config, "num_prompts": prompts, "num_responses": responses, "num_steps": args.steps,
           "log_every": args.steps}
    program = exp.make_program(cfg)
    betas = np.geomspace(0.01, 10.0, args.configs)
    grid = make_grid(exp.hparams_for(cfg), {"beta": betas}, seeds=1)

    # 1. sweep runner: first call (compile + run), then a second identical call (run only).
    t0 = time.perf_counter()
    first = run_sweep(program, grid, num_steps=args.steps, log_every=args.steps)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_sweep(program, grid, num_steps=args.steps, log_every=args.steps)
    t_second = time.perf_counter() - t0  # new jit object -> includes a recompile
    run = jax.jit(jax.vmap(make_run(program, num_steps=args.steps, log_every=args.steps)))
    hp = {k: jnp.asarray(v) for k, v in grid.hparams.items()}
    keys = jnp.stack([jax.random.key(0)] * grid.size)
    t0 = time.perf_counter()
    compiled = run.lower(hp, keys).compile()
    t_compile = time.perf_counter() - t0
    jax.block_until_ready(compiled(hp, keys))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(hp, keys))
    t_exec = time.perf_counter() - t0
    sweep_rate = args.configs * args.steps / t_exec

    # Instances for the baselines (the same ones the program draws from key(0)).
    state = jax.jit(program.init)({k: jnp.asarray(v[0]) for k, v in grid.hparams.items()}, jax.random.key(0))
    r, log_ref = np.asarray(state["data"]["r"], np.float64), np.asarray(state["data"]["log_ref"], np.float64)

    # 2. numpy per-config loop
    m = args.baseline_configs
    t0 = time.perf_counter()
    for c in range(m):
        numpy_run(r, log_ref, betas[c], 4.0, args.steps)
    numpy_rate = m * args.steps / (time.perf_counter() - t0)

    # 3. the jitted step called per config from Python
    step = jax.jit(program.step)
    s0 = jax.tree.map(jnp.asarray, state)
    hp0 = {k: jnp.asarray(v[0]) for k, v in grid.hparams.items()}
    jax.block_until_ready(step(s0, hp0))
    t0 = time.perf_counter()
    for c in range(m):
        h = {**hp0, "beta": jnp.asarray(betas[c], jnp.float32)}
        s = s0
        for _ in range(args.steps):
            s = step(s, h)
        jax.block_until_ready(s)
    step_rate = m * args.steps / (time.perf_counter() - t0)

    print(f"\n{prompts} prompts x {responses} responses; grid {args.configs} configs x {args.steps} steps "
          f"(vmap block {default_block_size(grid.size)}); compilations for the whole grid: {first.num_compiles}")
    print(f"compile (AOT lower+compile): {t_compile:.2f}s; run_sweep first call incl. compile {t_first:.2f}s, "
          f"second call {t_second:.2f}s")
    print(f"{'method':<40} {'configs*steps/s':>16} {'vs numpy':>10}")
    for name, rate in (("sweep runner (jit(vmap), one compile)", sweep_rate),
                       ("numpy, per-config Python loop", numpy_rate),
                       ("jitted JAX step, per config from Python", step_rate)):
        print(f"{name:<40} {rate:>16,.0f} {rate / numpy_rate:>9.1f}x")


if __name__ == "__main__":
    main()
