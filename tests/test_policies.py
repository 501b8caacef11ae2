"""Tests for the policy families of :mod:`alignjax.policies` (tabular, log-linear, MLP).

Contract checked for every family: ``log_probs`` is a normalised log-distribution over the
last axis with the prompt input's batch axes in front; ``init`` is pure (works under
``vmap`` over keys); :func:`sample` draws from the right distribution, deterministically per
key; :func:`log_prob_of` agrees with ``log_probs``; jit == no-jit; gradients reach every
parameter. Then family-specific closed forms (softmax gradients, the log-linear tilt
``pi ∝ pi_ref exp(<phi, theta>)``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from alignjax.policies import Policy, log_prob_of, loglinear, mlp, sample, tabular

N = 5  # responses
D = 3  # features


def _features(key, batch=()):
    return jax.random.normal(key, (*batch, N, D))


# name -> (policy, x for one prompt, x with batch shape (2, 3)); cached so that every test
# sees the same Policy object and the compiled sampler below is reused across tests.
@functools.cache
def _family(name):
    kx = jax.random.key(123)
    if name == "tabular":
        return tabular(4, N, init_scale=1.0), jnp.asarray(2), jnp.array([[0, 1, 2], [3, 3, 1]])
    if name == "loglinear":
        return loglinear(D, N, init_scale=1.0), _features(kx), _features(kx, (2, 3))
    if name == "mlp":
        return mlp(D, N, width=8, depth=2), jax.random.normal(kx, (D,)), jax.random.normal(kx, (2, 3, D))
    raise AssertionError(name)


FAMILIES = ["tabular", "loglinear", "mlp"]


@functools.cache
def _params(name):
    return _family(name)[0].init(jax.random.key(7))


@pytest.fixture(params=FAMILIES)
def family(request):
    policy, x1, xb = _family(request.param)
    return request.param, policy, _params(request.param), x1, xb


# One compiled sampler per (policy, input shape, sample shape): compiling the categorical
# sampler dominates these tests, so they all draw (NUM_DRAWS,) samples for the batched input.
_sample = jax.jit(sample, static_argnums=(0, 4))
NUM_DRAWS = 20_000


# ----------------------------------------------------------------------------- log_probs
def test_log_probs_are_normalised_with_batch_shapes(family):
    _, policy, params, x1, xb = family
    assert isinstance(policy, Policy) and policy.num_responses == N
    one = policy.log_probs(params, x1)
    batch = policy.log_probs(params, xb)
    assert one.shape == (N,)
    assert batch.shape == (2, 3, N)
    for lp in (one, batch):
        assert bool(jnp.all(jnp.isfinite(lp))) and bool(jnp.all(lp <= 0.0))
        np.testing.assert_allclose(np.asarray(jax.nn.logsumexp(lp, axis=-1)), 0.0, atol=1e-6)
    # Not a degenerate (uniform) distribution, so the sampling tests below are informative.
    assert float(jnp.max(one) - jnp.min(one)) > 0.05


def test_batched_log_probs_equal_per_prompt(family):
    _, policy, params, _, xb = family
    batch = policy.log_probs(params, xb)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(np.asarray(batch[i, j]), np.asarray(policy.log_probs(params, xb[i, j])),
                                       rtol=1e-6, atol=1e-6)


def test_jit_equals_no_jit(family):
    _, policy, params, x1, xb = family
    for x in (x1, xb):
        np.testing.assert_allclose(np.asarray(jax.jit(policy.log_probs)(params, x)),
                                   np.asarray(policy.log_probs(params, x)), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- init
def test_init_under_vmap_over_keys(family):
    _, policy, _, x1, _ = family
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.vmap(policy.init)(keys)
    init = policy.init  # eager: cheaper here than compiling init (the vmap above dominates)
    for i in range(3):
        one = init(keys[i])
        assert jax.tree.structure(one) == jax.tree.structure(stacked)
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(stacked)):
            np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-6, atol=1e-7)
    # Different keys give different policies.
    lps = jax.vmap(lambda p: policy.log_probs(p, x1))(stacked)
    assert lps.shape == (3, N)
    assert float(jnp.max(jnp.abs(lps[0] - lps[1]))) > 1e-3
    # The same key gives the same parameters.
    for a, b in zip(jax.tree.leaves(init(keys[0])), jax.tree.leaves(init(keys[0]))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------- sampling


def _chi2_stat(samples, probs):
    counts = np.bincount(np.asarray(samples).ravel(), minlength=len(probs))
    expected = len(np.asarray(samples).ravel()) * np.asarray(probs, np.float64)
    return float(np.sum((counts - expected) ** 2 / expected))


def test_sample_frequencies_match_probabilities(family):
    """Pearson chi-square against pi(.|x); threshold at the 1 - 1e-6 quantile of chi2(N-1)."""
    _, policy, params, x1, xb = family
    threshold = stats.chi2.ppf(1 - 1e-6, df=N - 1)
    yb = _sample(policy, params, xb, jax.random.key(12), (NUM_DRAWS,))
    assert yb.shape == (NUM_DRAWS, 2, 3) and jnp.issubdtype(yb.dtype, jnp.integer)
    probs = np.exp(np.asarray(policy.log_probs(params, xb), np.float64))
    probs /= probs.sum(axis=-1, keepdims=True)
    for i in range(2):
        for j in range(3):
            assert _chi2_stat(yb[:, i, j], probs[i, j]) < threshold, (i, j)
    # Power: the same draws are clearly rejected against the uniform distribution and against
    # another prompt's distribution (so a sampler ignoring x, or the batch layout, would fail).
    assert _chi2_stat(yb[:, 0, 0], np.full(N, 1.0 / N)) > 10 * threshold
    assert _chi2_stat(yb[:, 0, 0], probs[1, 2]) > 10 * threshold


def test_same_key_same_samples_different_keys_differ(family):
    _, policy, params, _, xb = family
    a = _sample(policy, params, xb, jax.random.key(5), (NUM_DRAWS,))
    b = _sample(policy, params, xb, jax.random.key(5), (NUM_DRAWS,))
    c = _sample(policy, params, xb, jax.random.key(6), (NUM_DRAWS,))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.mean(np.asarray(a) != np.asarray(c)) > 0.2


def test_log_prob_of_is_consistent_with_log_probs(family):
    _, policy, params, x1, xb = family
    lp = np.asarray(policy.log_probs(params, xb))
    y = jnp.array([[0, 4, 2], [1, 1, 3]])
    got = np.asarray(log_prob_of(policy, params, xb, y))
    assert got.shape == (2, 3)
    expected = np.array([[lp[i, j, int(y[i, j])] for j in range(3)] for i in range(2)])
    np.testing.assert_array_equal(got, expected)
    # Summing pi(y|x) over every y gives 1.
    total = sum(float(jnp.exp(log_prob_of(policy, params, x1, jnp.asarray(k)))) for k in range(N))
    assert total == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- gradients
def test_gradients_flow_to_every_parameter(family):
    _, policy, params, _, xb = family
    y = jnp.array([[0, 4, 2], [1, 1, 3]])
    grads = jax.grad(lambda p: jnp.sum(log_prob_of(policy, p, xb, y)))(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for g in jax.tree.leaves(grads):
        assert bool(jnp.all(jnp.isfinite(g)))
        assert float(jnp.max(jnp.abs(g))) > 1e-6
    # The gradient of sum_y pi(y|x) = 1 is zero (normalisation holds for every parameter value).
    g1 = jax.grad(lambda p: jnp.sum(jnp.exp(policy.log_probs(p, xb))))(params)
    for g in jax.tree.leaves(g1):
        assert float(jnp.max(jnp.abs(g))) < 1e-5


def test_tabular_gradient_closed_form():
    """d log pi(y|x) / d theta[x'] = 1[x'=x] (e_y - pi(.|x))."""
    policy = tabular(3, N, init_scale=1.0)
    theta = policy.init(jax.random.key(1))
    g = jax.grad(lambda t: log_prob_of(policy, t, jnp.asarray(1), jnp.asarray(3)))(theta)
    expected = np.zeros((3, N))
    expected[1] = np.eye(N)[3] - np.exp(np.asarray(policy.log_probs(theta, 1)))
    np.testing.assert_allclose(np.asarray(g), expected, atol=1e-6)


def test_loglinear_gradient_closed_form():
    """d log pi(y|x) / d theta = phi(x, y) - E_{y'~pi} phi(x, y')."""
    policy = loglinear(D, N, init_scale=1.0)
    theta = policy.init(jax.random.key(2))
    phi = _features(jax.random.key(3))
    g = jax.grad(lambda t: log_prob_of(policy, t, phi, jnp.asarray(4)))(theta)
    pi = np.exp(np.asarray(policy.log_probs(theta, phi)))
    np.testing.assert_allclose(np.asarray(g), np.asarray(phi)[4] - pi @ np.asarray(phi), atol=1e-5)


# ----------------------------------------------------------------------------- family-specific
def test_tabular_init_logits_start_at_the_reference():
    log_ref = jax.nn.log_softmax(jax.random.normal(jax.random.key(4), (2, N)), axis=-1)
    policy = tabular(2, N, init_logits=log_ref)
    theta = policy.init(jax.random.key(0))
    assert theta.shape == (2, N)
    np.testing.assert_allclose(np.asarray(policy.log_probs(theta, jnp.arange(2))), np.asarray(log_ref), atol=1e-6)
    # One shared row broadcasts over prompts.
    shared = tabular(3, N, init_logits=log_ref[0]).init(jax.random.key(0))
    np.testing.assert_allclose(np.asarray(shared), np.broadcast_to(np.asarray(log_ref[0]), (3, N)), atol=0)
    # init_scale = 0 (default) is the uniform policy.
    uni = tabular(2, N)
    np.testing.assert_allclose(np.asarray(uni.log_probs(uni.init(jax.random.key(0)), 0)), -np.log(N), atol=1e-6)


def test_loglinear_with_reference_bias_and_zero_theta_is_the_reference():
    phi = _features(jax.random.key(5))
    log_ref = jax.nn.log_softmax(jax.random.normal(jax.random.key(6), (N,)))
    policy = loglinear(D, N, bias=log_ref)
    theta = policy.init(jax.random.key(0))  # init_scale = 0 -> theta = 0
    np.testing.assert_array_equal(np.asarray(theta), np.zeros(D))
    np.testing.assert_allclose(np.asarray(policy.log_probs(theta, phi)), np.asarray(log_ref), atol=1e-6)
    # The (phi, b) pair input does the same with a per-prompt offset, overriding the bias.
    no_bias = loglinear(D, N)
    np.testing.assert_allclose(np.asarray(no_bias.log_probs(theta, (phi, log_ref))), np.asarray(log_ref), atol=1e-6)
    # theta != 0 is the exponential tilt pi ∝ pi_ref exp(<phi, theta>).
    t = jnp.array([0.5, -1.0, 2.0])
    tilt = np.asarray(log_ref, np.float64) + np.asarray(phi, np.float64) @ np.asarray(t, np.float64)
    tilt -= np.logaddexp.reduce(tilt)
    np.testing.assert_allclose(np.asarray(policy.log_probs(t, phi)), tilt, atol=1e-5)
    # Without bias, theta = 0 is uniform.
    np.testing.assert_allclose(np.asarray(no_bias.log_probs(theta, phi)), -np.log(N), atol=1e-6)
