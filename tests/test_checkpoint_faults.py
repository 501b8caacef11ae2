"""Checkpoint faults: a damaged newest checkpoint falls back to an older good one (bit-identical
end result, one line on stderr); none restoring is one ValueError and changes nothing; a save
that fails (file too large, disk full) is one OSError line, leaves no orbax temporary folder
and keeps the previous checkpoint restorable."""

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from alignjax import checkpoint
from alignjax.registry import EXPERIMENTS
from alignjax.sweep import make_grid, run_sweep

ROOT = Path(__file__).resolve().parents[1]
RUN = {"num_steps": 4000, "log_every": 100}  # 40 logged intervals
CHUNK = 5  # 8 chunks; checkpoints 35 and 40 are kept
FALLBACK = "alignjax: checkpoint 40 in {} does not restore ("


def _sweep():
    exp = EXPERIMENTS.get("dpo-bandit")
    cfg = {**exp.config, "num_prompts": 2, "num_responses": 3}
    return exp.make_program(cfg), make_grid(exp.hparams_for(cfg), {"beta": [0.1, 1.0]}, seeds=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished chunked run that kept all its checkpoints (5, 10, ..., 40), and an
    uninterrupted run's metrics. (A resumed run keeps the default 2 again.)"""
    program, grid = _sweep()
    out = tmp_path_factory.mktemp("finished")
    keep_all = functools.partial(checkpoint.manager, max_to_keep=None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint, "manager", keep_all)
        chunked = run_sweep(program, grid, **RUN, chunk_logs=CHUNK, out_dir=out)
    whole = run_sweep(program, grid, **RUN)
    for k in whole.metrics:
        assert np.array_equal(whole.metrics[k], chunked.metrics[k]), k
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir()) == list(range(5, 41, 5))
    return out, whole.metrics


def _verified_metrics(ck: Path, step: int) -> dict:
    """Checkpoint ``step``'s metrics, read back and checked against its checksum."""
    mgr = checkpoint.manager(ck)
    try:
        return checkpoint._read_verified(mgr, step)["metrics"]
    finally:
        mgr.close()


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def _data_files(step_dir: Path) -> list[Path]:
    """The files of a checkpoint that orbax reads array data from, largest first."""
    files = [p for p in (step_dir / "default" / "d").iterdir() if p.is_file()]
    return sorted(files, key=lambda p: (-p.stat().st_size, p.name))


def _truncate(step_dir: Path) -> None:
    _data_files(step_dir)[0].write_bytes(b"")


def _delete(step_dir: Path) -> None:
    _data_files(step_dir)[0].unlink()


def _delete_manifest(step_dir: Path) -> None:
    (step_dir / "default" / "manifest.ocdbt").unlink()


