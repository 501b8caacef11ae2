"""Several processes: `alignjax run --coordinator ... --num-processes 2 --process-id I` on local CPU
processes with 2 devices each gives the single-process results, and only process 0 writes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignjax.cli import main

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["run", "dpo-bandit", "--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=20",
        "--set", "log_every=10", "--sweep", "beta=0.1,0.5,1", "--seeds", "3", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(args, timeout=600):
    """Run ``alignjax ARGS`` as processes 0 and 1 (2 CPU devices each); their (stdout, stderr)."""
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen([sys.executable, "-m", "alignjax", *args, "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    return outs


def test_two_processes_with_two_devices_each_equal_one_process(tmp_path):
    single = tmp_path / "single"
    assert main([*ARGS, "--out", str(single)]) == 0
    multi = tmp_path / "multi"
    outs = _two_processes([*ARGS, "--out", str(multi)])
    assert "results in" in outs[0][0] and "results in" not in outs[1][0]  # process 1 reports and writes nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi", "single"]
    assert (multi / "metrics.csv").read_bytes() == (single / "metrics.csv").read_bytes()
    a, b = np.load(multi / "arrays.npz"), np.load(single / "arrays.npz")
    for k in b.files:
        np.testing.assert_array_equal(a[k], b[k])
    # the streamed store: the same chunk files byte for byte (metadata differs only in provenance)
    chunks = {m: {p.relative_to(m / "results.zarr"): p.read_bytes() for p in (m / "results.zarr").rglob("*")
                  if p.is_file() and p.name != "zarr.json"} for m in (multi, single)}
    assert chunks[multi] == chunks[single] and chunks[single]
    from alignjax import store

    sa, sb = store.load(multi), store.load(single)
    for k in sb.data_vars:
        assert sa[k].values.tobytes() == sb[k].values.tobytes() and sa[k].dims == sb[k].dims
    import json

    prov = json.loads((multi / "config.json").read_text())["alignjax"]
    assert prov["process_count"] == 2 and prov["device_count"] == 4


def test_multihost_flags_are_checked(tmp_path, capsys):
    for extra in (["--coordinator", "127.0.0.1:1"], ["--coordinator", "nohost", "--num-processes", "2",
                                                     "--process-id", "0"],
                  ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"]):
        assert main([*ARGS, "--out", str(tmp_path / "x"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("alignjax: error:") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_two_process_reproduction_equals_one_process(tmp_path):
    """``alignjax reproduce dpo-bandit --smoke`` on 2 processes x 2 devices: the stages and claims
    of a single-process reproduction; process 1 writes nothing."""
    import json
    import tempfile

    single = tmp_path / "single"
    assert main(["reproduce", "dpo-bandit", "--smoke", "--out", str(single)]) == 0
    multi = tmp_path / "multi"
    outs = _two_processes(["reproduce", "dpo-bandit", "--smoke", "--out", str(multi)])
    assert "inconclusive" in outs[0][0] and "inconclusive" not in outs[1][0]  # (gloo's own chatter aside)
    assert not (Path(tempfile.gettempdir()) / "alignjax-never-written").exists()
    a_dir, b_dir = multi / "dpo-bandit" / "stages", single / "dpo-bandit" / "stages"
    assert sorted(p.name for p in a_dir.iterdir()) == sorted(p.name for p in b_dir.iterdir())
    for f in b_dir.iterdir():
        a, b = np.load(a_dir / f.name), np.load(f)
        for k in b.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{f.name}:{k}")
    claims = [json.loads((d / "dpo-bandit" / "summary.json").read_text())["claims"] for d in (multi, single)]
    assert claims[0] == claims[1]
    prov = json.loads((multi / "dpo-bandit" / "config.json").read_text())["alignjax"]
    assert prov["process_count"] == 2 and prov["device_count"] == 4


@pytest.mark.slow
def test_two_processes_streaming_in_chunks_give_the_single_process_store(tmp_path):
    """Streamed chunks (a tiny chunk budget, so the sweep runs as init + 20 chunks): process 0 writes
    the store, process 1 computes the same chunks, and the store equals a single process's."""
    from alignjax import store

    code = "import sys, alignjax.cli as c; c.STREAM_BYTES = 2000; sys.exit(c.main(sys.argv[1:]))"
    args = [*ARGS[:6], "--set", "num_steps=200", "--set", "log_every=10", *ARGS[10:]]
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen([sys.executable, "-c", code, *args, "--out", str(tmp_path / "multi"), "--coordinator",
                               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert "'chunk'" in outs[0][0]
    single = subprocess.run([sys.executable, "-c", code, *args, "--out", str(tmp_path / "single")], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    a, b = store.load(tmp_path / "multi"), store.load(tmp_path / "single")
    for k in b.data_vars:
        assert a[k].values.tobytes() == b[k].values.tobytes(), k
