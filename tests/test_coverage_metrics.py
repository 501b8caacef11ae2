"""Coverage metrics on hand-made cases (alignjax.metrics.coverage)."""

import jax
import jax.numpy as jnp
import numpy as np

from alignjax.metrics import coverage as cov


def test_reverse_kl_hand_case():
    p = jnp.log(jnp.array([0.5, 0.5, 0.0]))
    q = jnp.log(jnp.array([0.25, 0.25, 0.5]))
    np.testing.assert_allclose(cov.reverse_kl(p, q), np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(cov.reverse_kl(q, q), 0.0, atol=1e-7)


def test_max_ratio_mass_outside_and_coverage():
    p = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
    q = jnp.log(jnp.array([[0.5, 0.4, 0.1]]))
    s = jnp.array([[True, True, False]])
    np.testing.assert_allclose(cov.max_density_ratio(p, q), [1.4], rtol=1e-6)
    np.testing.assert_allclose(cov.mass_outside(p, s), [0.1], rtol=1e-6)
    np.testing.assert_allclose(cov.data_coverage(s), [2 / 3], rtol=1e-6)
    np.testing.assert_allclose(cov.data_coverage(s, q), [0.9], rtol=1e-6)


def test_objective_and_optimum():
    r = jnp.array([1.0, 0.0, -1.0])
    q = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    beta = 0.5
    opt = cov.optimal_policy(q, r, beta)
    best = cov.optimal_objective(q, r, beta)
    np.testing.assert_allclose(cov.kl_objective(opt, q, r, beta), best, rtol=1e-5)
    # any other policy does worse; the reference scores E_ref r
    np.testing.assert_allclose(cov.kl_objective(q, q, r, beta), 0.2 - 0.5, rtol=1e-6)
    for other in (q, jnp.log(jnp.array([0.9, 0.05, 0.05]))):
        assert float(cov.kl_objective(other, q, r, beta)) < float(best)
    # beta -> large: optimum approaches the reference
    np.testing.assert_allclose(jnp.exp(cov.optimal_policy(q, r, 1e4)), jnp.exp(q), atol=1e-3)


def test_coverage_report_batched_and_jitted():
    key = jax.random.key(0)
    lp = jax.nn.log_softmax(jax.random.normal(key, (4, 5)))
    lq = jax.nn.log_softmax(jnp.zeros((4, 5)))
    r = jnp.arange(5.0)[None, :] * jnp.ones((4, 1))
    s = jnp.arange(5)[None, :] < jnp.array([[2], [3], [4], [5]])
    rep = jax.jit(cov.coverage_report)(lp, lq, r, s, 0.3)
    np.testing.assert_allclose(rep["kl"], cov.reverse_kl(lp, lq).mean(), rtol=1e-5)
    np.testing.assert_allclose(rep["objective"], rep["reward"] - 0.3 * rep["kl"], rtol=1e-5)
    assert float(rep["gap"]) > 0
    np.testing.assert_allclose(rep["max_ratio"], jnp.max(jnp.exp(lp) / jnp.exp(lq)), rtol=1e-5)
    np.testing.assert_allclose(rep["mass_outside"], cov.mass_outside(lp, s).mean(), rtol=1e-5)
    # at the optimum the gap is zero
    opt = cov.optimal_policy(lq, r, 0.3)
    np.testing.assert_allclose(cov.coverage_report(opt, lq, r, s, 0.3)["gap"], 0.0, atol=1e-5)
