"""Every coverage-study trainer with a log-linear policy, the coverage suite's case, against float64 oracles.

Setup of ``experiments/coverage.py``: ``pi(y|x) ∝ pi_ref(y|x) exp(<psi(x, y), theta>)`` with features
``psi`` independent of the reward (misspecified), offline pairs from :func:`sample_pairs`, a tabular
Bradley-Terry reward for RLHF. The oracle (numpy, float64, written here) uses
``log pi(y) - log pi_ref(y) = <psi_y, theta> - A_x(theta)`` with ``dA_x/dtheta = E_pi psi``:

* pair margin ``h_m = <psi_{x,y_w} - psi_{x,y_l}, theta>`` (A cancels), so
  ``dDPO = sum_m w_m (-beta sigmoid(-beta h_m)) dpsi_m`` and ``dIPO = sum_m w_m 2 (h_m - 1/(2 beta)) dpsi_m``;
* ``d E_pi[f] / dtheta = Cov_pi(psi, f)`` for ``f`` with ``E_pi[df] = 0``, hence
  ``dKL_x = Cov_pi(psi, log pi/pi_ref)`` and ``dJ_x = Cov_pi(psi, r_hat - beta log pi/pi_ref)``;
* the reward fit: BT gradient on the table, ``reward_steps`` steps from 0;
* optimisers: SGD ``theta - lr g`` and Adam (``b1 = 0.9, b2 = 0.999, eps = 1e-6``, bias-corrected).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, logsumexp

from alignjax.data import bandits
from alignjax.hypo import TRAINERS  # the registry, with dpo, ipo and hypo registered by this import
from alignjax.policies import loglinear
from alignjax.reward_model import tabular_reward
from alignjax.rlhf import Problem, run_trainer

X, N, D = 3, 4, 2
HP = {"beta": 0.5, "learning_rate": 0.3, "lam": 0.4, "reward_learning_rate": 0.7}
REWARD_STEPS = 2


def _problem():
    kb, kf, ks, kp = jax.random.split(jax.random.key(0), 4)
    b = bandits.linear_bandit(kb, X, N, 3)
    psi = bandits.random_features(kf, X, N, D)
    s = bandits.support_mask(ks, X, N, 3)
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.3)
    pairs = bandits.sample_pairs(kp, b.rewards, lr, s, 16)
    return Problem((psi, lr), lr, pairs, b.features)


def _np(prob):
    psi, ref = (np.asarray(a, np.float64) for a in prob.prompts)
    return psi, ref, tuple(np.asarray(a) for a in prob.pairs)


def _table(theta, psi, ref):
    z = psi @ theta + ref
    return z - logsumexp(z, axis=-1, keepdims=True)


def _cov(p, psi, f):
    """``Cov_pi(psi, f)`` per prompt, ``(X, d)``."""
    f = f - np.sum(p * f, -1, keepdims=True)
    return np.einsum("xn,xn,xnd->xd", p, f, psi)


def _bt_grad(r, pairs):
    x, yw, yl, w = pairs
    c = -w * expit(-(r[x, yw] - r[x, yl]))
    g = np.zeros_like(r)
    np.add.at(g, (x, yw), c)
    np.add.at(g, (x, yl), -c)
    return g


def _grad(name, theta, psi, ref, pairs, r_hat):
    """Oracle gradient of the trainer's minimised objective at ``theta`` (float64)."""
    x, yw, yl, w = pairs
    beta = HP["beta"]
    lp = _table(theta, psi, ref)
    p = np.exp(lp)
    if name == "rlhf":
        return -_cov(p, psi, r_hat - beta * (lp - ref)).mean(0)
    dpsi = psi[x, yw] - psi[x, yl]
    h = dpsi @ theta
    c = -beta * expit(-beta * h) if name in ("dpo", "hypo") else 2 * (h - 1 / (2 * beta))
    g = (w * c) @ dpsi
    if name == "hypo":
        g = g + HP["lam"] * _cov(p, psi, lp - ref).mean(0)
    return g


class _Opt:
    """SGD or Adam (``optax.adam(lr, eps=1e-6)`` written out: bias-corrected moments, eps outside the root)."""

    def __init__(self, kind, shape):
        self.kind, self.t, self.m, self.v = kind, 0, np.zeros(shape), np.zeros(shape)

    def step(self, params, g, lr):
        if self.kind == "sgd":
            return params - lr * g
        self.t += 1
        self.m = 0.9 * self.m + 0.1 * g
        self.v = 0.999 * self.v + 0.001 * g * g
        mhat, vhat = self.m / (1 - 0.9 ** self.t), self.v / (1 - 0.999 ** self.t)
        return params - lr * mhat / (np.sqrt(vhat) + 1e-6)