def _flip_largest(step_dir: Path) -> None:
    f = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: (p.stat().st_size, p.name))
    b = bytearray(f.read_bytes())
    for i in range(len(b) // 3, len(b) // 3 + 8):
        b[i] ^= 0xFF
    f.write_bytes(bytes(b))


def _flip_data(step_dir: Path) -> None:
    f = _data_files(step_dir)[0]
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0x10
    f.write_bytes(bytes(b))


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("damage", [_truncate, _delete, _delete_manifest, _flip_largest, _flip_data],
                         ids=["truncate-data", "delete-data", "delete-manifest", "flip-largest", "flip-data"])
def test_damaged_newest_checkpoint_falls_back_and_ends_bit_identical(finished, tmp_path, capfd, damage):
    src, ref = finished
    out = _copy(src, tmp_path)
    ck = out / "checkpoints"
    damage(ck / "40")
    intact = _tree(ck / "35")
    program, grid = _sweep()
    chunks = []
    capfd.readouterr()
    res = run_sweep(program, grid, **RUN, chunk_logs=CHUNK, out_dir=out, resume=True,
                    on_chunk=lambda done, total: chunks.append(done))
    err = capfd.readouterr().err
    assert chunks == [40]  # resumed from 35: one chunk recomputed
    for k in ref:
        assert np.array_equal(res.metrics[k], ref[k]), k
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(FALLBACK.format(ck)), err
    assert lines[0].endswith("; resuming from checkpoint 35")
    reason = lines[0][len(FALLBACK.format(ck)):-len("); resuming from checkpoint 35")]
    assert 0 < len(reason) <= 60, reason  # one short phrase, e.g. "a file is missing"
    # the damaged 40 was replaced by a good one; 35 untouched; older ones pruned (keep 2)
    assert sorted(p.name for p in ck.iterdir()) == ["35", "40"]
    assert _tree(ck / "35") == intact
    assert all(np.array_equal(v, ref[k].reshape(v.shape)) for k, v in _verified_metrics(ck, 40).items())


def test_several_damaged_checkpoints_give_one_line(finished, tmp_path, capfd):
    src, ref = finished
    out = _copy(src, tmp_path)
    ck = out / "checkpoints"
    _truncate(ck / "40")
    _flip_largest(ck / "35")
    _delete_manifest(ck / "30")
    program, grid = _sweep()
    chunks = []
    capfd.readouterr()
    res = run_sweep(program, grid, **RUN, chunk_logs=CHUNK, out_dir=out, resume=True,
                    on_chunk=lambda done, total: chunks.append(done))
    err = capfd.readouterr().err
    assert chunks == [30, 35, 40]
    for k in ref:
        assert np.array_equal(res.metrics[k], ref[k]), k
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(FALLBACK.format(ck)), err
    assert lines[0].endswith("; resuming from checkpoint 25")
    assert sorted(p.name for p in ck.iterdir()) == ["35", "40"]


def test_no_checkpoint_restores_raises_one_line_and_changes_nothing(finished, tmp_path, capfd):
    src, _ = finished
    out = _copy(src, tmp_path)
    ck = out / "checkpoints"
    for i, step in enumerate(sorted(ck.iterdir())):
        (_truncate, _delete, _delete_manifest, _flip_largest)[i % 4](step)
    before = _tree(out)
    program, grid = _sweep()
    capfd.readouterr()
    with pytest.raises(checkpoint.NoUsableCheckpoint) as e:
        run_sweep(program, grid, **RUN, chunk_logs=CHUNK, out_dir=out, resume=True)
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg
    assert f"no checkpoint in {ck} restores" in msg and "without --resume" in msg
    assert _tree(out) == before
    assert capfd.readouterr().err == ""


def test_checkpoint_of_another_run_is_still_a_user_error(finished, tmp_path):
    src, _ = finished
    out = _copy(src, tmp_path)
    ck = out / "checkpoints"
    _truncate(ck / "40")  # the fallback reaches 35, which belongs to another run (seed)
    before = _tree(out)
    program, grid = _sweep()
    with pytest.raises(ValueError, match="written by another run") as e:
        run_sweep(program, grid, **RUN, seed=7, chunk_logs=CHUNK, out_dir=out, resume=True)
    assert not isinstance(e.value, checkpoint.CorruptCheckpoint)
    assert _tree(out) == before


def test_checksum_catches_data_that_orbax_reads_without_error(tmp_path):
    # silent corruption: the arrays orbax returns differ from those saved (simulated by storing a
    # checksum of other data); orbax cannot notice, the checksum does
    import orbax.checkpoint as ocp

    state = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([1, 2], np.int32)}
    metrics = {"loss": np.ones((2, 3), np.float32)}
    mgr = checkpoint.manager(tmp_path)
    checkpoint.save(mgr, 1, state, metrics, {"run": 1})
    item = checkpoint._item(state, metrics, {"run": 1})
    item["state"]["00000"] = item["state"]["00000"].copy()
    item["state"]["00000"][0] ^= 1 << 20  # one flipped bit in a stored integer
    mgr.save(2, args=ocp.args.StandardSave(item), force=True)
    like = jax.eval_shape(lambda: state)
    with pytest.raises(checkpoint.CorruptCheckpoint, match="checksum"):
        checkpoint.restore(mgr, 2, like, {"run": 1})
    found = checkpoint.restore_latest(mgr, like, {"run": 1})
    assert found.step == 1 and found.skipped == [(2, "its data do not match the stored checksum")]
    for k in state:
        assert np.array_equal(found.state[k], state[k])
    # the checksum's definition, written out
    h = hashlib.sha256()
    for name, x in [("fingerprint", np.frombuffer(b'{"run": 1}', np.uint8)), ("metrics/loss", metrics["loss"]),
                    ("state/00000", state["n"]), ("state/00001", state["x"])]:
        h.update(f"{name}\0{x.dtype}\0{','.join(map(str, x.shape))}\0{x.nbytes}\0".encode() + x.tobytes())
    assert checkpoint.checksum(checkpoint._item(state, metrics, {"run": 1})) == h.hexdigest()
    mgr.close()


