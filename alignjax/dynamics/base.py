"""Common types of the exact tabular game dynamics, their validation, and :func:`simulate`.

An exact dynamic is an optax-like pair of pure functions on log-probabilities whose continuous
hyperparameters arrive as one mapping of array leaves (the names its registry entry declares)::

    dyn = exact_dynamics("mpo", reset_every=20)          # static knobs are factory arguments
    hp = {"beta": jnp.asarray(0.1), "eta": jnp.asarray(0.4)}
    state = dyn.init(log_pi0, P, log_pi_ref, hp)
    state = dyn.update(state, P, log_pi_ref, hp)
    pi = jnp.exp(state.log_pi)

``P (..., N, N)``, ``log_pi0, log_pi_ref (..., N)``, ``hp[k] (...)`` arrays (leading axes
broadcast). The updates use the antisymmetric part ``A = (P - P^T)/2`` of ``P``: on the
simplex ``P @ pi = A @ pi + 1/2`` and the constant disappears in the normalisation
(``+ c`` below), so every rule reads the same with ``P`` or ``A``.

A research fork adds a rule by registering a factory (see ``docs/extending.md``)::

    @DYNAMICS.register("damped-omd", hparams={"beta": 0.1, "eta": 0.4, "damping": 0.5},
                       meta={"kind": "exact"})
    def damped_omd() -> ExactDynamics: ...

and every declared hyperparameter can then be set and swept from the CLI
(``alignjax run nash-dynamics --set algorithm=damped-omd --sweep damped-omd.damping=0,0.5,0.9``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from alignjax.games import antisym
from alignjax.prefs import check_preference_matrix
from alignjax.registry import DYNAMICS

__all__ = ["ExactState", "ExactDynamics", "simulate", "exact_names", "exact_dynamics", "checked", "check_hparams",
           "check_static", "payoff"]


class ExactState(NamedTuple):
    """State of an exact dynamic.

    Attributes:
      log_pi: ``(..., N)`` the current iterate ``log pi_t`` (normalised).
      t: ``(...)`` int32 number of updates done.
      extra: the rule's **memory**: whatever it carries from one update to the next, any pytree of
        arrays (previous payoff ``A pi_{t-1}`` for OMWU, magnet ``log m`` for MPO, average iterate for
        MWU, fitted reward for BT-RLHF; ``()`` for a rule without memory). ``init`` sets it and
        every ``update`` must return the same structure, shapes and dtypes (it is a ``lax.scan``
        carry, vmapped over a sweep's rows); :func:`alignjax.dynamics.exact.exact_rule` threads it.
    """

    log_pi: jax.Array
    t: jax.Array
    extra: Any = ()


class ExactDynamics(NamedTuple):
    """``init(log_pi0, P, log_pi_ref, hparams) -> state``; ``update(state, P, log_pi_ref, hparams) -> state``.

    ``hparams`` maps each hyperparameter the entry declares to an array (broadcast against the
    leading axes); extra keys are ignored.
    """

    init: Callable[..., ExactState]
    update: Callable[..., ExactState]


def payoff(P: jax.Array, log_pi: jax.Array) -> jax.Array:
    """The payoff of every response against ``pi``: ``A @ pi`` with ``A = (P - P^T)/2`` (``= P @ pi - 1/2``
    on the simplex), ``pi = exp(log_pi)``. ``P (..., N, N)``, ``log_pi (..., N)``; returns ``(..., N)``."""
    return jnp.matmul(antisym(P), jnp.exp(log_pi)[..., None])[..., 0]


def exact_names() -> list[str]:
    """Names of the registered exact dynamics."""
    return [e.name for e in DYNAMICS if e.meta.get("kind") == "exact"]


def _exact_entry(name: str):
    if name not in exact_names():
        raise ValueError(f"unknown exact dynamic {name!r}; known: {', '.join(exact_names())}")
    return DYNAMICS.entry(name)


def check_static(name: str, static: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The static knobs of exact dynamic ``name``: its declared defaults updated by ``static``.

    Raises a one-line ``ValueError`` for an unknown knob, a value of another type than the
    default's, or one the entry's ``meta["check_static"](**knobs)`` refuses.
    """
    entry = _exact_entry(name)
    knobs = dict(entry.static)
    for k, v in (static or {}).items():
        if k not in knobs:
            known = ", ".join(sorted(knobs)) or "none"
            raise ValueError(f"{name} has no static setting {k!r}; its static settings: {known}")
        if type(v) is not type(knobs[k]):
            raise ValueError(f"{name}: {k} must be a {type(knobs[k]).__name__}; got {v!r}")
        knobs[k] = v
    if entry.meta.get("check_static") is not None:
        entry.meta["check_static"](**knobs)
    return knobs


def exact_dynamics(name: str, **static: Any) -> ExactDynamics:
    """Build the registered exact dynamic ``name`` with its static knobs (defaults: the entry's).

    Example: ``exact_dynamics("mpo", reset_every=20)``. Raises ``ValueError`` for an unknown
    name or knob (:func:`check_static`). The result checks its arguments and its state at trace
    time (:func:`checked`).
    """
    return checked(name, DYNAMICS.get(name)(**check_static(name, static)))


def checked(name: str, dyn: ExactDynamics) -> ExactDynamics:
    """``dyn`` with trace-time shape and dtype checks (chex; nothing runs per step under ``jit``).

    With ``N`` the number of responses: ``P`` is a floating ``(..., N, N)`` array, ``log_pi_ref``
    and the iterate ``log pi`` floating ``(..., N)``; ``init`` returns a state whose ``log_pi``
    has ``log_pi0``'s shape and dtype, and ``update`` returns a state with exactly the structure,
    shapes and dtypes of the state it was given (the state is a ``lax.scan`` carry: a rule that
    broadcasts its iterate against another axis, or promotes it to float64, fails here with the
    dynamic's name instead of deep inside the scan). An ``AssertionError`` names ``name``.
    """
    def game(where, P, log_pi_ref, log_pi):
        try:
            chex.assert_rank(P, set(range(2, max(np.ndim(P), 2) + 1)))
            chex.assert_axis_dimension(P, -2, np.shape(P)[-1])
            for v in (log_pi_ref, log_pi):
                chex.assert_rank(v, set(range(1, max(np.ndim(v), 1) + 1)))
                chex.assert_axis_dimension(v, -1, np.shape(P)[-1])
            chex.assert_type([P, log_pi_ref, log_pi], float)
        except AssertionError as e:
            raise AssertionError(f"exact dynamic {name!r}, {where}: {e}") from None

    def init(log_pi0, P, log_pi_ref, hparams):
        game("init", P, log_pi_ref, log_pi0)
        s = dyn.init(log_pi0, P, log_pi_ref, hparams)
        try:
            chex.assert_equal_shape([s.log_pi, log_pi0])
            chex.assert_trees_all_equal_dtypes(s.log_pi, log_pi0)
        except AssertionError as e:
            raise AssertionError(f"exact dynamic {name!r}, init: the state's log_pi must keep log_pi0's shape and "
                                 f"dtype: {e}") from None
        return s

    def update(state, P, log_pi_ref, hparams):
        game("update", P, log_pi_ref, state.log_pi)
        new = dyn.update(state, P, log_pi_ref, hparams)
        try:
            chex.assert_trees_all_equal_structs(new, state)
            chex.assert_trees_all_equal_shapes_and_dtypes(new, state)
        except (AssertionError, ValueError) as e:
            raise AssertionError(f"exact dynamic {name!r}, update: the new state must have the structure, shapes and "
                                 f"dtypes of the old one (it is a scan carry): {e}") from None
        return new

    return ExactDynamics(init, update)


def check_hparams(name: str, hparams: Mapping[str, ArrayLike], dtype: Any = None) -> None:
    """Raise a one-line ``ValueError`` unless ``hparams`` satisfy exact dynamic ``name``'s conditions.

    Every hyperparameter the entry declares must be present (extra keys are ignored). Generic
    part: every entry is finite, stays finite when cast to ``dtype`` (default: JAX's default
    float, float32 unless x64 is enabled) and is not a non-zero value that becomes 0 or
    subnormal there (XLA flushes subnormals to 0, so ``0 / beta`` would be NaN). Then the
    entry's declared domains and conditions (:meth:`alignjax.registry.Entry.check_values`, e.g.
    ``beta`` in ``[0, inf)``, ``eta * beta <= 1``), then its own ``meta["check"](hp, dtype)``, run
    on the cast values (float64 arrays; an ``AssertionError`` it raises becomes the one-line ``ValueError``), e.g.
    ``eta * beta <= 1`` for omd, nash-md, egpo and omwu (the condition of each rule is derived
    in :mod:`alignjax.dynamics.exact`); without one, nothing more is required. Arrays broadcast
    against each other (one value per configuration of a sweep).
    """
    entry = _exact_entry(name)
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.float64) if dtype is None else dtype)
    missing = [k for k in entry.hparams if k not in hparams]
    if missing:
        raise ValueError(f"{name} needs the hyperparameters {sorted(entry.hparams)}; missing {missing}")
    cast = {}
    for label in entry.hparams:
        a = np.asarray(hparams[label], dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{label} must be finite for {name!r}; got {_first_bad(a, ~np.isfinite(a))}")
        with np.errstate(over="ignore", under="ignore"):
            c = a.astype(dtype)
        if not np.all(np.isfinite(c)):
            raise ValueError(f"{label} = {_first_bad(a, ~np.isfinite(c))} overflows {dtype.name} for {name!r}")
        tiny = (a != 0) & (np.abs(c) < np.finfo(dtype).tiny)  # 0 or subnormal: XLA flushes subnormals to 0
        if np.any(tiny):
            raise ValueError(f"{label} = {_first_bad(a, tiny)} underflows in {dtype.name} for {name!r} "
                             f"(below the smallest normal {np.finfo(dtype).tiny:.3g}, flushed to 0)")
        cast[label] = c.astype(np.float64)
    entry.check_values(cast)  # the declared domains and conditions (alignjax.domains)
    if entry.meta.get("check") is not None:
        try:
            entry.meta["check"](cast, dtype)
        except AssertionError as e:  # a fork's check written with assert: still a refusal of the values, in one line
            why = " ".join(str(e).split()) or "an assert failed"
            raise ValueError(f"{name}'s check refuses these hyperparameters: {why} (a check should raise a one-line "
                             "ValueError)") from None


def _first_bad(a, bad):
    return f"{float(a[bad].ravel()[0]):g}"


def _validate(name, P, pi_ref, pi0, hparams, num_steps, log_every, dtype):
    _exact_entry(name)
    check_preference_matrix(P)
    n = np.shape(P)[-1]
    for label, v in (("pi_ref", pi_ref), ("pi0", pi0)):
        if v is None:
            continue
        a = np.asarray(v, dtype=np.float64)
        if a.ndim < 1 or a.shape[-1] != n:
            raise ValueError(f"{label} must have shape (..., {n}); got {a.shape}")
        if not np.all(np.isfinite(a)) or a.min() <= 0:
            raise ValueError(f"{label} must be finite and > 0 everywhere; got min {a.min():.3g}")
        if a.min() < np.finfo(dtype).tiny:  # subnormal: flushed to 0 by XLA, log -> -inf
            raise ValueError(f"{label} must be >= {np.finfo(dtype).tiny:.3g} (the smallest normal "
                             f"{np.dtype(dtype).name}); got min {a.min():.3g}")
        if np.max(np.abs(a.sum(-1) - 1)) > 1e-4:
            raise ValueError(f"{label} must sum to 1 over its last axis; got sums in [{a.sum(-1).min():.6g}, {a.sum(-1).max():.6g}]")
    check_hparams(name, hparams, dtype)
    if int(num_steps) != num_steps or num_steps < 0:
        raise ValueError(f"num_steps must be an integer >= 0; got {num_steps!r}")
    if int(log_every) != log_every or log_every < 1 or (num_steps and num_steps % log_every):
        raise ValueError(f"log_every must be a positive integer dividing num_steps={num_steps}; got {log_every!r}")


@functools.lru_cache(maxsize=16)
def _runner(program, num_steps: int, log_every: int, block: int):
    """The engine's compiled runner of one :func:`_program` at these sizes: kept, so that simulating
    the same dynamic again (new games, new values, same shapes) compiles nothing."""
    from alignjax.runner import compile_sweep

    return compile_sweep(program, num_steps=num_steps, log_every=log_every, block_size=block)


@functools.lru_cache(maxsize=64)
def _program(name: str, factory: Callable[..., ExactDynamics], static: tuple, names: tuple, average: bool):
    """The engine :class:`~alignjax.experiment.Program` of one simulated row: the row's game,
    reference, start and hyperparameters arrive as leaves of its ``hparams`` (see :func:`simulate`).
    One object per (registered factory, knobs, names, average), so the engine reuses its
    compiled sweep (a factory registered anew under the same name gets a new program)."""
    from alignjax.experiment import Program

    dyn = checked(name, factory(**dict(static)))

    def hp_of(h):
        return {k: h[k] for k in names}

    def game(h):
        return h["__P"]

    def init(h, key):
        s = dyn.init(h["__log_pi0"], game(h), h["__log_ref"], hp_of(h))
        return s, jnp.exp(s.log_pi)

    def step(state, h):
        s, avg = state
        s = dyn.update(s, game(h), h["__log_ref"], hp_of(h))
        if average:  # uniform average of pi_0 .. pi_t, written with a reciprocal (device-count invariance)
            avg = avg + (jnp.exp(s.log_pi) - avg) * (1.0 / (s.t + 1).astype(avg.dtype))
        return s, avg

    def observe(state, h):
        s, avg = state
        return {"pi": avg if average else jnp.exp(s.log_pi)}

    return Program(init, step, observe)


def simulate(name: str, P: ArrayLike, pi_ref: ArrayLike, *, beta: ArrayLike | None = None,
             eta: ArrayLike | None = None, hparams: Mapping[str, ArrayLike] | None = None,
             static: Mapping[str, Any] | None = None, num_steps: int, log_every: int = 1,
             pi0: ArrayLike | None = None, average: bool = False) -> jax.Array:
    """Run an exact dynamic for ``num_steps`` updates; policies at every logged step.

    A convenience for notebooks over the engine: every combination of the leading axes of
    ``P (..., N, N)``, ``pi_ref (..., N)``, ``pi0`` and the array-valued hyperparameters is
    one row of :func:`alignjax.sweep.run_sweep` (its game, reference, start and
    hyperparameters are the row's leaves), so a sweep over games x betas x etas is one compile,
    sharded over ``jax.devices()`` with results independent of the device count. Inputs are
    validated on concrete values before any compute.

    Args:
      name: a registered exact dynamic (``DYNAMICS`` entry with ``meta["kind"] == "exact"``).
      P: preference matrices; pi_ref: reference policies (> 0); pi0: initial policies
        (default ``pi_ref``).
      beta, eta: shorthands for ``hparams["beta"]``, ``hparams["eta"]``.
      hparams: the dynamic's hyperparameters (every name its entry declares, e.g. ``beta`` and
        ``eta``; a fork's ``damping``). They must satisfy the dynamic's condition
        (:func:`check_hparams`, on the values cast to the run's dtype), e.g. ``beta >= 0``,
        ``eta > 0`` and ``eta * beta <= 1`` for omd, nash-md, egpo and omwu; names the dynamic
        does not declare are not used (their shapes still join the batch).
      static: the dynamic's static knobs (e.g. ``{"reset_every": 20}`` for mpo).
      num_steps: number of updates (static); log_every: logging period, divides num_steps.
      average: return the running uniform average ``(1/(t+1)) sum_{s<=t} pi_s`` instead of
        the last iterate ``pi_t``.

    Returns:
      ``(*batch, num_steps // log_every + 1, N)`` probabilities at steps
      ``0, log_every, ..., num_steps``.

    Raises:
      ValueError: unknown name or knob, invalid ``P``/``pi_ref``/``pi0``, hyperparameters
        violating the dynamic's condition, or ``log_every`` not dividing ``num_steps``.
    """
    from alignjax.runner import RunPolicy
    from alignjax.sweep import Grid, default_block_size

    hp_in = dict(hparams or {})
    for k, v in (("beta", beta), ("eta", eta)):
        if v is not None:
            hp_in[k] = v
    entry = _exact_entry(name)
    shapes = [np.shape(v) for v in hp_in.values()]  # undeclared names still shape the batch
    hp_in = {k: v for k, v in hp_in.items() if k in entry.hparams}
    dtype = jnp.result_type(P, pi_ref, pi_ref if pi0 is None else pi0, *hp_in.values(), jnp.float32)
    _validate(name, P, pi_ref, pi0, hp_in, num_steps, log_every, dtype)
    knobs = tuple(sorted(check_static(name, dict(static or {})).items()))
    P64 = np.asarray(P, np.float64)
    ref = np.asarray(pi_ref, np.float64)
    start = ref if pi0 is None else np.asarray(pi0, np.float64)
    hp64 = {k: np.asarray(v, np.float64) for k, v in hp_in.items()}
    n = P64.shape[-1]
    batch = np.broadcast_shapes(P64.shape[:-2], ref.shape[:-1], start.shape[:-1], *shapes)
    size = int(np.prod(batch, dtype=np.int64))
    flat = lambda x, tail: np.broadcast_to(x, (*batch, *tail)).reshape(size, *tail)
    # one game for every row: shared (replicated), not copied per row (a 1000 x 1000 game swept
    # over 1024 configs would otherwise take 4 GB)
    shared = {"__P": P64.astype(dtype)} if P64.ndim == 2 else {}
    with np.errstate(divide="ignore"):
        leaves = {"__log_ref": np.log(flat(ref, (n,))), "__log_pi0": np.log(flat(start, (n,))),
                  **{k: flat(v, ()) for k, v in hp64.items()}}
        if not shared:
            leaves["__P"] = flat(P64, (n, n))
    leaves = {k: v.astype(dtype) for k, v in leaves.items()}
    program = _program(name, DYNAMICS.get(name), knobs, tuple(hp64), bool(average))
    # vmap blocks of up to 1024 rows (fixed by the batch, so still device-count invariant): with a
    # shared game each step is one (N, N) x (N, rows) product, near the machine's matmul rate
    block = default_block_size(size, cap=1024)
    steps, every = (1, 1) if num_steps == 0 else (int(num_steps), int(log_every))  # 0: the start (init normalises it)
    res = _runner(program, steps, every, block).run(Grid(leaves, (), 1), policy=RunPolicy(), shared=shared)
    out = res.metrics["pi"][:, 0, :1] if num_steps == 0 else res.metrics["pi"][:, 0]
    return jnp.asarray(out.reshape(*batch, out.shape[-2], n))
