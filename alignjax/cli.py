"""The ``alignjax`` command line.

    alignjax list
    alignjax run EXPERIMENT [--set key=value ...] [--sweep key=v1,v2,... | key=lo:hi:n[:log] ...]
                 [--seeds N] [--seed S] [--out DIR] [--chunks N] [--resume] [--overwrite]
    alignjax reproduce SUITE|all [--quick] [--out DIR] [--overwrite]

Every input is checked before any compute: a bad name, value, sweep spec or results folder
prints one ``alignjax: error: ...`` line on stderr and exits with code 2, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's usage dump is noisy)
        self.exit(2, f"alignjax: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="alignjax", description="JAX alignment-theory experiments and paper reproductions.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list experiments, suites, losses and dynamics")
    r = sub.add_parser("run", help="run one experiment, optionally as a sweep")
    r.add_argument("experiment")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    r.add_argument("--sweep", action="append", default=[], metavar="KEY=SPEC",
                   help="sweep a continuous hyperparameter: v1,v2,... or lo:hi:n[:log]")
    r.add_argument("--seeds", type=int, default=1, help="seeds per config (default 1)")
    r.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    r.add_argument("--out", type=Path, default=None, help="results folder (default results/EXPERIMENT)")
    r.add_argument("--chunks", type=int, default=None,
                   help="split the run into this many chunks, checkpointing after each (default: 1 if no "
                        "--resume, else 10)")
    r.add_argument("--resume", action="store_true", help="continue from the folder's last checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace an existing results folder")
    r.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("reproduce", help="run a reproduction suite and check its claims")
    s.add_argument("suite", help="suite name, or 'all'")
    s.add_argument("--quick", action="store_true", help="the quick CPU setting")
    s.add_argument("--out", type=Path, default=Path("results"), help="root results folder (default results/)")
    s.add_argument("--overwrite", action="store_true", help="replace existing suite folders")
    return p


def _fail(message: str) -> int:
    print(f"alignjax: error: {message}", file=sys.stderr)
    return 2


def _list() -> int:
    from alignjax.registry import DYNAMICS, EXPERIMENTS, LOSSES, SUITES, TRAINERS

    for title, reg in (("experiments", EXPERIMENTS), ("suites", SUITES)):
        print(f"{title}:")
        for e in reg:
            desc = getattr(e.obj, "description", None) or e.meta.get("description", "")
            print(f"  {e.name:<22} {desc}")
    print("losses:   " + ", ".join(LOSSES.names()))
    print("dynamics: " + ", ".join(DYNAMICS.names()))
    print("trainers: " + ", ".join(TRAINERS.names()))
    return 0


def _run(args) -> int:
    import numpy as np

    from alignjax import config as cfgmod
    from alignjax.registry import EXPERIMENTS
    from alignjax.results import prepare_out_dir, write_csv, write_json

    try:
        exp = EXPERIMENTS.get(args.experiment)
        config, hparams = cfgmod.apply_overrides(exp.config, exp.hparams, args.set)
        axes = dict(cfgmod.parse_sweep(s, hparams) for s in args.sweep)
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1; got {args.seeds}")
        if args.chunks is not None and args.chunks < 1:
            raise ValueError(f"--chunks must be >= 1; got {args.chunks}")
        from alignjax.sweep import make_grid

        grid = make_grid(hparams, axes, seeds=args.seeds)
        exp.check(config, grid.hparams)
        program = exp.make_program(config)
        out = args.out or Path("results") / exp.name
        resolved = {"experiment": exp.name, "config": config, "hparams": hparams,
                    "sweep": {k: v.tolist() for k, v in axes.items()}, "seeds": args.seeds, "seed": args.seed}
        if args.resume and (out / "config.json").exists():
            old = json.loads((out / "config.json").read_text())
            if old != json.loads(json.dumps(resolved)):
                raise ValueError(f"--resume: the settings differ from those saved in {out / 'config.json'}")
        out = prepare_out_dir(out, overwrite=args.overwrite, resume=args.resume)
    except (ValueError, FileExistsError) as e:
        return _fail(str(e))

    from alignjax.sweep import run_sweep

    write_json(out / "config.json", resolved)
    num_logs = config["num_steps"] // config["log_every"]
    chunks = args.chunks or (10 if args.resume else 1)
    chunk_logs = -(-num_logs // chunks)
    t0 = time.perf_counter()
    result = run_sweep(program, grid, num_steps=config["num_steps"], log_every=config["log_every"],
                       seed=args.seed, out_dir=out if (args.resume or chunks > 1) else None,
                       resume=args.resume, chunk_logs=chunk_logs, progress=not args.no_progress)
    runtime = time.perf_counter() - t0
    write_csv(out / "metrics.csv", result.table())
    arrays = {k: v for k, v in result.metrics.items() if v.ndim > 3}
    if arrays:
        import io

        from alignjax.results import atomic_write_bytes

        buf = io.BytesIO()
        np.savez_compressed(buf, steps=result.steps, **arrays)
        atomic_write_bytes(out / "arrays.npz", buf.getvalue())
    from alignjax.plotting import plot_sweep

    plot_sweep(result, out)
    if exp.plots is not None:
        exp.plots(result, out)
    final = {k: float(np.mean(v[:, :, -1])) for k, v in result.metrics.items() if v.ndim == 3}
    write_json(out / "summary.json", {"experiment": exp.name, "config": resolved, "runtime_s": round(runtime, 3),
                                      "num_compiles": result.num_compiles, "final_mean": final, "claims": []})
    print(f"{exp.name}: {grid.size} runs x {config['num_steps']} steps in {runtime:.1f}s "
          f"(compiles: {result.num_compiles}); results in {out}")
    for k, v in final.items():
        print(f"  final {k} (mean over runs) = {v:.6g}")
    return 0


def _reproduce(args) -> int:
    from alignjax.registry import SUITES
    from alignjax.results import SuiteContext, format_claims, prepare_out_dir, summary_dict, write_json

    try:
        names = SUITES.names() if args.suite == "all" else [SUITES.entry(args.suite).name]
        if not names:
            raise ValueError("no suites are registered")
        for n in names:  # check every folder before running anything
            d = args.out / n
            if d.exists() and any(d.iterdir()) and not args.overwrite:
                raise FileExistsError(f"results folder {d} already exists; pass --overwrite to replace it")
    except (ValueError, FileExistsError) as e:
        return _fail(str(e))
    summaries = []
    for n in names:
        out = prepare_out_dir(args.out / n, overwrite=args.overwrite)
        ctx = SuiteContext(out_dir=out, quick=args.quick)
        print(f"== {n} ({'quick' if args.quick else 'full'}) -> {out}", flush=True)
        t0 = time.perf_counter()
        claims = SUITES.get(n)(ctx)
        runtime = time.perf_counter() - t0
        summary = summary_dict(n, {"quick": args.quick, **ctx.config}, runtime, claims)
        write_json(out / "summary.json", summary)
        summaries.append(summary)
        held = sum(c["holds"] for c in summary["claims"])
        print(f"   {held}/{len(claims)} claims hold, {runtime:.1f}s", flush=True)
    print()
    print(format_claims(summaries))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alignjax`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "run":
        return _run(args)
    return _reproduce(args)


if __name__ == "__main__":
    sys.exit(main())
