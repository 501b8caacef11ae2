"""Tests for alignjax.data.bandits (coverage-controlled offline preference data)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.data import bandits


def _bandit(seed=0, x=3, n=6, d=4):
    return bandits.linear_bandit(jax.random.key(seed), x, n, d)


def test_linear_bandit_reward_is_linear_in_features():
    b = _bandit()
    np.testing.assert_allclose(b.rewards, b.features @ b.reward_weights, rtol=1e-5, atol=1e-6)
    assert b.features.shape == (3, 6, 4) and b.base_logits.shape == (3, 6)


def test_support_mask_sizes_and_global():
    m = bandits.support_mask(jax.random.key(1), 5, 7, 3)
    np.testing.assert_array_equal(m.sum(-1), 3)
    assert bool(bandits.support_mask(jax.random.key(1), 5, 7, 7).all())
    # a traced size works under vmap (sweeps over coverage levels)
    ms = jax.vmap(lambda k: bandits.support_mask(jax.random.key(2), 4, 6, k))(jnp.array([2, 4, 6]))
    np.testing.assert_array_equal(ms.sum(-1), [[2] * 4, [4] * 4, [6] * 4])


def test_support_without_best_excludes_argmax():
    b = _bandit(n=8)
    m = bandits.support_without_best(jax.random.key(3), b.rewards, 4)
    best = jnp.argmax(b.rewards, -1)
    assert not bool(m[jnp.arange(3), best].any())
    np.testing.assert_array_equal(m.sum(-1), 4)


@pytest.mark.parametrize("mass", [0.1, 0.5, 0.9])
def test_reference_with_outside_mass(mass):
    b = _bandit()
    s = bandits.support_mask(jax.random.key(4), 3, 6, 2)
    lr = bandits.reference_with_outside_mass(b.base_logits, s, mass)
    p = np.exp(np.asarray(lr))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.where(s, 0, p).sum(-1), mass, rtol=1e-5)
    # relative weights inside S follow the base logits
    bl = np.asarray(b.base_logits)
    for x in range(3):
        idx = np.flatnonzero(np.asarray(s[x]))
        np.testing.assert_allclose(lr[x, idx[0]] - lr[x, idx[1]], bl[x, idx[0]] - bl[x, idx[1]], atol=1e-5)


def test_reference_global_is_base():
    b = _bandit()
    lr = bandits.reference_with_outside_mass(b.base_logits, jnp.ones((3, 6), bool), 0.3)
    np.testing.assert_allclose(lr, jax.nn.log_softmax(b.base_logits), atol=1e-6)


def test_sample_pairs_stay_in_support_and_follow_bt():
    b = _bandit(x=1, n=4)
    s = jnp.array([[True, True, False, False]])
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.5)
    pairs = bandits.sample_pairs(jax.random.key(5), b.rewards, lr, s, 20000)
    used = bandits.pair_support(pairs, 1, 4)
    np.testing.assert_array_equal(used, s)
    np.testing.assert_allclose(float(pairs.weight.sum()), 1.0, rtol=1e-5)
    valid = np.asarray(pairs.weight) > 0
    r = np.asarray(b.rewards[0])
    best = int(np.argmax(r[:2]))
    win_rate = np.mean(np.asarray(pairs.y_w)[valid] == best)
    expected = 1 / (1 + np.exp(-abs(r[0] - r[1])))
    assert abs(win_rate - expected) < 0.02


def test_population_pairs_weights():
    b = _bandit(x=2, n=3)
    s = jnp.array([[True, True, False], [True, True, True]])
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.2)
    pairs = bandits.population_pairs(b.rewards, lr, s)
    w = np.asarray(pairs.weight).reshape(2, 3, 3)
    np.testing.assert_allclose(w.sum((1, 2)), 0.5, rtol=1e-5)
    assert np.all(w[0, 2, :] == 0) and np.all(w[0, :, 2] == 0)
    np.testing.assert_array_equal(np.diagonal(w, axis1=1, axis2=2), 0)
    # soft label: w[y, y'] / (w[y, y'] + w[y', y]) = sigmoid(r_y - r_y')
    r = np.asarray(b.rewards[1])
    np.testing.assert_allclose(w[1, 0, 1] / (w[1, 0, 1] + w[1, 1, 0]), 1 / (1 + np.exp(r[1] - r[0])), rtol=1e-5)
    np.testing.assert_array_equal(bandits.pair_support(pairs, 2, 3), s)


def test_seeded_and_jittable():
    f = jax.jit(lambda k: bandits.linear_bandit(k, 2, 5, 3))
    a, b2 = f(jax.random.key(7)), bandits.linear_bandit(jax.random.key(7), 2, 5, 3)
    np.testing.assert_allclose(a.rewards, b2.rewards, rtol=1e-5, atol=1e-6)
