"""alignjax.metrics.bandit: exact limits of preference optimisation on a tabular bandit."""

import jax
import jax.numpy as jnp
import numpy as np

from alignjax.losses import dpo
from alignjax.metrics import optimal_policy
from alignjax.metrics.bandit import comparison_reach, coverage_limit, implicit_reward_mse, ipo_optimum


def _instance(seed, n=6):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=n)
    log_ref = np.log(rng.dirichlet(np.ones(n)))
    P = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    return r, log_ref, P


def test_ipo_optimum_two_actions_matches_the_paper_example():
    # Azar et al. Sec. 5.3.1: deterministic preference, uniform pi_ref: pi(y1) = sigmoid(0.5 / tau).
    P = np.array([[0.5, 1.0], [0.0, 0.5]])
    for tau in (0.1, 1.0, 10.0):
        pi = np.exp(np.asarray(ipo_optimum(np.log([0.5, 0.5]), P, tau)))
        assert np.allclose(pi[0], 1.0 / (1.0 + np.exp(-0.5 / tau)), rtol=1e-6)


def test_ipo_optimum_minimises_the_population_ipo_loss():
    r, log_ref, P = _instance(0)
    beta = 0.3
    with jax.enable_x64(True):
        off = 1.0 - np.eye(len(r))

        def loss(theta):  # (1/N) sum_{y != y'} P[y,y'] (h - 1/(2 beta))^2, h the log-ratio margin
            d = theta - log_ref
            h = d[:, None] - d[None, :]
            return jnp.sum(off * P * jnp.square(h - 1.0 / (2 * beta))) / len(r)

        descend = jax.jit(lambda t: jax.lax.fori_loop(0, 400, lambda _, t: t - 0.2 * jax.grad(loss)(t), t))
        got = np.asarray(jax.nn.log_softmax(descend(jnp.asarray(log_ref))))
        want = np.asarray(ipo_optimum(log_ref, P, beta))
    assert np.max(np.abs(got - want)) < 1e-10
    # ... and it is not DPO's optimum pi_ref exp(r / beta)
    dpo_star = np.asarray(optimal_policy(log_ref.astype(np.float32), r.astype(np.float32), beta))
    assert np.max(np.abs(want - dpo_star)) > 0.5


def test_comparison_reach_finds_components():
    first, second = np.array([0, 1, 3, 0]), np.array([1, 2, 4, 5])
    used = np.array([1.0, 1.0, 1.0, 0.0])  # the last pair (0, 5) is not observed
    R = np.asarray(comparison_reach(first, second, used, 6))
    comp = [{0, 1, 2}, {3, 4}, {5}]
    for c in comp:
        for a in range(6):
            for b in range(6):
                if a in c:
                    assert R[a, b] == (b in c), (a, b)
    # batched over a leading axis
    Rb = np.asarray(comparison_reach(np.stack([first, first]), np.stack([second, second]),
                                     np.stack([used, np.ones(4)]), 6))
    assert Rb.shape == (2, 6, 6) and (Rb[0] == R).all() and Rb[1, 0, 5] and not Rb[1, 0, 3]


def test_coverage_limit_is_where_dpo_descent_on_sampled_pairs_ends():
    r, log_ref, _ = _instance(1, n=7)
    beta = 0.5
    first, second = np.array([0, 1, 2, 4, 4]), np.array([1, 2, 0, 5, 5])  # {0,1,2}, {4,5}, {3}, {6}
    alpha = 1.0 / (1.0 + np.exp(-(r[first] - r[second])))
    with jax.enable_x64(True):
        def loss(theta):
            lp = jax.nn.log_softmax(theta)
            a, b, ra, rb = lp[first], lp[second], log_ref[first], log_ref[second]
            return jnp.sum(alpha * dpo(a, b, ra, rb, beta=beta) + (1 - alpha) * dpo(b, a, rb, ra, beta=beta))

        descend = jax.jit(lambda t: jax.lax.fori_loop(0, 3000, lambda _, t: t - (1.0 / beta**2) * jax.grad(loss)(t), t))
        got = np.asarray(jax.nn.log_softmax(descend(jnp.asarray(log_ref))))
        reach = comparison_reach(first, second, np.ones(5), 7)
        want = np.asarray(coverage_limit(log_ref, log_ref, r, beta, reach))
        star = np.asarray(optimal_policy(log_ref, r, beta))
    assert np.max(np.abs(got - want)) < 1e-8
    assert np.max(np.abs(want - star)) > 0.1  # the graph is not connected: not pi*
    # fully connected: the limit is pi*
    full = np.ones((7, 7), dtype=bool)
    assert np.max(np.abs(np.asarray(coverage_limit(log_ref, log_ref, r, beta, full)) - star)) < 1e-6


def test_implicit_reward_mse_zero_at_optimum_and_shift_invariant():
    r, log_ref, _ = _instance(2)
    beta = 0.2
    star = np.asarray(optimal_policy(log_ref, r, beta))
    assert float(implicit_reward_mse(star, log_ref, r, beta)) < 1e-10
    assert float(implicit_reward_mse(star, log_ref, r + 3.0, beta)) < 1e-10
    e = np.array([0.1, -0.2, 0.3, 0.0, 0.0, -0.2])  # error in reward units
    lp = np.asarray(jax.nn.log_softmax(star + e / beta))
    assert np.isclose(float(implicit_reward_mse(lp, log_ref, r, beta)), np.var(e), rtol=1e-4)
