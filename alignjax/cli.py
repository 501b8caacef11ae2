"""The ``alignjax`` command line.

    alignjax --version
    alignjax list [EXPERIMENT|SUITE]
    alignjax run EXPERIMENT [--set key=value ...] [--sweep key=v1,v2,... | key=lo:hi:n[:log] ...]
                 [--seeds N] [--seed S] [--out DIR] [--chunks N] [--resume] [--overwrite] [--csv]
    alignjax reproduce SUITE|all [--quick] [--out DIR] [--overwrite] [--jobs N]
    alignjax show RESULTS_FOLDER
    alignjax plot RESULTS_FOLDER [--metric M] [--x X] [--y Y] [--step N] [--level L] [--stage S] [--out DIR]

Exit codes: 0 success; 2 bad input (one ``alignjax: error: ...`` line on stderr, checked
before any compute, nothing written or left behind); 3 a metric became NaN/inf (results are
written and marked ``"status": "nonfinite"`` in ``summary.json``); 4 writing the results
failed after compute (one line naming the file and saying whether the computed results were
kept, in checkpoints or stages to resume from, or lost); 130 interrupted by Ctrl-C (SIGINT),
143 by SIGTERM (one line saying what was kept and how to continue). Results folders follow
:mod:`alignjax.rundir`: nothing alignjax did not write is ever deleted or replaced, and
``--overwrite`` swaps the new results in only when they are complete.

Signals: ``run`` and ``reproduce`` compute in a worker thread while the main thread only
waits; SIGINT and SIGTERM set a flag (nothing is raised inside JAX, XLA or a callback), the
main thread sees it within 50 ms, closes the results folders this process has open
(:meth:`alignjax.rundir.RunDir.abort`: late writes are refused, a folder with a finished
checkpoint or suite stage is kept for ``--resume``, anything else this run wrote is removed),
prints one line and exits at once, whatever the worker is doing (compiling, computing,
saving a checkpoint). With ``reproduce --jobs N`` the suites run in child processes (see
:func:`_reproduce_parallel`): the signal is passed on to each running child, which closes its
own folder and says so, and then this process exits. Once the work has ended (results written or
closed), the command line's process runs the ``atexit`` handlers and exits at once
(:func:`_exit_now`); a signal in that last moment gets one line and exit 128 + the signal number
(:func:`_late_signal`), never a silent death by the signal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main", "EXIT_BAD_INPUT", "EXIT_NONFINITE", "EXIT_WRITE_FAILED", "EXIT_INTERRUPTED"]

EXIT_BAD_INPUT, EXIT_NONFINITE, EXIT_WRITE_FAILED, EXIT_INTERRUPTED = 2, 3, 4, 130
#: ``metrics.csv`` and ``arrays.npz`` are written when the tidy table has at most this many rows
#: (configs x seeds x logged steps), or with ``--csv``; ``results.zarr`` always.
CSV_MAX_ROWS = 100_000
#: A streamed chunk of logged steps holds at most this many bytes of metrics on the host.
STREAM_BYTES = 256 << 20
_MAX_SEED = 2**32 - 1


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's usage dump is noisy)
        self.exit(EXIT_BAD_INPUT, f"alignjax: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from alignjax import __version__

    p = _Parser(prog="alignjax", description="JAX alignment-theory experiments and paper reproductions.")
    p.add_argument("--version", action="version", version=f"alignjax {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ls = sub.add_parser("list", help="list experiments, suites, losses and dynamics, or one entry's settings")
    ls.add_argument("name", nargs="?", help="an experiment or suite: list its settings and defaults")
    ls.add_argument("--claims", action="store_true", help="a suite's declared claims and checks (nothing is run)")
    ls.add_argument("--json", action="store_true", help="with --claims: as stable JSON")
    r = sub.add_parser("run", help="run one experiment, optionally as a sweep")
    r.add_argument("experiment")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    r.add_argument("--sweep", action="append", default=[], metavar="KEY=SPEC",
                   help="sweep a continuous hyperparameter: v1,v2,... or lo:hi:n[:log]")
    r.add_argument("--seeds", type=int, default=1, help="seeds per config (default 1)")
    r.add_argument("--seed", type=int, default=0, help=f"master seed in [0, {_MAX_SEED}] (default 0)")
    r.add_argument("--out", default=None, help="results folder (default results/EXPERIMENT)")
    r.add_argument("--chunks", type=int, default=None,
                   help="split the run into this many chunks, checkpointing after each (default: 1 if no "
                        "--resume, else 10)")
    r.add_argument("--resume", action="store_true", help="continue an alignjax folder from its last checkpoint")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing alignjax results folder once the new run has finished")
    r.add_argument("--csv", action="store_true",
                   help=f"also write metrics.csv and arrays.npz for a large sweep (always written up to "
                        f"{CSV_MAX_ROWS:,} table rows; the results are in results.zarr either way)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--cpu-devices", default=None, metavar="N|auto",
                   help="on a CPU host, split the CPU into N JAX devices, the sweep sharded over them (results do "
                        "not depend on N); auto: one per usable core (at most 8), with --resume the count the run "
                        "was started with, unless XLA_FLAGS or JAX_NUM_CPU_DEVICES already set a count or several "
                        "processes run the sweep (default auto; $ALIGNJAX_CPU_DEVICES replaces auto's count)")
    _add_multihost(r)
    s = sub.add_parser("reproduce", help="run a reproduction suite and check its claims")
    s.add_argument("suite", help="suite name, or 'all'")
    s.add_argument("--quick", action="store_true", help="the quick CPU setting")
    s.add_argument("--out", default="results", help="root results folder (default results/)")
    s.add_argument("--smoke", action="store_true",
                   help="the quick setting shrunk to seconds: checks that every stage runs, not the claims")
    s.add_argument("--overwrite", action="store_true",
                   help="replace existing alignjax suite folders once each suite has finished")
    s.add_argument("--resume", action="store_true",
                   help="continue killed reproductions: finished stages are read back, finished suites kept")
    s.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="with several suites: run up to N of them at once, each in its own process (default 1; "
                        "every suite's results are the same either way)")
    s.add_argument("--no-claims-table", action="store_true", help=argparse.SUPPRESS)  # a --jobs child
    _add_multihost(s)
    sh = sub.add_parser("show", help="what a results folder holds and the command that reproduces it")
    sh.add_argument("folder")
    pl = sub.add_parser("plot", help="redraw a finished results folder (or a suite stage) without rerunning")
    pl.add_argument("folder")
    pl.add_argument("--metric", help="one scalar metric (default: every one)")
    pl.add_argument("--x", help="the swept dimension on the horizontal axis")
    pl.add_argument("--y", help="the swept dimension on the vertical axis (a heat map)")
    pl.add_argument("--step", type=int, help="the logged step shown (default: the last)")
    pl.add_argument("--level", type=float, help="the heat map's contour value (default: mid-scale)")
    pl.add_argument("--stage", help="a stage of a suite folder (stages/STAGE.npz)")
    pl.add_argument("--out", help="folder for the PNGs (default: FOLDER/plots)")
    return p


def _add_multihost(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several processes (multi-host); process 0 writes the results folder")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordination service")
    g.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    g.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1")
    g.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() with JAX's auto-detection (TPU pods, SLURM)")


def _init_distributed(args) -> None:
    """``jax.distributed.initialize`` from the flags (before any JAX computation); ValueError if malformed."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if all(v is None for v in given) and not args.distributed:
        return
    if any(v is None for v in given) and not all(v is None for v in given):
        raise ValueError("--coordinator, --num-processes and --process-id go together (or use --distributed alone)")
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk through gloo
    if args.coordinator is None:
        jax.distributed.initialize()
        return
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--coordinator must be HOST:PORT; got {args.coordinator!r}")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        raise ValueError(f"need --num-processes >= 1 and 0 <= --process-id < --num-processes; got "
                         f"{args.num_processes} and {args.process_id}")
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


