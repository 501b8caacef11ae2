"""``alignjax run --cpu-devices``: the command splits the host CPU into JAX devices, and the
results are bit-identical whatever the split (the sweep's rows are sharded, never changed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import alignjax
from alignjax.cli import usable_cores

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["run", "nash-dynamics", "--set", "algorithm=egpo", "--set", "num_steps=40", "--set", "log_every=20",
         "--sweep", "beta=0.01,0.1,1", "--sweep", "eta=0.1,0.5", "--seeds", "3", "--no-progress"]


def _command(args, out, **env):
    """``python -m alignjax ...`` as a user types it (no XLA_FLAGS or JAX_NUM_CPU_DEVICES unless given)."""
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    proc = subprocess.run([sys.executable, "-m", "alignjax", *args, "--out", str(out)], capture_output=True,
                          text=True, cwd=ROOT, env={**base, "JAX_PLATFORMS": "cpu", **env}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "config.json").read_text())["sessions"][-1]["provenance"]["device_count"]


def test_the_command_uses_a_device_per_core_and_results_do_not_depend_on_the_split(tmp_path):
    auto = _command(SWEEP, tmp_path / "auto")
    three = _command([*SWEEP, "--cpu-devices", "3"], tmp_path / "three")
    preset = _command(SWEEP, tmp_path / "preset", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert (auto, three, preset) == (usable_cores(), 3, 2)
    ref = alignjax.load(tmp_path / "auto")
    for other in ("three", "preset"):
        got = alignjax.load(tmp_path / other)
        for name in ref.data_vars:
            np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=f"{other}: {name}")


def test_a_library_call_keeps_its_callers_devices(tmp_path):
    # In-process (tests, notebooks) ``auto`` changes nothing: JAX may already be running.
    import jax

    from alignjax.cli import main

    assert main([*SWEEP, "--out", str(tmp_path / "r")]) == 0
    prov = json.loads((tmp_path / "r" / "config.json").read_text())["sessions"][-1]["provenance"]
    assert prov["device_count"] == len(jax.devices())


@pytest.mark.parametrize("flag", ["0", "-2", "two"])
def test_a_bad_count_is_one_line_before_any_compute(flag, tmp_path, capsys):
    from alignjax.cli import main

    assert main([*SWEEP, "--cpu-devices", flag, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alignjax: error: --cpu-devices must be a whole number >= 1")
    assert not (tmp_path / "r").exists()
