"""Generic plots of a sweep result (matplotlib, no pyplot state, PNG output).

One figure per scalar metric (``ndim == 3``: ``(configs, seeds, T)``): the mean over seeds
against the logged step, one line per config. Every config is drawn, and the figure says
how to tell them apart:

* **Few configs** (``num_configs <= max_legend``, default 10, the size of matplotlib's colour
  cycle): one panel, a legend naming each line by its swept values (``lr=0.01, beta=0.1``).
* **Many configs, one swept axis**: one panel; each line's colour is its value on that
  axis, from a colour map (``viridis``), log-normalised when all values are ``> 0`` and
  span more than a decade (``max / min > 10``), linear otherwise; a colour bar is labelled
  with the axis name.
* **Many configs, two or more swept axes**: one panel per value of the slowest axis
  (``grid.axes[0]``), titled ``name=value``, when it has at most ``max_panels`` (default
  12) values. Inside the panels, lines differ by the remaining axes:

  - one remaining axis: coloured by its value as above, one shared colour bar labelled
    with its name;
  - several remaining axes and at most ``max_legend`` lines per panel: a legend per panel;
  - otherwise: coloured by the config index (the ``config`` column of
    :meth:`~alignjax.sweep.SweepResult.table`), colour bar ``config index``, and the title
    says the index runs over the axes in grid order (first slowest).

  With more than ``max_panels`` values of the slowest axis there are no panels: all lines
  go in one panel coloured by config index, explained the same way.

Each line carries ``gid="config=<index>"`` so the figure can be checked programmatically.

**Log scale** is decided per metric from the drawn values ``v`` (the finite seed means),
shared by all panels:

* ``m = max|v|``; the data count as non-negative when ``min(v) >= -1e-6 * m`` (rounding
  noise such as a KL of ``-1e-10`` is tolerated);
* the floor is ``max(smallest positive v, 1e-12 * m)``;
* the y axis is logarithmic when the data are non-negative and ``max(v) / floor > 100``
  (more than two decades); values below the floor (zeros, rounding noise) are drawn at the
  floor and the y label says ``(clipped at <floor>)``.

Otherwise the scale is linear and nothing is clipped. Non-finite values (NaN, inf) are not
drawn (a seed mean that includes one is not drawn); the title then says how many of the
metric's values are non-finite.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

__all__ = ["plot_sweep", "sweep_figure", "log_scale_floor"]

#: Values with ``min >= -NEG_TOL * max|v|`` count as non-negative (rounding noise).
NEG_TOL = 1e-6
#: The log-scale floor is at least ``FLOOR_REL * max|v|``.
FLOOR_REL = 1e-12
#: Log scale needs the data to span more than this ratio (two decades).
MIN_SPAN = 100.0


def log_scale_floor(values) -> float | None:
    """The floor of a log y axis for ``values``, or ``None`` when the axis should be linear.

    Non-finite entries are ignored. With ``m = max|v|`` over the finite values, a log scale is
    used when ``min(v) >= -1e-6 * m`` (non-negative up to rounding) and the positive values
    span more than two decades above the floor ``max(smallest positive value, 1e-12 * m)``.
    Values below the returned floor are to be drawn at the floor.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    m = float(np.max(np.abs(v)))
    if m == 0.0 or float(np.min(v)) < -NEG_TOL * m:
        return None
    pos = v[v > 0]
    floor = max(float(np.min(pos)), FLOOR_REL * m)
    if float(np.max(v)) / floor <= MIN_SPAN:
        return None
    return floor


def _fmt(x) -> str:
    return f"{float(x):.3g}"


def _norm(values):
    """Colour normalisation for hyperparameter values: log when > 0 and spanning > a decade."""
    from matplotlib.colors import LogNorm, Normalize

    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(np.min(v)), float(np.max(v))
    if lo > 0 and hi / lo > 10:
        return LogNorm(lo, hi)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return Normalize(lo, hi)


def _layout(result, max_legend: int, max_panels: int):
    """Decide panels and how lines are told apart.

    Returns ``(panels, mode, colour, note)``: ``panels`` a list of ``(title, config indices)``;
    ``mode`` ``"legend"`` or ``"cmap"``; for ``"legend"``, ``colour`` is the tuple of axes
    named in labels; for ``"cmap"``, ``(values per config, colour-bar label)``; ``note`` is
    text for the figure title (or ``""``).
    """
    grid = result.grid
    n = grid.num_configs
    axes = tuple(grid.axes)
    everything = np.arange(n)
    by_index = (np.arange(n, dtype=np.float64), "config index")
    index_note = ("colour = config index (grid order over " + ", ".join(axes) + "; first slowest)"
                  if axes else "colour = config index")
    if n <= max_legend:
        return [("", everything)], "legend", axes, ""
    if len(axes) == 1:
        a = axes[0]
        return [("", everything)], "cmap", (np.asarray(grid.hparams[a], dtype=np.float64), a), ""
    if len(axes) == 0:
        return [("", everything)], "cmap", by_index, index_note
    slow = axes[0]
    sv = np.asarray(grid.hparams[slow])
    values = np.unique(sv)
    if len(values) > max_panels:
        return [("", everything)], "cmap", by_index, index_note
    panels = [(f"{slow}={_fmt(v)}", np.flatnonzero(sv == v)) for v in values]
    rest = axes[1:]
    if len(rest) == 1:
        return panels, "cmap", (np.asarray(grid.hparams[rest[0]], dtype=np.float64), rest[0]), ""
    if max(len(idx) for _, idx in panels) <= max_legend:
        return panels, "legend", rest, ""
    return panels, "cmap", by_index, index_note