MAX_CPU_DEVICES = 512
"""The largest ``--cpu-devices`` count accepted (XLA's CPU client fails past a few thousand)."""
AUTO_CPU_DEVICES = 8
"""``--cpu-devices auto`` uses at most this many devices: a small sweep is padded to a multiple of the
device count, so one device per core of a large host would multiply its work."""


def _cpu_devices(args, entry: bool) -> None:
    """Split the host CPU into JAX devices for ``run`` (``--cpu-devices``), before JAX starts.

    XLA runs one device's program on one core (only large matrix products use more), so a sweep
    sharded over ``n`` CPU devices runs its rows on ``n`` cores at once; every run's numbers are
    the same for any ``n`` (the engine's device-count invariance). ``auto`` asks for one device
    per usable core (:func:`usable_cores`, at most :data:`AUTO_CPU_DEVICES`), or, with
    ``--resume``, the count the run was started with (a checkpoint holds the rows as padded for
    its device count) when the process was started as the ``alignjax`` command, no count was
    given by ``XLA_FLAGS`` (``--xla_force_host_platform_device_count``) or
    ``JAX_NUM_CPU_DEVICES``, and no multi-process flag is set; otherwise it changes nothing (a
    library call keeps its caller's JAX set-up). ``$ALIGNJAX_CPU_DEVICES`` (a count) replaces
    ``auto``'s count of cores, under the same conditions. A count ``1 <= N <= MAX_CPU_DEVICES``
    (plain digits) given with the flag always applies; ValueError (one line) for anything else,
    or when JAX already started with another count.
    """
    value = "auto" if args.cpu_devices is None else str(args.cpu_devices).strip()
    if value.lower() == "auto":
        env = os.environ.get("ALIGNJAX_CPU_DEVICES")
        default = _device_count(env, "ALIGNJAX_CPU_DEVICES") if env is not None and env.strip().lower() != "auto" \
            else None  # checked even where it is not used
        multi = args.distributed or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))
        preset = "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or \
            os.environ.get("JAX_NUM_CPU_DEVICES")
        if not entry or multi or preset:
            return
        n = (_started_devices(args) if args.resume else None) or default or min(usable_cores(), AUTO_CPU_DEVICES)
    else:
        n = _device_count(value, "--cpu-devices")
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        have = len(jax.devices("cpu"))
        if have != n:
            raise ValueError(f"--cpu-devices {n}: JAX has already started with {have} CPU device(s) in this process")
        return
    jax.config.update("jax_num_cpu_devices", n)


def _reproduce_cpu_devices(args, entry: bool) -> None:
    """Split the host CPU into JAX devices for ``reproduce``, before JAX starts: the suites' sweeps
    are sharded over them, so a suite alone keeps every core busy in its sweeps.

    One device per usable core (at most :data:`AUTO_CPU_DEVICES`), or ``$ALIGNJAX_CPU_DEVICES``;
    with ``--jobs N`` each child process gets ``max(1, cores // N)`` (passed on in
    ``$ALIGNJAX_CPU_DEVICES``, see :func:`_reproduce_parallel`), so the children together ask for
    about one device per core. Under the same conditions as ``run``'s ``auto``
    (:func:`_cpu_devices`): only for the process's own command line, and nothing when
    ``XLA_FLAGS`` or ``JAX_NUM_CPU_DEVICES`` already set a count or several processes run the
    suites. Every suite's numbers are the same for any count (checked on the quick suites).
    """
    multi = args.distributed or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))
    if not entry or multi or _preset_device_count():
        return
    env = os.environ.get("ALIGNJAX_CPU_DEVICES")
    n = _device_count(env, "ALIGNJAX_CPU_DEVICES") if env is not None and env.strip().lower() != "auto" \
        else min(usable_cores(), AUTO_CPU_DEVICES)
    import jax
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized():
        jax.config.update("jax_num_cpu_devices", n)


def _preset_device_count() -> bool:
    """Whether ``XLA_FLAGS`` or ``JAX_NUM_CPU_DEVICES`` already set the CPU device count."""
    return "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or \
        bool(os.environ.get("JAX_NUM_CPU_DEVICES"))