def _oracle_run(name, opt, theta0, prob, steps):
    psi, ref, pairs = _np(prob)
    r_hat = None
    if name == "rlhf":
        r_hat, o = np.zeros((X, N)), _Opt(opt, (X, N))
        for _ in range(REWARD_STEPS):
            r_hat = o.step(r_hat, _bt_grad(r_hat, pairs), HP["reward_learning_rate"])
    theta, o, tables = np.asarray(theta0, np.float64), _Opt(opt, (D,)), []
    for _ in range(steps):
        tables.append(_table(theta, psi, ref))
        theta = o.step(theta, _grad(name, theta, psi, ref, pairs, r_hat), HP["learning_rate"])
    tables.append(_table(theta, psi, ref))
    return theta, np.stack(tables), r_hat


def _setup(name, mode, opt):
    pol = loglinear(D, N)
    trainer = TRAINERS.get(name)(pol, mode=mode, num_samples=3, optimizer=opt,
                                 reward_model=tabular_reward(X, N), reward_steps=REWARD_STEPS)
    prob = _problem()
    theta0 = jax.random.normal(jax.random.key(3), (D,), jnp.float64)  # away from pi_ref: dKL != 0
    return pol, trainer, prob, theta0, {k: jnp.float64(v) for k, v in HP.items()}


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("name", ["dpo", "ipo", "hypo", "rlhf"])
def test_exact_trainers_follow_the_oracle_trajectory(name, opt):
    """Three steps of ``run_trainer`` (jit) == three oracle steps; hypo with lam > 0, exact KL."""
    steps = 3
    with jax.enable_x64(True):
        pol, trainer, prob, theta0, hp = _setup(name, "exact", opt)
        state, met = jax.jit(lambda key: run_trainer(trainer, pol, theta0, prob, hp, key, num_steps=steps,
                                                     log_every=1, observe=lambda t: {"table": t}))(jax.random.key(1))
        theta, tables, r_hat = _oracle_run(name, opt, theta0, prob, steps)
        # float64 through O(100) operations on O(1) numbers (Adam divides by sqrt(v) + 1e-6 with
        # |g| >= 1e-3 here, so relative errors stay ~1e-15): tolerance 1e-10
        np.testing.assert_allclose(np.asarray(state.params), theta, rtol=0, atol=1e-10)
        np.testing.assert_allclose(np.asarray(met["table"]), tables, rtol=0, atol=1e-10)
        if name == "rlhf":
            np.testing.assert_allclose(np.asarray(state.reward_params), r_hat, rtol=0, atol=1e-12)
        else:
            assert state.reward_params is None
    # the check has power: the steps move the table by > 1e-4, 1e6 times the tolerance
    assert np.abs(np.diff(tables, axis=0)).max() > 1e-4


@pytest.mark.parametrize("name", ["hypo", "rlhf"])
def test_sampled_trainers_step_is_unbiased(name):
    """RLOO (k = 3) with SGD: the mean one-step update over 4000 keys is the oracle step (5 SE)."""
    with jax.enable_x64(True):
        pol, trainer, prob, theta0, hp = _setup(name, "sampled", "sgd")
        state = trainer.init(theta0, prob, hp, jax.random.key(0))
        keys = jax.random.split(jax.random.key(2), 4000)
        new = jax.jit(jax.vmap(lambda k: trainer.update(state, prob, hp, k)[0].params))(keys)
        _, _, r_hat = _oracle_run(name, "sgd", theta0, prob, 0)
        psi, ref, pairs = _np(prob)
        exact = _grad(name, np.asarray(theta0), psi, ref, pairs, r_hat)
        est = (np.asarray(theta0)[None] - np.asarray(new)) / HP["learning_rate"]
        mean, se = est.mean(0), est.std(0) / np.sqrt(est.shape[0])
        # 5 SE per coordinate: false alarm 6e-7 each
        assert np.all(np.abs(mean - exact) <= 5 * se), (mean, exact, se)
        # the check has power: it rejects, for hypo, the step with the KL term's sign flipped
        # (dDPO - lam dKL) and, for rlhf, the zero step
        if name == "hypo":
            flipped = 2 * _grad("dpo", np.asarray(theta0), psi, ref, pairs, None) - exact
        else:
            flipped = np.zeros(D)
        assert np.any(np.abs(mean - flipped) > 5 * se)
