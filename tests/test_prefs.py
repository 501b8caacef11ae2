"""Preference-matrix constructors and validation (alignjax.prefs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import games, prefs


def _is_pref(P, atol=1e-6):
    P = np.asarray(P, np.float64)
    return np.all(P >= -atol) and np.all(P <= 1 + atol) and np.allclose(P + np.swapaxes(P, -1, -2), 1.0, atol=atol)


def test_dice_cycle_is_five_ninths():
    P = np.asarray(prefs.intransitive_dice())
    for i in range(3):
        np.testing.assert_allclose(P[i, (i + 1) % 3], 5 / 9, atol=1e-6)
        np.testing.assert_allclose(P[(i + 1) % 3, i], 4 / 9, atol=1e-6)


def test_rock_paper_scissors_values_and_equilibrium():
    P = np.asarray(prefs.rock_paper_scissors())
    assert P[0, 2] == 1 and P[2, 1] == 1 and P[1, 0] == 1 and np.all(np.diag(P) == 0.5)
    np.testing.assert_allclose(games.nash(P), np.full(3, 1 / 3), atol=1e-7)


def test_bradley_terry_properties():
    r = jnp.array([0.3, -1.0, 2.0, 0.5])
    P = np.asarray(prefs.bradley_terry(r))
    d = np.asarray(r)[:, None] - np.asarray(r)[None, :]
    np.testing.assert_allclose(P, 1 / (1 + np.exp(-d)), rtol=1e-6)
    assert np.array_equal(P > 0.5, d > 0)  # transitive: ordered by r
    np.testing.assert_allclose(prefs.bradley_terry(r + 7.0), P, atol=1e-6)  # shift invariant
    assert prefs.bradley_terry(jnp.zeros((2, 5, 4))).shape == (2, 5, 4, 4)


@pytest.mark.parametrize("make", [
    lambda: prefs.bradley_terry(jax.random.normal(jax.random.key(0), (3, 6))),
    lambda: prefs.annotator_mixture(jax.random.normal(jax.random.key(1), (4, 5)), jnp.full((4,), 0.25)),
    lambda: prefs.annotator_mixture(jax.random.normal(jax.random.key(2), (4, 5)), jnp.full((4,), 0.25), temperature=None),
    prefs.rock_paper_scissors,
    prefs.intransitive_dice,
    lambda: prefs.random_game(jax.random.key(3), 7, (2, 3)),
    lambda: prefs.three_rater_cycle(jnp.array([-0.3, 0.0, 0.2])),
])
def test_every_constructor_gives_a_preference_matrix(make):
    P = make()
    assert _is_pref(P)
    prefs.check_preference_matrix(P)  # does not raise


def test_random_game_distribution():
    P = np.asarray(prefs.random_game(jax.random.key(0), 12, (400,)), np.float64)
    il = np.tril_indices(12, k=-1)
    lower = P[:, il[0], il[1]]
    assert abs(lower.mean() - 0.5) < 0.01 and abs(lower.var() - 1 / 12) < 0.005  # U(0, 1)
    assert lower.min() >= 0 and lower.max() <= 1
    np.testing.assert_allclose(P[:, il[1], il[0]], 1 - lower, atol=1e-6)
    np.testing.assert_array_equal(np.diagonal(P, axis1=1, axis2=2), 0.5)
    # independent entries: correlation between two lower entries is ~0
    assert abs(np.corrcoef(lower[:, 0], lower[:, 1])[0, 1]) < 0.15


@pytest.mark.parametrize("bad, match", [
    (np.ones((3, 4)) * 0.5, "shape"),
    (np.array([0.5, 0.5]), "shape"),
    (np.array([[0.5, 1.5], [-0.5, 0.5]]), r"\[0, 1\]"),
    (np.array([[0.5, 0.7], [0.7, 0.5]]), r"P \+ P.T = 1"),
    (np.array([[0.5, np.nan], [0.5, 0.5]]), "NaN"),
])
def test_check_preference_matrix_messages(bad, match):
    with pytest.raises(ValueError, match=match):
        prefs.check_preference_matrix(bad)


@pytest.mark.parametrize("e", [-0.3, -0.1, 0.0, 0.05, 0.2, 0.3])
def test_three_rater_cycle_equilibrium(e):
    P = np.asarray(prefs.three_rater_cycle(e), np.float64)
    expected = np.array([1 / 3 + e / 2, 1 / 3 + e / 2, 1 / 3 - e])
    np.testing.assert_allclose(games.nash(P), expected, atol=1e-6)
    assert P[0, 1] > 0.5 and P[1, 2] > 0.5 and P[2, 0] > 0.5  # a Condorcet cycle


def test_three_rater_cycle_rejects_large_e_and_individuals_are_transitive():
    with pytest.raises(ValueError, match="1/3"):
        prefs.three_rater_cycle(0.5)
    ranks = prefs._THREE_RATER_RANKS
    for r in ranks:  # each rater type is a strict ranking (transitive)
        assert sorted(r.tolist()) == [0.0, 1.0, 2.0]


def test_fit_bradley_terry_recovers_rewards_and_borda_order():
    r = jnp.array([[0.3, -1.0, 2.0, 0.5], [0.0, 0.1, -0.2, 0.4]])
    fit = np.asarray(prefs.fit_bradley_terry(prefs.bradley_terry(r)))
    np.testing.assert_allclose(fit, np.asarray(r - r.mean(-1, keepdims=True)), atol=1e-4)
    # three-rater cycle: BT ranks y1 first for e > 0 and y0 first for e < 0
    fit = np.asarray(prefs.fit_bradley_terry(prefs.three_rater_cycle(jnp.array([0.1, -0.1]))))
    assert fit[0].argmax() == 1 and fit[1].argmax() == 0
