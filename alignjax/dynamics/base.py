"""Common types of the exact tabular game dynamics and the batched runner :func:`simulate`.

An exact dynamic is an optax-like pair of pure functions on log-probabilities::

    dyn = DYNAMICS.get("egpo")                       # an ExactDynamics
    state = dyn.init(log_pi0, P, log_pi_ref, beta, eta)
    state = dyn.update(state, P, log_pi_ref, beta, eta)
    pi = jnp.exp(state.log_pi)

``P (..., N, N)``, ``log_pi0, log_pi_ref (..., N)``, ``beta, eta (...)`` arrays (leading axes
broadcast). The updates use the antisymmetric part ``A = (P - P^T)/2`` of ``P``: on the
simplex ``P @ pi = A @ pi + 1/2`` and the constant disappears in the normalisation
(``+ c`` below), so every rule reads the same with ``P`` or ``A``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from alignjax.prefs import check_preference_matrix
from alignjax.registry import DYNAMICS

__all__ = ["ExactState", "ExactDynamics", "simulate", "exact_names", "check_hparams"]


class ExactState(NamedTuple):
    """State of an exact dynamic.

    Attributes:
      log_pi: ``(..., N)`` the current iterate ``log pi_t`` (normalised).
      t: ``(...)`` int32 number of updates done.
      extra: algorithm-specific pytree (previous payoff for OMWU, magnet for MPO, average
        iterate for MWU, fitted reward for BT-RLHF; ``()`` otherwise).
    """

    log_pi: jax.Array
    t: jax.Array
    extra: Any = ()


class ExactDynamics(NamedTuple):
    """``init(log_pi0, P, log_pi_ref, beta, eta) -> state``; ``update(state, P, log_pi_ref, beta, eta) -> state``."""

    init: Callable[..., ExactState]
    update: Callable[..., ExactState]


def antisym(P: jax.Array) -> jax.Array:
    """``A = (P - P^T)/2`` (exactly antisymmetric)."""
    return 0.5 * (P - jnp.swapaxes(P, -1, -2))


def payoff(P: jax.Array, log_pi: jax.Array) -> jax.Array:
    """``A @ pi`` (``= P @ pi - 1/2``) for ``pi = exp(log_pi)``; ``(..., N)``."""
    return jnp.matmul(antisym(P), jnp.exp(log_pi)[..., None])[..., 0]


def exact_names() -> list[str]:
    """Names of the registered exact dynamics."""
    return [e.name for e in DYNAMICS if e.meta.get("kind") == "exact"]


def _generic_check(name, meta):
    """Fallback for an exact entry without ``meta["check"]``: ``beta >= 0`` (``> 0`` if
    ``meta["needs_positive_beta"]``) and ``eta > 0``."""
    positive = bool(meta.get("needs_positive_beta"))

    def check(beta, eta, dtype):
        if not np.all(beta > 0 if positive else beta >= 0):
            raise ValueError(f"{name} needs beta {'> 0' if positive else '>= 0'}; got beta = {float(np.min(beta)):g}")
        if not np.all(eta > 0):
            raise ValueError(f"{name} needs eta > 0; got eta = {float(np.min(eta)):g}")

    return check


def check_hparams(name: str, beta: ArrayLike, eta: ArrayLike, dtype: Any = None) -> None:
    """Raise a one-line ``ValueError`` unless ``(beta, eta)`` satisfy exact dynamic ``name``'s condition.

    Generic part: every entry of ``beta`` and ``eta`` is finite, stays finite when cast to
    ``dtype`` (default: JAX's default float, float32 unless x64 is enabled) and, unless the
    dynamic ignores it (``meta["ignores"]``), is not a non-zero value that becomes 0 or
    subnormal there (XLA flushes subnormals to 0, so ``0 / beta`` would be NaN).
    Then the entry's own ``meta["check"](beta, eta, dtype)`` runs on the cast values (float64
    arrays), e.g. ``eta * beta <= 1`` for omd, nash-md, egpo and omwu (the condition of each
    rule is derived in :mod:`alignjax.dynamics.exact`). Arrays broadcast against each other
    (one value per configuration of a sweep).
    """
    if name not in exact_names():
        raise ValueError(f"unknown exact dynamic {name!r}; known: {', '.join(exact_names())}")
    meta = DYNAMICS.entry(name).meta
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.float64) if dtype is None else dtype)
    ignores = set(meta.get("ignores", ()))
    cast = {}
    for label, v in (("beta", beta), ("eta", eta)):
        a = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{label} must be finite for {name!r}; got {_first_bad(a, ~np.isfinite(a))}")
        with np.errstate(over="ignore", under="ignore"):
            c = a.astype(dtype)
        if not np.all(np.isfinite(c)):
            raise ValueError(f"{label} = {_first_bad(a, ~np.isfinite(c))} overflows {dtype.name} for {name!r}")
        tiny = (a != 0) & (np.abs(c) < np.finfo(dtype).tiny)  # 0 or subnormal: XLA flushes subnormals to 0
        if label not in ignores and np.any(tiny):
            raise ValueError(f"{label} = {_first_bad(a, tiny)} underflows in {dtype.name} for {name!r} "
                             f"(below the smallest normal {np.finfo(dtype).tiny:.3g}, flushed to 0)")
        cast[label] = c.astype(np.float64)
    check = meta.get("check") or _generic_check(name, meta)
    check(cast["beta"], cast["eta"], dtype)


def _first_bad(a, bad):
    return f"{float(a[bad].ravel()[0]):g}"


def _validate(name, P, pi_ref, pi0, beta, eta, num_steps, log_every, dtype):
    if name not in exact_names():
        raise ValueError(f"unknown exact dynamic {name!r}; known: {', '.join(exact_names())}")
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
    check_hparams(name, beta, eta, dtype)
    if int(num_steps) != num_steps or num_steps < 0:
        raise ValueError(f"num_steps must be an integer >= 0; got {num_steps!r}")
    if int(log_every) != log_every or log_every < 1 or num_steps % log_every:
        raise ValueError(f"log_every must be a positive integer dividing num_steps={num_steps}; got {log_every!r}")


@partial(jax.jit, static_argnames=("name", "num_steps", "log_every", "average", "shared_P"))
def _run(P, log_ref, log_pi0, beta, eta, *, name, num_steps, log_every, average, shared_P=False):
    dyn: ExactDynamics = DYNAMICS.get(name)

    def one(P, lr, lp0, b, e):
        s0 = dyn.init(lp0, P, lr, b, e)
        avg0 = jnp.exp(s0.log_pi)

        def inner(carry, _):
            s, avg = carry
            s = dyn.update(s, P, lr, b, e)
            if average:  # uniform average of pi_0 .. pi_t
                avg = avg + (jnp.exp(s.log_pi) - avg) / (s.t + 1).astype(avg.dtype)
            return (s, avg), None

        def outer(carry, _):
            carry, _ = jax.lax.scan(inner, carry, None, length=log_every)
            s, avg = carry
            return carry, (avg if average else jnp.exp(s.log_pi))

        _, logged = jax.lax.scan(outer, (s0, avg0), None, length=num_steps // log_every)
        return jnp.concatenate([avg0[None], logged], axis=0)

    # a single game shared by every config stays unbatched: the vmapped mat-vecs become one mat-mat
    return jax.vmap(one, in_axes=(None if shared_P else 0, 0, 0, 0, 0))(P, log_ref, log_pi0, beta, eta)


def simulate(name: str, P: ArrayLike, pi_ref: ArrayLike, *, beta: ArrayLike, eta: ArrayLike, num_steps: int,
             log_every: int = 1, pi0: ArrayLike | None = None, average: bool = False) -> jax.Array:
    """Run an exact dynamic for ``num_steps`` updates; policies at every logged step.

    One ``jit(vmap(scan))`` program per (name, shapes, num_steps, log_every): leading axes of
    ``P (..., N, N)``, ``pi_ref (..., N)``, ``pi0`` and of the array-valued ``beta``/``eta``
    are broadcast to one batch shape and vmapped (so a sweep over games x betas x etas is one
    compile). Inputs are validated on concrete values before any compute.

    Args:
      name: a registered exact dynamic (``DYNAMICS`` entry with ``meta["kind"] == "exact"``).
      P: preference matrices; pi_ref: reference policies (> 0); pi0: initial policies
        (default ``pi_ref``).
      beta: KL coefficients; eta: step sizes. Both must satisfy the dynamic's condition
        (:func:`check_hparams` on the values cast to the run's dtype), e.g. ``beta >= 0``,
        ``eta > 0`` and ``eta * beta <= 1`` for omd, nash-md, egpo and omwu.
      num_steps: number of updates (static); log_every: logging period, divides num_steps.
      average: return the running uniform average ``(1/(t+1)) sum_{s<=t} pi_s`` instead of
        the last iterate ``pi_t``.

    Returns:
      ``(*batch, num_steps // log_every + 1, N)`` probabilities at steps
      ``0, log_every, ..., num_steps``.

    Raises:
      ValueError: unknown name, invalid ``P``/``pi_ref``/``pi0``, ``beta``/``eta`` violating the
        dynamic's condition (:func:`check_hparams`), or ``log_every`` not dividing ``num_steps``.
    """
    dtype = jnp.result_type(P, pi_ref, pi_ref if pi0 is None else pi0, beta, eta, jnp.float32)
    _validate(name, P, pi_ref, pi0, beta, eta, num_steps, log_every, dtype)
    P = jnp.asarray(P)
    pi_ref = jnp.asarray(pi_ref)
    pi0 = pi_ref if pi0 is None else jnp.asarray(pi0)
    beta, eta = jnp.asarray(beta), jnp.asarray(eta)
    n = P.shape[-1]
    batch = jnp.broadcast_shapes(P.shape[:-2], pi_ref.shape[:-1], pi0.shape[:-1], beta.shape, eta.shape)
    size = int(np.prod(batch, dtype=np.int64))
    flat = lambda x, tail: jnp.broadcast_to(x.astype(dtype), (*batch, *tail)).reshape(size, *tail)
    shared = P.ndim == 2  # one game for the whole batch: not copied per config
    out = _run(P.astype(dtype) if shared else flat(P, (n, n)), jnp.log(flat(pi_ref, (n,))), jnp.log(flat(pi0, (n,))),
               flat(beta, ()), flat(eta, ()), name=name, num_steps=int(num_steps), log_every=int(log_every),
               average=bool(average), shared_P=shared)
    return out.reshape(*batch, out.shape[-2], n)
