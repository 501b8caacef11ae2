"""Online RLHF (alignjax.rlhf): RLOO estimator, exact gradient, convergence to the closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import rlhf
from alignjax.data import bandits
from alignjax.metrics import coverage as cov
from alignjax.policies import tabular
from alignjax.reward_model import tabular_reward


def test_loo_advantages_hand_case():
    a = rlhf.loo_advantages(jnp.array([[1.0], [2.0], [3.0]]))
    np.testing.assert_allclose(a[:, 0], [-1.5, 0.0, 1.5])


def _table_setup(x=2, n=4, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = jax.random.normal(k1, (x, n))
    log_ref = jax.nn.log_softmax(jax.random.normal(k2, (x, n)))
    r_hat = jax.random.normal(k3, (x, n))
    return params, log_ref, r_hat


def test_exact_gradient_equals_reinforce_in_expectation():
    params, log_ref, r_hat = _table_setup()
    beta, k = 0.5, 4
    pol = tabular(2, 4)
    prompts = jnp.arange(2)
    exact = jax.grad(lambda p: rlhf.rlhf_objective(pol.log_probs(p, prompts), log_ref, r_hat, beta))(params)

    def estimate(key):
        def surrogate(p):
            table = pol.log_probs(p, prompts)
            ys = rlhf.on_policy_samples(table, key, k)
            g = lambda t: jnp.take_along_axis(t, ys.T, axis=-1).T  # noqa: E731
            return rlhf.reinforce_loo_surrogate(table, ys, g(r_hat) - beta * (g(table) - g(log_ref)))
        return jax.grad(surrogate)(params)

    est = jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.key(1), 20000))
    mean, se = est.mean(0), est.std(0) / np.sqrt(est.shape[0])
    # 5 SE per coordinate (false alarm 6e-7 each); 1e-4 absorbs the float32 rounding of a mean
    # of 20000 O(1) terms
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-4), (mean, exact)
    # the check has power: the same rule rejects the zero gradient
    assert np.any(np.abs(exact) > 5 * se + 1e-4)


def _problem(seed=0, x=2, n=4, support=None):
    b = bandits.linear_bandit(jax.random.key(seed), x, n, 3)
    s = jnp.ones((x, n), bool) if support is None else support
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.3)
    pairs = bandits.population_pairs(b.rewards, lr, s)
    return b, rlhf.Problem(jnp.arange(x), lr, pairs, b.features)


@pytest.mark.parametrize("mode", ["exact", pytest.param("sampled", marks=pytest.mark.slow)])
def test_rlhf_reaches_closed_form_of_learned_reward(mode):
    b, prob = _problem()
    pol = tabular(2, 4, init_logits=prob.log_pi_ref)
    trainer = rlhf.TRAINERS.get("rlhf")(pol, reward_model=tabular_reward(2, 4), mode=mode, num_samples=8,
                                         reward_steps=1500)
    hp = {"beta": jnp.float32(0.5), "learning_rate": jnp.float32(0.02), "reward_learning_rate": jnp.float32(0.05)}
    state, m = jax.jit(lambda key: rlhf.run_trainer(
        trainer, pol, pol.init(key), prob, hp, key, num_steps=1500, log_every=500,
        observe=lambda t: {"kl": cov.reverse_kl(t, prob.log_pi_ref).mean()}))(jax.random.key(0))
    r_hat = state.reward_params
    target = jax.nn.softmax(prob.log_pi_ref + r_hat / 0.5)
    got = jax.nn.softmax(pol.log_probs(state.params, prob.prompts))
    np.testing.assert_allclose(got, target, atol=0.02 if mode == "exact" else 0.05)
    # on global coverage the learned-reward optimum is the true optimum
    np.testing.assert_allclose(target, jnp.exp(cov.optimal_policy(prob.log_pi_ref, b.rewards, 0.5)), atol=0.02)
    assert m["kl"].shape == (4,) and float(m["kl"][0]) == pytest.approx(0.0, abs=1e-6)


def _policy_gradient_oracle(theta, log_ref, r_hat, beta):
    """Float64 numpy ``d(-J)/dtheta`` for a tabular policy: ``-(1/X) pi (f - E_pi f)``,
    ``f = r_hat - beta log pi/pi_ref`` (the ``-beta E_pi[d log pi]`` term vanishes)."""
    th, ref, r = (np.asarray(a, np.float64) for a in (theta, log_ref, r_hat))
    lp = th - np.logaddexp.reduce(th, axis=-1, keepdims=True)
    p = np.exp(lp)
    f = r - beta * (lp - ref)
    return -p * (f - np.sum(p * f, -1, keepdims=True)) / th.shape[0]


@pytest.mark.parametrize("mode", ["exact", "sampled"])
def test_rlhf_trainer_step_matches_the_oracle_gradient(mode):
    """One SGD ``update`` of the registered trainer: exact mode is ``theta - lr g`` (g from the
    oracle at the fitted r_hat); sampled mode (RLOO, k = 4) has mean ``theta - lr g`` over 4000 keys."""
    with jax.enable_x64(True):
        _, prob = _problem()
        pol = tabular(2, 4)
        trainer = rlhf.TRAINERS.get("rlhf")(pol, reward_model=tabular_reward(2, 4), mode=mode, num_samples=4,
                                             optimizer="sgd", reward_steps=5)
        hp = {"beta": jnp.float64(0.5), "learning_rate": jnp.float64(1.0), "reward_learning_rate": jnp.float64(0.5)}
        theta0 = jax.random.normal(jax.random.key(3), (2, 4), jnp.float64)
        state = jax.jit(trainer.init)(theta0, prob, hp, jax.random.key(0))
        g = _policy_gradient_oracle(theta0, prob.log_pi_ref, state.reward_params, 0.5)
        assert np.any(np.asarray(state.reward_params) != 0)   # r_hat was fitted: g has a reward term
        if mode == "exact":
            new = jax.jit(trainer.update)(state, prob, hp, jax.random.key(1))[0].params
            # float64, O(10) operations on O(1) numbers: tolerance 1e-12
            np.testing.assert_allclose(np.asarray(new), np.asarray(theta0) - g, rtol=0, atol=1e-12)
            return
        keys = jax.random.split(jax.random.key(2), 4000)
        new = jax.jit(jax.vmap(lambda k: trainer.update(state, prob, hp, k)[0].params))(keys)
        est = np.asarray(theta0)[None] - np.asarray(new)             # lr = 1
        mean, se = est.mean(0), est.std(0) / np.sqrt(est.shape[0])
        # 5 SE per coordinate (false alarm 6e-7 each)
        assert np.all(np.abs(mean - g) <= 5 * se), (mean, g, se)
        # the check has power: a KL term of the wrong sign (beta -> -beta) is rejected
        wrong = _policy_gradient_oracle(theta0, prob.log_pi_ref, state.reward_params, -0.5)
        assert np.any(np.abs(mean - wrong) > 5 * se)


def test_options_are_validated():
    pol = tabular(2, 4)
    with pytest.raises(ValueError, match="reward_model"):
        rlhf.rlhf(pol)
    with pytest.raises(ValueError, match="greedy"):
        rlhf.rlhf(pol, reward_model=tabular_reward(2, 4), mode="greedy")
    with pytest.raises(ValueError, match="num_samples"):
        rlhf.rlhf(pol, reward_model=tabular_reward(2, 4), mode="sampled", num_samples=1)
    with pytest.raises(ValueError, match="beta"):
        rlhf.check_hparams({"beta": np.array([0.1, -1.0])}, ("beta",))
    with pytest.raises(ValueError, match="lam"):
        rlhf.check_hparams({"lam": -0.1}, ("lam",))
    rlhf.check_hparams({"lam": 0.0, "beta": 0.1}, ("lam", "beta"))
