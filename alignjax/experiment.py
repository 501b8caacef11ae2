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

__all__ = ["Program", "Component", "Experiment", "check_positive", "check_representable", "run_dtype", "namespaced",
           "entry_hparams", "static_of"]


class Component(NamedTuple):
    """A setting of an experiment that chooses a registered entry (see :class:`Experiment`).

    Attributes:
      registry: where the entries live (e.g. ``DYNAMICS``).
      where: optional ``where(entry) -> bool``: the entries this experiment can run (e.g. the
        exact dynamics only); ``None`` = all.
    """

    registry: Any
    where: Callable[[Any], bool] | None = None

    def entries(self) -> list:
        """The registered entries this component accepts."""
        return [e for e in self.registry if self.where is None or self.where(e)]

    def entry(self, name: str):
        """The entry ``name``; ``ValueError`` listing the accepted names otherwise."""
        ok = self.entries()
        for e in ok:
            if e.name == name:
                return e
        raise ValueError(f"unknown {self.registry.kind} {name!r} here; known: {', '.join(e.name for e in ok)}")


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
      components: ``{config_key: Component}`` (or a bare registry): settings that choose a
        registered entry (e.g. ``{"algorithm": Component(DYNAMICS, is_exact)}``,
        ``{"loss": LOSSES}``). The chosen entry's hyperparameters
        and static knobs join the experiment's settings (:meth:`expand`), so any registered
        entry can be run, set and swept by name. An entry's hyperparameter that the experiment
        itself declares (``beta``, ``eta``) is shared; the others are namespaced by the entry's
        name (``simpo.gamma``, ``gamma_dpo.gamma``, ``mpo.reset_every``): see :func:`namespaced`.
      positive: the experiment's own hyperparameters that must be ``> 0`` (checked before any
        compute); a component's conditions are its own (e.g. an exact dynamic accepts
        ``beta = 0`` when its rule allows it): its entry's declared domains and conditions
        (:mod:`alignjax.domains`), checked by :meth:`check`.

    The hyperparameters a run needs are :meth:`hparams_for` ``(config)``: ``hparams`` plus those
    of the entries the config chooses. Build grids from it, never from ``hparams`` alone (a
    fork's entry may declare hyperparameters of its own, e.g. ``my-optimistic.lam``).
    """

    name: str
    description: str
    config: Mapping[str, Any]
    hparams: Mapping[str, float]
    make_program: Callable[[Mapping[str, Any]], Program]
    validate: Callable[[Mapping[str, Any], Mapping[str, np.ndarray]], None] | None = None
    plots: Callable[..., None] | None = field(default=None, compare=False)
    components: Mapping[str, Any] = field(default_factory=dict, compare=False)
    positive: tuple[str, ...] = ("beta", "eta", "learning_rate")

    def __post_init__(self):
        for k in ("num_steps", "log_every"):
            if k not in self.config:
                raise ValueError(f"experiment {self.name!r}: config must define {k!r}")
        both = set(self.config) & set(self.hparams)
        if both:
            raise ValueError(f"experiment {self.name!r}: names both static and swept: {sorted(both)}")
        for k, c in list(self.components.items()):
            if k not in self.config:
                raise ValueError(f"experiment {self.name!r}: component {k!r} must be a config setting")
            if not isinstance(c, Component):
                object.__setattr__(self, "components", {**self.components, k: Component(c)})

    def entries_for(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``{component key: the registry entry config[key] chooses}`` (``config`` defaults to
        :attr:`config`); ``ValueError`` for an entry the component does not accept."""
        config = self.config if config is None else config
        return {key: component.entry(config[key]) for key, component in self.components.items()}

    def hparams_for(self, config: Mapping[str, Any] | None = None) -> dict[str, float]:
        """The hyperparameters a run of ``config`` needs, at their defaults: the experiment's own
        (:attr:`hparams`) and, for each component, the chosen entry's (:func:`entry_hparams`:
        ``simpo.gamma``, ``my-optimistic.lam``; a name the experiment declares itself, e.g.
        ``beta``, is the experiment's). ``config`` defaults to :attr:`config`; only its component
        keys are read.

        This is the one way to get them: grids (``make_grid(exp.hparams_for(cfg), axes)``), the
        command line, the registry-wide tests and the suites all use it.
        """
        out = dict(self.hparams)
        for entry in self.entries_for(config).values():
            for key, default in entry_hparams(entry, self.hparams).items():
                out.setdefault(key, default)
        return out

    def expand(self, config: Mapping[str, Any], hparams: Mapping[str, float]) -> tuple[dict, dict]:
        """Add the chosen components' settings (defaults) to copies of ``(config, hparams)``.

        For each component key ``k`` (e.g. ``"loss"``) the entry named ``config[k]`` (e.g.
        ``"simpo"``) contributes its static knobs as ``config["simpo.<knob>"]`` and its
        hyperparameters as ``hparams["simpo.<name>"]`` unless the experiment declares that name
        itself (then the experiment's value is used). Values already present are kept.
        Raises ``ValueError`` for an unknown entry name.
        """
        config, hparams = dict(config), dict(hparams)
        for entry in self.entries_for(config).values():
            for knob, default in entry.static.items():
                config.setdefault(f"{entry.name}.{knob}", default)
        for key, default in self.hparams_for(config).items():
            hparams.setdefault(key, default)
        return config, hparams

    def check(self, config: Mapping[str, Any], hparams: Mapping[str, np.ndarray]) -> None:
        """Generic checks, the chosen entries' domains, then the experiment's own ``validate``.

        In order: ``num_steps`` a positive multiple of ``log_every``; every hyperparameter
        :meth:`hparams_for` ``(config)`` names is present (a grid built from :attr:`hparams` alone
        misses an entry's own, e.g. ``my-optimistic.lam``); each chosen entry's values lie in its
        declared domains and satisfy its conditions (:meth:`alignjax.registry.Entry.check_values`:
        ``cdpo needs eps in [0, 0.5); got cdpo.eps = 0.7``); :attr:`positive`; finite and
        representable in the run's dtype; ``validate``. Raises a one-line ``ValueError``.
        """
        steps, every = int(config["num_steps"]), int(config["log_every"])
        if steps <= 0 or every <= 0 or steps % every:
            raise ValueError(f"num_steps ({steps}) must be a positive multiple of log_every ({every})")
        try:
            needed = self.hparams_for(config)
        except ValueError:  # an entry no component accepts: the experiment's own validate may say why
            if self.validate is not None:
                self.validate(config, hparams)
            raise
        missing = [k for k in needed if k not in hparams]
        if missing:
            raise ValueError(f"{self.name}: missing hyperparameters {missing} (build the grid from "
                             f"Experiment.hparams_for(config), which includes the chosen entries' own)")
        for entry in self.entries_for(config).values():
            keys = namespaced(entry, self.hparams)
            entry.check_values({h: hparams[k] for h, k in keys.items()}, keys)
        for name in self.positive:
            if name in hparams:
                check_positive(name, hparams[name])
        for name, v in hparams.items():
            if not np.all(np.isfinite(np.asarray(v, dtype=np.float64))):
                raise ValueError(f"{name} must be finite; got {np.asarray(v).tolist()}")
            check_representable(name, v)
        if self.validate is not None:
            self.validate(config, hparams)


def namespaced(entry: Any, shared: Any = ()) -> dict[str, str]:
    """``{hyperparameter of the entry: its key among an experiment's hyperparameters}``.

    A name in ``shared`` (the experiment's own hyperparameters, e.g. ``beta``) keeps its name;
    any other is prefixed by the entry's name (``gamma`` of ``simpo`` -> ``simpo.gamma``), so
    two entries' same-named hyperparameters never collide.
    """
    return {h: h if h in shared else f"{entry.name}.{h}" for h in entry.hparams}


def entry_hparams(entry: Any, shared: Any = ()) -> dict[str, float]:
    """``{key: default}`` of an entry's hyperparameters as a run names them: ``{namespaced(entry,
    shared)[h]: entry.hparams[h]}`` (``gamma`` of ``simpo`` -> ``{"simpo.gamma": 0.5}``; a name in
    ``shared``, e.g. ``beta``, keeps its name and the entry's default).

    The entry-level half of :meth:`Experiment.hparams_for`; code that runs registry entries outside
    an experiment (the atlas) builds its hyperparameter leaves from it too.
    """
    return {key: float(entry.hparams[h]) for h, key in namespaced(entry, shared).items()}


def static_of(entry: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's static knobs as set in an expanded ``config`` (``"NAME.knob"`` keys)."""
    return {k: config.get(f"{entry.name}.{k}", v) for k, v in entry.static.items()}


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