def _child_cpu_devices(jobs: int) -> dict:
    """The environment of a ``reproduce --jobs`` child: ``$ALIGNJAX_CPU_DEVICES`` set to ``max(1, cores
    // jobs)`` unless the user set it or a device count is preset (then the child inherits that)."""
    env = dict(os.environ)
    if "ALIGNJAX_CPU_DEVICES" not in env and not _preset_device_count():
        env["ALIGNJAX_CPU_DEVICES"] = str(max(1, min(usable_cores(), AUTO_CPU_DEVICES) // max(1, jobs)))
    return env


def _device_count(value: str, name: str) -> int:
    """``value`` as a device count: plain digits from 1 to :data:`MAX_CPU_DEVICES`; ValueError naming ``name``."""
    v = str(value).strip()
    n = int(v) if v.isascii() and v.isdigit() else 0
    if not 1 <= n <= MAX_CPU_DEVICES:
        raise ValueError(f"{name} must be a whole number from 1 to {MAX_CPU_DEVICES} or 'auto'; got {value!r}")
    return n


def _started_devices(args) -> int | None:
    """The CPU device count the run in ``--out`` was started with (its first session's provenance), or
    None when there is no such record (resume then reports what is wrong)."""
    from alignjax.safe_read import read_json_or_none

    out = Path(args.out) if args.out else Path("results") / args.experiment
    try:  # a small regular file only (a FIFO or a huge file named config.json is not waited on)
        sessions = read_json_or_none(out / "config.json").get("sessions") or []
        prov = sessions[0].get("provenance") or {}
        n = prov.get("device_count")
        return int(n) if prov.get("backend") == "cpu" and isinstance(n, int) and 1 <= n <= MAX_CPU_DEVICES else None
    except (OSError, ValueError, AttributeError, IndexError, TypeError):
        return None


def _is_primary() -> bool:
    import jax

    return jax.process_index() == 0


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"alignjax: error: {message}", file=sys.stderr)
    return code


def _argv(argv: Sequence[str] | None) -> list[str]:
    return list(sys.argv[1:] if argv is None else argv)


# -- list -----------------------------------------------------------------------------------
def _list(args) -> int:
    from alignjax.registry import DYNAMICS, EXPERIMENTS, GAME_LOSSES, LOSSES, SUITES, TRAINERS, broken_plugins

    if args.claims or args.json:
        if args.name is None or not args.claims:
            return _fail("--claims needs a suite (alignjax list SUITE --claims [--json]); --json goes with --claims")
        return _list_claims(args.name, args.json)
    if args.name is not None:
        return _list_one(args.name)
    for title, reg in (("experiments", EXPERIMENTS), ("suites", SUITES)):
        print(f"{title}:")
        for e in reg:
            desc = getattr(e.obj, "description", None) or e.meta.get("description", "")
            print(f"  {e.name:<22} {desc}")
    print("losses:   " + ", ".join(LOSSES.names()))
    print("dynamics: " + ", ".join(DYNAMICS.names()))
    print("trainers: " + ", ".join(TRAINERS.names()))
    print("game losses (of the sampled dynamics): " + ", ".join(GAME_LOSSES.names()))
    for file, error in broken_plugins().items():
        print(f"broken:   {file} (failed to import, registers nothing: {error})")
    print("(alignjax list NAME shows an experiment's settings)")
    return 0


def _list_claims(name: str, as_json: bool) -> int:
    """``alignjax list SUITE --claims [--json]``: the suite's declared claims (contract v3)."""
    from alignjax.registry import SUITES

    if name not in SUITES:
        return _fail(f"unknown suite {name!r}; known: {', '.join(SUITES.names())}")
    specs = SUITES.entry(name).meta.get("claims") or ()
    if as_json:
        keys = ("id", "statement", "source", "paper_value", "check", "control", "history")
        print(json.dumps([{k: s.as_dict()[k] for k in keys} for s in specs], indent=2, sort_keys=True))
        return 0
    if not specs:
        print(f"{name}: no claims declared as data yet (contract v2: see its papers/ page)")
    for s in specs:
        c = s.check
        print(f"{s.id}: {c.metric} {c.op} {c.threshold:g}  ({c.origin})")
        print(f"  claim:   {s.statement}")
        print(f"  source:  {s.source}")
        print(f"  control: {s.control}")
        for h in s.history:
            print(f"  changed from {h.old.metric} {h.old.op} {h.old.threshold:g} at {h.commit} "
                  f"({'easier' if h.easier else 'not easier'}): {h.why}")
    return 0


def _list_one(name: str) -> int:
    from alignjax.registry import EXPERIMENTS, SUITES

    if name in EXPERIMENTS:
        exp = EXPERIMENTS.get(name)
        hparams = exp.hparams_for(exp.config)
        config = exp.expand(exp.config, hparams)[0]
        print(f"{exp.name}: {exp.description}")
        print("static settings (--set KEY=VALUE; they shape the compiled program):")
        for k, v in config.items():
            print(f"  {k:<22} {type(v).__name__:<6} default {v!r}")
        print("continuous hyperparameters (--set KEY=VALUE or --sweep KEY=v1,v2,... | lo:hi:n[:log]):")
        domains = _declared_domains(exp, exp.config)
        for k, v in hparams.items():
            print(f"  {k:<22} float  default {v!r}" + (f"  in {domains[k]}" if k in domains else ""))
        for key, component in exp.components.items():
            print(f"{key} (--set {key}=NAME) chooses a registered {component.registry.kind}; the settings each adds "
                  "(and the domains it declares):")
            for e in component.entries():
                choice = {**exp.config, key: e.name}
                c2, h2 = exp.expand(choice, exp.hparams_for(choice))
                doms = _declared_domains(exp, choice)
                extra = [f"{k}={v!r}" + (f" (in {doms[k]})" if k in doms else "")
                         for k, v in {**c2, **h2}.items() if k not in exp.config and k not in exp.hparams]
                extra += [f"{k} in {d}" for k, d in doms.items() if k in exp.hparams]  # its domain of a shared one
                extra += [c.requirement() for c in e.conditions]
                print(f"  {e.name:<22} {', '.join(extra) or '-'}")
        return 0
    if name in SUITES:
        e = SUITES.entry(name)
        print(f"{name} (suite): {e.meta.get('description', '')}")
        print(f"  alignjax reproduce {name} [--quick] [--out DIR] [--overwrite]")
        return 0
    return _fail(f"unknown experiment or suite {name!r}; known: {', '.join(EXPERIMENTS.names() + SUITES.names())}")


def _declared_domains(exp, config) -> dict:
    """``{hyperparameter key: Domain}`` that the entries ``config`` chooses declare (inferred ones left out)."""
    from alignjax.experiment import namespaced

    out = {}
    for entry in exp.entries_for(config).values():
        for h, key in namespaced(entry, exp.hparams).items():
            if not entry.domains[h].inferred:
                out[key] = entry.domains[h]
    return out


# -- run ------------------------------------------------------------------------------------
_SETTINGS = ("experiment", "config", "hparams", "sweep", "seeds", "seed")


def _prepare_run(args):
    """Everything that can be refused before compute; raises ValueError with one line."""
    from alignjax import config as cfgmod
    from alignjax.registry import EXPERIMENTS
    from alignjax.rundir import RunDir, check_target
    from alignjax.sweep import check_grid_size, check_memory, estimate_memory, make_grid

    exp = EXPERIMENTS.get(args.experiment)
    if args.out is not None and args.out.strip() == "":
        raise ValueError("the results folder must not be empty (--out '')")
    out = Path(args.out) if args.out is not None else Path("results") / exp.name
    if _is_primary():  # the path alone, first: before anything compiles (a compile may create the cache folder)
        check_target(out)
    config, hparams = cfgmod.apply_overrides(exp.config, exp.hparams, args.set, expand=exp.expand)
    axes: dict = {}
    for spec in args.sweep:
        k, v = cfgmod.parse_sweep(spec, hparams)
        if k in axes:
            raise ValueError(f"--sweep {k} is given twice; put every value in one --sweep {k}=v1,v2,...")
        axes[k] = v
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {args.seeds}")
    if not 0 <= args.seed <= _MAX_SEED:
        raise ValueError(f"--seed must lie in [0, {_MAX_SEED}] (a 32-bit PRNG seed); got {args.seed}")
    if args.chunks is not None and args.chunks < 1:
        raise ValueError(f"--chunks must be >= 1; got {args.chunks}")
    num_configs = 1
    for v in axes.values():
        num_configs *= len(v)
    check_grid_size(num_configs, args.seeds, len(hparams))
    grid = make_grid(hparams, axes, seeds=args.seeds)
    program = _checked_program(exp, config, grid)
    chunks = args.chunks or (10 if args.resume else 1)
    steps, every = int(config["num_steps"]), int(config["log_every"])
    chunked = args.resume or chunks > 1
    import jax

    if chunked and jax.process_count() > 1:
        raise ValueError("--chunks and --resume (checkpoints) are single-process for now; drop them for a "
                         "multi-process run")
    est = estimate_memory(program, list(hparams), num_rows=grid.size, num_steps=steps, log_every=every,
                          chunked=chunked)
    num_logs = steps // every
    if chunked:
        chunk_logs = -(-num_logs // chunks)
    else:  # not checkpointed: chunks only bound the host memory of the streamed metrics
        chunk_logs = int(max(1, min(num_logs, STREAM_BYTES // max(1.0, est["obs_per_run"] * grid.size))))
    check_memory(_streamed(est, grid.size, num_logs, chunk_logs, _small(grid.size, num_logs) or args.csv),
                 grid.size)
    _check_disk(out, grid.size, num_logs + 1, est["obs_per_run"])
    rd = RunDir(out, overwrite=args.overwrite, resume=args.resume)
    if _is_primary():  # the other processes never touch the folder
        rd.check()
    settings = {"experiment": exp.name, "config": config, "hparams": hparams,
                "sweep": {k: v.tolist() for k, v in axes.items()}, "seeds": args.seeds, "seed": args.seed}
    settings = json.loads(json.dumps(settings))
    old = None
    if args.resume:
        old = _read_resumed_config(out / "config.json")
        if {k: old.get(k) for k in _SETTINGS} != settings:
            raise ValueError(f"--resume: the settings differ from those saved in {str(out / 'config.json')!r}")
    return exp, config, grid, program, rd, settings, old, chunks, chunked, chunk_logs


def _free_disk(path: Path) -> int:
    """Bytes free on the file system of ``path`` (its nearest existing ancestor)."""
    import shutil

    p = path.expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def _check_disk(out: Path, rows: int, logged: int, obs_bytes: float) -> None:
    """Refuse a run whose metrics (every run x logged step, before compression) exceed the free disk."""
    need = float(rows) * logged * obs_bytes
    free = _free_disk(out)
    if need <= free:
        return
    hint = ("lower num_steps or raise log_every (metrics are kept every log_every steps), or lower --seeds or the "
            "number of swept values") if logged >= rows else (
            "lower --seeds or the number of swept values, or num_steps/log_every")
    raise ValueError(f"the results need about {need / 2**30:.3g} GiB of disk ({rows} runs x {logged:.3g} logged steps "
                     f"x {obs_bytes:.0f} bytes, before compression), more than the {free / 2**30:.3g} GiB free for "
                     f"{str(out)!r}; {hint}")


def _step_chunk(num_logs: int, chunk_logs: int) -> int:
    """Logged steps per stored chunk: 1 for up to 100 logged steps (no chunk is written twice), else
    the streamed chunk length (fewer files for long runs)."""
    return 1 if num_logs + 1 <= 100 else chunk_logs


def _small(rows: int, num_logs: int) -> bool:
    """Whether ``metrics.csv``/``arrays.npz`` are written without ``--csv`` (see :data:`CSV_MAX_ROWS`)."""
    return rows * (num_logs + 1) <= CSV_MAX_ROWS


def _streamed(est: dict, rows: int, num_logs: int, chunk_logs: int, table: bool) -> dict:
    """:func:`alignjax.sweep.estimate_memory` for a streamed run: the host holds one chunk of
    ``chunk_logs`` logged steps (three copies) and the table only when it is written; the
    devices hold one chunk's metrics."""
    T = num_logs + 1
    host_chunk = 3.0 * rows * min(T, chunk_logs + 1) * est["obs_per_run"]
    host_table = est["host_metrics"] if table else 0.0
    host = est["host"] - est["host_metrics"] + host_chunk + host_table
    dev_metrics = est["device_metrics"] * min(T, chunk_logs + 1) / T
    return {**est, "host": host, "host_metrics": host_chunk + host_table,
            "device": est["device"] - est["device_metrics"] + dev_metrics, "device_metrics": dev_metrics}


def _checked_program(exp, config, grid):
    """``exp.check`` then ``exp.make_program``; a ``MemoryError`` there (sizes whose host arrays do not
    fit) becomes a one-line ``ValueError`` naming the knob."""
    try:
        exp.check(config, grid.hparams)
        return exp.make_program(config)
    except MemoryError:
        raise ValueError(f"building {exp.name}'s program needs more host memory than is available; lower the "
                         "experiment's sizes (e.g. num_prompts, num_responses)") from None


def _read_resumed_config(path: Path) -> dict:
    """The ``config.json`` a ``--resume`` continues from, read safely and validated; ``ValueError`` (one line)."""
    from alignjax.safe_read import UnreadableFile, read_json

    try:
        old = read_json(path)
    except UnreadableFile as e:
        raise ValueError(f"--resume: no readable config.json to continue from: {e}") from None
    old = _check_results_doc(path, old)
    return {**old, "sessions": old.get("sessions") or []}  # null: no earlier session recorded


def _run(args, argv) -> int:
    import numpy as np

    from alignjax import provenance
    from alignjax.results import write_arrays, write_csv, write_json
    from alignjax.rundir import RunDirError

    try:
        exp, config, grid, program, rd, settings, old, chunks, chunked, chunk_logs = _prepare_run(args)
        if not _is_primary():
            return _run_secondary(program, grid, config, args, chunk_logs)
        out = rd.open()
    except (ValueError, FileExistsError) as e:  # RunDirError is a ValueError
        return _fail(str(e))

    session = provenance.new_session(argv, chunks=chunks, provenance=provenance.collect(argv))
    sessions = [*(old or {}).get("sessions", []), session]
    doc = {"alignjax": (old or {}).get("alignjax", session["provenance"]), "run_id": rd.run_id, **settings,
           "sessions": sessions}
    t0 = time.perf_counter()
    num_logs = config["num_steps"] // config["log_every"]
    counts: dict = {}

    def on_chunk(done, total):  # record progress so a killed session still counts its runtime
        sessions[-1] = {**session, "runtime_s": round(time.perf_counter() - t0, 3), "logged_intervals_done": done}
        write_json(out / "config.json", {**doc, "sessions": sessions})

    computed = False
    try:
        if not args.resume:  # a resumed folder changes only once a checkpoint restored (on_chunk)
            write_json(out / "config.json", doc)
        from alignjax import store
        from alignjax.sweep import run_sweep

        if chunked:
            rd.record_tree("checkpoints")
        steps = np.arange(num_logs + 1) * config["log_every"]
        writer = store.StoreWriter(out, grid, steps, attrs=store.run_attrs(doc), resume=args.resume,
                                   step_chunk=_step_chunk(num_logs, chunk_logs))
        result = run_sweep(program, grid, num_steps=config["num_steps"], log_every=config["log_every"],
                           seed=args.seed, out_dir=out if chunked else None, resume=args.resume,
                           chunk_logs=chunk_logs, progress=not args.no_progress, on_chunk=on_chunk,
                           on_metrics=writer.write)
        if writer.written != len(steps):  # resumed from checkpoints the store is behind (removed or replaced)
            raise ValueError(f"--resume: {str(writer.root)!r} holds {writer.written} of the {len(steps)} logged steps "
                             "that the checkpoints have passed (was it removed or replaced?); start the run again "
                             "without --resume")
        computed = True
        counts = result.num_compiles
        runtime = time.perf_counter() - t0
        if args.resume:  # the steps before the resume were checked by the killed session, not by this one
            writer.rescan()
        bad = writer.first_nonfinite()
        status = "finished" if bad is None else "nonfinite"
        sessions[-1] = provenance.close_session(session, status, runtime, compiles=counts)
        doc["sessions"] = sessions
        write_json(out / "config.json", doc)
        writer.finish({"sessions": sessions, "status": status})
        ds = store.load(out)
        if args.csv or _small(grid.size, num_logs):
            result = store.to_result(ds, grid)
            write_csv(out / "metrics.csv", result.table())
            write_arrays(out / "arrays.npz", result)
            if exp.plots is not None:
                exp.plots(result, out)
        from alignjax.views import plot_views, scalar_metrics

        if scalar_metrics(ds):
            plot_views(ds, out)
        final = writer.final_mean
        totals = provenance.totals(sessions)
        write_json(out / "summary.json", {
            "experiment": exp.name, "config": settings, "status": status, "nonfinite": bad,
            "runtime_s": totals["runtime_s"], "num_compiles": totals["compiles"], "alignjax": session["provenance"],
            "sessions": sessions, "final_mean": final, "claims": [], "run_id": rd.run_id})
        out = rd.commit()
    except KeyboardInterrupt:
        return _interrupted_in_process(rd, argv, "run")
    except RunDirError as e:
        rd.abort(keep_checkpointed=True)
        return _fail(str(e))
    except OSError as e:
        return _write_failed(rd, argv, e, computed)
    except ValueError as e:
        if not args.resume or computed:  # a bug, not bad input
            rd.abort(keep_checkpointed=True)
            raise
        rd.abort(keep_checkpointed=True)  # a resumed folder is kept as it was
        return _fail(str(e))
    except BaseException:
        rd.abort(keep_checkpointed=True)
        raise
    _report_moved(rd)
    print(f"{exp.name}: {grid.size} runs x {config['num_steps']} steps in {runtime:.1f}s "
          f"(compiles: {counts}); results in {out}")
    for k, v in final.items():
        print(f"  final {k} (mean over runs) = {v:.6g}")
    if bad is not None:
        hp = ", ".join(f"{k}={v:g}" for k, v in bad["hparams"].items())
        return _fail(f"metric {bad['metric']!r} became {bad['value']} at step {bad['step']} (config {bad['config']}: "
                     f"{hp}; seed {bad['seed']}); results written to {out} and marked nonfinite in summary.json",
                     EXIT_NONFINITE)
    return 0


def _run_secondary(program, grid, config, args, chunk_logs: int) -> int:
    """A process other than 0 of a multi-process run: compute its share in the same chunks as
    process 0 (the gathers must match), write nothing."""
    import numpy as np

    from alignjax.sweep import run_sweep

    bad = []

    def watch(t0, metrics):
        bad.extend(k for k, v in metrics.items() if v.dtype.kind == "f" and not np.isfinite(v).all())

    run_sweep(program, grid, num_steps=config["num_steps"], log_every=config["log_every"], seed=args.seed,
              chunk_logs=chunk_logs, on_metrics=watch)
    return 0 if not bad else EXIT_NONFINITE


def _resume_argv(argv: Sequence[str]) -> list[str]:
    kept = [a for a in argv if a not in ("--overwrite", "--no-claims-table")]
    return kept + ([] if "--resume" in argv else ["--resume"])


def _one_line(text: str) -> str:
    """``text`` on one line (a path may hold a newline; the contract is one line)."""
    return " ".join(str(text).split())


def _write_failed(rd, argv, e: OSError, computed: bool) -> int:
    """Exit 4: a write failed after compute started; say whether the computed results were kept."""
    kept = rd.abort(keep_checkpointed=True)
    from alignjax.checkpoint import CheckpointSaveError

    if isinstance(e, CheckpointSaveError):  # its own line: folder, space needed and free
        head = str(e)
    else:
        head = f"writing {str(getattr(e, 'filename', None) or rd.target)!r} failed: {e.strerror or e}"
    if kept:
        tail = f"what was computed is kept in its checkpoints; continue with: alignjax {shlex.join(_resume_argv(argv))}"
    elif rd.overwrite:
        tail = f"the computed results were lost; the previous results in {str(rd.target)!r} are unchanged"
    else:
        tail = "the computed results were lost (nothing was kept; pass --chunks N to checkpoint as you go)" \
            if computed else "nothing was kept"
    return _fail(_one_line(f"{head}; {tail}"), EXIT_WRITE_FAILED)


def _report_moved(rd) -> None:
    """One line naming the user's files that ``--overwrite`` moved into the new results, and one
    naming those that could not be moved (they stay in the old folder, which is kept whole)."""
    if rd.moved:
        print(_one_line(f"alignjax: kept your files from the old {str(rd.target)!r}: {', '.join(rd.moved)}"),
              file=sys.stderr)
    if rd.left_behind:
        old, failed = rd.left_behind
        print(_one_line(f"alignjax: the new results are in {str(rd.target)!r}, but some of your files could not be "
                        f"moved out of the old results, kept whole in {str(old)!r}: {', '.join(failed)}"),
              file=sys.stderr)


# -- reproduce ------------------------------------------------------------------------------
def _reproduce(args, argv) -> int:
    """``alignjax reproduce SUITE|all [--quick|--smoke] [--resume|--overwrite]``.

    Each suite writes ``OUT/SUITE`` (config.json first, then its stages, tables, plots and
    finally summary.json). With ``--resume`` a suite folder that is finished (its summary.json
    says so, with the same scale) is kept as is, an unfinished one continues from its saved
    stages (:meth:`alignjax.results.SuiteContext.stage`) and a missing one starts afresh.
    """
    from alignjax import provenance
    from alignjax.registry import SUITES
    from alignjax.results import SuiteContext, format_claims, summary_dict, write_json
    from alignjax.rundir import RunDir, RunDirError

    quick = bool(args.quick or args.smoke)
    scale = "smoke" if args.smoke else "quick" if quick else "full"
    try:
        _init_distributed(args)
        if args.out.strip() == "":
            raise ValueError("the results folder must not be empty (--out '')")
        names = SUITES.names() if args.suite == "all" else [SUITES.entry(args.suite).name]
        if not names:
            raise ValueError("no suites are registered")
        if args.resume and args.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        import jax

        if jax.process_count() > 1:
            if args.resume:
                raise ValueError("--resume is single-process for now; drop it for a multi-process reproduction")
            if not _is_primary():
                return _reproduce_secondary(names, quick, bool(args.smoke))
        dirs, done, previous = {}, {}, {}
        for n in names:  # every refusal up front, before any compute
            target = Path(args.out) / n
            resume = args.resume and (args.suite != "all" or _used(target))
            rd = RunDir(target, overwrite=args.overwrite, resume=resume).check()
            if resume:
                old = _read_json(target / "config.json") or {}
                if old.get("suite") != n or _scale_of(old) != scale:
                    raise ValueError(f"--resume: {target} holds {old.get('suite')!r} at scale {_scale_of(old)!r}, "
                                     f"not {n!r} at scale {scale!r}")
                previous[n] = old
                summ = _read_json(target / "summary.json")
                if isinstance(summ, dict) and summ.get("status") == "finished":
                    done[n] = summ
            dirs[n] = rd
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1; got {args.jobs}")
    except ValueError as e:
        return _fail(str(e))
    todo = [n for n in names if n not in done]
    if args.jobs > 1 and len(todo) > 1 and jax.process_count() == 1 and all(map(_fresh_process_knows, todo)):
        return _reproduce_parallel(args, names, dirs, done, previous, scale)
    summaries = []
    for n in names:
        if n in done:
            print(f"== {n} ({scale}) -> {dirs[n].target}: finished before, kept", flush=True)
            summaries.append(done[n])
            continue
        rd = dirs[n]
        try:
            out = rd.open()
        except RunDirError as e:
            return _fail(str(e))
        session = provenance.new_session(argv, provenance=provenance.collect(argv))
        sessions = [*previous.get(n, {}).get("sessions", []), session]
        doc = {"alignjax": session["provenance"], "run_id": rd.run_id, "suite": n, "quick": quick, "scale": scale,
               "sessions": sessions}
        t0 = time.perf_counter()
        try:
            write_json(out / "config.json", doc)
            ctx = SuiteContext(out_dir=out, quick=quick, smoke=bool(args.smoke), resume=n in previous)
            print(f"== {n} ({scale}) -> {rd.target}", flush=True)
            claims = SUITES.get(n)(ctx)
            runtime = time.perf_counter() - t0
            closed = provenance.close_session(session, "finished", runtime, stage_seconds=ctx.stage_seconds)
            doc["sessions"] = [*sessions[:-1], closed]
            doc["settings"] = ctx.config
            write_json(out / "config.json", doc)
            summary = summary_dict(n, {"quick": quick, **ctx.config}, runtime, claims, status="finished",
                                   alignjax=session["provenance"], sessions=doc["sessions"])
            summary["run_id"] = rd.run_id
            write_json(out / "summary.json", summary)
            rd.commit()
        except KeyboardInterrupt:
            return _interrupted_in_process(rd, argv, "reproduce")
        except OSError as e:
            return _write_failed(rd, argv, e, computed=True)
        except BaseException:
            rd.abort(keep_checkpointed=True)
            raise
        _report_moved(rd)
        _FINISHED.append(n)
        summaries.append(summary)
        n = summary["counts"]
        print(f"   {len(claims)} claims: holds {n['holds']}, fails {n['fails']}, inconclusive {n['inconclusive']}; "
              f"{runtime:.1f}s", flush=True)
    if not args.no_claims_table:
        print()
        print(format_claims(summaries))
    return 0


_CHILDREN: list = []  # (process, captured output) of a running ``reproduce --jobs N`` (see _stop_now)


def _fresh_process_knows(name: str) -> bool:
    """Whether a new ``python -m alignjax`` process registers suite ``name`` too: its module is
    one that :func:`alignjax.registry.load_plugins` imports (the library, the repository's
    experiments, an entry point, ``ALIGNJAX_PLUGINS``), not a script's ``__main__`` or a module a
    caller imported by hand."""
    import importlib.metadata

    from alignjax.registry import SUITES

    module = getattr(SUITES.get(name), "__module__", None) or "__main__"
    if module.split(".")[0] in ("alignjax", "alignjax_experiments") or module.startswith("alignjax_plugin_"):
        return True
    plugins = {m.strip() for m in os.environ.get("ALIGNJAX_PLUGINS", "").split(",")}
    eps = {ep.module for ep in importlib.metadata.entry_points(group="alignjax.experiments")}
    return module in plugins | eps


def _reproduce_parallel(args, names, dirs, done, previous, scale) -> int:
    """``reproduce --jobs N``: each unfinished suite in its own ``python -m alignjax reproduce SUITE``
    process, at most ``N`` at a time, the longest first (the suite's ``meta["quick_seconds"]``,
    a hint; alphabetical otherwise).

    A suite's process computes exactly what the in-process loop would (the same suite, scale
    and flags), so its results do not change; its output is printed in one piece when it ends.
    After a failure no new suite starts; those running finish, and the first failure's exit
    code is returned. Then the claims table of every finished suite, as without ``--jobs``.
    """
    import subprocess
    import tempfile

    from alignjax.registry import SUITES
    from alignjax.results import format_claims

    base = [sys.executable, "-m", "alignjax", "reproduce"]
    flags = ["--out", args.out] + (["--smoke"] if args.smoke else ["--quick"] if args.quick else [])
    flags += (["--overwrite"] if args.overwrite else []) + ["--no-claims-table"]
    hint = lambda n: -float(SUITES.entry(n).meta.get("quick_seconds", 0.0))  # noqa: E731
    queue = sorted((n for n in names if n not in done), key=hint)
    for n in names:
        if n in done:
            print(f"== {n} ({scale}) -> {dirs[n].target}: finished before, kept", flush=True)
    running, failed = {}, 0
    try:
        while queue or running:
            while queue and len(running) < args.jobs and not failed:
                n = queue.pop(0)
                log = tempfile.TemporaryFile()
                cmd = base + [n] + flags + (["--resume"] if n in previous else [])
                running[n] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                               env=_child_cpu_devices(args.jobs)), log)
                _CHILDREN.append(running[n])
                print(f"== {n} ({scale}) -> {dirs[n].target}: started ({len(running)} running)", flush=True)
            if failed and not running:
                break
            time.sleep(0.2)
            for n, (proc, log) in list(running.items()):
                if proc.poll() is None or _INTERRUPTED.is_set():  # after a signal, _stop_now reports
                    continue
                del running[n]
                log.seek(0)
                _print_child_output(log.read())
                log.close()
                if proc.returncode == 0:
                    _FINISHED.append(n)
                elif not failed:
                    failed = proc.returncode
    finally:
        if not _INTERRUPTED.is_set():  # an exception here: do not leave children behind (a signal: _stop_now)
            for proc, log in running.values():
                proc.kill()
                log.close()
    summaries = [s for s in (_read_json(Path(args.out) / n / "summary.json") for n in names)
                 if isinstance(s, dict) and s.get("status") == "finished"]
    print()
    print(format_claims(summaries))
    return failed


def _print_child_output(data: bytes) -> None:
    """A child's captured output, each line as a terminal would have left it (progress bars
    redraw a line with ``\\r``: only the last state is kept, blank ones dropped)."""
    for line in data.decode(errors="replace").split("\n"):
        line = line.rstrip().split("\r")[-1].rstrip()
        if line:
            print(line, flush=True)


def _reproduce_secondary(names, quick: bool, smoke: bool) -> int:
    """A process other than 0 of a multi-process reproduction: the same computations (its share
    of every sharded sweep), nothing written (``SuiteContext(writes=False)``)."""
    import tempfile

    from alignjax.registry import SUITES
    from alignjax.results import SuiteContext

    nowhere = Path(tempfile.gettempdir()) / "alignjax-never-written"
    for n in names:
        SUITES.get(n)(SuiteContext(out_dir=nowhere / n, quick=quick, smoke=smoke, progress=False, writes=False))
    return 0


def _used(folder: Path) -> bool:
    from alignjax.rundir import LOCK_NAME

    return folder.is_dir() and any(e.name != LOCK_NAME for e in folder.iterdir())


def _read_json(path: Path):
    """The JSON object in ``path``; None when it is missing or unreadable (a FIFO, huge, not JSON:
    :mod:`alignjax.safe_read`); ``ValueError`` (one line) when it parses but a field has the wrong type."""
    from alignjax.safe_read import read_json_or_none

    doc = read_json_or_none(path)
    return None if doc is None else _check_results_doc(path, doc)


def _scale_of(doc: dict) -> str:
    """A suite folder's scale (``"smoke"``, ``"quick"``, ``"full"``; older folders: from ``quick``)."""
    return doc.get("scale") or ("quick" if doc.get("quick") else "full")


# -- show -----------------------------------------------------------------------------------
def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# what each field a results file is read for must be: (test, words for the message)
def _is_claim_record(v) -> bool:
    """A claim of ``summary.json``: contract v2 (``holds``, ``paper_value``, ``measured``, a control
    with ``holds``) or v3 (``check``, ``subject``, ``control`` with numbers and a ``verdict``)."""
    if not (isinstance(v, dict) and isinstance(v.get("id"), str)):
        return False
    if "check" in v:  # contract v3
        c, m = v.get("control"), v.get("subject")
        nums = ("value", "low", "high")
        return (isinstance(v["check"], dict) and isinstance(m, dict) and isinstance(c, dict)
                and all(_is_number(m.get(k)) and _is_number(c.get(k)) for k in nums)
                and isinstance(v.get("verdict"), str) and isinstance(c.get("verdict"), str))
    return (all(k in v for k in ("holds", "paper_value", "measured"))
            and (not v.get("control") or isinstance(v["control"], dict) and "holds" in v["control"]))


_KINDS = {
    "object": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (_is_number, "a number"),
    "numbers": (lambda v: isinstance(v, list) and all(map(_is_number, v)), "a list of numbers"),
    "strings": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "counts": (lambda v: isinstance(v, dict) and all(map(_is_number, v.values())), "an object of numbers"),
    "seconds": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and k.isprintable() for k in v)
                and all(_is_number(x) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in v.values()),
                "an object of non-negative seconds"),
    "claim": (lambda v: _is_claim_record(v), "an object with a string id, holds, paper_value and measured (v2) or "
              "check, subject, control and verdict (v3)"),
}
_TOP_FIELDS = {"suite": "string", "experiment": "string", "scale": "string", "alignjax": "object",
               "config": "object", "hparams": "object", "sweep": "object", "seeds": "integer", "seed": "integer",
               "sessions": "list", "final_mean": "object", "claims": "list"}


def _fields(doc: dict):
    """``(name, value, kind)`` for every field of a config.json/summary.json that alignjax reads back."""
    for k, kind in _TOP_FIELDS.items():
        yield k, doc.get(k), kind
    prov = doc.get("alignjax")
    for k in ("git", "packages"):
        yield f"alignjax.{k}", prov.get(k) if isinstance(prov, dict) else None, "object"
    for k, v in (doc.get("sweep") if isinstance(doc.get("sweep"), dict) else {}).items():
        yield f"sweep.{k}", v, "numbers"
    for i, sess in enumerate(doc.get("sessions") if isinstance(doc.get("sessions"), list) else []):
        yield f"sessions[{i}]", sess, "object"
        if isinstance(sess, dict):
            yield f"sessions[{i}].command", sess.get("command"), "strings"
            yield f"sessions[{i}].runtime_s", sess.get("runtime_s"), "number"
            yield f"sessions[{i}].compiles", sess.get("compiles"), "counts"
            yield f"sessions[{i}].stage_seconds", sess.get("stage_seconds"), "seconds"
    for i, claim in enumerate(doc.get("claims") if isinstance(doc.get("claims"), list) else []):
        yield f"claims[{i}]", claim, "claim"


def _json_kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(v), type(v).__name__)


