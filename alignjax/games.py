"""Closed-form quantities of the (KL-regularised) symmetric preference game.

The game (the project's algorithm spec, §2-3; NLHF, Munos et al., arXiv 2312.00886)::

    J(pi, pi') = P(pi > pi') - beta KL(pi || pi_ref) + beta KL(pi' || pi_ref),
    P(p > q) = p @ P @ q,   KL(p || q) = sum_y p(y) log(p(y) / q(y)).

It is symmetric and constant-sum (``J(pi, pi') + J(pi', pi) = 1``), so its value is 1/2 and
its unique equilibrium ``pi*_beta`` (EGPO's "QRE", Zhou et al.) is a fixed point of
``pi ∝ pi_ref exp(P @ pi / beta)``. With ``beta = 0`` this is the symmetric zero-sum game of
NLHF, whose equilibria are computed by a linear program (:func:`nash`).

Conventions: ``P`` has shape ``(..., N, N)``, policies ``(..., N)`` (probabilities), ``beta``
an array broadcastable to the batch shape ``(...)``; leading axes of every argument are
broadcast against each other. Internally ``P`` enters only through its antisymmetric part
``A = (P - P^T) / 2`` (``= P - 1/2`` for a valid preference matrix, and ``P @ pi = A @ pi + 1/2``
on the simplex): this removes the constant 1/2 before dividing by ``beta`` and keeps the
gaps accurate in float32 (the duality gap below is computed as a Jensen gap, non-negative by
construction, with no ``... - 1`` cancellation).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from alignjax.prefs import check_preference_matrix

__all__ = [
    "win_rate", "kl", "regularized_best_response", "regularized_value", "regularized_gap",
    "exploitability", "fixed_point_residual", "regularized_nash", "RegularizedNash", "ConvergenceWarning",
    "default_tol", "default_max_iter", "nash",
]


def antisym(P: jax.Array) -> jax.Array:
    """``A = (P - P^T)/2``: exactly antisymmetric in floating point (the one home of the
    antisymmetric payoff; ``P @ pi = A @ pi + 1/2`` on the simplex)."""
    return 0.5 * (P - jnp.swapaxes(P, -1, -2))


_antisym = antisym


def _check_game(P: jax.Array, *vecs: jax.Array) -> None:
    """Trace-time checks (chex): ``P`` is a floating ``(..., N, N)`` array, each policy a floating ``(..., N)``
    array with the same ``N``; a mismatch raises ``AssertionError`` naming the shapes or dtypes."""
    chex.assert_rank(P, set(range(2, max(P.ndim, 2) + 1)))  # (..., N, N): rank >= 2
    chex.assert_axis_dimension(P, -2, P.shape[-1])
    for v in vecs:
        chex.assert_rank(v, set(range(1, max(v.ndim, 1) + 1)))
        chex.assert_axis_dimension(v, -1, P.shape[-1])
    chex.assert_type([P, *vecs], float)


def _bcast(P: ArrayLike, *vecs: ArrayLike, scalars: tuple = ()):
    """Broadcast ``P (..., N, N)``, vectors ``(..., N)`` and scalars ``(...)`` to one batch shape."""
    P = jnp.asarray(P)
    vecs = [jnp.asarray(v) for v in vecs]
    scalars = [jnp.asarray(s) for s in scalars]
    _check_game(P, *vecs)
    dtype = jnp.result_type(P, *vecs, *scalars, jnp.float32)
    batch = jnp.broadcast_shapes(P.shape[:-2], *(v.shape[:-1] for v in vecs), *(s.shape for s in scalars))
    n = P.shape[-1]
    P = jnp.broadcast_to(P.astype(dtype), (*batch, n, n))
    vecs = [jnp.broadcast_to(v.astype(dtype), (*batch, n)) for v in vecs]
    scalars = [jnp.broadcast_to(s.astype(dtype), batch) for s in scalars]
    return P, vecs, scalars


def _mv(M: jax.Array, x: jax.Array) -> jax.Array:
    """Batched matrix-vector product ``(M @ x)[..., i] = sum_j M[..., i, j] x[..., j]``."""
    return jnp.matmul(M, x[..., None])[..., 0]


@jax.jit
def win_rate(P: ArrayLike, p: ArrayLike, q: ArrayLike) -> jax.Array:
    """``P(p > q) = sum_{y, y'} p(y) P[y, y'] q(y')``; shapes ``(..., N, N), (..., N), (..., N) -> (...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> print(np.asarray(games.win_rate(P, pi, pi_ref)).round(4))
      0.5033
    """
    P, (p, q), _ = _bcast(P, p, q)
    return jnp.sum(p * _mv(P, q), axis=-1)


@jax.jit
def kl(p: ArrayLike, q: ArrayLike) -> jax.Array:
    """``KL(p || q) = sum_y p(y) log(p(y)/q(y))`` over the last axis (``0 log 0 = 0``; ``inf`` if
    ``q(y) = 0 < p(y)``). Shapes ``(..., N), (..., N) -> (...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> print(np.asarray(games.kl(pi, pi_ref)).round(4))
      0.069
    """
    from alignjax.metrics.coverage import reverse_kl  # the one home of KL (on log-probabilities)

    p, q = jnp.asarray(p), jnp.asarray(q)
    chex.assert_type([p, q], float)
    for v in (p, q):  # (..., N) each; leading axes broadcast
        chex.assert_rank(v, set(range(1, max(v.ndim, 1) + 1)))
    chex.assert_axis_dimension(q, -1, p.shape[-1])
    batch = jnp.broadcast_shapes(p.shape, q.shape)
    with jax.numpy_dtype_promotion("standard"):
        return reverse_kl(jnp.log(jnp.broadcast_to(p, batch)), jnp.log(jnp.broadcast_to(q, batch)))


def _br_logits(P, pi, pi_ref, beta):
    """Logits ``log pi_ref + A @ pi / beta`` of the regularised best response (shift-invariant)."""
    return jnp.log(pi_ref) + _mv(_antisym(P), pi) * (1.0 / beta[..., None])  # reciprocal: see alignjax.sweep


@jax.jit
def regularized_best_response(P: ArrayLike, pi: ArrayLike, pi_ref: ArrayLike, beta: ArrayLike) -> jax.Array:
    """Best response to ``pi`` in the regularised game (closed form; NLHF arXiv 2312.00886 §5).

    ``BR(pi) = argmax_q [q @ P @ pi - beta KL(q || pi_ref)] = softmax(log pi_ref + P @ pi / beta)``.

    Args:
      P: ``(..., N, N)``; pi, pi_ref: ``(..., N)``; beta: ``(...)``, > 0.

    Returns:
      ``(..., N)`` probabilities.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> print(np.asarray(games.regularized_best_response(P, pi, pi_ref, 0.5)).round(4))
      [0.3696 0.238  0.3924]
    """
    P, (pi, pi_ref), (beta,) = _bcast(P, pi, pi_ref, scalars=(beta,))
    return jax.nn.softmax(_br_logits(P, pi, pi_ref, beta), axis=-1)


@jax.jit
def regularized_value(P: ArrayLike, pi: ArrayLike, pi_ref: ArrayLike, beta: ArrayLike) -> jax.Array:
    """``max_q [q @ P @ pi - beta KL(q || pi_ref)] = beta logsumexp_y(log pi_ref(y) + (P @ pi)[y] / beta)``.

    Shapes ``(..., N, N), (..., N), (..., N), (...) -> (...)``; computed as
    ``1/2 + beta logsumexp(log pi_ref + A @ pi / beta)`` (``pi`` on the simplex).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> print(np.asarray(games.regularized_value(P, pi, pi_ref, 0.5)).round(4))
      0.5084
    """
    P, (pi, pi_ref), (beta,) = _bcast(P, pi, pi_ref, scalars=(beta,))
    return 0.5 + beta * jax.nn.logsumexp(_br_logits(P, pi, pi_ref, beta), axis=-1)


def _phi(x):
    """``expm1(x) - x >= 0`` accurate for small ``|x|`` (series below 1e-3)."""
    small = jnp.abs(x) < 1e-3
    xs = jnp.where(small, x, 0.0)
    series = xs * xs * (0.5 + xs * (1.0 / 6.0 + xs / 24.0))
    return jnp.where(small, series, jnp.expm1(jnp.where(small, 0.0, x)) - x)


@jax.jit
def regularized_gap(P: ArrayLike, pi: ArrayLike, pi_ref: ArrayLike, beta: ArrayLike) -> jax.Array:
    """EGPO's duality gap of the regularised game (Zhou et al. 2025; spec §3), ``>= 0``, ``= 0`` iff ``pi = pi*_beta``.

    ``gap_beta(pi) = max_q J(q, pi) - min_q J(pi, q)
                   = 2 beta logsumexp(log pi_ref + P @ pi / beta) + 2 beta KL(pi || pi_ref) - 1``.

    Computed without cancellation: with ``s = log pi_ref + A @ pi / beta``, ``g = s - log pi - c``
    and ``c = E_pi[s - log pi]`` (so ``E_pi g = 0``), the gap is
    ``2 beta log(E_pi[exp g] + sum_{pi(y)=0} exp(s_y - c)) = 2 beta log1p(E_pi[expm1(g) - g] + ...)``
    (uses ``pi @ A @ pi = 0``), a Jensen gap: every term is non-negative.

    Args:
      P: ``(..., N, N)``; pi, pi_ref: ``(..., N)`` (``pi_ref > 0``); beta: ``(...)``, > 0.

    Returns:
      ``(...)`` gaps.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> print(np.asarray(games.regularized_gap(P, pi, pi_ref, 0.5)).round(4))
      0.0858
    """
    P, (pi, pi_ref), (beta,) = _bcast(P, pi, pi_ref, scalars=(beta,))
    s = _br_logits(P, pi, pi_ref, beta)
    pos = pi > 0
    log_pi = jnp.log(jnp.where(pos, pi, 1.0))
    c = jnp.sum(jnp.where(pos, pi * (s - log_pi), 0.0), axis=-1)
    g = s - log_pi - c[..., None]
    # Large gaps: log E_pi[exp g] (+ off-support mass) as a logsumexp (no overflow).
    big = jax.nn.logsumexp(s - c[..., None], axis=-1)
    # Small gaps: log1p of a sum of non-negative terms (no cancellation); g clipped so the
    # branch that is not selected cannot overflow.
    gc = jnp.minimum(jnp.where(pos, g, 0.0), 60.0)
    inside = jnp.sum(jnp.where(pos, pi * _phi(gc), 0.0), axis=-1)
    outside = jnp.sum(jnp.where(pos, 0.0, jnp.exp(jnp.minimum(jnp.where(pos, -jnp.inf, s - c[..., None]), 60.0))), axis=-1)
    small = jnp.log1p(inside + outside)
    return 2.0 * beta * jnp.where(big > 1e-3, big, small)


@jax.jit
def exploitability(P: ArrayLike, pi: ArrayLike) -> jax.Array:
    """Unregularised duality gap ``2 max_y (P @ pi)[y] - 1`` (``>= 0`` on the simplex; 0 iff ``pi`` is a
    Nash equilibrium of the symmetric game, value 1/2). Shapes ``(..., N, N), (..., N) -> (...)``;
    computed as ``2 max_y (A @ pi)[y]``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> print(np.asarray(games.exploitability(P, pi)).round(4))
      0.18
    """
    P, (pi,), _ = _bcast(P, pi)
    return 2.0 * jnp.max(_mv(_antisym(P), pi), axis=-1)


@jax.jit
def fixed_point_residual(P: ArrayLike, pi: ArrayLike, pi_ref: ArrayLike, beta: ArrayLike) -> jax.Array:
    """``|| pi - softmax(log pi_ref + P @ pi / beta) ||_1`` (0 iff ``pi = pi*_beta``); ``(...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> print(np.asarray(games.fixed_point_residual(P, pi, pi_ref, 0.5)).round(4))
      0.3848
    """
    return jnp.sum(jnp.abs(jnp.asarray(pi) - regularized_best_response(P, pi, pi_ref, beta)), axis=-1)


class ConvergenceWarning(RuntimeWarning):
    """:func:`regularized_nash` stopped at ``max_iter`` with ``residual > tol`` for some game."""


class RegularizedNash(NamedTuple):
    """Result of :func:`regularized_nash` (batched like its inputs).

    Attributes:
      pi: ``(..., N)`` the equilibrium ``pi*_beta`` (probabilities).
      residual: ``(...)`` :func:`fixed_point_residual` of ``pi``.
      iterations: ``(...)`` Newton iterations used.
      converged: ``(...)`` bool, ``residual <= tol``. Where it is False, ``pi`` is the last
        iterate, not the equilibrium (a warning is raised when the call is not traced).
    """

    pi: jax.Array
    residual: jax.Array
    iterations: jax.Array
    converged: jax.Array


_STEPS = 2.0 ** -np.arange(10)  # line-search step sizes 1, 1/2, ..., 1/512
_STAGE_TOL = 4.0  # continuation: halve b once ||F_b(z)||_inf <= this (logit units)
_ITERS_PER_STAGE = 32  # default cap: _ITERS_PER_STAGE * (S + 2), S = number of continuation stages


def default_tol(beta: ArrayLike) -> jax.Array:
    """Default target of :func:`regularized_nash`'s residual for KL coefficient ``beta`` (elementwise).

    ``tol(beta) = max(tol_0, eps / beta)`` with ``tol_0 = 1e-5`` and ``eps = 2^-23`` in float32,
    ``tol_0 = 1e-10`` and ``eps = 2^-52`` in float64 (the dtype of ``beta``): the fixed-point map
    amplifies the rounding of ``pi`` (relative ``eps``) by ``1/beta``, and the residual reached
    in practice stays below ``0.3 eps / beta`` (measured on random, tournament and Bradley–Terry
    games, ``N <= 300``, ``1e-4 <= beta <= 0.1``), so ``eps / beta`` is attainable.
    """
    b = jnp.asarray(beta)
    dtype = jnp.result_type(b, jnp.float32)
    tol0 = 1e-10 if dtype == jnp.float64 else 1e-5
    return jnp.maximum(jnp.asarray(tol0, dtype), jnp.finfo(dtype).eps / b.astype(dtype))


def default_max_iter(beta: ArrayLike) -> jax.Array:
    """Default iteration cap of :func:`regularized_nash` for KL coefficient ``beta`` (elementwise, int32).

    ``max_iter(beta) = 32 (S + 2)``, ``S = max(0, ceil(log2(1/beta)))`` the number of halvings of the
    continuation coefficient from 1 down to ``beta`` (each takes at least one Newton iteration;
    ``2`` stages' worth are left for the final Newton phase). E.g. 64 for ``beta >= 1``, 384 for
    ``beta = 1e-3``, 512 for ``beta = 1e-4``.

    Measured (float64, default tol, 24 games per size for ``N <= 50`` and 8 above, ``N`` in
    2..300, uniform random, 0/1 tournament, Bradley–Terry and near-1/2 games, random
    references): the median is about ``S + 10`` iterations; the worst were 10 (``beta = 0.1``),
    29 (``1e-2``), 148 (``1e-3``, one ``N = 5`` game), 88 (``1e-4``), 568 (``1e-5``, a tournament);
    at ``beta = 1e-6`` two of those games did not converge at all (reported, not hidden: see
    :func:`regularized_nash`).
    """
    b = jnp.asarray(beta)
    stages = jnp.maximum(jnp.ceil(-jnp.log2(b)), 0.0)
    return (_ITERS_PER_STAGE * (stages + 2)).astype(jnp.int32)


def _newton_single(A, log_ref, beta, tol, max_iter):
    """Damped Newton on ``F(z) = z - log pi_ref - A softmax(z) / beta = 0`` for one game.

    ``z`` are the equilibrium's logits (no gauge freedom: ``z* = log pi_ref + A pi* / beta``).
    ``F'(z) = I - A D / beta``, ``D = diag(pi) - pi pi^T``, is always invertible (``A`` antisymmetric,
    ``D`` PSD). Each step solves ``(b I - A D) dz = -b F_b(z)`` at the current continuation
    coefficient ``b`` and picks the step size in ``{1, 1/2, ..., 1/512}`` minimising
    ``||b F_b||_inf`` (all candidates evaluated at once). Continuation: ``b`` starts at
    ``max(beta, 1)`` and is halved (down to ``beta``) after every step that ends with
    ``||F_b(z)||_inf <= 4`` (logit units), so each stage starts near the solution for the
    previous, twice larger, coefficient. (Halving ``b`` after every step regardless, as an
    earlier version did, lost the path on some games: e.g. no convergence in 3000 iterations
    for one ``N = 50`` random game at ``beta = 1e-4``.) Iterates until the
    :func:`fixed_point_residual` at ``beta`` is ``<= tol`` or ``max_iter`` (a step whose
    candidates are all non-finite is not taken).
    """
    n = A.shape[-1]
    eye = jnp.eye(n, dtype=A.dtype)
    steps = jnp.asarray(_STEPS, A.dtype)

    def bF(z, b):  # b * F_b(z), batched over leading axes of z
        p = jax.nn.softmax(z, axis=-1)
        return b * (z - jnp.broadcast_to(log_ref, z.shape)) - jnp.matmul(p, A.T)

    def resid(z):
        p = jax.nn.softmax(z)
        return jnp.sum(jnp.abs(p - jax.nn.softmax(log_ref + A @ p / beta)))

    def cond(c):
        z, b, r, it = c
        return (r > tol) & (it < max_iter)

    def body(c):
        z, b, r, it = c
        p = jax.nn.softmax(z)
        D = jnp.diag(p) - p[:, None] * p[None, :]
        J = b * eye - A @ D
        dz = jnp.linalg.solve(J, -bF(z, b))
        cand = z[None, :] + steps[:, None] * dz[None, :]  # (num_steps, N)
        merit = jnp.max(jnp.abs(bF(cand, b)), axis=-1)
        merit = jnp.where(jnp.isfinite(merit), merit, jnp.inf)
        k = jnp.argmin(merit)
        ok = jnp.isfinite(merit[k])
        z_new = jnp.where(ok, cand[k], z)
        b_new = jnp.where(ok & (merit[k] <= _STAGE_TOL * b), jnp.maximum(beta, 0.5 * b), b)
        return z_new, b_new, jnp.where(ok, resid(z_new), r), it + 1

    z0 = log_ref
    b0 = jnp.maximum(beta, jnp.asarray(1.0, A.dtype))
    z, _, r, it = jax.lax.while_loop(cond, body, (z0, b0, resid(z0), jnp.asarray(0, jnp.int32)))
    return z, r, it


@jax.jit
def _solve_batch(A, log_ref, beta, tol, max_iter):
    return jax.vmap(_newton_single)(A, log_ref, beta, tol, max_iter)


def _traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _dtype_source(x):
    """``x`` itself where ``jnp.result_type`` accepts it (arrays, tracers, Python scalars), else ``np.asarray(x)``."""
    return x if _traced(x) or hasattr(x, "dtype") or isinstance(x, (bool, int, float)) else np.asarray(x)


def _check_nash_inputs(P, pi_ref, beta, tol, max_iter, dtype) -> None:
    """``ValueError`` (one line) for invalid inputs of :func:`regularized_nash`; traced values are skipped."""
    shape = np.shape(P)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"preference matrix must have shape (..., N, N); got {shape}")
    if not _traced(P):
        check_preference_matrix(P)
    n = shape[-1]
    if np.ndim(pi_ref) < 1 or np.shape(pi_ref)[-1] != n:
        raise ValueError(f"pi_ref must have shape (..., {n}); got {np.shape(pi_ref)}")
    if not _traced(pi_ref):
        a = np.asarray(pi_ref, dtype=np.float64)
        if not np.all(np.isfinite(a)) or not np.all(a > 0):
            raise ValueError(f"pi_ref must be finite and > 0 everywhere; got min {np.nanmin(a):.3g}")
        tiny = np.finfo(dtype).tiny  # subnormals are flushed to 0 by XLA
        if a.size and a.min() < tiny:
            raise ValueError(f"pi_ref must be >= {tiny:.3g} (the smallest normal {np.dtype(dtype).name}); "
                             f"got min {a.min():.3g}")
    if not _traced(beta):
        b = np.asarray(beta, dtype=np.float64)
        if b.size and (not np.all(np.isfinite(b)) or not np.all(b > 0)):
            bad = b[~(np.isfinite(b) & (b > 0))].ravel()[0]
            raise ValueError(f"beta must be finite and > 0; got {bad:g}")
        with np.errstate(over="ignore", divide="ignore"):
            c = b.astype(dtype)
            small = ~(np.isfinite(1.0 / c) & (c >= np.finfo(dtype).tiny))
        if b.size and np.any(small):
            raise ValueError(f"beta = {b[small].ravel()[0]:g} is too small for {np.dtype(dtype).name} "
                             f"(subnormal or 1/beta overflows)")
    if tol is not None and not _traced(tol):
        t = float(tol)
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"tol must be finite and > 0; got {tol!r}")
    if max_iter is not None and (isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1):
        raise ValueError(f"max_iter must be a positive integer or None; got {max_iter!r}")


def regularized_nash(P: ArrayLike, pi_ref: ArrayLike, beta: ArrayLike, tol: float | None = None,
                     max_iter: int | None = None) -> RegularizedNash:
    """The unique equilibrium ``pi*_beta`` of the KL-regularised preference game.

    Solves ``pi = softmax(log pi_ref + P @ pi / beta)`` by damped Newton on the logits (see
    :func:`_newton_single`) inside a ``lax.while_loop``: jittable, vmappable over games and
    betas (leading axes of ``P``, ``pi_ref``, ``beta`` are broadcast and flattened into one
    ``vmap``). Plain fixed-point iteration diverges for ``beta`` below about ``max|P - 1/2|``
    and extragradient needs ``O(1/(eta beta))`` steps; damped Newton with a continuation in
    ``beta`` (halved from 1 to ``beta`` each time the current stage is solved to within a few
    logits) takes a median of about ``S + 10`` iterations, ``S = max(0, ceil(log2(1/beta)))``,
    e.g. 24-35 on ``N = 200`` random games at ``beta = 1e-4`` in float64 (see
    :func:`default_max_iter` for the tails). Each iteration is one ``N x N`` linear solve.
    Never a quiet wrong answer: ``converged`` says whether ``residual <= tol``.

    Args:
      P: ``(..., N, N)`` preference matrix (entries in ``[0, 1]``, ``P + P^T = 1``).
      pi_ref: ``(..., N)`` reference policy, all entries finite and > 0 (normalisation is
        irrelevant: only ``log pi_ref`` up to a constant enters).
      beta: ``(...)`` KL coefficients, finite and > 0 (a normal float of the dtype with ``1/beta``
        finite: XLA flushes subnormals to 0).
      tol: target of :func:`fixed_point_residual` (L1), > 0; default ``None``: per game,
        :func:`default_tol` of its ``beta``, ``max(1e-5, 2^-23 / beta)`` in float32 and
        ``max(1e-10, 2^-52 / beta)`` in float64 (the attainable residual grows like
        ``eps / beta``: the map amplifies rounding of ``pi`` by ``1/beta``).
      max_iter: Newton iteration cap, a positive int; default ``None``: per game,
        :func:`default_max_iter` of its ``beta``, ``32 (S + 2)`` (computed in-graph, so a
        traced ``beta`` works too).

    Returns:
      :class:`RegularizedNash` ``(pi, residual, iterations, converged)``.

    Raises:
      ValueError: on concrete invalid inputs (``P`` not a preference matrix, ``pi_ref`` not
        positive and finite or of the wrong size, ``beta`` not finite and positive, ``tol <= 0``,
        ``max_iter`` not a positive integer). Traced arguments are not checked.

    Warns:
      ConvergenceWarning: when not traced and some game stops at ``max_iter`` with
        ``residual > tol`` (its ``converged`` entry is False).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> eq = games.regularized_nash(P, pi_ref, 0.5)
      >>> print(np.asarray(eq.pi).round(4), bool(eq.converged))
      [0.3404 0.2949 0.3648] True
      >>> print(bool(games.regularized_gap(P, eq.pi, pi_ref, 0.5) < 1e-6))
      True
    """
    dtype = jnp.result_type(*(_dtype_source(x) for x in (P, pi_ref, beta)), jnp.float32)
    _check_nash_inputs(P, pi_ref, beta, tol, max_iter, dtype)
    P, (pi_ref,), (beta,) = _bcast(P, pi_ref, scalars=(beta,))
    dtype = P.dtype
    batch, n = P.shape[:-2], P.shape[-1]
    A = _antisym(P).reshape(-1, n, n)
    log_ref = jnp.log(pi_ref).reshape(-1, n)
    b = beta.reshape(-1)
    cap = default_max_iter(b) if max_iter is None else jnp.full(b.shape, int(max_iter), jnp.int32)
    tols = default_tol(b) if tol is None else jnp.full(b.shape, tol, dtype)
    z, r, it = _solve_batch(A, log_ref, b, tols, cap)
    conv = r <= tols
    out = RegularizedNash(jax.nn.softmax(z, axis=-1).reshape(*batch, n), r.reshape(batch), it.reshape(batch),
                          conv.reshape(batch))
    if not _traced(conv) and not bool(np.all(np.asarray(conv))):
        bad = np.flatnonzero(~np.asarray(conv))
        i = bad[0]
        warnings.warn(
            f"regularized_nash did not converge for {bad.size} of {conv.size} games: e.g. residual "
            f"{float(r[i]):.3g} > tol {float(tols[i]):.3g} after {int(it[i])} iterations (max_iter "
            f"{int(cap[i])}, beta {float(b[i]):.3g}); its pi is not the equilibrium", ConvergenceWarning, stacklevel=2)
    return out


def nash(P: ArrayLike) -> np.ndarray:
    """An exact Nash equilibrium of the unregularised symmetric game (numpy in/out; reporting only).

    Linear program (``scipy.optimize.linprog``, HiGHS): minimise ``t`` subject to
    ``(P @ pi)[y] - 1/2 <= t`` for all ``y``, ``sum pi = 1``, ``pi >= 0``. The optimum is ``t = 0``
    (value 1/2), so the returned ``pi`` has exploitability ``2 t = 0`` up to solver tolerance.

    Args:
      P: ``(..., N, N)`` preference matrix (looped over leading axes).

    Returns:
      ``(..., N)`` float64 equilibrium (one of them if not unique).

    Example:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from alignjax import games
      >>> P = jnp.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # P[y, y'] = P(y > y')
      >>> pi, pi_ref = jnp.array([0.5, 0.3, 0.2]), jnp.full(3, 1 / 3)
      >>> print(np.asarray(games.nash(P)).round(4))
      [0.2222 0.3333 0.4444]
    """
    from scipy.optimize import linprog

    a = np.asarray(P, dtype=np.float64)
    n = a.shape[-1]
    flat = a.reshape(-1, n, n)
    out = np.empty((flat.shape[0], n))
    c = np.zeros(n + 1)
    c[-1] = 1.0
    for i, Pi in enumerate(flat):
        A_ub = np.concatenate([Pi - 0.5, -np.ones((n, 1))], axis=1)
        A_eq = np.concatenate([np.ones((1, n)), np.zeros((1, 1))], axis=1)
        res = linprog(c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=A_eq, b_eq=np.ones(1),
                      bounds=[(0, None)] * n + [(None, None)], method="highs")
        if not res.success:
            raise RuntimeError(f"linprog failed on game {i}: {res.message}")
        x = np.clip(res.x[:n], 0.0, None)
        out[i] = x / x.sum()
    return out.reshape(*a.shape[:-1])
