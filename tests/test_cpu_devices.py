"""``alignjax run --cpu-devices``: the command splits the host CPU into JAX devices, and the
results are bit-identical whatever the split (the sweep's rows are sharded, never changed)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import alignjax
from alignjax.cli import AUTO_CPU_DEVICES, _started_devices, usable_cores
from fault_tools import sigterm_after_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["run", "nash-dynamics", "--set", "algorithm=egpo", "--set", "num_steps=40", "--set", "log_every=20",
         "--sweep", "beta=0.01,0.1,1", "--sweep", "eta=0.1,0.5", "--seeds", "3", "--no-progress"]


def _command(args, out, **env):
    """``python -m alignjax ...`` as a user types it (no XLA_FLAGS or JAX_NUM_CPU_DEVICES unless given)."""
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "ALIGNJAX_CPU_DEVICES")}
    proc = subprocess.run([sys.executable, "-m", "alignjax", *args, "--out", str(out)], capture_output=True,
                          text=True, cwd=ROOT, env={**base, "JAX_PLATFORMS": "cpu", **env}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "config.json").read_text())["sessions"][-1]["provenance"]["device_count"]


def test_the_command_uses_a_device_per_core_and_results_do_not_depend_on_the_split(tmp_path):
    auto = _command(SWEEP, tmp_path / "auto")
    three = _command([*SWEEP, "--cpu-devices", "3"], tmp_path / "three")
    preset = _command(SWEEP, tmp_path / "preset", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert (auto, three, preset) == (min(usable_cores(), AUTO_CPU_DEVICES), 3, 2)
    ref = alignjax.load(tmp_path / "auto")
    for other in ("three", "preset"):
        got = alignjax.load(tmp_path / other)
        for name in ref.data_vars:
            np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=f"{other}: {name}")


def _asked_count(monkeypatch, env, call) -> list:
    """The ``jax.config.update`` calls ``call()`` makes, as before JAX starts, with exactly ``env`` of the three
    device-count variables set."""
    import jax
    from jax._src import xla_bridge

    for k in ("ALIGNJAX_CPU_DEVICES", "XLA_FLAGS", "JAX_NUM_CPU_DEVICES"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    asked = []
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)  # as before JAX starts
    monkeypatch.setattr(jax.config, "update", lambda k, v: asked.append((k, v)))
    call()
    return asked


@pytest.mark.parametrize("entry, env, count", [
    (True, {"ALIGNJAX_CPU_DEVICES": "5"}, 5),  # auto's count, from the environment
    (True, {}, min(usable_cores(), AUTO_CPU_DEVICES)),  # auto: a device per usable core
    (True, {"ALIGNJAX_CPU_DEVICES": "5", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, None),  # preset
    (True, {"ALIGNJAX_CPU_DEVICES": "5", "JAX_NUM_CPU_DEVICES": "2"}, None),
    (False, {"ALIGNJAX_CPU_DEVICES": "5"}, None),  # a library call: its caller's set-up
])
def test_the_count_auto_asks_jax_for(entry, env, count, monkeypatch):
    from alignjax.cli import _cpu_devices

    args = SimpleNamespace(cpu_devices=None, distributed=False, coordinator=None, num_processes=None,
                           process_id=None, resume=False, out=None, experiment="nash-dynamics")
    asked = _asked_count(monkeypatch, env, lambda: _cpu_devices(args, entry=entry))
    assert asked == ([] if count is None else [("jax_num_cpu_devices", count)])


def test_a_library_call_keeps_its_callers_devices(tmp_path):
    # In-process (tests, notebooks) ``auto`` changes nothing: JAX may already be running.
    import jax

    from alignjax.cli import main

    assert main([*SWEEP, "--out", str(tmp_path / "r")]) == 0
    prov = json.loads((tmp_path / "r" / "config.json").read_text())["sessions"][-1]["provenance"]
    assert prov["device_count"] == len(jax.devices())


@pytest.mark.parametrize("flag", ["0", "-2", "two", "1.5", "1_0", "+2", "\u0662", "513", "10000"])
def test_a_bad_count_is_one_line_before_any_compute(flag, tmp_path, capsys):
    from alignjax.cli import main

    assert main([*SWEEP, "--cpu-devices", flag, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alignjax: error: --cpu-devices must be a whole number from 1 to 512")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["0", "x", "1.5"])
def test_a_bad_count_in_the_environment_is_one_line(value, tmp_path, capsys, monkeypatch):
    from alignjax.cli import main

    monkeypatch.setenv("ALIGNJAX_CPU_DEVICES", value)
    assert main([*SWEEP, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"alignjax: error: ALIGNJAX_CPU_DEVICES must be a whole number from 1 to 512 or 'auto'; got {value!r}"]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # three commands and a SIGTERM (~30 s); the count it reads is unit-tested below in the default run
def test_an_interrupted_run_resumes_on_the_devices_it_started_with(tmp_path):
    # A checkpoint holds the rows as padded for its device count: ``auto`` with --resume takes the
    # count of the run's first session, so a run started on 3 devices resumes (on 3) and ends with the
    # numbers of an uninterrupted run on 1 device.
    over = ["--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=40000", "--set", "log_every=1000"]
    args = ["run", "dpo-bandit", *over, "--sweep", "beta=0.1,0.5,1", "--seeds", "3", "--chunks", "40", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "ALIGNJAX_CPU_DEVICES")}
    out = tmp_path / "run"
    code, err = sigterm_after_checkpoint([*args, "--cpu-devices", "3"], out, env=env)
    assert code == 143 and "--resume" in err, err
    assert _started_devices(SimpleNamespace(out=str(out), experiment="dpo-bandit")) == 3
    assert _command([*args, "--resume"], out) == 3  # auto: the first session's count
    ref = _command([*args, "--cpu-devices", "1"], tmp_path / "ref")
    assert ref == 1
    a, b = alignjax.load(out), alignjax.load(tmp_path / "ref")
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_the_started_count_is_read_only_from_a_well_formed_record(tmp_path):
    args = SimpleNamespace(out=str(tmp_path), experiment="x")
    assert _started_devices(args) is None  # no config.json
    for doc, want in ((["x"], None), ({"sessions": "x"}, None), ({"sessions": [{"provenance": {"backend": "gpu",
                                                                                                   "device_count": 4}}]}, None),
                      ({"sessions": [{"provenance": {"backend": "cpu", "device_count": "4"}}]}, None),
                      ({"sessions": [{"provenance": {"backend": "cpu", "device_count": 4}}, {}]}, 4)):
        (tmp_path / "config.json").write_text(json.dumps(doc))
        assert _started_devices(args) == want, doc
    (tmp_path / "config.json").unlink()
    os.mkfifo(tmp_path / "config.json")  # never opened for a blocking read
    assert _started_devices(args) is None


def test_cpu_devices_share_the_hosts_memory_in_the_guard():
    # estimate_memory's device figure is per device; CPU devices share the host's RAM, so each is given
    # its share (a guard against the whole host would let N devices use N times the memory)
    code = ("from alignjax.sweep import available_memory; import jax; m = available_memory(); "
            "print(len(jax.devices()), m['device'], m['host'])")
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    n, device, host = map(int, out.stdout.split())
    assert n == 4 and device == host // 4


# ---- reproduce: a device per core for a suite alone, cores // jobs for each --jobs child
@pytest.mark.parametrize("entry, env, count", [
    (True, {}, min(usable_cores(), AUTO_CPU_DEVICES)),
    (True, {"ALIGNJAX_CPU_DEVICES": "3"}, 3),  # a --jobs child's share, or the user's count
    (True, {"ALIGNJAX_CPU_DEVICES": "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, None),  # preset
    (False, {}, None),  # a library call: its caller's set-up
])
def test_the_count_reproduce_asks_jax_for(entry, env, count, monkeypatch):
    from alignjax.cli import _reproduce_cpu_devices

    args = SimpleNamespace(distributed=False, coordinator=None, num_processes=None, process_id=None)
    asked = _asked_count(monkeypatch, env, lambda: _reproduce_cpu_devices(args, entry=entry))
    assert asked == ([] if count is None else [("jax_num_cpu_devices", count)])


@pytest.mark.parametrize("jobs", [1, 2, 3, 100])
def test_each_jobs_child_gets_its_share_of_the_cores(jobs, monkeypatch):
    from alignjax.cli import _child_cpu_devices

    for k in ("ALIGNJAX_CPU_DEVICES", "XLA_FLAGS", "JAX_NUM_CPU_DEVICES"):
        monkeypatch.delenv(k, raising=False)
    want = max(1, min(usable_cores(), AUTO_CPU_DEVICES) // jobs)
    assert _child_cpu_devices(jobs)["ALIGNJAX_CPU_DEVICES"] == str(want)
    monkeypatch.setenv("ALIGNJAX_CPU_DEVICES", "7")  # the user's count is passed on as it is
    assert _child_cpu_devices(jobs)["ALIGNJAX_CPU_DEVICES"] == "7"
    monkeypatch.delenv("ALIGNJAX_CPU_DEVICES")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # preset: inherited, nothing added
    assert "ALIGNJAX_CPU_DEVICES" not in _child_cpu_devices(jobs)


def test_map_over_devices_is_bit_identical_for_any_device_count():
    """ranking-accuracy's checkpoint log-probs (``_map_over_devices``): the same values, bit for bit, on 1 and on 4
    CPU devices (K = 7 parameter sets: padded to 8 over 4 devices), in a subprocess per count."""
    code = (
        "import jax, jax.numpy as jnp, numpy as np; from alignjax_experiments.ranking_accuracy import _map_over_devices\n"
        "rng = np.random.default_rng(0); w = rng.normal(size=(7, 16, 16)).astype(np.float32)\n"
        "x = rng.normal(size=(32, 16)).astype(np.float32)\n"
        "f = lambda p, x: jax.nn.log_softmax(jnp.tanh(x @ p) @ p, axis=-1).sum(-1)\n"
        "out = _map_over_devices(lambda d, x: f(d['w'], x), {'w': w}, x)\n"
        "print(len(jax.devices()), out.shape == (7, 32), out.tobytes().hex())")
    outs = []
    for n in (1, 4):
        env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        count, shape_ok, data = proc.stdout.split()
        assert (int(count), shape_ok) == (n, "True")
        outs.append(data)
    assert outs[0] == outs[1]
