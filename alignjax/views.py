"""Plots that scale with the sweep: views of a results ``xarray.Dataset`` (:func:`alignjax.store.load`).

Seeds are summarised, never drawn one by one: a *median* over seeds with the *interquartile
band* (25th to 75th percentile), non-finite values ignored. Which figure a scalar metric gets
depends on its swept dimensions (the dimensions other than ``seed`` and ``step`` with more
than one value, or those named by ``x``/``y``):

* **none**: the metric against the logged step (median and band) -- kind ``"curves"``;
* **one** (``x``): left, the metric at the chosen step (default the last) against ``x``
  (median and band); right, curves over steps for at most ``MAX_CURVES`` values of ``x``
  (evenly spaced picks, coloured by value with a colour bar) -- kind ``"line"``;
* **two** (``x``, ``y``): a heat map of the median at the chosen step over ``x`` and ``y``,
  with a contour at ``level`` (default: the geometric middle of the finite positive range
  on a log colour scale, else the middle) -- kind ``"heatmap"``;
* **three or more**: heat maps over ``x`` and ``y``, one panel per value of the third swept
  dimension (at most ``MAX_PANELS``, evenly spaced picks), one shared colour scale; further
  dimensions are held at their middle value, named in the title -- kind
  ``"small-multiples"``.

An axis is drawn logarithmic when its values are positive and log-spaced (constant ratio,
spanning more than a decade); a colour or y scale is logarithmic by
:func:`alignjax.plotting.log_scale_floor` (values below the floor drawn at it). Every figure
carries its kind as ``fig.get_label()``; the artists carry gids (``"median"``, ``"iqr"``,
``"curve=<value>"``, ``"heatmap"``, ``"contour"``) so that tests can check what was drawn.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["MAX_CURVES", "MAX_PANELS", "swept_dims", "scalar_metrics", "check_view", "view_figure", "plot_views"]

#: Most curves over steps drawn for one swept axis.
MAX_CURVES = 12
#: Most panels of small multiples.
MAX_PANELS = 12


def scalar_metrics(ds) -> list[str]:
    """The metrics with exactly one value per (config, seed, step): no ``METRIC_dimK`` dimensions."""
    return [k for k, v in ds.data_vars.items() if "step" in v.dims and "seed" in v.dims
            and not any(d.startswith(f"{k}_dim") for d in v.dims)]


def swept_dims(ds, metric: str) -> list[str]:
    """The metric's dimensions other than ``seed`` and ``step`` that hold more than one value, in order."""
    return [d for d in ds[metric].dims if d not in ("seed", "step") and ds.sizes[d] > 1]


def check_view(ds, metric: str | None = None, x: str | None = None, y: str | None = None,
               step: int | None = None) -> list[str]:
    """Check a view's request against ``ds`` before drawing; returns the metrics to draw.

    ``ValueError`` (one line naming the valid choices) for an unknown or non-scalar metric, an
    ``x``/``y`` that is not a dimension of every drawn metric, ``x == y``, ``y`` without
    ``x``, or a ``step`` that is not a logged step.
    """
    names = scalar_metrics(ds)
    if metric is not None:
        if metric not in names:
            raise ValueError(f"no scalar metric {metric!r} in these results; known: {', '.join(names) or 'none'}")
        names = [metric]
    if not names:
        raise ValueError("these results hold no scalar metric to plot")
    if y is not None and x is None:
        raise ValueError("--y needs --x")
    if x is not None and x == y:
        raise ValueError(f"--x and --y must differ; both are {x!r}")
    for d in (x, y):
        if d is None:
            continue
        for m in names:
            dims = [e for e in ds[m].dims if e not in ("seed", "step")]
            if d not in dims:
                raise ValueError(f"{d!r} is not a swept dimension of {m!r}; its dimensions: {', '.join(dims) or 'none'}")
    if step is not None:
        steps = np.asarray(ds["step"].values)
        if int(step) not in steps.tolist():
            raise ValueError(f"--step {step} is not a logged step; logged: {steps[0]}..{steps[-1]} every "
                             f"{steps[1] - steps[0] if len(steps) > 1 else 0}")
    return names


def _log_spaced(v) -> bool:
    v = np.asarray(v, dtype=np.float64)
    if v.size < 3 or np.any(v <= 0) or v.max() / v.min() <= 10:
        return False
    r = np.diff(np.log(np.sort(v)))
    return bool(np.allclose(r, r.mean(), rtol=1e-3, atol=0))