# -- failed saves ---------------------------------------------------------------------------
_SAVE_CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    sys.path.insert(0, {tests!r})
    from alignjax.compile_cache import enable
    from test_checkpoint_faults import RUN, CHUNK, _sweep
    from alignjax.checkpoint import CheckpointSaveError
    from alignjax.sweep import run_sweep

    enable()
    program, grid = _sweep()
    for out, limit in zip(sys.argv[1::2], sys.argv[2::2]):
        def on_chunk(done, total, limit=int(limit)):
            if done == 15:  # the next save (checkpoint 20) fails
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        try:
            run_sweep(program, grid, **RUN, chunk_logs=CHUNK, out_dir=out, on_chunk=on_chunk)
        except CheckpointSaveError as e:
            print(json.dumps({{"type": type(e).__name__, "oserror": isinstance(e, OSError), "str": str(e),
                              "errno": e.errno, "filename": e.filename}}), flush=True)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
""")


def test_failed_save_is_one_oserror_line_and_keeps_the_previous_checkpoint(tmp_path):
    # RLIMIT_FSIZE makes the writes of checkpoint 20 fail: at 100 bytes the first file orbax writes
    # from Python, at 1500 bytes the array data tensorstore writes (the previous ones are smaller)
    limits = {"python-write": 100, "tensorstore-write": 1500}
    argv = [a for name, limit in limits.items() for a in (str(tmp_path / name), str(limit))]
    code = _SAVE_CHILD.format(tests=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""  # no orbax/absl/tensorstore/asyncio spam
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == 2, proc.stdout
    for name, got in zip(limits, results):
        ck = tmp_path / name / "checkpoints"
        assert got["type"] == "CheckpointSaveError" and got["oserror"] and got["filename"] == str(ck)
        assert "\n" not in got["str"]
        assert got["str"].startswith(f"saving checkpoint 20 in {ck} failed: File too large (about "), got
        assert got["str"].endswith(" MB free)") and " MB needed, " in got["str"]
        assert got["errno"] == 5  # EIO: the disk has room, the write failed otherwise
        assert sorted(p.name for p in ck.iterdir()) == ["10", "15"]  # no temporary, nothing deleted
        assert all(v.shape[1] == 16 for v in _verified_metrics(ck, 15).values())  # 15 intervals + the start


@pytest.mark.slow
def test_disk_full_on_a_real_tmpfs(finished, tmp_path):
    """A tmpfs that something else fills up while the run is going: the save fails with ENOSPC,
    the previous checkpoint stays, and once space is freed --resume ends bit-identical."""
    _, ref = finished
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        filler = mnt / "filler"

        def fill(done, total):
            if done == 15:
                with open(filler, "wb") as f:
                    with pytest.raises(OSError) as e:
                        while True:
                            f.write(b"\0" * 65536)
                            f.flush()
                    assert e.value.errno == 28

        program, grid = _sweep()
        out = mnt / "run"
        with pytest.raises(checkpoint.CheckpointSaveError) as e:
            run_sweep(program, grid, **RUN, chunk_logs=CHUNK, out_dir=out, on_chunk=fill)
        ck = out / "checkpoints"
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"saving checkpoint 20 in {ck} failed: No space left on device (")
        assert e.value.errno == 28 and e.value.filename == str(ck)
        assert sorted(p.name for p in ck.iterdir()) == ["10", "15"]
        _verified_metrics(ck, 15)
        filler.unlink()
        res = run_sweep(program, grid, **RUN, chunk_logs=CHUNK, out_dir=out, resume=True)
        for k in ref:
            assert np.array_equal(res.metrics[k], ref[k]), k
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


CLI = ["run", "dpo-bandit", "--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=4000",
       "--set", "log_every=100", "--sweep", "beta=0.1,1", "--chunks", "8", "--no-progress"]


def test_cli_resume_falls_back_then_refuses_when_nothing_restores(finished, tmp_path, capfd):
    from alignjax.cli import main

    _, ref = finished
    out = tmp_path / "run"
    assert main([*CLI, "--out", str(out)]) == 0
    ck = out / "checkpoints"
    _flip_largest(ck / "40")
    capfd.readouterr()
    assert main([*CLI, "--out", str(out), "--resume"]) == 0
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(FALLBACK.format(ck)), err
    with np.load(out / "arrays.npz") as z:
        for k in ref:
            assert np.array_equal(z[k].reshape(ref[k].shape), ref[k]), k
    for step in ck.iterdir():
        _delete(step)
    before = _tree(out)
    capfd.readouterr()
    code = main([*CLI, "--out", str(out), "--resume"])
    err = capfd.readouterr().err
    assert _tree(out) == before  # the whole folder, config.json and manifest included
    assert code == 2 and err.count("\n") == 1 and "no checkpoint in" in err, err
