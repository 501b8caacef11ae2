"""Name -> object registries for losses, dynamics, experiments and suites.

Everything the CLI and the registry-wide tests can find lives in one of the registries
below. Entry names follow one rule per registry (:data:`NAMING`, checked at registration):
losses and game losses snake_case (``gamma_dpo``), every other kind kebab-case (``nash-md``). A research fork adds an entry by decorating its function::

    from alignjax.registry import LOSSES

    @LOSSES.register("my_loss", hparams={"tau": 0.5})
    def my_loss(policy_chosen_logps, policy_rejected_logps,
                reference_chosen_logps, reference_rejected_logps, *, beta, tau):
        ...

and the registry-wide tests (``tests/test_registry.py``) then cover it with no extra code.
A hyperparameter is declared by its default (a plain float) or by a
:class:`~alignjax.domains.Domain` (default, bounds, scale: ``{"tau": Domain(0.5, 0.0, 1.0)}``);
the command line refuses values outside it before any compute and the registry-wide tests
probe the entry at its corners (:mod:`alignjax.domains`; a plain float's domain is inferred as
described there). Third-party packages are discovered through the ``alignjax.experiments``
entry-point group, and modules named in the ``ALIGNJAX_PLUGINS`` environment variable are
imported too (see :func:`load_plugins`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence, TypeVar

from alignjax.domains import Condition, Domain, check_values, probe_points

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its metadata.

    Attributes:
      name: the registry key (what the CLI and configs use).
      obj: the registered function, factory or spec.
      hparams: default values of the entry's continuous hyperparameters (array leaves of the
        hyperparameter mapping its functions receive), so generic code can call every entry
        and the CLI can ``--set``/``--sweep`` them.
      static: default values of the entry's static knobs (Python ints/bools/strings that shape
        the trace, e.g. mpo's ``reset_every``): keyword arguments of the registered factory,
        settable with ``--set``.
      meta: declared metadata fields of the entry's kind (:data:`META_FIELDS`; e.g. ``{"uses_lengths": True}``
        for a loss), checked at registration.
      domains: ``{name: Domain}`` for every hyperparameter of ``hparams``: the declared one, or the
        one inferred from a plain-float default (:meth:`alignjax.domains.Domain.from_default`; filled in
        for an entry built by hand).
      conditions: declared cross-hyperparameter :class:`~alignjax.domains.Condition` objects (``eta*beta <= 1``).
    """

    name: str
    obj: T
    hparams: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    static: dict[str, Any] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self):
        doms = {h: self.domains.get(h) or Domain.from_default(v) for h, v in self.hparams.items()}
        object.__setattr__(self, "domains", doms)
        object.__setattr__(self, "conditions", tuple(self.conditions))

    def check_values(self, values: Mapping[str, Any], keys: Mapping[str, str] | None = None) -> None:
        """Raise a one-line ``ValueError`` unless ``values`` lie in the entry's domains and satisfy its
        conditions (:func:`alignjax.domains.check_values`; ``keys``: the run's names, e.g. ``cdpo.eps``)."""
        check_values(self.name, self.domains, self.conditions, values, keys)

    def probe_points(self, n: int = 3):
        """``({name: (K,) array}, varied)``: the entry's probe points (:func:`alignjax.domains.probe_points`)."""
        return probe_points(self.domains, self.conditions, n)


NAMING: dict[str, tuple[str, str]] = {
    "snake_case": (r"[a-z][a-z0-9_]*", "lowercase snake_case, [a-z][a-z0-9_]* (dpo, gamma_dpo)"),
    "kebab-case": (r"[a-z][a-z0-9]*(-[a-z0-9]+)*", "lowercase kebab-case, [a-z][a-z0-9]*(-[a-z0-9]+)* (nash-md, "
                                                   "sampled-online-ipo-1)"),
}
"""The naming rules of entry names: ``{rule: (regular expression, description)}``. Losses and game losses
are snake_case (a loss's name is a Python identifier, and its settings read ``my_hinge.delta``); dynamics,
trainers, experiments and suites kebab-case (command-line words)."""


