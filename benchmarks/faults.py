"""Fault injection, measured: what a user sees when things go wrong, and whether any byte was lost.

Runs each fault against the real command line in a scratch folder, checksums every
pre-existing entry before and after, and prints the README's table (markdown): the fault,
the exit code, the first words of the one line the user sees, and the bytes lost. Then the
signal latency: SIGINT at random moments of an unchunked ``run`` and of ``reproduce``
(seconds from the signal to the process's exit).

    python benchmarks/faults.py [--moments 20] [--seed 0] [--only TEXT]

Needs a few minutes on 2 cores. Cases that need root (a tmpfs mount point, a tmpfs that
fills) are skipped where mounting is not permitted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(ROOT / "tests"))
from fault_tools import SLOW_SUITE, digest, signal_and_time, wait_for_handlers  # noqa: E402
SMALL = ["--set", "num_prompts=2", "--set", "num_responses=3", "--set", "num_steps=20", "--set", "log_every=10",
         "--no-progress"]
LONG = ["run", "dpo-bandit", "--set", "num_prompts=4", "--set", "num_responses=8", "--set", "num_steps=2000000",
        "--set", "log_every=1000000", "--no-progress"]
CHUNKED = ["run", "dpo-bandit", "--set", "num_prompts=4", "--set", "num_responses=8", "--set", "num_steps=40000",
           "--set", "log_every=100", "--no-progress", "--chunks", "8"]


def lost(before: dict, after: dict, keep: list[str]) -> int:
    """Pre-existing entries under the paths ``keep`` (prefixes) that are gone or changed."""
    return sum(1 for k, v in before.items() if any(k == p or k.startswith(p + "/") for p in keep)
               and after.get(k) != v)


def cli(args, *, cwd=ROOT, env=None, script=None, preexec=None, timeout=600):
    cmd = [PY, script, *args] if script else [PY, "-m", "alignjax", *args]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=timeout)
    return r.returncode, r.stderr


def start(args, script=None):
    cmd = [PY, script, *args] if script else [PY, "-m", "alignjax", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(cond, proc, limit=300.0):
    t = time.time() + limit
    while not cond():
        if proc.poll() is not None or time.time() > t:
            raise RuntimeError(f"process ended or timed out: {proc.communicate()[1][-500:]}")
        time.sleep(0.02)


def first_words(err: str, n: int = 12) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    head = " ".join(lines[0].split()[:n]) if lines else "(nothing)"
    return head + (f" [+{len(lines) - 1} lines]" if len(lines) > 1 else "")


def can_mount(where: Path) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(where)], capture_output=True)
    return ok


# -- the cases: each returns (exit code, stderr, bytes lost) -------------------------------------
def case_foreign(tmp: Path):
    h = tmp / "h"
    h.mkdir()
    (h / "config.json").write_text('{"experiment": "resnet", "suite": "x"}')
    (h / "summary.json").write_text('{"claims": [], "suite": "x"}')
    (h / "model.ckpt").write_text("w")
    b = digest(tmp)
    code, err = cli(["run", "dpo-bandit", *SMALL, "--out", str(h), "--overwrite"])
    return code, err, lost(b, digest(tmp), ["h"])


def case_user_file(tmp: Path):
    out = tmp / "run"
    cli(["run", "dpo-bandit", *SMALL, "--out", str(out)])
    (out / "NOTES.md").write_text("my notes")
    b = digest(tmp)
    code, err = cli(["run", "dpo-bandit", *SMALL, "--set", "beta=0.3", "--out", str(out), "--overwrite"])
    return code, err, lost(b, digest(tmp), ["run/NOTES.md"])


def case_sibling(tmp: Path):
    p = tmp / "p"
    proc = start([*LONG, "--out", str(p / "x")])
    try:
        wait_for(lambda: (p / "x" / "config.json").exists(), proc)
        cli(["run", "dpo-bandit", *SMALL, "--out", str(p / "y")])
        b = digest(tmp)
        _, code, err = signal_and_time(proc)
    finally:
        proc.kill()
    return code, err, lost(b, digest(tmp), ["p/y"])


def case_kill_overwrite(tmp: Path, rng: random.Random):
    out = tmp / "run"
    cli(["run", "dpo-bandit", *SMALL, "--out", str(out)])
    (out / "NOTES.md").write_text("mine")
    (tmp / "sibling.txt").write_text("x")
    b = digest(tmp)
    proc = start([*CHUNKED, "--out", str(out), "--overwrite"])
    time.sleep(rng.uniform(1.0, 6.0))
    proc.kill()
    proc.communicate()
    code, err = cli(["run", "dpo-bandit", *SMALL, "--out", str(out), "--overwrite"])
    return code, err, lost(b, digest(tmp), ["run/NOTES.md", "sibling.txt"])


def case_sigterm_reproduce(tmp: Path):
    out = tmp / "res"
    proc = start(["reproduce", "test-slow-suite", "--out", str(out)], SLOW_SUITE)
    try:
        wait_for(lambda: (out / "test-slow-suite" / "stages" / "first.npz").exists(), proc)
        _, code, err = signal_and_time(proc, signal.SIGTERM)
    finally:
        proc.kill()
    kept = (out / "test-slow-suite" / "stages" / "first.npz").exists()
    return code, err + ("" if kept else "STAGE LOST"), 0 if kept else 1


def case_killed_show(tmp: Path):
    out = tmp / "run"
    proc = start([*CHUNKED, "--out", str(out)])
    try:
        wait_for(lambda: (out / "checkpoints").is_dir() and any(q.name.isdigit() for q in (out / "checkpoints").iterdir()),
                 proc)
    finally:
        proc.kill()
        proc.communicate()
    r = subprocess.run([PY, "-m", "alignjax", "show", str(out)], cwd=ROOT, capture_output=True, text=True)
    line = next((ln for ln in r.stdout.splitlines() if "session 1" in ln), "")
    return r.returncode, "show: " + line.split("  ")[2] if line.count("  ") >= 2 else r.stdout, 0


def _chunked_then(tmp: Path, corrupt):
    out = tmp / "run"
    cli([*CHUNKED, "--out", str(out)])
    ck = out / "checkpoints"
    steps = sorted((q for q in ck.iterdir() if q.name.isdigit()), key=lambda q: int(q.name))
    corrupt(steps)
    b = digest(tmp)
    code, err = cli([*CHUNKED, "--out", str(out), "--resume"])
    return code, err, out, b


def _largest_file(d: Path) -> Path:
    return max((q for q in d.rglob("*") if q.is_file()), key=lambda q: q.stat().st_size)


def case_corrupt_newest(tmp: Path):
    def flip(steps):
        f = _largest_file(steps[-1])
        data = bytearray(f.read_bytes())
        for i in range(0, len(data), 97):
            data[i] ^= 0xFF
        f.write_bytes(bytes(data))
    code, err, out, _ = _chunked_then(tmp, flip)
    return code, err, 0


def case_corrupt_all(tmp: Path):
    def truncate(steps):
        for s in steps:
            for f in s.rglob("*"):
                if f.is_file():
                    f.write_bytes(b"")
    code, err, out, b = _chunked_then(tmp, truncate)
    return code, err, lost(b, digest(tmp), ["run"])


def case_disk_full_checkpoint(tmp: Path):
    out = tmp / "run"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # files over 20 kB fail (EFBIG)

    args = [*CHUNKED, "--set", "num_prompts=64", "--set", "num_responses=64", "--out", str(out)]
    code, err = cli(args, preexec=limit)
    return code, err, 0


def case_write_fails_after_compute(tmp: Path):
    out = tmp / "run"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))

    code, err = cli(["run", "dpo-bandit", *SMALL, "--out", str(out)], preexec=limit)
    return code, err, 0


def case_mount_point(tmp: Path):
    m = tmp / "mnt"
    m.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(m)], capture_output=True).returncode:
        return None
    try:
        cli(["run", "dpo-bandit", *SMALL, "--out", str(m)])
        b = digest(tmp)
        t0 = time.perf_counter()
        code, err = cli(["run", "dpo-bandit", *SMALL, "--out", str(m), "--overwrite"])
        return code, err.rstrip("\n") + f" ({time.perf_counter() - t0:.1f} s)", lost(b, digest(tmp), ["mnt"])
    finally:
        subprocess.run(["umount", str(m)], capture_output=True)


def case_symlink(tmp: Path):
    real, link = tmp / "scratch" / "run", tmp / "link"
    cli(["run", "dpo-bandit", *SMALL, "--out", str(real)])
    link.symlink_to(real)
    code, err = cli(["run", "dpo-bandit", *SMALL, "--set", "beta=0.3", "--out", str(link), "--overwrite"])
    ok = link.is_symlink() and sorted(q.name for q in tmp.iterdir()) == ["link", "scratch"]
    return code, err or ("link kept, its target replaced" if ok else "LINK REPLACED"), 0 if ok else 1


def case_fifo_config(tmp: Path):
    d = tmp / "d"
    cli(["run", "dpo-bandit", *SMALL, "--out", str(d)])
    (d / "config.json").unlink()
    os.mkfifo(d / "config.json")
    b = digest(tmp)
    code, err = cli(["show", str(d)], timeout=60)
    return code, err, lost(b, digest(tmp), ["d"])


def case_bad_types(tmp: Path):
    d = tmp / "d"
    cli(["run", "dpo-bandit", *SMALL, "--out", str(d)])
    cfg = json.loads((d / "config.json").read_text())
    cfg["sessions"] = "oops"
    (d / "config.json").write_text(json.dumps(cfg))
    code, err = cli(["show", str(d)])
    return code, err, 0


def case_huge_sweep(tmp: Path):
    code, err = cli(["run", "dpo-bandit", "--sweep", "beta=0.1:1:10000000000000", "--out", str(tmp / "x")])
    return code, err, 0


def case_long_name(tmp: Path):
    code, err = cli(["run", "dpo-bandit", *SMALL, "--out", str(tmp / ("n" * 300))])
    return code, err, 0


def case_newline_name(tmp: Path):
    (tmp / "a\nb").mkdir()
    (tmp / "a\nb" / "x").write_text("x")
    code, err = cli(["run", "dpo-bandit", *SMALL, "--out", str(tmp / "a\nb")])
    return code, err.rstrip("\n") + ("" if err.count("\n") == 1 else " NOT ONE LINE"), 0


def case_deleted_cwd(tmp: Path):
    d = tmp / "gone"
    d.mkdir()
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); from alignjax.cli import main; "
            "sys.exit(main(['run', 'dpo-bandit', '--out', 'x']))")
    r = subprocess.run([PY, "-c", code, str(d)], capture_output=True, text=True)
    return r.returncode, r.stderr, 0


CASES = [
    ("`--overwrite` on another tool's folder with look-alike `config.json`/`summary.json`", case_foreign),
    ("`--overwrite` of an alignjax folder holding the user's `NOTES.md`", case_user_file),
    ("Ctrl-C of a fresh run in `p/x` while another run wrote `p/y`", case_sibling),
    ("SIGKILL at a random moment of a chunked `--overwrite`, then a new `--overwrite`", "kill"),
    ("SIGTERM during `reproduce` after its first stage", case_sigterm_reproduce),
    ("`show` after a chunked run was SIGKILLed", case_killed_show),
    ("`--resume` with the newest checkpoint's largest file byte-flipped", case_corrupt_newest),
    ("`--resume` with every checkpoint truncated to 0 bytes", case_corrupt_all),
    ("a checkpoint save fails (file-size limit: EFBIG, as a full disk)", case_disk_full_checkpoint),
    ("writing the results fails after compute (file-size limit)", case_write_fails_after_compute),
    ("`--overwrite` onto a tmpfs mount point", case_mount_point),
    ("`--overwrite` through a symlink to an alignjax folder", case_symlink),
    ("`show` with `config.json` a FIFO", case_fifo_config),
    ("`show` with `sessions` a string in `config.json`", case_bad_types),
    ("`--sweep beta=0.1:1:10000000000000`", case_huge_sweep),
    ("a 300-character `--out` name", case_long_name),
    ("`--out` with a newline in its name (an existing folder)", case_newline_name),
    ("the current folder deleted before the run", case_deleted_cwd),
]


def latencies(command: str, moments: int, rng: random.Random, tmp: Path) -> list[float]:
    out = []
    for i in range(moments):
        d = tmp / f"{command}{i}"
        proc = start([*LONG, "--out", str(d)] if command == "run" else
                     ["reproduce", "test-slow-suite", "--out", str(d)], None if command == "run" else SLOW_SUITE)
        try:
            wait_for_handlers(proc)  # alignjax's handlers are in place ~0.1 s after start, before jax loads
            time.sleep(rng.uniform(0.0, 8.0))
            if proc.poll() is not None:
                continue
            dt, code, err = signal_and_time(proc)
            if code != 130 or err.count("\n") != 1:
                raise RuntimeError(f"{command}: exit {code}, stderr {err!r}")
            out.append(dt)
        finally:
            proc.kill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moments", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="run only the cases whose title contains this text")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print("| fault | exit | what the user sees (first words) | pre-existing entries lost |")
    print("|---|---:|---|---:|")
    for title, fn in CASES:
        if args.only not in title:
            continue
        tmp = Path(tempfile.mkdtemp(prefix="alignjax-fault-"))
        try:
            res = case_kill_overwrite(tmp, rng) if fn == "kill" else fn(tmp)
        finally:
            subprocess.run(["umount", str(tmp / "mnt")], capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
        if res is None:
            print(f"| {title} | - | skipped (mounting not permitted) | - |")
            continue
        code, err, n_lost = res
        print(f"| {title} | {code} | {first_words(err).replace('|', '/')} | {n_lost} |", flush=True)
    for command in ("run", "reproduce") if args.moments > 0 else ():
        tmp = Path(tempfile.mkdtemp(prefix="alignjax-sigint-"))
        try:
            ls = latencies(command, args.moments, rng, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"\nSIGINT at {len(ls)} random moments of `{command}` (0-8 s after its signal handlers are in place, ~0.1 s after start): exit 130 and one line every "
              f"time; seconds to exit: median {statistics.median(ls):.2f}, max {max(ls):.2f}", flush=True)


if __name__ == "__main__":
    main()
