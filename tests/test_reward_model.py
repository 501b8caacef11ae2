"""Bradley–Terry reward-model fits (alignjax.reward_model)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import reward_model as rm
from alignjax.data import bandits


def _global_problem(x=2, n=4, d=3, seed=0):
    b = bandits.linear_bandit(jax.random.key(seed), x, n, d, reward_scale=1.0)
    s = jnp.ones((x, n), bool)
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.0)
    return b, s, bandits.population_pairs(b.rewards, lr, s)


def test_bt_loss_at_zero_is_log2():
    b, _, pairs = _global_problem()
    np.testing.assert_allclose(rm.bt_loss(jnp.zeros((2, 4)), pairs), np.log(2.0), rtol=1e-6)


def _centered(r):
    r = np.asarray(r)
    return r - r.mean(-1, keepdims=True)


@pytest.mark.parametrize("kind", ["tabular", "linear"])
def test_fit_recovers_rewards_up_to_constant_on_full_coverage(kind):
    b, _, pairs = _global_problem()
    model = rm.tabular_reward(2, 4) if kind == "tabular" else rm.linear_reward(3)
    params, losses = jax.jit(lambda: rm.fit_reward(model, b.features, pairs, 0.05, 1500, jax.random.key(1)))()
    assert float(losses[-1]) < float(losses[0])
    np.testing.assert_allclose(_centered(model.rewards(params, b.features)), _centered(b.rewards), atol=0.03)


def test_tabular_fit_leaves_unseen_responses_at_zero():
    b = bandits.linear_bandit(jax.random.key(2), 2, 5, 3)
    s = jnp.array([[True, True, True, False, False]] * 2)
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.3)
    pairs = bandits.population_pairs(b.rewards, lr, s)
    params, _ = rm.fit_reward(rm.tabular_reward(2, 5), b.features, pairs, 0.05, 300, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(params)[:, 3:], 0.0)
    assert np.all(np.abs(np.asarray(params)[:, :3]) > 0)


def test_sgd_step_is_gradient_step():
    b, _, pairs = _global_problem()
    model = rm.tabular_reward(2, 4)
    fitter = rm.reward_fitter(model, "sgd")
    st, loss = fitter.update(fitter.init(model.init(jax.random.key(0))), b.features, pairs, 0.5)
    g = jax.grad(lambda p: rm.bt_loss(p, pairs))(jnp.zeros((2, 4)))
    np.testing.assert_allclose(st.params, -0.5 * g, rtol=1e-6)
    np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-6)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="rmsprop"):
        rm.scaled_optimizer("rmsprop")