_STR_LIST = "list of str"
META_FIELDS: dict[str, dict[str, tuple[Any, str]]] = {
    "loss": {
        "uses_lengths": (bool, "the loss reads the responses' lengths (keyword arguments chosen_lengths, "
                               "rejected_lengths): SimPO, ORPO"),
        "uses_reference": (bool, "False for a loss that ignores the reference log-probabilities (SimPO, ORPO)"),
        "min_log_ratio": (float, "the smallest log pi - log pi_ref at which the loss is finite (f-DPO's "
                                 "alpha-divergence members: -60); the contract probes from there"),
    },
    "dynamics": {
        "kind": (("exact", "sampled"), "exact (an update on log-probabilities, alignjax.dynamics.exact) or "
                                       "sampled (loss-driven on policy parameters, alignjax.dynamics.sampled)"),
        "check": ("callable", "check(hparams, dtype) -> None, raising one-line ValueErrors: conditions a Domain "
                              "cannot state (exact dynamics)"),
        "check_static": ("callable", "check_static(static) -> None for the static knobs (mpo's reset_every)"),
        "fits": (("bradley-terry", "general-preference"), "the preference model the dynamic fits before playing "
                                                          "(bt-rlhf): the atlas groups it with reward fitting"),
        "ignores": (_STR_LIST, "inputs the rule does not read (mwu: ['pi_ref'])"),
        "aliases": (_STR_LIST, "other names the method goes by in the literature (not registered names)"),
        "loss": (str, "sampled: the GAME_LOSSES entry that drives it"),
        "extragradient": (bool, "sampled: a half step before the update (EGPO)"),
        "exact_form": (str, "sampled: the exact dynamic its population step equals (sampled-spo: mwu)"),
    },
    "trainer": {
        "kind": (("offline", "online", "hybrid"), "offline (pairs only), online (samples from the policy) or "
                                                  "hybrid (both)"),
        "description": (str, "one line for alignjax list"),
        "needs": (_STR_LIST, "fields the Problem's pairs must carry beyond Pairs (maxmin-rlhf: ['annotator'])"),
        "fits": (("bradley-terry", "general-preference"), "the preference model it fits (rlhf, gpm-gpo)"),
    },
    "suite": {
        "description": (str, "one line for alignjax list"),
        "claims": ("sequence of ClaimSpec", "the suite's declared claims (alignjax.claims.declared)"),
        "quick_seconds": (int, "its quick run's seconds with an empty compile cache, sharing 2 cores with another suite "
                               "(a scheduling hint: reproduce all --jobs starts the longest first)"),
    },
    "experiment": {},
    "game loss": {},
}
"""The metadata fields each kind of entry may declare: ``{registry kind: {field: (type, meaning)}}``. A type
is a Python type, a tuple of the allowed strings, ``"callable"``, ``"list of str"`` or ``"sequence of
ClaimSpec"``. :meth:`Registry.register` refuses any other key or a value of another type (one line); a
registry of another kind (a fork's own) is not checked. ``docs/extending.md`` shows this table."""


def check_meta(kind: str, name: str, meta: Mapping[str, Any]) -> None:
    """Raise a one-line ``ValueError`` unless every key of ``meta`` is a declared field of ``kind``
    (:data:`META_FIELDS`) with a value of its type; kinds not in :data:`META_FIELDS` are not checked."""
    fields = META_FIELDS.get(kind)
    if fields is None:
        return
    for k, v in meta.items():
        if k not in fields:
            raise ValueError(f"{kind} {name!r}: unknown metadata field {k!r}; a {kind} declares "
                             f"{', '.join(sorted(fields)) or 'none'} (alignjax.registry.META_FIELDS)")
        want = fields[k][0]
        ok = (want in (str, int, float, bool) and isinstance(v, want) and not (want is not bool and isinstance(v, bool))
              or isinstance(want, tuple) and v in want
              or want == "callable" and callable(v)
              or want == _STR_LIST and isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
              or want == "sequence of ClaimSpec" and isinstance(v, (list, tuple)))
        if not ok:
            shown = " or ".join(map(repr, want)) if isinstance(want, tuple) else getattr(want, "__name__", want)
            raise ValueError(f"{kind} {name!r}: metadata {k!r} must be {shown}; got {v!r}")


