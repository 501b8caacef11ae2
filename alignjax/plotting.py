"""Generic plots of a sweep result (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_sweep"]


def plot_sweep(result, out_dir: str | Path, *, max_metrics: int = 6, max_lines: int = 12) -> list[Path]:
    """One PNG per scalar metric: mean over seeds vs step, one line per config (first ``max_lines``).

    Lines are labelled by the swept hyperparameters. Returns the written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alignjax.results import SuiteContext

    ctx = SuiteContext(Path(out_dir))
    paths = []
    scalars = [k for k, v in result.metrics.items() if v.ndim == 3][:max_metrics]
    axes = result.grid.axes
    for name in scalars:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        values = result.metrics[name]
        for c in range(min(result.grid.num_configs, max_lines)):
            label = ", ".join(f"{a}={result.grid.hparams[a][c]:.3g}" for a in axes) or "default"
            ax.plot(result.steps, np.mean(values[c], axis=0), label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        if np.all(values > 0):
            ax.set_yscale("log")
        if axes:
            ax.legend(fontsize=7)
        ax.set_title(name)
        paths.append(ctx.savefig(fig, f"{name}.png"))
    return paths