def _picks(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` evenly spaced indices of ``range(n)``, ends included."""
    return np.unique(np.round(np.linspace(0, n - 1, min(n, k))).astype(int))


def _quantiles(a, axis):
    """25th, 50th and 75th percentiles along ``axis``, non-finite values ignored (``(3, ...)``)."""
    a = np.asarray(a, dtype=np.float64)
    fin = np.isfinite(a)
    if fin.all():
        return np.percentile(a, [25, 50, 75], axis=axis)  # fast path: nanpercentile loops in Python
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        return np.nanpercentile(np.where(fin, a, np.nan), [25, 50, 75], axis=axis)


def _step_index(ds, step: int | None) -> int:
    return len(ds["step"]) - 1 if step is None else int(np.flatnonzero(ds["step"].values == int(step))[0])


def _colour_norm(values):
    from matplotlib.colors import LogNorm, Normalize

    from alignjax.plotting import log_scale_floor

    v = np.asarray(values, dtype=np.float64)
    fin = v[np.isfinite(v)]
    floor = log_scale_floor(fin) if fin.size else None
    if floor is not None:
        return LogNorm(floor, float(fin.max())), floor
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    return Normalize(lo, hi if hi > lo else lo + 1.0), None


def _heat(ax, ds, metric, x, y, med, norm, floor, level):
    """One heat map of ``med`` (``(len(x), len(y))``) on ``ax``; returns the mesh."""
    xv, yv = np.asarray(ds[x].values, np.float64), np.asarray(ds[y].values, np.float64)
    ox, oy = np.argsort(xv, kind="stable"), np.argsort(yv, kind="stable")  # swept values in any order
    xv, yv = xv[ox], yv[oy]
    z = np.asarray(med)[np.ix_(ox, oy)].T  # rows: y, columns: x
    drawn = np.maximum(z, floor) if floor is not None else z
    mesh = ax.pcolormesh(xv, yv, drawn, norm=norm, cmap="viridis", shading="nearest")
    mesh.set_gid("heatmap")
    if _log_spaced(xv):
        ax.set_xscale("log")
    if _log_spaced(yv):
        ax.set_yscale("log")
    fin = np.isfinite(z)
    if level is not None and fin.sum() >= 4 and np.nanmin(z) < level < np.nanmax(z) and min(z.shape) >= 2:
        from matplotlib.colors import LogNorm
        from matplotlib.lines import Line2D

        if isinstance(norm, LogNorm) and level > 0:  # contour the logarithm: straight lines between decades
            with np.errstate(divide="ignore", invalid="ignore"):
                field, at = np.log10(np.where(fin & (z > 0), z, np.nan)), math.log10(level)
        else:
            field, at = np.where(fin, z, np.nan), level
        cs = ax.contour(xv, yv, field, levels=[at], colors="white", linewidths=1.4, linestyles="solid")
        cs.set_gid("contour")
        ax.legend(handles=[Line2D([], [], color="white", linewidth=1.4, label=f"{metric} = {level:.3g}")],
                  loc="upper right", fontsize=7, facecolor="0.5", framealpha=0.6, labelcolor="white")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    return mesh


def _default_level(med, norm) -> float | None:
    from matplotlib.colors import LogNorm

    fin = np.asarray(med, np.float64)
    fin = fin[np.isfinite(fin)]
    if fin.size == 0:
        return None
    if isinstance(norm, LogNorm):
        return float(math.sqrt(norm.vmin * norm.vmax))
    return float((fin.min() + fin.max()) / 2)


def view_figure(ds, metric: str, *, x: str | None = None, y: str | None = None, step: int | None = None,
                level: float | None = None):
    """The figure of one scalar ``metric`` of a results dataset (kinds in the module docstring).

    Args:
      ds: from :func:`alignjax.store.load` (or :func:`alignjax.store.to_dataset`).
      metric: a name from :func:`scalar_metrics`.
      x, y: the swept dimensions on the horizontal and vertical axes (default: the first two
        of :func:`swept_dims`); an ``x`` with one value still gives a ``"line"`` figure.
      step: the logged step summarised (default: the last).
      level: the heat maps' contour value (default: the middle of the colour scale).

    Returns a :class:`matplotlib.figure.Figure` (not registered with pyplot) whose label is its kind.
    """
    from matplotlib.figure import Figure

    check_view(ds, metric, x, y, step)
    swept = swept_dims(ds, metric)
    order = [d for d in (x, y) if d is not None] + [d for d in swept if d not in (x, y)]
    t = _step_index(ds, step)
    step_value = int(ds["step"].values[t])
    da = ds[metric]
    if not order:
        return _curves_figure(Figure(figsize=(5.5, 3.6)), ds, metric)
    if len(order) == 1:
        return _line_figure(Figure(figsize=(10.5, 3.8)), ds, metric, order[0], t)
    x, y, rest = order[0], order[1], order[2:]
    fixed = {d: ds.sizes[d] // 2 for d in rest[1:]}
    sub = da.isel(step=t, **fixed)
    note = ", ".join(f"{d}={float(ds[d].values[i]):.3g}" for d, i in fixed.items())
    if not rest:
        med = _quantiles(sub.transpose(x, y, "seed").values, -1)[1]
        fig = Figure(figsize=(6.2, 4.8), label="heatmap")
        ax = fig.subplots()
        norm, floor = _colour_norm(med)
        mesh = _heat(ax, ds, metric, x, y, med, norm, floor, level if level is not None else _default_level(med, norm))
        fig.colorbar(mesh, ax=ax, label=f"{metric} (median over {ds.sizes['seed']} seeds)")
        ax.set_title(f"{metric} at step {step_value}")
        return fig
    third = rest[0]
    picks = _picks(ds.sizes[third], MAX_PANELS)
    med = _quantiles(sub.isel({third: picks}).transpose(third, x, y, "seed").values, -1)[1]
    norm, floor = _colour_norm(med)
    lev = level if level is not None else _default_level(med, norm)
    ncols = min(len(picks), 4)
    nrows = math.ceil(len(picks) / ncols)
    fig = Figure(figsize=(3.4 * ncols + 1.0, 3.0 * nrows + 0.8), label="small-multiples")
    axs = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axs[len(picks):]:
        ax.set_visible(False)
    for i, (ax, p) in enumerate(zip(axs, picks)):
        mesh = _heat(ax, ds, metric, x, y, med[i], norm, floor, lev)
        ax.set_title(f"{third}={float(ds[third].values[p]):.3g}", fontsize=9)
    fig.colorbar(mesh, ax=list(axs[:len(picks)]), label=f"{metric} (median over seeds)")
    shown = f"{len(picks)} of {ds.sizes[third]} values of {third}" if len(picks) < ds.sizes[third] else third
    fig.suptitle(f"{metric} at step {step_value}; panels: {shown}" + (f"; held at {note}" if note else ""),
                 fontsize=10)
    return fig


def _band(ax, xs, q, label=None, color=None, gid="median"):
    (line,) = ax.plot(xs, q[1], color=color, label=label, linewidth=1.4)
    line.set_gid(gid)
    band = ax.fill_between(xs, q[0], q[2], color=line.get_color(), alpha=0.25, linewidth=0)
    band.set_gid("iqr")
    return line


def _maybe_log_y(ax, values):
    from alignjax.plotting import log_scale_floor

    if log_scale_floor(values) is not None:
        ax.set_yscale("log")


def _curves_figure(fig, ds, metric):
    fig.set_label("curves")
    da = ds[metric]
    a = da.transpose(..., "seed", "step").values.reshape(-1, ds.sizes["step"])  # configs x seeds pooled
    q = _quantiles(a, 0)
    ax = fig.subplots()
    _band(ax, ds["step"].values, q)
    _maybe_log_y(ax, q)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: median and interquartile band over {a.shape[0]} runs", fontsize=9)
    return fig


def _line_figure(fig, ds, metric, x, t):
    import matplotlib
    from matplotlib.cm import ScalarMappable

    fig.set_label("line")
    da = ds[metric]
    others = [d for d in da.dims if d not in (x, "seed", "step")]
    da = da.isel({d: 0 for d in others})  # dimensions with one value
    order = np.argsort(np.asarray(ds[x].values, np.float64), kind="stable")  # swept values in any order
    da = da.isel({x: order})
    xv = np.asarray(da[x].values, np.float64)
    left, right = fig.subplots(1, 2)
    final = _quantiles(da.isel(step=t).transpose(x, "seed").values, -1)
    _band(left, xv, final)
    if _log_spaced(xv):
        left.set_xscale("log")
    _maybe_log_y(left, final)
    left.set_xlabel(x)
    left.set_ylabel(metric)
    left.set_title(f"{metric} at step {int(ds['step'].values[t])} (median, IQR over {ds.sizes['seed']} seeds)",
                   fontsize=9)
    picks = _picks(len(xv), MAX_CURVES)
    from alignjax.plotting import _norm

    norm = _norm(xv)
    cmap = matplotlib.colormaps["viridis"]
    steps = ds["step"].values
    allq = _quantiles(da.isel({x: picks}).transpose(x, "seed", "step").values, 1)  # (3, picks, T)
    for j, p in enumerate(picks):
        _band(right, steps, allq[:, j], color=cmap(norm(xv[p])), gid=f"curve={xv[p]:.6g}")
    _maybe_log_y(right, allq)
    right.set_xlabel("step")
    right.set_title(f"{metric} over steps, {len(picks)} of {len(xv)} values of {x}" if len(picks) < len(xv)
                    else f"{metric} over steps", fontsize=9)
    sm = ScalarMappable(norm=norm, cmap=cmap)
    sm.set_array([])
    fig.colorbar(sm, ax=right, label=x)
    return fig


def plot_views(ds, out_dir: str | Path, *, metrics: Sequence[str] | None = None, x: str | None = None,
               y: str | None = None, step: int | None = None, level: float | None = None,
               suffix: str = "") -> list[Path]:
    """Write ``METRIC{suffix}.png`` into ``out_dir`` for each scalar metric (default: all); returns the paths.

    Each figure is :func:`view_figure` with the same ``x``, ``y``, ``step`` and ``level``. Files
    are written atomically (inside an open results folder they are recorded in its manifest).
    """
    from alignjax.results import SuiteContext

    names = check_view(ds, None, x, y, step) if metrics is None else [m for m in metrics]
    for m in names:
        check_view(ds, m, x, y, step)
    ctx = SuiteContext(Path(out_dir))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return [ctx.savefig(view_figure(ds, m, x=x, y=y, step=step, level=level), f"{m}{suffix}.png") for m in names]
