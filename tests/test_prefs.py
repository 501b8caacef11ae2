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


def _np_annotator_mixture(rewards, weights, temperature):
    """Independent float64 oracle of the docstring: ``P[i, j] = sum_k w_k P_k[i, j]`` with
    ``P_k[i, j] = 1 / (1 + exp(-(r_ki - r_kj) / T))``, or for ``T = None`` 1, 1/2, 0 as ``r_ki >, =, < r_kj``."""
    r, w = np.asarray(rewards, np.float64), np.asarray(weights, np.float64)
    out = np.zeros(r.shape[:-2] + (r.shape[-1],) * 2)
    for idx in np.ndindex(*r.shape[:-2]):
        for k in range(r.shape[-2]):
            for i in range(r.shape[-1]):
                for j in range(r.shape[-1]):
                    d = r[idx][k, i] - r[idx][k, j]
                    if temperature is None:
                        pk = 1.0 if d > 0 else 0.5 if d == 0 else 0.0
                    else:
                        pk = 1 / (1 + np.exp(-d / temperature))
                    out[idx][i, j] += w[idx][k] * pk
    return out


def _mixture_inputs():
    rng = np.random.default_rng(0)
    # batch (2, 3), K = 4 annotator types, N = 5 responses; integer rewards give ties (d = 0) too
    rewards = rng.integers(-3, 4, size=(2, 3, 4, 5)).astype(np.float64) * 0.5
    weights = rng.dirichlet(np.ones(4), size=(2, 3))
    return rewards, weights


@pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0, None])
def test_annotator_mixture_matches_independent_formula(temperature):
    rewards, weights = _mixture_inputs()
    with jax.enable_x64(True):
        P = np.asarray(prefs.annotator_mixture(jnp.asarray(rewards), jnp.asarray(weights), temperature=temperature))
    # float64 on both sides, K = 4 terms of size <= 1: rounding ~ 1e-15; atol 1e-12 leaves 3 decades
    np.testing.assert_allclose(P, _np_annotator_mixture(rewards, weights, temperature), rtol=0, atol=1e-12)
    assert P.shape == (2, 3, 5, 5)
    # hand-computed: one annotator, rewards (1, 1, 0): a tie between y0 and y1
    hard = prefs.annotator_mixture(jnp.array([[1.0, 1.0, 0.0]]), jnp.array([1.0]), temperature=temperature)
    s = 1.0 if temperature is None else 1 / (1 + np.exp(-1 / temperature))  # P[y0, y2] = P[y1, y2]
    np.testing.assert_allclose(hard, [[0.5, 0.5, s], [0.5, 0.5, s], [1 - s, 1 - s, 0.5]], atol=1e-6)  # float32: ulp(1) = 1.2e-7


def test_annotator_mixture_temperature_limits():
    rewards, weights = _mixture_inputs()
    d = rewards[..., :, None] - rewards[..., None, :]            # (2, 3, K, N, N) reward differences
    delta = np.min(np.abs(d[d != 0]))                            # smallest non-zero difference (0.5)
    # float64 rounding of a sum of K = 4 terms in [0, 1]: < 4 * 2 ulp(1) < 1e-15
    rounding = 1e-15
    with jax.enable_x64(True):
        r, w = jnp.asarray(rewards), jnp.asarray(weights)
        hard = np.asarray(prefs.annotator_mixture(r, w, temperature=None))
        # T -> 0: each BT annotator differs from the hard one by sigma(-|d|/T) <= exp(-|d|/T) <= exp(-delta/T)
        # (ties give 1/2 at every T), so |P_T - P_hard| <= sum_k w_k exp(-delta/T) = exp(-delta/T).
        for T in (delta / 5, delta / 15, delta / 30):
            P = np.asarray(prefs.annotator_mixture(r, w, temperature=T))
            assert np.max(np.abs(P - hard)) <= np.exp(-delta / T) + rounding
        assert np.max(np.abs(np.asarray(prefs.annotator_mixture(r, w, temperature=delta / 5)) - hard)) > 1e-5
        # T -> infinity: sigma(x) - 1/2 = tanh(x/2)/2 and |tanh t - t| <= |t|^3/3, so
        # |P - 1/2 - sum_k w_k d_k / (4T)| <= sum_k w_k |d_k / T|^3 / 48: P -> 1/2 with slope E_w[d]/4.
        for T in (10.0, 100.0, 1000.0):
            P = np.asarray(prefs.annotator_mixture(r, w, temperature=T))
            lin = 0.5 + np.einsum("...k,...kij->...ij", weights, d) / (4 * T)
            cubic = np.einsum("...k,...kij->...ij", weights, np.abs(d / T) ** 3) / 48
            assert np.all(np.abs(P - lin) <= cubic + rounding)
            assert np.max(np.abs(P - 0.5)) <= np.max(np.abs(d)) / (4 * T) + rounding