def _check_results_doc(path, doc):
    """Return ``doc`` (parsed from ``path``, a config.json or summary.json) if every field that
    ``show``, ``--resume`` and ``reproduce --resume`` read has the type alignjax writes.

    A missing or ``null`` field is fine (readers fall back to a default); anything else of the
    wrong type (``"sessions": "x"``, ``"experiment": 3``, a top-level list) raises ``ValueError``
    with one line naming the file and the field, so that no reader fails later with a traceback.
    """
    where = repr(str(path))
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is malformed: it must hold a JSON object, not {_json_kind(doc)}")
    for name, value, kind in _fields(doc):
        test, words = _KINDS[kind]
        if value is not None and not test(value):
            raise ValueError(f"{where} is malformed: field {name!r} must be {words}, not {_json_kind(value)}")
    return doc


def _load_shown(d: Path) -> tuple[dict, dict | None]:
    """``(config, summary)`` of the results folder ``d`` for ``show``: each read only when it is a
    small regular file (:mod:`alignjax.safe_read`), then checked (:func:`_check_results_doc`);
    ``ValueError`` (one line) for anything else, and for a folder alignjax did not write."""
    import os

    from alignjax.rundir import is_ours, ownership
    from alignjax.safe_read import read_json

    try:
        if not d.is_dir():
            raise ValueError(f"{str(d)!r} is not an alignjax results folder (not a folder)")
    except OSError as e:
        raise ValueError(f"cannot read {str(d)!r}: {e.strerror or e}") from None
    docs = {}
    for name in ("config.json", "summary.json"):
        path = d / name
        docs[name] = _check_results_doc(path, read_json(path)) if os.path.lexists(path) else None
    if not is_ours(d):
        raise ValueError(f"{str(d)!r} is not an alignjax results folder: {ownership(d)}")
    return docs["config.json"] or {}, docs["summary.json"]


