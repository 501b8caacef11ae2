"""Preference matrices: ``P[y, y'] = Prob(y beats y')`` with ``P + P.T = 1``.

Conventions (``docs/algorithms.md``, notation): responses are indexed ``0..N-1``; the
diagonal is ``1/2``; ``(P @ pi)[y] = P(y > pi)`` and ``p @ P @ q = P(p > q)``.
Every constructor is pure and batched over leading axes of its inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "bradley_terry",
    "annotator_mixture",
    "rock_paper_scissors",
    "intransitive_dice",
    "random_game",
    "check_preference_matrix",
    "three_rater_cycle",
    "fit_bradley_terry",
]


def bradley_terry(rewards: ArrayLike) -> jax.Array:
    """Bradley–Terry preferences ``P[..., y, y'] = sigmoid(r[..., y] - r[..., y'])``.

    Args:
      rewards: ``(..., N)`` real rewards.

    Returns:
      ``(..., N, N)`` preference matrix (transitive: ``argmax r`` is a Condorcet winner).
    """
    r = jnp.asarray(rewards)
    return jax.nn.sigmoid(r[..., :, None] - r[..., None, :])


def annotator_mixture(rewards: ArrayLike, weights: ArrayLike, *, temperature: float | None = 1.0) -> jax.Array:
    """Population preference of a mixture of transitive annotators.

    ``P = sum_k w_k P_k`` where annotator type ``k`` is Bradley–Terry on ``r_k / temperature``
    (or, with ``temperature=None``, deterministic: prefers the higher ``r_k``, ties 1/2).
    Each ``P_k`` is transitive, yet the mixture can be cyclic (Condorcet's paradox).

    Args:
      rewards: ``(..., K, N)`` one reward vector per annotator type.
      weights: ``(..., K)`` population shares, non-negative, summing to 1.
      temperature: BT temperature (> 0), or None for hard (noiseless) annotators.

    Returns:
      ``(..., N, N)`` preference matrix.
    """
    r = jnp.asarray(rewards)
    w = jnp.asarray(weights)
    diff = r[..., :, None] - r[..., None, :]
    if temperature is None:
        pk = 0.5 * (1.0 + jnp.sign(diff))
    else:
        pk = jax.nn.sigmoid(diff / temperature)
    return jnp.einsum("...k,...kij->...ij", w, pk)


def rock_paper_scissors() -> jax.Array:
    """Rock-paper-scissors as a ``(3, 3)`` preference matrix (rock, paper, scissors).

    ``P[rock, scissors] = P[scissors, paper] = P[paper, rock] = 1``; the Nash equilibrium of
    the symmetric game is uniform (also of the regularised game with a uniform ``pi_ref``).
    """
    return jnp.array([[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])


_DICE = np.array([[2, 4, 9], [1, 6, 8], [3, 5, 7]])


def intransitive_dice(faces: ArrayLike = _DICE) -> jax.Array:
    """Preference between fair dice: ``P[i, j] = Prob(die i > die j) + Prob(tie)/2``.

    The default dice ``{2,4,9}, {1,6,8}, {3,5,7}`` form a cycle in which each die beats the
    next with probability 5/9 (die 0 beats 1, 1 beats 2, 2 beats 0).

    Args:
      faces: ``(D, F)`` face values of ``D`` fair ``F``-sided dice.

    Returns:
      ``(D, D)`` preference matrix.
    """
    f = jnp.asarray(faces, dtype=jnp.float32)
    d = jnp.sign(f[:, None, :, None] - f[None, :, None, :])  # (D, D, F, F)
    return 0.5 * (1.0 + d.mean(axis=(-1, -2)))


def random_game(key: jax.Array, num_responses: int, batch_shape: tuple[int, ...] = ()) -> jax.Array:
    """The random preference game of the EGPO simulation (Zhou et al.).

    For ``i > j``: ``P[i, j] ~ U(0, 1)`` independently, ``P[j, i] = 1 - P[i, j]``; diagonal 1/2.

    Args:
      key: a ``jax.random.key``.
      num_responses: ``N`` (static).
      batch_shape: leading shape of independent games (static).

    Returns:
      ``(*batch_shape, N, N)`` preference matrix.
    """
    u = jax.random.uniform(key, (*batch_shape, num_responses, num_responses))
    lower = jnp.tril(u, k=-1)
    eye = jnp.broadcast_to(jnp.eye(num_responses, dtype=u.dtype), u.shape)
    return lower + jnp.swapaxes(1.0 - lower, -1, -2) * jnp.triu(jnp.ones_like(u), k=1) + 0.5 * eye


def check_preference_matrix(P: ArrayLike, *, atol: float = 1e-5) -> None:
    """Raise ``ValueError`` naming what is wrong unless ``P`` is a preference matrix.

    Checks (on concrete values, before any compute): at least 2-D with square trailing
    axes ``(..., N, N)``, no NaN/inf, entries in ``[0, 1]``, and ``P + P^T = 1`` within ``atol``
    (which implies the diagonal is 1/2).
    """
    a = np.asarray(P, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"preference matrix must have shape (..., N, N); got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("preference matrix contains NaN or inf")
    lo, hi = float(a.min()), float(a.max())
    if lo < -atol or hi > 1 + atol:
        raise ValueError(f"preference matrix entries must lie in [0, 1]; got range [{lo:.4g}, {hi:.4g}]")
    err = float(np.max(np.abs(a + np.swapaxes(a, -1, -2) - 1.0)))
    if err > atol:
        raise ValueError(f"preference matrix must satisfy P + P.T = 1; max |P + P.T - 1| = {err:.3g}")


# Rankings of the three rater types of :func:`three_rater_cycle` (higher reward = preferred).
_THREE_RATER_RANKS = np.array([[2.0, 1.0, 0.0],   # type a: y0 > y1 > y2
                               [0.0, 2.0, 1.0],   # type b: y1 > y2 > y0
                               [1.0, 0.0, 2.0]])  # type c: y2 > y0 > y1


def three_rater_cycle(e: ArrayLike) -> jax.Array:
    """Condorcet cycle from three transitive rater types (the NLHF §3.2 example, arXiv 2312.00886).

    Construction (ours; it reproduces the equilibrium the paper states): three deterministic
    rater types with the cyclic rankings ``a: y0 > y1 > y2``, ``b: y1 > y2 > y0``,
    ``c: y2 > y0 > y1`` in population shares ``w = (1/3 - e/4, 1/3 + e/2, 1/3 - e/4)``. Then::

        P[0, 1] = w_a + w_c = 2/3 - e/2,   P[1, 2] = w_a + w_b = 2/3 + e/4,
        P[2, 0] = w_b + w_c = 2/3 + e/4,

    a cycle for ``-2/3 < e < 1/3``, whose unique Nash equilibrium (``A @ pi = 0`` with
    ``A = P - 1/2``) is ``(1/3 + e/2, 1/3 + e/2, 1/3 - e)``. Every individual rater is
    transitive; the population is not. Its Borda scores (row sums) are
    ``(3/2 - 3e/4, 3/2 + 3e/4, 3/2)``, so a Bradley–Terry fit ranks ``y1`` first for ``e > 0``
    and ``y0`` first for ``e < 0``: the BT-RLHF policy jumps when ``e`` changes sign while the
    Nash equilibrium moves continuously.

    Args:
      e: ``(...)`` perturbation, ``|e| <= 1/3`` (checked when concrete).

    Returns:
      ``(..., 3, 3)`` preference matrix.
    """
    e = jnp.asarray(e, dtype=jnp.float32) if not hasattr(e, "dtype") else jnp.asarray(e)
    if not isinstance(e, jax.core.Tracer):
        a = np.asarray(e)
        if not np.all(np.abs(a) <= 1.0 / 3.0 + 1e-7):
            raise ValueError(f"three_rater_cycle needs |e| <= 1/3; got {a}")
    w = jnp.stack([1 / 3 - e / 4, 1 / 3 + e / 2, 1 / 3 - e / 4], axis=-1)
    ranks = jnp.broadcast_to(jnp.asarray(_THREE_RATER_RANKS, w.dtype), (*e.shape, 3, 3))
    return annotator_mixture(ranks, w, temperature=None)


def fit_bradley_terry(P: ArrayLike, *, num_steps: int = 50, ridge: float = 1e-6) -> jax.Array:
    """Maximum-likelihood Bradley–Terry rewards for soft labels on all ordered pairs.

    Maximises ``L(r) = sum_{y != y'} P[y, y'] log sigmoid(r_y - r_y') - ridge/2 ||r||^2`` (concave;
    ``grad_y = 2 sum_{y'} (P[y, y'] - sigmoid(r_y - r_y')) - ridge r_y``) by ``num_steps`` Newton
    steps, each clipped to ``max |dr| <= 1``; the tiny ridge keeps ``r`` finite when some
    response wins or loses with probability 1 (the MLE then diverges). The result is centred
    (``sum r = 0``). When ``P`` is itself BT, this recovers its rewards.

    Args:
      P: ``(..., N, N)`` preference matrix.

    Returns:
      ``(..., N)`` rewards.
    """
    P = jnp.asarray(P)
    n = P.shape[-1]
    eye = jnp.eye(n, dtype=P.dtype)
    gauge = jnp.ones((n, n), P.dtype) / n  # adding 1 1^T / n fixes the shift invariance of r

    def fit_one(Pi):
        def step(r, _):
            s = jax.nn.sigmoid(r[:, None] - r[None, :])
            g = 2.0 * jnp.sum(Pi - s, axis=-1) - ridge * r
            w = 2.0 * s * (1.0 - s)  # -Hessian = diag(w 1) - w + ridge I (a weighted Laplacian)
            H = jnp.diag(jnp.sum(w, axis=-1)) - w + ridge * eye + gauge
            dr = jnp.linalg.solve(H, g)
            r = r + dr / jnp.maximum(1.0, jnp.max(jnp.abs(dr)))
            return r - jnp.mean(r), None

        r, _ = jax.lax.scan(step, jnp.zeros((n,), Pi.dtype), None, length=num_steps)
        return r

    return jax.vmap(fit_one)(P.reshape(-1, n, n)).reshape(P.shape[:-1])
