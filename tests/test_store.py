"""The streamed results store and ``alignjax.load``: loaded arrays equal the in-memory sweep bit for
bit (a run, a killed and resumed run, a suite stage); a killed run's store is never read as
finished; metrics.csv only for small tables or with --csv."""

import json

import numpy as np
import pytest

from alignjax import store
from alignjax.cli import main
from alignjax.registry import EXPERIMENTS
from alignjax.results import SuiteContext
from alignjax.sweep import make_grid, run_sweep
from fault_tools import sigterm_after_checkpoint

SMALL = ["--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=20", "--set", "log_every=10",
         "--no-progress"]


def _reference(cfg_over, axes, seeds, num_steps, log_every, chunk_logs=None):
    """The in-memory SweepResult of dpo-bandit with ``cfg_over`` (what the CLI runs, in the same chunks)."""
    exp = EXPERIMENTS.get("dpo-bandit")
    cfg = {**exp.config, **cfg_over}
    grid = make_grid(exp.hparams_for(cfg), axes, seeds=seeds)
    return run_sweep(exp.make_program(cfg), grid, num_steps=num_steps, log_every=log_every,
                     chunk_logs=chunk_logs), grid


def _assert_bit_equal(ds, result):
    mem = store.to_dataset(result)
    assert set(ds.data_vars) == set(result.metrics)
    for k, v in result.metrics.items():
        got = np.asarray(ds[k].values)
        assert ds[k].dims == mem[k].dims and got.dtype == v.dtype, k
        assert got.reshape(v.shape).tobytes() == np.ascontiguousarray(v).tobytes(), k  # bit for bit, NaNs too
    for c in mem.coords:
        np.testing.assert_array_equal(ds[c].values, mem[c].values)


def test_run_folder_loads_as_labelled_arrays_equal_to_the_sweep(tmp_path, monkeypatch):
    import alignjax.cli as cli

    monkeypatch.setattr(cli, "CSV_MAX_ROWS", 5)  # a "large" table: metrics.csv only because of --csv
    out = tmp_path / "run"
    assert main(["run", "dpo-bandit", *SMALL, "--sweep", "beta=0.1,0.5,1", "--sweep", "learning_rate=0.1,0.3",
                 "--seeds", "2", "--csv", "--out", str(out)]) == 0
    ds = store.load(out)
    ref, grid = _reference({"num_prompts": 2, "num_responses": 3, "num_steps": 20, "log_every": 10},
                           {"beta": [0.1, 0.5, 1.0], "learning_rate": [0.1, 0.3]}, 2, 20, 10)
    _assert_bit_equal(ds, ref)
    assert ds["loss"].dims == ("beta", "learning_rate", "seed", "step")
    assert ds["beta"].values.tolist() == [0.1, 0.5, 1.0] and ds["step"].values.tolist() == [0, 10, 20]
    cfg = json.loads((out / "config.json").read_text())
    assert ds.attrs["config"] == cfg["config"] and ds.attrs["alignjax"] == cfg["alignjax"]
    assert ds.attrs["sweep"] == cfg["sweep"] and ds.attrs["seeds"] == 2
    # --csv: metrics.csv and arrays.npz too, and load of arrays.npz gives the same
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 6 * 2 * 3
    assert (out / "arrays.npz").is_file()
    _assert_bit_equal(store._load_npz(out / "arrays.npz"), ref)


class _Killed(BaseException):
    pass


def test_resumed_sweep_loads_bit_identical(tmp_path):
    """A chunked, checkpointed sweep streaming into a store, killed after the store took its third
    chunk but before that chunk's checkpoint (the store is ahead of the newest checkpoint), then
    resumed: the finished store equals the in-memory sweep bit for bit; the partial store is
    refused by ``load``. Stored chunks of 3 steps while 2 are streamed at a time: a stored chunk
    half written before the kill is read back and completed after it."""
    over = {"num_prompts": 2, "num_responses": 3, "num_steps": 1000, "log_every": 100}
    exp = EXPERIMENTS.get("dpo-bandit")
    cfg = {**exp.config, **over}
    grid = make_grid(exp.hparams_for(cfg), {"beta": [0.1, 1.0]}, seeds=2)
    program = exp.make_program(cfg)
    ref = run_sweep(program, grid, num_steps=1000, log_every=100, chunk_logs=2)
    steps = np.arange(11) * 100
    w = store.StoreWriter(tmp_path, grid, steps, step_chunk=3)

    def write_then_die(t0, metrics):
        w.write(t0, metrics)
        if t0 == 5:  # steps 5, 6 stored; the checkpoint of 6 logged intervals never written
            raise _Killed

    with pytest.raises(_Killed):
        run_sweep(program, grid, num_steps=1000, log_every=100, chunk_logs=2, out_dir=tmp_path,
                  on_metrics=write_then_die)
    assert w.written == 7 and sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())[-1] == 4
    with pytest.raises(ValueError, match="unfinished"):
        store.load(tmp_path)
    w = store.StoreWriter(tmp_path, grid, steps, step_chunk=3, resume=True)
    res = run_sweep(program, grid, num_steps=1000, log_every=100, chunk_logs=2, out_dir=tmp_path, resume=True,
                    on_metrics=w.write)
    assert res.metrics == {}
    w.finish()
    _assert_bit_equal(store.load(tmp_path), ref)
    w.rescan(store.load(tmp_path))
    assert w.first_nonfinite() is None and set(w.final_mean) == {k for k, v in ref.metrics.items() if v.ndim == 3}


