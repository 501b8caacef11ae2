"""Preference matrices: ``P[y, y'] = Prob(y beats y')`` with ``P + P.T = 1``.

Conventions (``../shared/spec/algorithms.md`` §0): responses are indexed ``0..N-1``; the
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
    return lower + jnp.swapaxes(1.0 - lower, -1, -2) * jnp.triu(jnp.ones_like(u), k=1) + 0.5 * jnp.eye(
        num_responses)


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
