"""Shared by dpo-bandit's multi-arm claims (KTO, online DPO, XPO): one config's seeds as one run, one plot.

Each of those claims runs a :class:`~alignjax.experiment.Program` whose state holds every arm of the
comparison on one instance per key; these helpers run it for one ``beta`` over its seeds and draw each
arm's metric along training.
"""
from __future__ import annotations

import numpy as np


def seeds_run(program, beta: float, seeds: int, steps: int) -> dict:
    """``program`` at one ``beta`` for ``seeds`` seeds and ``steps`` steps, logged ten times:
    ``{"steps", METRIC: (seeds, logs, ...)}`` (the config axis dropped). The seeds form one ``vmap``
    block, so the numbers do not depend on the device count."""
    from alignjax.sweep import make_grid, run_sweep

    grid = make_grid({"beta": beta}, seeds=seeds)
    res = run_sweep(program, grid, num_steps=steps, log_every=steps // 10, block_size=grid.size)
    return {"steps": np.asarray(res.steps), **{k: np.asarray(v)[0] for k, v in res.metrics.items()}}


def plot_arms(ax, steps, m, arms) -> None:
    """Each arm's median over seeds (line) and range (band) of ``m`` ``(seeds, logs, arms)`` against ``steps``."""
    steps, m = np.asarray(steps), np.asarray(m)
    for i, a in enumerate(arms):
        ax.fill_between(steps, m[:, :, i].min(0), m[:, :, i].max(0), color=f"C{i}", alpha=0.15)
        ax.plot(steps, np.median(m[:, :, i], 0), "o-", ms=3, color=f"C{i}", label=a)
