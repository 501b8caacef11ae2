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


def _pair_law(log_ref, rewards, support):
    """Float64 oracle: ``(X, N, N)`` law of "y beats y'" given x and y != y' (y, y' ~ mu_S i.i.d.,
    ``mu_S ∝ pi_ref 1[S]``, Bradley-Terry label ``sigmoid(r_y - r_y')``)."""
    ref, r = np.asarray(log_ref, np.float64), np.asarray(rewards, np.float64)
    mu = np.where(np.asarray(support), np.exp(ref), 0.0)
    mu /= mu.sum(-1, keepdims=True)
    law = mu[:, :, None] * mu[:, None, :] / (1.0 + np.exp(r[:, None, :] - r[:, :, None]))
    law *= 1.0 - np.eye(r.shape[-1])
    return law / law.sum((1, 2), keepdims=True)


def test_sample_pairs_stay_in_support_and_follow_the_pair_law():
    b = _bandit(x=1, n=4)
    s = jnp.array([[True, True, True, False]])
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.5)
    pairs = bandits.sample_pairs(jax.random.key(5), b.rewards, lr, s, 20000)
    used = bandits.pair_support(pairs, 1, 4)
    np.testing.assert_array_equal(used, s)
    w = np.asarray(pairs.weight)
    valid = np.asarray(pairs.y_w) != np.asarray(pairs.y_l)
    np.testing.assert_array_equal(w > 0, valid)
    np.testing.assert_allclose(w[valid], 1.0 / valid.sum(), rtol=1e-6)  # equal weights (float32 ulp 6e-8)
    # Given the number n of valid pairs, the ordered (y_w, y_l) counts are multinomial(n, law):
    # each cell within 5 binomial SE sqrt(p (1 - p) / n) (false alarm 6e-7 per cell). The law
    # depends on mu_S (pi_ref within S), not only on the Bradley-Terry label: pairs drawn
    # uniformly on S, or with the label reversed, are rejected (see the power check below).
    law = _pair_law(lr, b.rewards, s)[0]
    n = valid.sum()
    freq = np.zeros((4, 4))
    np.add.at(freq, (np.asarray(pairs.y_w)[valid], np.asarray(pairs.y_l)[valid]), 1.0 / n)
    se = np.sqrt(law * (1 - law) / n)
    assert np.all(np.abs(freq - law) <= 5 * se), (freq, law)
    uniform_s = _pair_law(np.where(s, 0.0, -1.0), b.rewards, s)[0]
    assert np.any(np.abs(freq - uniform_s) > 5 * se)
    assert np.any(np.abs(freq - law.T) > 5 * se)                        # reversed labels


def test_population_pairs_match_the_float64_oracle():
    """Every row weight is (1/X) times the pair law: a wrong mu_S (uniform on S, pi_ref outside S,
    squared, ...) changes the weights, not only their ratios."""
    with jax.enable_x64(True):
        b = _bandit(x=2, n=3)
        s = jnp.array([[True, True, False], [True, True, True]])
        lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.2)
        pairs = bandits.population_pairs(b.rewards, lr, s)
        law = _pair_law(lr, b.rewards, s)
        np.testing.assert_array_equal(bandits.pair_support(pairs, 2, 3), s)
    x, yw, yl = np.meshgrid(np.arange(2), np.arange(3), np.arange(3), indexing="ij")
    for got, want in zip(pairs[:3], (x, yw, yl)):
        np.testing.assert_array_equal(np.asarray(got), want.ravel())
    # float64 products and one normalisation of O(1) numbers: rtol 1e-12
    np.testing.assert_allclose(np.asarray(pairs.weight).reshape(2, 3, 3), law / 2, rtol=1e-12, atol=1e-15)
    # the law is not the uniform-on-S one (so the check above sees mu_S), at 1e-3 >> 1e-12
    assert np.abs(law - _pair_law(np.where(s, 0.0, -1.0), b.rewards, s)).max() > 1e-3


def test_seeded_and_jittable():
    f = jax.jit(lambda k: bandits.linear_bandit(k, 2, 5, 3))
    a, b2 = f(jax.random.key(7)), bandits.linear_bandit(jax.random.key(7), 2, 5, 3)
    np.testing.assert_allclose(a.rewards, b2.rewards, rtol=1e-5, atol=1e-6)
