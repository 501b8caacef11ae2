"""The atlas's phase diagrams: every game dynamic and every offline loss over a (beta, step size) grid.

For each family (``exact`` and ``sampled`` game dynamics on the games toy's random games;
offline ``loss``\\ es on the bandit toy's globally covered rows), one engine sweep runs every
registered member on every cell of ``beta x step`` and every seed, for the atlas's own budget
(``game_steps`` / ``num_steps``). The step size is the member's own: ``eta`` for an exact dynamic
that has one, ``learning_rate`` for a sampled dynamic, the trainer's ``learning_rate`` for a loss;
a member without one (``bt-rlhf``, ``nash-md-schedule``) varies along beta only.

Measures, declared before the first run (2026-12-07):

* games: the regularised duality gap ``gap_beta(pi_T)`` at the row's own beta (:func:`alignjax.games.regularized_gap`);
* bandits: the suboptimality ``J*_beta - J_beta(pi_T)`` under the true reward, and the ranking accuracy.

A cell **converges** when the median over seeds of the final measure is below
:data:`TOLERANCE` (``1e-3``: the regularised gap bounds how much any opponent gains against the
policy in the regularised game, and the suboptimality how much KL-regularised value is lost; both are
``O(0.1)`` for the uniform policy on these toys, and float32 resolves them to about ``1e-6``, so
``1e-3`` is far from rounding and two orders below an untrained policy). A cell whose final measure
is not finite for some seed **diverged**. A cell outside the member's declared domain (its
``Domain`` or ``Condition``, e.g. ``eta * beta <= 1``, or a learning rate above its bound) is not
judged: it runs with its step size at the member's default (beta stays the cell's, so it may still be
outside) and is masked. The other columns (median exploitability, ranking accuracy) are medians over
the in-domain cells whose measure stayed finite. The *converged region* of a
member is the fraction of its in-domain cells that converge.
"""

from __future__ import annotations

import math

import numpy as np

from alignjax.experiment import namespaced

TOLERANCE = 1e-3
"""A cell converges when the median over seeds of its final measure is below this (module docstring)."""

AXES = {"beta": (1e-2, 1e1), "eta": (1e-2, 1e1), "learning_rate": (1e-3, 1e0)}
"""The swept ranges (log-spaced, ends included): beta, an exact dynamic's eta, a learning rate."""

FAMILY_STEP = {"exact": "eta", "sampled": "learning_rate", "loss": "learning_rate"}
"""The step-size hyperparameter of each family's grid (the y axis)."""


def grid_values(name: str, n: int) -> np.ndarray:
    """``n`` log-spaced values of axis ``name`` over :data:`AXES` (float32 representable)."""
    lo, hi = AXES[name]
    return np.asarray(np.logspace(math.log10(lo), math.log10(hi), n), np.float32).astype(np.float64)


def step_key(family: str, entry) -> str | None:
    """The run key of ``entry``'s step-size hyperparameter (``egpo.eta``), or None if it has none. A loss's
    learning rate is the trainer's, the row leaf ``learning_rate``."""
    if family == "loss":
        return "learning_rate"
    name = FAMILY_STEP[family]
    return namespaced(entry, ("beta",)).get(name) if name in entry.hparams else None


def cells(n_beta: int, n_step: int, seeds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order of a phase sweep: ``(beta_index, step_index, seed)`` per row, beta slowest, seed fastest."""
    b, s, k = np.meshgrid(np.arange(n_beta), np.arange(n_step), np.arange(seeds), indexing="ij")
    return b.ravel(), s.ravel(), k.ravel()


def in_domain(family: str, entry, betas: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``(n_beta, n_step)`` bool: the cell lies in the entry's declared domains and conditions (its other
    hyperparameters at their defaults). A member without a step size is in domain wherever beta is."""
    out = np.zeros((len(betas), len(steps)), bool)
    step = FAMILY_STEP[family] if family != "loss" else None
    for i, b in enumerate(betas):
        for j, s in enumerate(steps):
            vals = dict(entry.hparams)
            if "beta" in vals:
                vals["beta"] = float(b)
            if step is not None and step in vals:
                vals[step] = float(s)
            try:
                entry.check_values(vals)
                out[i, j] = True
            except (KeyError, ValueError):
                out[i, j] = False
    return out


def summarise(values: np.ndarray, inside: np.ndarray) -> dict:
    """From ``values (n_beta, n_step, seeds)`` of one member and its ``inside (n_beta, n_step)`` mask:
    the median over seeds (NaN where a seed is not finite or the cell is outside), and the fractions of
    the in-domain cells that converge (median below :data:`TOLERANCE`) and that diverged."""
    finite = np.all(np.isfinite(values), axis=-1)
    med = np.where(finite & inside, np.median(np.where(np.isfinite(values), values, 0.0), axis=-1), np.nan)
    n = int(inside.sum())
    conv = int(np.sum(inside & finite & (med < TOLERANCE)))
    div = int(np.sum(inside & ~finite))
    return {"median": med, "converged": conv / n if n else float("nan"),
            "diverged": div / n if n else float("nan"), "cells": n}


def figure(names, betas, steps, medians, insides, *, step_name: str, metric: str, title: str):
    """One panel per member: the median final ``metric`` over (beta, step) on a shared log colour scale,
    cells outside the member's domain grey, non-finite (diverged) cells red, a white contour at
    :data:`TOLERANCE`. Returns a :class:`matplotlib.figure.Figure`."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    allv = np.concatenate([m[np.isfinite(m)].ravel() for m in medians] + [np.array([TOLERANCE])])
    lo = max(float(np.min(allv[allv > 0])) if np.any(allv > 0) else 1e-8, 1e-8)
    hi = max(float(np.max(allv)), lo * 10)
    norm = LogNorm(lo, hi)
    ncols = min(len(names), 5)
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(2.9 * ncols + 1.2, 2.6 * nrows + 0.9), label="phase")
    axs = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    mesh = None
    for ax in axs[len(names):]:
        ax.set_visible(False)
    for ax, name, med, inside in zip(axs, names, medians, insides):
        shown = np.where(np.isfinite(med), np.maximum(med, lo), np.nan).T
        ax.pcolormesh(betas, steps, np.where(inside, np.nan, 1.0).T, cmap="Greys", vmin=0, vmax=3,
                      shading="nearest")
        ax.pcolormesh(betas, steps, np.where(inside & ~np.isfinite(med), 1.0, np.nan).T, cmap="Reds", vmin=0,
                      vmax=1.2, shading="nearest")
        mesh = ax.pcolormesh(betas, steps, shown, norm=norm, cmap="viridis", shading="nearest")
        if np.sum(np.isfinite(shown)) >= 4 and np.nanmin(shown) < TOLERANCE < np.nanmax(shown) and min(shown.shape) >= 2:
            ax.contour(betas, steps, np.log10(shown), levels=[math.log10(TOLERANCE)], colors="white", linewidths=1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
    for ax in axs[(nrows - 1) * ncols:]:
        ax.set_xlabel("beta")
    for ax in axs[::ncols]:
        ax.set_ylabel(step_name)
    if mesh is not None:
        fig.colorbar(mesh, ax=list(axs[:len(names)]), label=f"final {metric} (median over seeds)")
    fig.suptitle(f"{title}: white line {metric} = {TOLERANCE:g}; grey outside the declared domain; red diverged",
                 fontsize=10)
    return fig
