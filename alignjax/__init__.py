"""alignjax: pure-functional JAX direct alignment and game-theoretic preference learning.

The package is built in four layers; a module imports only modules of its own layer or of
lower ones (checked by ``tests/test_public_api.py``; picture in the README, "How it is built"):

0. **foundation** -- :mod:`alignjax.registry` and :mod:`alignjax.domains`, no other alignjax
   imports. Exports the registries ``LOSSES``, ``DYNAMICS``, ``EXPERIMENTS``, ``SUITES``,
   ``TRAINERS`` (name -> entry); the math modules register themselves into them, declaring each
   hyperparameter's default or :class:`~alignjax.domains.Domain`.
1. **math** -- pure functions on arrays and pytrees, no I/O:
   :mod:`~alignjax.prefs` (preference matrices), :mod:`~alignjax.losses` (DPO and relatives),
   :mod:`~alignjax.games` (closed-form game quantities), :mod:`~alignjax.dynamics`
   (exact/sampled game dynamics; ``simulate``), :mod:`~alignjax.policies` (tabular,
   log-linear, MLP, sequence), :mod:`~alignjax.metrics` (ranking, coverage),
   :mod:`~alignjax.data` (synthetic bandit/language data), and the trainers
   ``reward_model``, ``rlhf``, ``hypo``, ``sft`` (import those submodules directly).
2. **engine** -- turns experiments into compiled, sharded, checkpointed sweeps:
   :mod:`~alignjax.experiment` (``Experiment``, ``Program``), :mod:`~alignjax.sweep`
   (``make_grid``, ``Grid``, ``make_run``, ``run_sweep``, ``SweepResult``), :mod:`~alignjax.runner`
   (``compile_sweep``, ``SweepRunner``, ``RunPolicy``: compile once, run grids under a policy),
   :mod:`~alignjax.results` (``SuiteContext``, ``Claim``, ``claim``; atomic writes), and the
   internal ``checkpoint``, ``rundir``, ``provenance``, ``config``, ``compile_cache``.
3. **apps** -- ``alignjax.cli`` (the ``alignjax`` command), ``alignjax.plotting``,
   :mod:`~alignjax.store` (the streamed ``results.zarr`` store; ``load(folder)`` gives an
   ``xarray.Dataset``) and :mod:`~alignjax.views` (plots that scale: line, heat map, small
   multiples).

Everything listed in ``__all__`` is importable from the top level, lazily (PEP 562): ``import
alignjax`` imports nothing heavy (no jax); a name's module is imported on first access.
"""

from __future__ import annotations

import importlib as _importlib

__version__ = "0.1.0"

# Re-exported name -> the module that defines it.
_ATTRS: dict[str, str] = {
    # foundation
    "LOSSES": "alignjax.registry",
    "DYNAMICS": "alignjax.registry",
    "EXPERIMENTS": "alignjax.registry",
    "SUITES": "alignjax.registry",
    "TRAINERS": "alignjax.registry",
    # engine
    "Experiment": "alignjax.experiment",
    "Program": "alignjax.experiment",
    "Grid": "alignjax.sweep",
    "make_grid": "alignjax.sweep",
    "make_run": "alignjax.sweep",
    "run_sweep": "alignjax.sweep",
    "compile_sweep": "alignjax.runner",
    "RunPolicy": "alignjax.runner",
    "SweepRunner": "alignjax.runner",
    "SweepResult": "alignjax.sweep",
    "SuiteContext": "alignjax.results",
    "Claim": "alignjax.results",
    "claim": "alignjax.results",
    # math
    "simulate": "alignjax.dynamics",
    # apps
    "load": "alignjax.store",
}

# Re-exported submodules (``alignjax.losses`` etc. without an explicit import).
_SUBMODULES: tuple[str, ...] = (
    "registry",
    "prefs", "losses", "games", "dynamics", "policies", "metrics", "data",
    "experiment", "sweep", "results",
)

__all__ = [*_ATTRS, *_SUBMODULES]


def __getattr__(name: str) -> object:
    if name in _ATTRS:
        value = getattr(_importlib.import_module(_ATTRS[name]), name)
    elif name in _SUBMODULES:
        value = _importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
