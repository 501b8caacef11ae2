"""Every registered suite runs through the engine: device-count invariant and resumable.

For each suite (from the registry, so a new suite is covered without editing this file), at
smoke scale (``alignjax reproduce SUITE --smoke``):

* **1 vs 4 devices**: the same reproduction in a subprocess with one CPU device and with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` stores identical stage arrays
  (``stages/*.npz``, bit for bit) and identical claims (measured values and verdicts);
* **kill and resume**: a reproduction interrupted at the start of its second stage
  (KeyboardInterrupt, as Ctrl-C) exits 130 and keeps its finished stage; ``--resume``
  recomputes only what was missing and ends with the same summary.json as an uninterrupted
  run (timings and sessions aside).

Slow (each suite is reproduced four times): ``make test-slow``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignjax.registry import SUITES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _reproduce_in_subprocess(name: str, out: Path, devices: int) -> None:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "alignjax", "reproduce", name, "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _stages(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted((folder / "stages").glob("*.npz")):
        with np.load(f) as z:
            out.update({f"{f.stem}/{k}": z[k] for k in z.files})
    return out


def _claims(folder: Path) -> list:
    return [{k: c[k] for k in ("id", "measured", "holds")}
            for c in json.loads((folder / "summary.json").read_text())["claims"]]


def _without_timings(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("runtime_s", "sessions", "alignjax", "run_id")}


@pytest.mark.parametrize("name", SUITES.names())
def test_one_and_four_devices_agree(name, tmp_path):
    _reproduce_in_subprocess(name, tmp_path / "one", 1)
    _reproduce_in_subprocess(name, tmp_path / "four", 4)
    one, four = _stages(tmp_path / "one" / name), _stages(tmp_path / "four" / name)
    assert one, f"{name} saved no stages: its computations do not go through SuiteContext.stage"
    assert sorted(one) == sorted(four)
    diff = [k for k in one  # equal_nan only applies to float arrays (stages may hold names as strings)
            if not np.array_equal(one[k], four[k], equal_nan=one[k].dtype.kind in "fc")]
    assert not diff, f"{name}: stage arrays differ between 1 and 4 devices: {diff[:10]}"
    assert _claims(tmp_path / "one" / name) == _claims(tmp_path / "four" / name)


@pytest.mark.parametrize("name", SUITES.names())
def test_killed_reproduction_resumes_to_the_same_summary(name, tmp_path, monkeypatch, capsys):
    from alignjax.cli import main
    from alignjax.results import SuiteContext

    assert main(["reproduce", name, "--smoke", "--out", str(tmp_path / "ref")]) == 0
    ref = json.loads((tmp_path / "ref" / name / "summary.json").read_text())

    real_stage = SuiteContext.stage
    calls = []

    def dying_stage(self, stage, compute):
        calls.append(stage)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_stage(self, stage, compute)

    monkeypatch.setattr(SuiteContext, "stage", dying_stage)
    out = tmp_path / "killed"
    assert main(["reproduce", name, "--smoke", "--out", str(out)]) == 130
    monkeypatch.setattr(SuiteContext, "stage", real_stage)
    assert len(calls) == 2, f"{name} has fewer than two stages"
    kept = sorted(p.stem for p in (out / name / "stages").glob("*.npz"))
    assert kept == [calls[0]]

    computed = []
    monkeypatch.setattr(SuiteContext, "stage",
                        lambda self, stage, compute: real_stage(self, stage, lambda: computed.append(stage) or compute()))
    assert main(["reproduce", name, "--smoke", "--out", str(out), "--resume"]) == 0
    assert calls[0] not in computed, "the finished stage was recomputed"
    got = json.loads((out / name / "summary.json").read_text())
    assert _without_timings(got) == _without_timings(ref)
