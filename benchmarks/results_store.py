"""The issue-25 sweep end to end: wall, compute, write time, peak memory and folder size.

    python benchmarks/results_store.py               # 10^5 runs: 100 beta x 100 eta x 10 seeds
    python benchmarks/results_store.py --runs 1e6    # 10^6 runs: 1000 beta x 100 eta x 10 seeds
    python benchmarks/results_store.py --formats       # also: the same metrics as Zarr, NetCDF4/HDF5, Parquet

The sweep is ``alignjax run nash-dynamics --set algorithm=egpo --sweep beta=1e-3:1:NB:log --sweep
eta=0.01:1:100:log --seeds 10`` (1000 steps, log every 50: 21 logged steps). It runs in a child
process (``--child``) that times the parts of the command: *compute* is the sweep minus the
time spent handing chunks to the store, *store* the streamed writes (compression + files),
*after* everything from the end of the sweep to the end of the command (finishing the store,
plots, summary; metrics.csv/arrays.npz when written). *Peak memory* is the child's maximum
resident set size (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, which includes XLA's
buffers on CPU). The load average of the machine is printed with every result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _load() -> str:
    return "load %.1f %.1f %.1f" % os.getloadavg()


def child(out: str, argv: list[str], timings_path: str) -> None:
    """Run the CLI in this process with timers around the store's writes and the sweep."""
    from alignjax import cli, store, sweep

    t = {"store": 0.0, "sweep": 0.0, "sweep_end": None}
    write, run = store.StoreWriter.write, sweep.run_sweep

    def timed_write(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return write(self, *a, **k)
        finally:
            t["store"] += time.perf_counter() - t0

    def timed_run(*a, **k):
        t0 = time.perf_counter()
        try:
            return run(*a, **k)
        finally:
            t["sweep"] += time.perf_counter() - t0
            t["sweep_end"] = time.perf_counter()

    store.StoreWriter.write = timed_write
    sweep.run_sweep = timed_run
    t_start = time.perf_counter()
    # as the command does (``--cpu-devices auto``: one device per usable core, at most AUTO_CPU_DEVICES), which an
    # in-process call does not
    n = min(cli.usable_cores(), cli.AUTO_CPU_DEVICES)
    code = cli.main([*argv, "--out", out, "--no-progress", "--cpu-devices", str(n)])
    t_end = time.perf_counter()
    Path(timings_path).write_text(json.dumps({
        "code": code, "command": t_end - t_start, "compute": t["sweep"] - t["store"], "store": t["store"],
        "after": t_end - (t["sweep_end"] or t_end)}))


def formats(folder: Path) -> list[tuple[str, float, int]]:
    """Write the run's metrics (read from its store) as Zarr, NetCDF4 and Parquet: (name, seconds, bytes)."""
    import numpy as np

    from alignjax import store

    ds = store.load(folder).load()
    scalars = [k for k in ds.data_vars if ds[k].ndim == 4]
    rows = []
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()  # the store writer: rewrite the same data through StoreWriter
        from alignjax.sweep import make_grid

        grid = make_grid({"beta": 0.0, "eta": 0.0}, {"beta": ds["beta"].values, "eta": ds["eta"].values},
                         seeds=ds.sizes["seed"])
        w = store.StoreWriter(tmp / "z", grid, ds["step"].values)
        rows_ = grid.size
        w.write(0, {k: np.asarray(ds[k].values).reshape(rows_, ds.sizes["step"], *ds[k].shape[4:])
                    for k in ds.data_vars})
        w.finish()
        rows.append(("zarr v3, blosc-lz4 + shuffle (alignjax.store)", time.perf_counter() - t0, _du(tmp / "z")))
        try:
            t0 = time.perf_counter()
            enc = {k: {"zlib": True, "complevel": 4, "shuffle": True} for k in ds.data_vars}
            flat = ds.copy()
            flat.attrs = {k: json.dumps(v) for k, v in ds.attrs.items()}  # NetCDF attrs hold no nested dicts
            flat.to_netcdf(tmp / "m.nc", engine="h5netcdf", encoding=enc)
            rows.append(("NetCDF4/HDF5 via xarray (h5netcdf, zlib 4 + shuffle)", time.perf_counter() - t0,
                         (tmp / "m.nc").stat().st_size))
        except ImportError as e:
            rows.append((f"NetCDF4 skipped ({e})", float("nan"), 0))
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            t0 = time.perf_counter()
            df = ds[scalars].to_dataframe().reset_index()  # long table: one row per config x seed x step
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp / "m.parquet", compression="zstd")
            rows.append((f"Parquet via pyarrow (zstd; scalar metrics only, {len(df):,} rows)",
                         time.perf_counter() - t0, (tmp / "m.parquet").stat().st_size))
        except ImportError as e:
            rows.append((f"Parquet skipped ({e})", float("nan"), 0))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=float, default=1e5, help="configs x seeds: 1e5 (100 beta values) or 1e6 (1000)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--out", default=None, help="results folder (default: a temporary one, removed)")
    p.add_argument("--formats", action="store_true", help="also time Zarr vs NetCDF4 vs Parquet on the metrics")
    p.add_argument("--csv", action="store_true", help="pass --csv (metrics.csv and arrays.npz as well)")
    p.add_argument("--tree", default=None,
                   help="run the command from another checkout instead (e.g. the commit before the store, "
                        "for a before/after): wall, the command's own compute time, peak memory and size")
    p.add_argument("--child", nargs=2, metavar=("OUT", "TIMINGS"), help=argparse.SUPPRESS)
    args, rest = p.parse_known_args()
    nb = max(1, int(round(args.runs / (100 * args.seeds))))
    argv = ["run", "nash-dynamics", "--set", "algorithm=egpo", "--sweep", f"beta=1e-3:1:{nb}:log",
            "--sweep", "eta=0.01:1:100:log", "--seeds", str(args.seeds)] + (["--csv"] if args.csv else [])
    if args.child:
        child(args.child[0], argv, args.child[1])
        return
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out and Path(args.out).parent or None) as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "big"
        tpath = Path(tmp) / "timings.json"
        print(f"{' '.join(argv)}   ({nb * 100:,} configs x {args.seeds} seeds = {nb * 100 * args.seeds:,} runs; "
              f"{_load()})", flush=True)
        t0 = time.perf_counter()
        if args.tree:  # the other checkout's CLI as is; its experiments/ folder as alignjax_experiments
            tree = Path(args.tree).resolve()
            (Path(tmp) / "pp").mkdir()
            (Path(tmp) / "pp" / "alignjax_experiments").symlink_to(tree / "experiments")
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(Path(tmp) / "pp")])}
            proc = subprocess.run([sys.executable, "-m", "alignjax", *argv, "--out", str(out), "--no-progress"],
                                  env=env, cwd=tmp, capture_output=True, text=True)
            import re

            m = re.search(r"runs x \d+ steps in ([0-9.]+)s", proc.stdout)
            tpath.write_text(json.dumps({"compute": float(m.group(1)) if m else float("nan")}))
        else:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            proc = subprocess.run([sys.executable, __file__, "--runs", str(args.runs), "--seeds", str(args.seeds),
                                   *(["--csv"] if args.csv else []), "--child", str(out), str(tpath)], env=env)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        t = json.loads(tpath.read_text()) if tpath.exists() else {}
        size = _du(out) if out.exists() else 0
        print(f"exit {proc.returncode}; wall {wall:.1f} s (process), command {t.get('command', float('nan')):.1f} s: "
              f"compute {t.get('compute', float('nan')):.1f} s, store writes {t.get('store', float('nan')):.1f} s, "
              f"after the sweep {t.get('after', float('nan')):.1f} s; peak memory {peak / 2**30:.2f} GiB; "
              f"folder {size / 2**20:.1f} MiB ({_load()})", flush=True)
        if out.exists():
            for f in sorted(out.iterdir()):
                if not f.name.startswith("."):
                    print(f"  {f.name:<22} {(_du(f) if f.is_dir() else f.stat().st_size) / 2**20:8.1f} MiB")
        if args.formats and out.exists():
            for name, sec, nbytes in formats(out):
                print(f"  {name:<62} write {sec:6.1f} s  {nbytes / 2**20:7.1f} MiB   ({_load()})", flush=True)


if __name__ == "__main__":
    main()