def _same_definition(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are one definition executed twice because its module ran as a script: one
    of them defined in ``__main__``, the other in another module, from the same source file, line and
    qualified name. That happens when a plugin module runs as a script (``python -m
    alignjax_experiments.atlas``, whose ``__main__`` registers its suite) and is imported again as a
    plugin; the later registration then replaces the earlier instead of failing. Two definitions in
    one module (a copy-pasted ``def``, two closures of one factory) and a built-in's own object
    registered again stay duplicates."""
    import inspect

    mods = {getattr(a, "__module__", None), getattr(b, "__module__", None)}
    if "__main__" not in mods or len(mods) != 2:
        return False
    try:
        fa, fb = inspect.getsourcefile(a), inspect.getsourcefile(b)
    except TypeError:
        return False
    la, lb = getattr(getattr(a, "__code__", None), "co_firstlineno", None), getattr(getattr(b, "__code__", None), "co_firstlineno", None)
    return (fa is not None and fa == fb and la is not None and la == lb
            and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None))


class Registry(Generic[T]):
    """A mapping from names to registered objects of one kind (e.g. "loss").

    ``naming``: a key of :data:`NAMING`, the rule every registered name must follow (``None``: any name).
    """

    def __init__(self, kind: str, naming: str | None = None):
        if naming is not None and naming not in NAMING:
            raise ValueError(f"unknown naming rule {naming!r}; known: {', '.join(NAMING)}")
        self.kind = kind
        self.naming = naming
        self._entries: dict[str, Entry[T]] = {}

    def check_name(self, name: str) -> None:
        """Raise ``ValueError`` unless ``name`` follows the registry's naming rule (:data:`NAMING`)."""
        if not isinstance(name, str):
            raise TypeError(f"a {self.kind} name must be a str; got {name!r}")
        if self.naming is not None and not re.fullmatch(NAMING[self.naming][0], name):
            raise ValueError(f"{self.kind} name {name!r} breaks the naming rule: {self.kind} names are "
                             f"{NAMING[self.naming][1]}")

    def register(
        self,
        name: str,
        obj: T | None = None,
        *,
        hparams: Mapping[str, float | Domain] | None = None,
        meta: dict[str, Any] | None = None,
        static: dict[str, Any] | None = None,
        conditions: Sequence[Condition] = (),
        replace: bool = False,
    ) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable directly or as a decorator.

        ``hparams`` maps each continuous hyperparameter to its default (a float: the domain is
        inferred, :meth:`alignjax.domains.Domain.from_default`) or to a :class:`~alignjax.domains.Domain`
        (whose ``default`` is the default); ``conditions`` are cross-hyperparameter
        :class:`~alignjax.domains.Condition` objects, which the defaults must satisfy.

        Raises:
          ValueError: if ``name`` is already registered and ``replace`` is False, breaks the
            registry's naming rule (:data:`NAMING`), or the defaults break a declared condition.
          TypeError: a hyperparameter declared by something else than a number or a ``Domain``.
        """

        self.check_name(name)

        def _add(o: T) -> T:
            if name in self._entries and not replace and not _same_definition(self._entries[name].obj, o):
                raise ValueError(f"{self.kind} {name!r} is already registered")
            for k, v in (static or {}).items():
                if isinstance(v, float) or not isinstance(v, (bool, int, str)):
                    raise TypeError(f"{self.kind} {name!r}: static {k!r} must be an int, bool or str; got {v!r}")
            both = set(hparams or {}) & set(static or {})
            if both:
                raise ValueError(f"{self.kind} {name!r}: names both static and continuous: {sorted(both)}")
            defaults, domains = {}, {}
            for k, v in (hparams or {}).items():
                if isinstance(v, Domain):
                    defaults[k], domains[k] = v.default, v
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    defaults[k], domains[k] = v, Domain.from_default(v)
                else:
                    raise TypeError(f"{self.kind} {name!r}: hyperparameter {k!r} must be a float default or a "
                                    f"Domain; got {v!r}")
            check_meta(self.kind, name, meta or {})
            entry = Entry(name, o, defaults, dict(meta or {}), dict(static or {}), domains, tuple(conditions))
            try:
                entry.check_values(defaults)
            except (KeyError, ValueError) as e:
                raise ValueError(f"{self.kind} {name!r}: its defaults break a declared condition: {e}") from None
            self._entries[name] = entry
            return o

        return _add(obj) if obj is not None else _add

    def entry(self, name: str, *, plugins: bool = True) -> Entry[T]:
        """The :class:`Entry` for ``name``; ``ValueError`` listing the known names if unknown.

        ``plugins=False`` looks only at what is registered so far, without :func:`load_plugins`: for
        a library module that reads a built-in entry while it is being imported (importing the
        plugins then would import modules that import it, half-initialised)."""
        if plugins:
            load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise ValueError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def get(self, name: str) -> T:
        """The object registered as ``name`` (``ValueError`` if unknown)."""
        return self.entry(name).obj

    def __getitem__(self, name: str) -> T:
        """``registry[name]``: the object registered as ``name`` (``KeyError`` if unknown)."""
        try:
            return self.entry(name).obj
        except ValueError as e:
            raise KeyError(str(e)) from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        load_plugins()
        return iter([self._entries[n] for n in sorted(self._entries)])


LOSSES: Registry = Registry("loss", naming="snake_case")
DYNAMICS: Registry = Registry("dynamics", naming="kebab-case")
EXPERIMENTS: Registry = Registry("experiment", naming="kebab-case")
SUITES: Registry = Registry("suite", naming="kebab-case")
TRAINERS: Registry = Registry("trainer", naming="kebab-case")  # offline/online/hybrid fine-tuning trainers (rlhf, dpo, hypo, ...)
GAME_LOSSES: Registry = Registry("game loss", naming="snake_case")  # per-prompt losses of the sampled dynamics

# The repository's experiments/ folder, installed under this name (see pyproject.toml): a
# generic top-level "experiments" could be another project's folder in the current directory.
EXPERIMENTS_PACKAGE = "alignjax_experiments"
# Library modules whose import registers entries (the math floor), then the experiments. Every library
# module that registers an entry is named here, so that no plugin's import registers a built-in entry
# (a failed plugin's entries are undone whole: see load_plugins).
_BUILTIN_MODULES = ("alignjax.losses", "alignjax.dynamics", "alignjax.hypo", "alignjax.rlhf", "alignjax.maxmin",
                    "alignjax.preference_model")
_loaded = False
_BROKEN: dict[str, str] = {}  # file (or module name) of a plugin that failed to import -> "ErrorType: message"


def broken_plugins() -> dict[str, str]:
    """``{file: "ErrorType: message"}`` of every plugin module that failed to import (see
    :func:`load_plugins`); empty when every one imported."""
    load_plugins()
    return dict(_BROKEN)


def load_plugins() -> None:
    """Import every module that registers entries (idempotent).

    Order: the library's own modules, every module of the repository's ``experiments/``
    folder (installed as the package ``alignjax_experiments``; one file per experiment or
    suite, discovered by listing the package), then
    modules named in the ``alignjax.experiments`` entry-point group of installed packages, then
    the modules named in the environment variable ``ALIGNJAX_PLUGINS`` (comma-separated: dotted
    names importable from ``sys.path``, or paths of ``.py`` files, imported as
    ``alignjax_plugin_STEM``). The variable is inherited by subprocesses, so a command started from
    a test or a script registers the same entries; a file path does not depend on their
    ``PYTHONPATH``.

    **Isolation.** A plugin (an ``experiments/`` module, an entry point or an ``ALIGNJAX_PLUGINS``
    item) that fails to import, a syntax error included, does not stop the others: it is reported
    on stderr in one line, ``alignjax: warning: plugin FILE failed to import: ErrorType: message``,
    listed by :func:`broken_plugins` (``alignjax list`` marks it broken), and contributes nothing:
    the entries it registered before failing are removed, with the plugin modules it imported
    (so that a later import registers them afresh). The library's own modules are not plugins: their
    failure raises.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a module not written yet
            if e.name != mod:
                raise
    try:
        pkg = importlib.import_module(EXPERIMENTS_PACKAGE)
    except ModuleNotFoundError as e:
        if e.name != EXPERIMENTS_PACKAGE:
            raise
        pkg = None
    if pkg is not None and hasattr(pkg, "__path__"):
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                name = f"{EXPERIMENTS_PACKAGE}.{info.name}"
                _isolated(os.path.join(getattr(info.module_finder, "path", ""), info.name + ".py"),
                          lambda name=name: importlib.import_module(name))
    for ep in importlib.metadata.entry_points(group="alignjax.experiments"):
        _isolated(_file_of(ep.value.split(":", 1)[0].strip()), ep.load)
    for spec in filter(None, (m.strip() for m in os.environ.get("ALIGNJAX_PLUGINS", "").split(","))):
        _isolated(os.path.abspath(spec) if spec.endswith(".py") else _file_of(spec), lambda spec=spec: _import_plugin(spec))


_REGISTRIES = (LOSSES, DYNAMICS, EXPERIMENTS, SUITES, TRAINERS, GAME_LOSSES)


def _file_of(module: str) -> str:
    """The file a dotted module name would be imported from (the name itself if it cannot be found)."""
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # noqa: BLE001 (a broken parent package: the name is all there is to report)
        spec = None
    return spec.origin if spec is not None and spec.origin else module


def _isolated(file: str, load: Callable[[], Any]) -> None:
    """Run ``load`` (one plugin's import); on failure undo what it registered and imported, record it in
    :func:`broken_plugins` and warn in one line naming ``file``."""
    before = [dict(r._entries) for r in _REGISTRIES]
    modules = set(sys.modules)
    try:
        load()
    except (Exception, SystemExit) as e:  # noqa: BLE001 (a SyntaxError too: any failure of a plugin is isolated)
        for r, entries in zip(_REGISTRIES, before):
            r._entries.clear()
            r._entries.update(entries)
        for m in set(sys.modules) - modules:
            if m.startswith((EXPERIMENTS_PACKAGE + ".", "alignjax_plugin_")):
                sys.modules.pop(m, None)
        message = " ".join(f"{type(e).__name__}: {e}".split())
        _BROKEN[file] = message
        print(f"alignjax: warning: plugin {file} failed to import: {message}", file=sys.stderr)


def _import_plugin(spec: str) -> None:
    """Import one ``ALIGNJAX_PLUGINS`` item: a dotted module name, or a ``.py`` file's path."""
    if not spec.endswith(".py"):
        importlib.import_module(spec)
        return
    path = os.path.abspath(spec)
    name = "alignjax_plugin_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    if name in sys.modules:
        return
    found = importlib.util.spec_from_file_location(name, path) if os.path.isfile(path) else None
    if found is None or found.loader is None:
        raise ImportError(f"ALIGNJAX_PLUGINS names {spec!r}, which is not a readable .py file")
    module = importlib.util.module_from_spec(found)
    sys.modules[name] = module
    try:
        found.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
