"""Sweep plots: every config drawn, readable colouring, robust log-scale decision."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from alignjax.plotting import log_scale_floor, plot_sweep, sweep_figure
from alignjax.sweep import Grid, SweepResult, make_grid

T = 6
STEPS = np.arange(T) * 10


def _result(axes, metrics_fn, seeds=2):
    grid = make_grid({"lr": 0.1, "beta": 0.5, "tau": 1.0}, axes, seeds=seeds)
    n = grid.num_configs
    metrics = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n, seeds, T)).copy()
               for k, v in metrics_fn(grid).items()}
    return SweepResult(grid=grid, steps=STEPS, metrics=metrics)


def _decay(grid):
    n = grid.num_configs
    return {"loss": (1.0 + np.arange(n))[:, None, None] * np.exp(-np.arange(T))[None, None, :]}


def _data_axes(fig):
    return [a for a in fig.axes if a.get_label() != "<colorbar>" and a.get_visible()]


def _drawn_configs(fig):
    return sorted(int(line.get_gid().split("=")[1]) for a in _data_axes(fig) for line in a.get_lines())


def _colorbars(fig):
    return [a for a in fig.axes if a.get_label() == "<colorbar>"]


def test_many_configs_one_axis_all_drawn_with_colour_bar():
    res = _result({"lr": list(np.logspace(-4, 0, 64))}, _decay)
    fig = sweep_figure(res, "loss")
    (ax,) = _data_axes(fig)
    assert len(ax.get_lines()) == 64
    assert _drawn_configs(fig) == list(range(64))
    (cbar,) = _colorbars(fig)
    assert cbar.get_ylabel() == "lr"
    assert ax.get_legend() is None
    # colours follow the swept value (log-normalised: lr spans 4 decades) -> all distinct
    colours = {tuple(line.get_color()) for line in ax.get_lines()}
    assert len(colours) == 64


def test_few_configs_keep_labelled_legend():
    res = _result({"lr": [0.01, 0.1, 1.0]}, _decay)
    fig = sweep_figure(res, "loss")
    (ax,) = _data_axes(fig)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lr=0.01", "lr=0.1", "lr=1"]
    assert not _colorbars(fig)


def test_two_axes_faceted_by_slowest_axis():
    res = _result({"beta": [0.1, 0.2, 0.3, 0.4], "lr": list(np.logspace(-3, 0, 8))}, _decay)
    fig = sweep_figure(res, "loss")
    axs = _data_axes(fig)
    assert [a.get_title() for a in axs] == ["beta=0.1", "beta=0.2", "beta=0.3", "beta=0.4"]
    assert [len(a.get_lines()) for a in axs] == [8] * 4
    assert _drawn_configs(fig) == list(range(32))
    (cbar,) = _colorbars(fig)
    assert cbar.get_ylabel() == "lr"


def test_three_axes_many_configs_colour_by_index():
    res = _result({"beta": [0.1, 0.2], "lr": [0.01, 0.1, 1.0, 3.0], "tau": [1.0, 2.0, 3.0]}, _decay)
    fig = sweep_figure(res, "loss")
    assert _drawn_configs(fig) == list(range(24))
    (cbar,) = _colorbars(fig)
    assert cbar.get_ylabel() == "config index"
    assert "config index" in fig.get_suptitle()


def test_too_many_panels_single_panel_all_configs():
    res = _result({"beta": list(np.linspace(0.1, 2.0, 20)), "lr": [0.01, 0.1, 1.0]}, _decay)
    fig = sweep_figure(res, "loss")
    (ax,) = _data_axes(fig)
    assert len(ax.get_lines()) == 60
    (cbar,) = _colorbars(fig)
    assert cbar.get_ylabel() == "config index"
    assert "config index" in ax.get_title() and "beta" in ax.get_title()


def _one_metric(values):
    return _result({"lr": [0.1, 1.0]}, lambda g: {"m": np.stack([values, values])[:, None, :]})


def test_rounding_noise_below_zero_still_log_and_clipping_noted():
    values = np.array([-1e-10, 1.0, 1e-1, 1e-2, 1e-3, 1e-4])
    fig = sweep_figure(_one_metric(values), "m")
    (ax,) = _data_axes(fig)
    assert ax.get_yscale() == "log"
    assert "clipped at 0.0001" in ax.get_ylabel()
    assert np.all(ax.get_lines()[0].get_ydata() >= 1e-4)


def test_strictly_positive_wide_range_is_log_without_note():
    fig = sweep_figure(_one_metric(np.logspace(0, -8, T)), "m")
    (ax,) = _data_axes(fig)
    assert ax.get_yscale() == "log"
    assert "clipped" not in ax.get_ylabel()


def test_crossing_zero_stays_linear():
    fig = sweep_figure(_one_metric(np.linspace(-0.5, 1.0, T)), "m")
    (ax,) = _data_axes(fig)
    assert ax.get_yscale() == "linear"
    assert ax.get_ylabel() == "m"


def test_narrow_positive_range_stays_linear():
    assert log_scale_floor(np.linspace(0.5, 1.0, 10)) is None
    assert log_scale_floor(np.array([0.0, 1e-15, 1.0])) == pytest.approx(1e-12)


def test_non_finite_values_skipped_and_reported():
    values = np.logspace(0, -5, T)
    values[2] = np.nan
    fig = sweep_figure(_one_metric(values), "m")
    (ax,) = _data_axes(fig)
    assert ax.get_yscale() == "log"  # the NaN does not spoil the decision
    assert "NaN" in ax.get_title()


def test_plot_sweep_writes_every_scalar_metric(tmp_path):
    n = 3

    def metrics(grid):
        return {f"m{i}": np.full((n, 1, T), float(i + 1)) for i in range(8)}

    res = _result({"lr": [0.01, 0.1, 1.0]}, metrics)
    res.metrics["array"] = np.zeros((n, 2, T, 4))
    paths = plot_sweep(res, tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"m{i}.png" for i in range(8))
    for p in paths:
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_sweep_max_metrics_warns_about_the_rest(tmp_path):
    res = _result({"lr": [0.1, 1.0]}, lambda g: {"a": np.ones((2, 1, T)), "b": np.ones((2, 1, T))})
    with pytest.warns(UserWarning, match=r"not plotting \[.b.\]"):
        paths = plot_sweep(res, tmp_path, max_metrics=1)
    assert [p.name for p in paths] == ["a.png"]


def test_unswept_grid_single_line():
    grid = Grid({"lr": np.array([0.1])}, (), 1)
    res = SweepResult(grid=grid, steps=STEPS, metrics={"m": np.ones((1, 1, T))})
    fig = sweep_figure(res, "m")
    assert _drawn_configs(fig) == [0]