def sweep_figure(result, name: str, *, max_legend: int = 10, max_panels: int = 12):
    """The figure of scalar metric ``name``: mean over seeds vs step, every config drawn.

    Layout, colours and log-scale rule are described in the module docstring: a legend up to
    ``max_legend`` configs; beyond it a colour map over the one swept axis, or panels over the
    slowest of several swept axes (at most ``max_panels``), else colour by config index. A log
    y axis is used when the data are non-negative up to rounding and span more than two
    decades; values below the floor are clipped to it and the y label says so.

    Returns a :class:`matplotlib.figure.Figure` (not registered with pyplot).
    """
    import matplotlib
    from matplotlib.figure import Figure

    raw = np.asarray(result.metrics[name])
    if raw.ndim != 3:
        raise ValueError(f"metric {name!r} is not scalar: shape {raw.shape}, expected (configs, seeds, T)")
    grid = result.grid
    steps = np.asarray(result.steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in a mean -> NaN
        mean = np.mean(raw.astype(np.float64), axis=1)  # (configs, T)
    mean = np.where(np.isfinite(mean), mean, np.nan)
    bad = int(np.sum(~np.isfinite(raw.astype(np.float64))))

    floor = log_scale_floor(mean)
    clipped = floor is not None and bool(np.any(mean[np.isfinite(mean)] < floor))
    drawn = np.maximum(mean, floor) if floor is not None else mean  # NaN stays NaN

    panels, mode, colour, note = _layout(result, max_legend, max_panels)
    k = len(panels)
    ncols = min(k, 4)
    nrows = math.ceil(k / ncols)
    width = (5.0 if k == 1 else 3.6 * ncols) + (0.8 if mode == "cmap" else 0.0)
    fig = Figure(figsize=(width, 3.5 if k == 1 else 2.8 * nrows + 0.6))
    axs = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax in axs[k:]:
        ax.set_visible(False)
    axs = axs[:k]

    cmap = matplotlib.colormaps["viridis"]
    if mode == "cmap":
        cvals, clabel = colour
        norm = _norm(cvals)
    styles = ["-", "--", ":", "-."]
    for ax, (title, idx) in zip(axs, panels):
        for j, c in enumerate(idx):
            c = int(c)
            if mode == "legend":
                label = ", ".join(f"{a}={_fmt(grid.hparams[a][c])}" for a in colour) or f"config {c}"
                kw = dict(label=label, linestyle=styles[(j // 10) % len(styles)])
            else:
                kw = dict(color=cmap(norm(cvals[c])), linewidth=1.0)
            (line,) = ax.plot(steps, drawn[c], **kw)
            line.set_gid(f"config={c}")
        if floor is not None:
            ax.set_yscale("log")
        if mode == "legend" and (colour or len(idx) > 1):
            ax.legend(fontsize=7)
        if title:
            ax.set_title(title, fontsize=9)
    for i, ax in enumerate(axs):
        if i + ncols >= k:  # nothing drawn below this panel: it carries the x axis
            ax.set_xlabel("step")
            ax.xaxis.set_tick_params(labelbottom=True)
    ylabel = name + (f" (clipped at {floor:.3g})" if clipped else "")
    for r in range(nrows):
        axs[r * ncols].set_ylabel(ylabel)
    if mode == "cmap":
        from matplotlib.cm import ScalarMappable

        sm = ScalarMappable(norm=norm, cmap=cmap)
        sm.set_array([])
        fig.colorbar(sm, ax=list(axs), label=clabel)

    bad_note = f"{bad} of {raw.size} values NaN/inf (seed means that include them are not drawn)" if bad else ""
    notes = [t for t in (note, bad_note) if t]
    if not np.any(np.isfinite(mean)):
        notes.append("no finite values")
    heading = name + (f"\n{'; '.join(notes)}" if notes else "")
    if k == 1:
        axs[0].set_title(heading, fontsize=9 if notes else None)
    else:
        fig.suptitle(heading, fontsize=10)
    return fig


def plot_sweep(result, out_dir: str | Path, *, max_metrics: int | None = None, max_legend: int = 10,
               max_panels: int = 12) -> list[Path]:
    """Write ``<metric>.png`` in ``out_dir`` for every scalar metric; return the written paths.

    Scalar metrics are those of shape ``(configs, seeds, T)``; larger arrays are not plotted.
    Each figure is :func:`sweep_figure` (every config drawn; legend, colour bar or panels as
    the module docstring describes; log y axis when the data are non-negative up to rounding
    and span more than two decades, with clipping noted on the axis).

    Args:
      result: a :class:`~alignjax.sweep.SweepResult`.
      out_dir: folder to write into.
      max_metrics: plot at most this many scalar metrics (``None``, the default: all of
        them); any left out are named in a warning.
      max_legend: most configs (per panel) told apart by a legend.
      max_panels: most panels (values of the slowest swept axis).
    """
    from alignjax.results import SuiteContext

    ctx = SuiteContext(Path(out_dir))
    scalars = [k for k, v in result.metrics.items() if np.ndim(v) == 3]
    if max_metrics is not None and len(scalars) > max_metrics:
        warnings.warn(f"plot_sweep: max_metrics={max_metrics}; not plotting {scalars[max_metrics:]}",
                      stacklevel=2)
        scalars = scalars[:max_metrics]
    paths = []
    for name in scalars:
        fig = sweep_figure(result, name, max_legend=max_legend, max_panels=max_panels)
        paths.append(ctx.savefig(fig, f"{name}.png"))
    return paths
