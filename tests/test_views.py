"""Plots that scale: which figure a 0-, 1-, 2- and 3-axis sweep gets (never one line per config),
and ``alignjax plot``'s checks (one ``alignjax: error:`` line, exit 2, nothing drawn)."""

import numpy as np
import pytest
from matplotlib.collections import QuadMesh

from alignjax import store
from alignjax.cli import main
from alignjax.sweep import SweepResult, make_grid
from alignjax.views import MAX_CURVES, MAX_PANELS, check_view, view_figure

T = 6


def _ds(axes: dict, seeds: int = 4):
    """A synthetic sweep: ``m = exp(-a * b * step)``-like values, decaying over the grid; one vector metric."""
    base = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    grid = make_grid(base, axes, seeds=seeds)
    steps = np.arange(T) * 10
    rng = np.random.default_rng(0)
    rate = np.prod([grid.hparams[k] for k in base], axis=0)[:, None, None]
    m = np.exp(-rate * steps[None, None, :] / 10) * (1 + 0.1 * rng.random((grid.num_configs, seeds, T)))
    vec = np.zeros((grid.num_configs, seeds, T, 3), np.float32)
    return store.to_dataset(SweepResult(grid, steps, {"m": m.astype(np.float32), "v": vec}))


def _lines(fig):
    return [ln for ax in fig.axes for ln in ax.get_lines()]


def test_no_axis_is_a_median_curve_with_a_band():
    fig = view_figure(_ds({}), "m")
    assert fig.get_label() == "curves"
    assert [ln.get_gid() for ln in _lines(fig)] == ["median"]
    assert any(c.get_gid() == "iqr" for c in fig.axes[0].collections)


def test_one_axis_is_final_value_against_it_plus_at_most_twelve_curves():
    ds = _ds({"a": np.logspace(-2, 1, 100)})
    fig = view_figure(ds, "m")
    assert fig.get_label() == "line"
    left, right = fig.axes[:2]
    assert left.get_xscale() == "log" and left.get_xlabel() == "a"
    assert [ln.get_gid() for ln in left.get_lines()] == ["median"] and len(left.get_lines()[0].get_xdata()) == 100
    curves = [ln for ln in right.get_lines() if ln.get_gid().startswith("curve=")]
    assert len(curves) == MAX_CURVES and right.get_xlabel() == "step"
    assert sum(c.get_gid() == "iqr" for c in right.collections) == MAX_CURVES


def test_two_axes_are_a_heat_map_with_a_contour_and_log_axes():
    ds = _ds({"a": np.logspace(-2, 1, 30), "b": np.linspace(0.5, 2, 20)})
    fig = view_figure(ds, "m", level=0.5)
    assert fig.get_label() == "heatmap" and len(_lines(fig)) == 0
    ax = fig.axes[0]
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh) and c.get_gid() == "heatmap"]
    assert len(meshes) == 1 and meshes[0].get_array().shape == (20, 30)  # rows: y (b), columns: x (a)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert any(c.get_gid() == "contour" for c in ax.collections)
    flipped = view_figure(ds, "m", x="b", y="a", step=20)
    assert flipped.axes[0].get_xlabel() == "b" and flipped.axes[0].get_yscale() == "log"
    assert "step 20" in flipped.axes[0].get_title()


def test_three_axes_are_small_multiples_over_the_third():
    ds = _ds({"a": np.logspace(-1, 1, 5), "b": np.logspace(-1, 1, 6), "c": np.linspace(0.1, 1, 20),
              "d": [1.0, 2.0, 3.0]}, seeds=2)
    fig = view_figure(ds, "m")
    assert fig.get_label() == "small-multiples" and len(_lines(fig)) == 0
    panels = [ax for ax in fig.axes if any(c.get_gid() == "heatmap" for c in ax.collections)]
    assert len(panels) == MAX_PANELS and all(ax.get_title().startswith("c=") for ax in panels)
    assert "held at d=2" in fig._suptitle.get_text()


def test_views_refuse_bad_requests_in_one_line():
    ds = _ds({"a": [1.0, 2.0], "b": [1.0, 2.0]})
    for kw, words in [({"metric": "nope"}, "no scalar metric"), ({"metric": "v"}, "no scalar metric"),
                      ({"metric": "m", "x": "zz"}, "not a swept dimension"), ({"metric": "m", "y": "a"}, "needs --x"),
                      ({"metric": "m", "x": "a", "y": "a"}, "must differ"), ({"metric": "m", "step": 7}, "not a logged")]:
        with pytest.raises(ValueError, match=words):
            check_view(ds, **kw)


def test_plot_command_redraws_a_finished_folder_and_refuses_bad_input(tmp_path, capsys, monkeypatch):
    import alignjax.cli as cli

    monkeypatch.setattr(cli, "CSV_MAX_ROWS", 5)  # a "large" table: no metrics.csv, plots from the store alone
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", "--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=20",
                 "--set", "log_every=10", "--sweep", "beta=0.1,0.3,1", "--sweep", "learning_rate=0.1,0.2",
                 "--no-progress", "--out", str(out)]) == 0
    assert not (out / "metrics.csv").exists() and not (out / "arrays.npz").exists() and (out / "loss.png").is_file()
    capsys.readouterr()
    assert main(["plot", str(out), "--x", "learning_rate", "--y", "beta", "--metric", "loss", "--step", "10"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "plots" / "loss_x-learning_rate_y-beta_step-10.png")]
    before = sorted(p.name for p in (out / "plots").iterdir())
    for bad in (["--metric", "nope"], ["--x", "eta"], ["--step", "15"], ["--x", "beta", "--y", "beta"]):
        assert main(["plot", str(out), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("alignjax: error:") and err.count("\n") == 1, err
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert sorted(p.name for p in (out / "plots").iterdir()) == before  # nothing drawn for bad input