def _reproducing_command(cfg: dict) -> str:
    """The command line that recomputes a results folder (every setting spelled out)."""
    if cfg.get("suite") is not None:
        flag = {"smoke": ["--smoke"], "quick": ["--quick"]}.get(_scale_of(cfg), [])
        return shlex.join(["alignjax", "reproduce", cfg["suite"], *flag])
    if cfg.get("experiment") is None:
        return "(unknown: config.json names no experiment or suite)"
    words = ["alignjax", "run", cfg["experiment"]]
    for k, v in (cfg.get("config") or {}).items():
        words += ["--set", f"{k}={v}"]
    sweep = cfg.get("sweep") or {}
    for k, v in (cfg.get("hparams") or {}).items():
        if k not in sweep:
            words += ["--set", f"{k}={v!r}"]
    for k, vs in sweep.items():
        words += ["--sweep", f"{k}=" + ",".join(repr(float(x)) for x in vs)]
    words += ["--seeds", str(cfg.get("seeds") or 1), "--seed", str(cfg.get("seed") or 0)]
    return shlex.join(words)


def _status(folder: Path, session: dict) -> str:
    """A session's status; ``"running"`` only while a live process holds the folder's lock (a
    killed process never wrote its end: it shows as interrupted)."""
    from alignjax.rundir import is_locked

    status = session.get("status")
    if status == "running" and not is_locked(folder):
        return "interrupted (the process ended without closing the session)"
    return str(status)


