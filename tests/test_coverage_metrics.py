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


def _report_oracle(lp, lq, r, s, beta, rho):
    """Every field of ``coverage_report`` in float64 numpy, from the definitions."""
    lp, lq, r = (np.asarray(a, np.float64) for a in (lp, lq, r))
    p, q = np.exp(lp), np.exp(lq)
    reward = (p * r).sum(-1) @ rho
    kl = (p * np.where(p > 0, lp - lq, 0.0)).sum(-1) @ rho          # 0 log 0 = 0
    best = (beta * np.log((q * np.exp(r / beta)).sum(-1))) @ rho    # max_pi E_pi r - beta KL (Gibbs)
    ratio = np.max(p / q)
    return {"reward": reward, "kl": kl, "objective": reward - beta * kl, "gap": best - (reward - beta * kl),
            "mass_outside": (p * ~np.asarray(s)).sum(-1) @ rho, "max_ratio": ratio, "log_max_ratio": np.log(ratio)}


def test_coverage_report_matches_a_float64_oracle():
    """Non-uniform prompt weights, a policy with an exact zero, jit == no-jit."""
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
        lp = jax.nn.log_softmax(jax.random.normal(k1, (4, 5)))
        lp = lp.at[0].set(jax.nn.log_softmax(jnp.array([0.3, -jnp.inf, 1.0, 0.0, -0.5])))  # pi(1|0) = 0
        lq = jax.nn.log_softmax(jax.random.normal(k2, (4, 5)))
        r = jax.random.normal(k3, (4, 5))
        s = jnp.arange(5)[None, :] < jnp.array([[2], [3], [4], [5]])
        rho = jnp.array([0.1, 0.2, 0.3, 0.4])
        for w in (rho, None):
            rep = cov.coverage_report(lp, lq, r, s, 0.3, w)
            rep_jit = jax.jit(cov.coverage_report)(lp, lq, r, s, 0.3, w)
            want = _report_oracle(lp, lq, r, s, 0.3, np.full(4, 0.25) if w is None else np.asarray(w))
            assert set(rep) == set(want)
            for k, v in want.items():
                # float64 sums of 20 O(1) terms: rounding ~1e-15; rtol/atol 1e-12
                np.testing.assert_allclose(float(rep[k]), v, rtol=1e-12, atol=1e-12, err_msg=k)
                np.testing.assert_allclose(float(rep_jit[k]), v, rtol=1e-12, atol=1e-12, err_msg=k)
        assert float(rep["gap"]) > 0
        # at the optimum pi* ∝ pi_ref exp(r / beta) (written here) the gap is zero
        opt = lq + r / 0.3 - jax.nn.logsumexp(lq + r / 0.3, axis=-1, keepdims=True)
        np.testing.assert_allclose(float(cov.coverage_report(opt, lq, r, s, 0.3, rho)["gap"]), 0.0, atol=1e-12)


def test_global_coverage_is_one_over_the_smallest_reference_probability():
    q = jnp.log(jnp.array([[0.5, 0.3, 0.2], [0.7, 0.29, 0.01]]))
    np.testing.assert_allclose(cov.global_coverage(q), 100.0, rtol=1e-5)


def test_local_coverage_solves_the_binary_kl_constraint():
    """``C(kappa)``: for each response the largest ``p/q`` with ``kl(p, q) <= kappa`` (other responses in
    their reference proportions), checked against a float64 bisection written here; a radius that
    fits all the mass gives ``1/q``; a zero radius gives 1; growing the radius grows ``C``."""
    q = np.array([[0.5, 0.3, 0.2], [0.9, 0.0999, 1e-4]])

    def oracle(qq, kappa):
        def kl(p):
            return p * np.log(p / qq) + ((1 - p) * np.log((1 - p) / (1 - qq)) if p < 1 else 0.0)
        if -np.log(qq) <= kappa:
            return 1.0 / qq
        lo, hi = qq, 1.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if kl(mid) <= kappa else (lo, mid)
        return lo / qq

    for kappa in (0.01, 0.5, 2.0):
        got = np.asarray(cov.local_coverage(jnp.log(jnp.asarray(q, jnp.float32)), kappa))
        want = [max(oracle(v, kappa) for v in row) for row in q]
        np.testing.assert_allclose(got, want, rtol=1e-4)
    # radius 0: float32 kl(p, q) ~ (p - q)^2 / (2 q (1 - q)) sits at rounding level (~1e-7) for
    # |p - q| / q up to ~sqrt(2e-7 / q) ~ 1e-3, so C(0) = 1 only to that precision
    np.testing.assert_allclose(cov.local_coverage(jnp.log(jnp.asarray(q[:1], jnp.float32)), 0.0), [1.0], rtol=2e-3)
    small, big = (float(cov.local_coverage(jnp.log(jnp.asarray(q[1], jnp.float32)), k)) for k in (0.1, 1.0))
    assert 1.0 < small < big < float(cov.global_coverage(jnp.log(jnp.asarray(q[1], jnp.float32))))
