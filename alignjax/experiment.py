"""What an experiment is: a static config, continuous hyperparameters, and a pure program.

An experiment turns a *static* configuration (sizes, step counts, algorithm names: Python
values that shape the trace) into a :class:`Program` of three pure functions. The engine
(:mod:`alignjax.sweep`) then builds ``run(hparams, key) -> metrics`` from it, with
``lax.scan`` over steps, and sweeps ``hparams`` (a dict of array leaves) with ``vmap``::

    program = experiment.make_program(config)
    state = program.init(hparams, key)          # pytree, holds its own PRNG key
    state = program.step(state, hparams)        # one update (split the key held in state)
    metrics = program.observe(state, hparams)   # {name: scalar or small array}

Continuous hyperparameters (``beta``, ``eta``, ``learning_rate``, mixture weights...) live
in ``hparams`` and are never baked into the trace, so one compile serves a whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np

__all__ = ["Program", "Experiment", "check_positive", "check_representable", "run_dtype"]


class Program(NamedTuple):
    """The three pure functions of an experiment (see module docstring).

    Attributes:
      init: ``init(hparams, key) -> state``.
      step: ``step(state, hparams) -> state``, one update.
      observe: ``observe(state, hparams) -> dict`` of metrics at a logged step.
    """

    init: Callable[[Mapping[str, jax.Array], jax.Array], Any]
    step: Callable[[Any, Mapping[str, jax.Array]], Any]
    observe: Callable[[Any, Mapping[str, jax.Array]], dict]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment (``alignjax run NAME``).

    Attributes:
      name: registry name.
      description: one line for ``alignjax list``.
      config: static defaults (int/bool/str); must include ``num_steps`` and ``log_every``.
      hparams: continuous defaults (float); they become array leaves and can be swept.
      make_program: ``make_program(config) -> Program``.
      validate: optional ``validate(config, hparams)`` raising ``ValueError``; ``hparams``
        holds numpy arrays (one value per grid row). Runs before any compute.
      plots: optional ``plots(result, out_dir) -> None`` drawing experiment-specific plots.
    """

    name: str
    description: str
    config: Mapping[str, Any]
    hparams: Mapping[str, float]
    make_program: Callable[[Mapping[str, Any]], Program]
    validate: Callable[[Mapping[str, Any], Mapping[str, np.ndarray]], None] | None = None
    plots: Callable[..., None] | None = field(default=None, compare=False)

    def __post_init__(self):
        for k in ("num_steps", "log_every"):
            if k not in self.config:
                raise ValueError(f"experiment {self.name!r}: config must define {k!r}")
        both = set(self.config) & set(self.hparams)
        if both:
            raise ValueError(f"experiment {self.name!r}: names both static and swept: {sorted(both)}")

    def check(self, config: Mapping[str, Any], hparams: Mapping[str, np.ndarray]) -> None:
        """Generic checks, then the experiment's own ``validate``; raise ``ValueError``."""
        steps, every = int(config["num_steps"]), int(config["log_every"])
        if steps <= 0 or every <= 0 or steps % every:
            raise ValueError(f"num_steps ({steps}) must be a positive multiple of log_every ({every})")
        for name in ("beta", "eta", "learning_rate"):
            if name in hparams:
                check_positive(name, hparams[name])
        for name, v in hparams.items():
            if not np.all(np.isfinite(np.asarray(v, dtype=np.float64))):
                raise ValueError(f"{name} must be finite; got {np.asarray(v).tolist()}")
            check_representable(name, v)
        if self.validate is not None:
            self.validate(config, hparams)


def check_positive(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless every entry of ``value`` is > 0 (before any compute)."""
    v = np.asarray(value, dtype=np.float64)
    if v.size and not np.all(v > 0):
        bad = v[~(v > 0)].ravel()[0]
        raise ValueError(f"{name} must be > 0; got {bad:g}")


def run_dtype() -> np.dtype:
    """The float dtype runs use: float32, or float64 under ``jax.enable_x64``."""
    import jax.numpy as jnp

    return np.dtype(jnp.zeros(()).dtype)


def check_representable(name: str, value: Any, dtype: Any = None) -> None:
    """Raise ``ValueError`` if ``value`` overflows (to inf) or underflows (to 0) in ``dtype``.

    ``dtype`` defaults to :func:`run_dtype`. Use it for derived quantities too (e.g. a step
    size ``learning_rate / beta**2``, computed in float64): a value that is finite in float64
    but not in the run's dtype would otherwise turn into ``inf``/``nan`` silently on device.
    """
    dtype = np.dtype(dtype or run_dtype())
    v64 = np.asarray(value, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):
        v = v64.astype(dtype)
    over = ~np.isfinite(v) & np.isfinite(v64)
    under = (v == 0) & (v64 != 0) | (np.abs(v) < np.finfo(dtype).tiny) & (v != 0)
    if np.any(over):
        raise ValueError(f"{name} = {v64[over].ravel()[0]:g} overflows {dtype.name} (max {np.finfo(dtype).max:g}); "
                         "use a smaller value")
    if np.any(under):
        raise ValueError(f"{name} = {v64[under].ravel()[0]:g} underflows {dtype.name} (smallest normal "
                         f"{np.finfo(dtype).tiny:g}); use a larger value")