def _show(args) -> int:
    from alignjax.provenance import totals
    from alignjax.results import format_claims

    d = Path(args.folder)
    try:
        cfg, summ = _load_shown(d)
        names = sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
    except OSError as e:
        return _fail(f"cannot read {str(d)!r}: {e.strerror or e}")
    except ValueError as e:
        return _fail(str(e))
    suite = cfg.get("suite")
    kind = f"suite {suite}" if suite is not None else f"experiment {cfg.get('experiment') or (summ or {}).get('suite')}"
    prov = cfg.get("alignjax") or (summ or {}).get("alignjax") or {}
    git = prov.get("git") or {}
    print(f"{d}: {kind}")
    if prov:
        pk = prov.get("packages") or {}
        print(f"  alignjax {prov.get('version')}  commit {git.get('commit') or 'unknown'}"
              f"{' (dirty tree)' if git.get('dirty') else ''}  python {prov.get('python')}  jax {pk.get('jax')}")
        print(f"  {prov.get('backend')} x{prov.get('device_count')} ({prov.get('device_kind')}), x64={prov.get('x64')}, "
              f"{prov.get('platform')}")
    if cfg.get("experiment") is not None:
        print(f"  settings: {json.dumps(cfg.get('config'))}")
        print(f"  hyperparameters: {json.dumps(cfg.get('hparams'))}; sweep: {json.dumps(cfg.get('sweep'))}; "
              f"seeds {cfg.get('seeds')}, seed {cfg.get('seed')}")
    sessions = cfg.get("sessions") or (summ or {}).get("sessions") or []
    for i, s in enumerate(sessions):
        print(f"  session {i + 1}: {s.get('start')} -> {s.get('end') or '(did not finish)'}  {_status(d, s)}  "
              f"{s.get('runtime_s')} s  {shlex.join(s.get('command') or [])}")
        if s.get("stage_seconds"):  # checked by _check_results_doc: names and non-negative seconds
            print("    stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in s["stage_seconds"].items()))
    if sessions:
        t = totals(sessions)
        print(f"  total: {t['runtime_s']} s over {t['sessions']} session(s), compiles {t['compiles']}")
    if summ is None:
        print("  status: unfinished (no summary.json)")
    else:
        print(f"  status: {summ.get('status', 'finished')}")
        if summ.get("nonfinite"):
            print(f"  first non-finite value: {json.dumps(summ['nonfinite'])}")
        for k, v in (summ.get("final_mean") or {}).items():
            print(f"  final {k} (mean over runs) = {v}")
        if summ.get("claims"):
            print(format_claims([{**summ, "suite": summ.get("suite") or summ.get("experiment") or "?"}]))
    print("  files: " + ", ".join(names))
    print(f"  reproduce with: {_reproducing_command(cfg) if cfg else '(unknown: no config.json)'}")
    return 0


# -- plot -----------------------------------------------------------------------------------
def _plot(args) -> int:
    """``alignjax plot FOLDER [--metric M] [--x X] [--y Y] [--step N] [--level L] [--stage S] [--out DIR]``.

    Reads a finished results folder (:func:`alignjax.store.load`; a killed run's store is
    refused) and writes :func:`alignjax.views.view_figure` PNGs into ``--out`` (default
    ``FOLDER/plots``; files there are the user's, never removed by alignjax). Every request is
    checked before anything is drawn or written (exit 2, one line).
    """
    from alignjax import store
    from alignjax.views import check_view, plot_views

    folder = Path(args.folder)
    try:
        if not folder.exists():
            raise ValueError(f"{str(folder)!r} does not exist")
        ds = store.load(folder, stage=args.stage)
        names = check_view(ds, args.metric, args.x, args.y, args.step)
        out = Path(args.out) if args.out else (folder if folder.is_dir() else folder.parent) / "plots"
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    except OSError as e:
        return _fail(_one_line(f"cannot read {str(folder)!r}: {e.strerror or e}"))
    except ValueError as e:
        return _fail(_one_line(str(e)))
    tag = "".join(f"_{k}-{v}" for k, v in (("x", args.x), ("y", args.y), ("step", args.step)) if v is not None)
    for p in plot_views(ds, out, metrics=names, x=args.x, y=args.y, step=args.step, level=args.level, suffix=tag):
        print(p)
    return 0


_INTERRUPTED = threading.Event()
_SIGNAL: list[int] = []  # the first signal received


def _on_signal(signum, frame):
    """SIGINT/SIGTERM: only record it; the main thread acts on it (see the module docstring)."""
    if not _SIGNAL:
        _SIGNAL.append(signum)
    _INTERRUPTED.set()


def _supervised(work, argv: Sequence[str], command: str, entry: bool = False) -> int:
    """Run ``work()`` in a worker thread; on SIGINT/SIGTERM clean up and exit at once.

    Without a signal this returns ``work()``'s exit code (or raises its exception). With one,
    :func:`_stop_now` closes the open results folders and the process ends with ``os._exit``
    (128 + the signal number): the worker may be inside a compile or an XLA computation that
    cannot be cancelled, and nothing of its state needs saving beyond what is already on disk.
    With ``entry`` (the process's own command line) the handlers are not restored when the work
    ends: :func:`_late_signal` answers a signal during the interpreter's shutdown.
    """
    box: dict = {}

    def target():
        try:
            box["code"] = work()
        except BaseException as e:  # re-raised in the main thread
            box["error"] = e

    worker = threading.Thread(target=target, name="alignjax-worker", daemon=True)
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        while worker.is_alive() and not _INTERRUPTED.is_set():
            worker.join(0.05)
        if worker.is_alive():
            code = _stop_now(argv, command)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    finally:
        for s, h in previous.items():
            signal.signal(s, _late_signal if entry else h)
    _ENDED.append(box.get("code", 1))
    if "error" in box:
        raise box["error"]
    return box["code"]


_ENDED: list[int] = []  # the work's exit code, once it has ended


def _late_signal(signum, frame):
    """SIGINT/SIGTERM after the work ended (results committed or closed), while the process
    shuts down (JAX's and the interpreter's exit handlers take a moment): one line, exit
    128 + the signal number at once. Without this, Python's default handler would raise in the
    middle of the shutdown or the process would die by the signal with no word said."""
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    code = _ENDED[-1] if _ENDED else None
    try:
        sys.stdout.flush()
        os.write(2, (f"alignjax: interrupted ({name}) while exiting; the work had already ended"
                     f"{'' if code is None else f' with exit code {code}'}, its results as reported\n").encode())
    finally:
        os._exit(128 + int(signum))


def _exit_now(code: int) -> None:
    """End the process with ``code`` once the work is done: flush, run the ``atexit`` handlers
    (JAX's and orbax's among them) with :func:`_late_signal` still answering signals, then
    ``os._exit``. This skips the interpreter's module teardown (about 0.7 s with JAX loaded),
    during which Python resets the handlers and a Ctrl-C would kill the process without a word."""
    import atexit

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    try:
        atexit._run_exitfuncs()
    finally:
        os._exit(code)


def _stop_now(argv: Sequence[str], command: str) -> int:
    """Close every results folder this process has open after a signal; print one line; the exit code."""
    from alignjax.rundir import open_rundirs

    signum = _SIGNAL[0] if _SIGNAL else signal.SIGINT
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    _stop_children(signum)
    msgs = [_closed_by_interrupt(rd, argv, command) for rd in open_rundirs()]
    if not msgs and command == "reproduce" and "--overwrite" not in argv and _FINISHED:
        msgs.append(f"finished suites are kept; continue with: alignjax {shlex.join(_resume_argv(argv))}")
    if sys.stderr.isatty():  # the worker's progress bar may hold the line
        sys.stderr.write("\r\033[K")
    print(_one_line(f"alignjax: interrupted ({name}){'; ' if msgs else ''}{'; '.join(msgs)}"), file=sys.stderr)
    return 128 + int(signum)


def _stop_children(signum: int, wait_s: float = 10.0) -> None:
    """Pass ``signum`` on to the running children of ``reproduce --jobs`` and wait (at most
    ``wait_s``) for each to close its results folder; then print the ``alignjax:`` lines each
    wrote (what it kept and how to continue)."""
    live = [(p, log) for p, log in _CHILDREN if p.poll() is None]
    for p, _ in live:
        try:
            p.send_signal(signum)
        except OSError:
            pass
    deadline = time.monotonic() + wait_s
    for p, log in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except Exception:  # still running: stop it
            p.kill()
        try:
            log.seek(0)
            for line in log.read().decode(errors="replace").split("\n"):
                line = line.split("\r")[-1].strip()
                if line.startswith("alignjax:"):
                    print(line, file=sys.stderr)
        except (OSError, ValueError):
            pass


def _closed_by_interrupt(rd, argv: Sequence[str], command: str) -> str:
    """Close ``rd`` after an interrupt (keeping a resumable folder); what the user is told about it."""
    kept = rd.abort(keep_checkpointed=True, interrupted=True)
    if getattr(rd, "committed", False):
        return f"the results in {str(rd.target)!r} were complete and are kept"
    if kept:
        return f"continue with: alignjax {shlex.join(_resume_argv(argv))}"
    if rd.overwrite:
        return f"the previous results in {str(rd.target)!r} are unchanged"
    if command == "run":
        return "nothing was kept (no checkpoint yet; pass --chunks N to checkpoint as you go)"
    return f"the unfinished suite folder {str(rd.target)!r} was removed"


def _interrupted_in_process(rd, argv: Sequence[str], command: str) -> int:
    """A ``KeyboardInterrupt`` raised inside the work (``main`` called from library code or a
    test, without the signal supervisor): the same cleanup and line as a signal, exit 130."""
    print(_one_line(f"alignjax: interrupted; {_closed_by_interrupt(rd, argv, command)}"), file=sys.stderr)
    return EXIT_INTERRUPTED


_FINISHED: list[str] = []  # suites a running reproduce has committed (for the interrupt message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alignjax`` command; returns the exit code.

    Called without ``argv`` (the command line itself), a signal that arrives after the work has
    ended, while the interpreter shuts down, ends the process at once with one line (see
    :func:`_late_signal`); called with ``argv`` (library code, tests) the caller's signal
    handlers are restored when the work ends."""
    entry = argv is None
    argv = _argv(argv)
    try:
        code = _main(argv, entry)
        if entry and _ENDED:  # ``run``/``reproduce`` ended: results are on disk; skip the slow teardown
            _exit_now(code)
        return code
    except BrokenPipeError:  # stdout closed early (``alignjax list | head -1``): stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 128 + signal.SIGPIPE


def _main(argv: list[str], entry: bool = False) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("list", "show", "plot"):
        try:
            return {"list": _list, "show": _show, "plot": _plot}[args.command](args)
        except KeyboardInterrupt:
            print("alignjax: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
    _INTERRUPTED.clear()
    _SIGNAL.clear()
    _FINISHED.clear()
    _CHILDREN.clear()
    _ENDED.clear()

    def work() -> int:
        try:
            if args.command == "run":
                _cpu_devices(args, entry)
                _init_distributed(args)
            else:
                _reproduce_cpu_devices(args, entry)
        except ValueError as e:
            return _fail(str(e))
        from alignjax.compile_cache import enable

        enable()
        return _run(args, argv) if args.command == "run" else _reproduce(args, argv)

    try:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return work()
        return _supervised(work, argv, args.command, entry)
    except KeyboardInterrupt:  # raised in-process outside a results folder's lifetime: nothing to undo
        print("alignjax: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
