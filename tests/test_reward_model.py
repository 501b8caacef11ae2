"""Bradley–Terry reward-model fits (alignjax.reward_model)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit

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
    params, losses = jax.jit(lambda: rm.fit_reward(model, b.features, pairs, {"learning_rate": 0.05}, 1500,
                                                           jax.random.key(1)))()
    assert float(losses[-1]) < float(losses[0])
    np.testing.assert_allclose(_centered(model.rewards(params, b.features)), _centered(b.rewards), atol=0.03)


def test_tabular_fit_leaves_unseen_responses_at_zero():
    b = bandits.linear_bandit(jax.random.key(2), 2, 5, 3)
    s = jnp.array([[True, True, True, False, False]] * 2)
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.3)
    pairs = bandits.population_pairs(b.rewards, lr, s)
    params, _ = rm.fit_reward(rm.tabular_reward(2, 5), b.features, pairs, {"learning_rate": 0.05}, 300,
                              jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(params)[:, 3:], 0.0)
    assert np.all(np.abs(np.asarray(params)[:, :3]) > 0)


def _bt_oracle(r, pairs):
    """Float64 numpy value and gradient (w.r.t. the reward table) of sum_m w_m softplus(-(r_w - r_l))."""
    r = np.asarray(r, np.float64)
    x, yw, yl, w = (np.asarray(a) for a in pairs)
    d = r[x, yw] - r[x, yl]
    c = -w * expit(-d)                        # d softplus(-d) / dd = -sigmoid(-d)
    g = np.zeros_like(r)
    np.add.at(g, (x, yw), c)
    np.add.at(g, (x, yl), -c)
    return np.sum(w * np.logaddexp(0.0, -d)), g


@pytest.mark.parametrize("kind", ["tabular", "linear"])
def test_sgd_step_is_minus_lr_times_the_oracle_gradient(kind):
    """From a random (non-zero) start: params_1 = params_0 - lr * grad, grad from the numpy oracle
    (tabular: the table gradient; linear: chain rule ``sum_{x,y} g[x, y] phi[x, y]``)."""
    with jax.enable_x64(True):
        b, _, pairs = _global_problem()
        model = rm.tabular_reward(2, 4) if kind == "tabular" else rm.linear_reward(3)
        p0 = jax.random.normal(jax.random.key(5), (2, 4) if kind == "tabular" else (3,))
        fitter = rm.reward_fitter(model, "sgd")
        st, loss = jax.jit(fitter.update)(fitter.init(p0), b.features, pairs, {"learning_rate": jnp.float64(0.5)})
        table = np.asarray(p0) if kind == "tabular" else np.asarray(b.features) @ np.asarray(p0)
        value, g = _bt_oracle(table, pairs)
        grad = g if kind == "tabular" else np.einsum("xn,xnd->d", g, np.asarray(b.features))
        # float64 sums of 32 O(1) terms: rounding ~1e-15; tolerance 1e-12
        np.testing.assert_allclose(np.asarray(st.params), np.asarray(p0) - 0.5 * grad, rtol=0, atol=1e-12)
        np.testing.assert_allclose(float(loss), value, rtol=1e-12)   # the loss before the step


def _np_adam(p0, grad_fn, lr, steps, b1=0.9, b2=0.999, eps=1e-6):
    """Float64 numpy Adam (Kingma & Ba), eps outside the root; returns the iterates p_0..p_steps."""
    p, m, v, out = np.asarray(p0, np.float64), 0.0, 0.0, [np.asarray(p0, np.float64)]
    for t in range(1, steps + 1):
        g = grad_fn(p)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return np.stack(out)


@pytest.mark.parametrize("kind", ["tabular", "linear"])
def test_adam_steps_equal_a_float64_numpy_adam(kind):
    """Three ``reward_fitter(model, "adam")`` updates (optax, eps = 1e-6) == the numpy Adam above."""
    lr, steps = 0.1, 3
    with jax.enable_x64(True):
        b, _, pairs = _global_problem()
        model = rm.tabular_reward(2, 4) if kind == "tabular" else rm.linear_reward(3)
        p0 = jax.random.normal(jax.random.key(5), (2, 4) if kind == "tabular" else (3,))
        phi = np.asarray(b.features)

        def grad(p):
            if kind == "tabular":
                return _bt_oracle(p, pairs)[1]
            return np.einsum("xn,xnd->d", _bt_oracle(phi @ p, pairs)[1], phi)

        expected = _np_adam(p0, grad, lr, steps)
        # Adam's division is well conditioned only away from g = 0: every gradient here is >= 1e-3
        assert min(np.min(np.abs(grad(e))) for e in expected[:-1]) > 1e-3
        fitter = rm.reward_fitter(model, "adam")
        update = jax.jit(fitter.update)
        st = fitter.init(p0)
        for t in range(steps):
            st, _ = update(st, b.features, pairs, {"learning_rate": jnp.float64(lr)})
            # float64, O(50) operations on O(1) numbers, relative error ~1e-15: tolerance 1e-12
            np.testing.assert_allclose(np.asarray(st.params), expected[t + 1], rtol=0, atol=1e-12)
        assert np.max(np.abs(expected[-1] - expected[0])) > 0.1   # the steps moved the parameters


def test_learning_rate_is_traced_one_compile_serves_a_vmapped_sweep():
    """The learning rate is an array leaf of ``hparams``: a jitted fit traces once for any number of
    values, and ``vmap`` over learning rates equals separate runs."""
    traces = []
    with jax.enable_x64(True):
        b, _, pairs = _global_problem()
        model = rm.linear_reward(3)

        def fit(lr):
            traces.append(1)  # Python side effect: runs once per trace, not per call
            return rm.fit_reward(model, b.features, pairs, {"learning_rate": lr}, 50, jax.random.key(0))[0]

        lrs = jnp.array([0.01, 0.05, 0.2], jnp.float64)
        swept = jax.jit(jax.vmap(fit))(lrs)
        assert len(traces) == 1
        single = jax.jit(fit)
        runs = np.stack([np.asarray(single(lr)) for lr in lrs])
        assert len(traces) == 2        # one trace of the unbatched fit, shared by the three values
        # the same float64 operations batched or not (reductions of <= 32 O(1) terms): tolerance 1e-12
        np.testing.assert_allclose(np.asarray(swept), runs, rtol=0, atol=1e-12)
        assert np.max(np.abs(runs[0] - runs[2])) > 1e-2   # the learning rate matters


def test_unknown_optimizer_and_bad_hparams():
    with pytest.raises(ValueError, match="rmsprop"):
        rm.make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="rmsprop"):
        rm.reward_fitter(rm.linear_reward(3), "rmsprop")
    b, _, pairs = _global_problem()
    with pytest.raises(TypeError, match="mapping"):
        rm.fit_reward(rm.linear_reward(3), b.features, pairs, 0.05, 3, jax.random.key(0))
    tx = rm.make_optimizer("sgd")
    with pytest.raises(KeyError, match="learning_rate"):
        rm.with_hparams(tx.init(jnp.zeros(3)), {"beta": 0.1})