@pytest.mark.slow
def test_resumed_run_after_sigterm_loads_bit_identical(tmp_path):
    """SIGTERM after the first checkpoints of a chunked run, then --resume: the store continues and
    equals an uninterrupted in-memory sweep; before the resume, load refuses the partial store."""
    over = {"num_prompts": 2, "num_responses": 3, "num_steps": 40000, "log_every": 1000}
    args = ["run", "dpo-bandit", *[a for k, v in over.items() for a in ("--set", f"{k}={v}")],
            "--sweep", "beta=0.1,1", "--seeds", "2", "--chunks", "40", "--no-progress",
            "--cpu-devices", "1"]  # the in-process resume below runs on this process's one device
    out = tmp_path / "run"
    code, err = sigterm_after_checkpoint(args, out)
    assert code == 143 and "--resume" in err, err
    with pytest.raises(ValueError, match="unfinished"):
        store.load(out)
    assert main(["plot", str(out)]) == 2  # not a finished folder
    assert main([*args, "--out", str(out), "--resume"]) == 0
    # the same chunks in memory (a chunked and a one-call sweep may differ in the last bit: XLA
    # compiles the two programs differently)
    ref, _ = _reference(over, {"beta": [0.1, 1.0]}, 2, 40000, 1000, chunk_logs=1)
    _assert_bit_equal(store.load(out), ref)


def test_suite_stage_loads_equal_to_the_sweep(tmp_path):
    ref, grid = _reference({"num_prompts": 2, "num_responses": 3}, {"beta": [0.1, 1.0]}, 3, 20, 10)
    ctx = SuiteContext(out_dir=tmp_path, quick=True)
    back = ctx.stage("sweep", lambda: store.sweep_stage(ref))
    assert set(back["metrics"]) == set(ref.metrics)
    ds = store.load(tmp_path, stage="sweep")
    _assert_bit_equal(ds, ref)
    assert ds["loss"].dims == ("beta", "seed", "step") and ds.attrs["stage"] == "sweep"
    # any other stage: one variable per leaf
    ctx.stage("other", lambda: {"a": {"b": np.arange(3)}, "c": np.ones((2, 2))})
    other = store.load(tmp_path / "stages" / "other.npz")
    assert set(other.data_vars) == {"a.b", "c"}


def test_non_product_grid_gets_a_config_dimension():
    ref, grid = _reference({"num_prompts": 2, "num_responses": 3}, {"beta": [0.1, 1.0]}, 2, 20, 10)
    grid.hparams["learning_rate"] = grid.hparams["beta"] * 2  # varies with beta: a coordinate over beta
    ds = store.to_dataset(ref)
    assert ds["learning_rate"].dims == ("beta",)
    from alignjax.sweep import Grid, SweepResult

    odd = Grid({"beta": np.array([0.1, 0.1, 1.0])}, ("beta",), 1)  # not a product: repeated value
    ds = store.to_dataset(SweepResult(odd, np.arange(2), {"m": np.zeros((3, 1, 2), np.float32)}))
    assert ds["m"].dims == ("config", "seed", "step") and ds["beta"].dims == ("config",)


def test_a_store_behind_its_checkpoints_is_refused_not_filled(tmp_path):
    """A write past the stored steps (a resumed run whose store was removed) raises instead of
    leaving a gap that would read as NaN data."""
    grid = make_grid({"beta": 0.1}, {"beta": [0.1, 1.0]}, seeds=1)
    w = store.StoreWriter(tmp_path, grid, np.arange(4))
    with pytest.raises(ValueError, match="first 0 logged steps only"):
        w.write(2, {"m": np.zeros((2, 2), np.float32)})


def test_load_refuses_what_is_not_results(tmp_path):
    with pytest.raises(ValueError, match="no results to load"):
        store.load(tmp_path)
