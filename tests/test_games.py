"""Closed-form game quantities and equilibrium solvers (alignjax.games)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from alignjax import games, prefs
from alignjax.dynamics import simulate


def _np_gap(P, pi, ref, beta):
    """Literal float64 formula: 2 beta lse(log ref + P pi / beta) + 2 beta KL(pi || ref) - 1."""
    s = np.log(ref) + P @ pi / beta
    m = s.max()
    lse = m + np.log(np.exp(s - m).sum())
    return 2 * beta * lse + 2 * beta * np.sum(pi * np.log(pi / ref)) - 1


def _random_setup(seed, n=5, batch=()):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    P = prefs.random_game(k1, n, batch)
    pi = jax.nn.softmax(jax.random.normal(k2, (*batch, n)))
    ref = jax.nn.softmax(jax.random.normal(k3, (*batch, n)))
    return P, pi, ref


def test_win_rate_and_kl_match_numpy():
    P, pi, ref = _random_setup(0)
    Pn, p, q = (np.asarray(x, np.float64) for x in (P, pi, ref))
    np.testing.assert_allclose(games.win_rate(P, pi, ref), p @ Pn @ q, rtol=1e-5)
    np.testing.assert_allclose(games.win_rate(P, pi, ref) + games.win_rate(P, ref, pi), 1.0, atol=1e-6)
    np.testing.assert_allclose(games.kl(pi, ref), np.sum(p * np.log(p / q)), rtol=1e-5)
    assert float(games.kl(pi, pi)) == pytest.approx(0.0, abs=1e-7)
    assert np.isinf(float(games.kl(jnp.array([0.5, 0.5]), jnp.array([1.0, 0.0]))))
    assert float(games.kl(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]))) == pytest.approx(np.log(2), rel=1e-6)


def test_best_response_and_value_closed_form():
    P, pi, ref = _random_setup(1)
    beta = 0.3
    Pn, p, r = (np.asarray(x, np.float64) for x in (P, pi, ref))
    logits = np.log(r) + Pn @ p / beta
    br = np.exp(logits - logits.max())
    br /= br.sum()
    np.testing.assert_allclose(games.regularized_best_response(P, pi, ref, beta), br, rtol=1e-5)
    value = br @ Pn @ p - beta * np.sum(br * np.log(br / r))  # objective at the argmax
    np.testing.assert_allclose(games.regularized_value(P, pi, ref, beta), value, rtol=1e-5)
    for k in range(5):  # no other policy does better
        q = np.asarray(jax.nn.softmax(jax.random.normal(jax.random.key(10 + k), (5,))), np.float64)
        assert q @ Pn @ p - beta * np.sum(q * np.log(q / r)) <= value + 1e-6


@pytest.mark.parametrize("beta", [1.0, 0.1, 0.01, 0.001])
def test_regularized_gap_matches_literal_formula(beta):
    P, pi, ref = (np.asarray(x, np.float64) for x in _random_setup(2, n=6, batch=(4,)))
    P = np.tril(P, -1) + np.swapaxes(1 - np.tril(P, -1), -1, -2) * np.triu(np.ones(6), 1) + 0.5 * np.eye(6)
    pi, ref = pi / pi.sum(-1, keepdims=True), ref / ref.sum(-1, keepdims=True)
    with jax.enable_x64(True):
        got = np.asarray(games.regularized_gap(*(jnp.asarray(x, jnp.float64) for x in (P, pi, ref)), beta))
    want = np.array([_np_gap(P[i], pi[i], ref[i], beta) for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    got32 = np.asarray(games.regularized_gap(*(jnp.asarray(x, jnp.float32) for x in (P, pi, ref)), beta))
    np.testing.assert_allclose(got32, want, rtol=1e-4)
    assert np.all(got32 > 0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.05, 0.5, 2.0]))
def test_gap_nonnegative_and_bounds_exploitability_property(seed, beta):
    P, pi, ref = _random_setup(seed, n=4)
    gap = float(games.regularized_gap(P, pi, ref, beta))
    assert gap >= 0.0
    # the gap is >= the regularised gain of any pure deviation, which includes exploitability - 2 beta KL terms
    assert gap + 1e-5 >= float(games.exploitability(P, pi)) - 2 * beta * float(
        jnp.max(-jnp.log(ref))) - 1e-5


def test_exploitability_pure_and_mixed():
    P = prefs.rock_paper_scissors()
    assert float(games.exploitability(P, jnp.full(3, 1 / 3))) == pytest.approx(0.0, abs=1e-7)
    assert float(games.exploitability(P, jnp.array([1.0, 0.0, 0.0]))) == pytest.approx(1.0)
    assert float(games.exploitability(P, jnp.array([0.5, 0.5, 0.0]))) == pytest.approx(0.5)


@pytest.mark.parametrize("n, beta", [(10, 0.1), (10, 0.01), (10, 0.001), (200, 0.001)])
def test_regularized_nash_residual_and_zero_gap(n, beta):
    P, _, ref = _random_setup(3, n=n, batch=(3,))
    sol = games.regularized_nash(P, ref, beta)
    tol = max(1e-5, 2.0 ** -23 / beta)  # the documented float32 default: eps / beta above 1e-5
    assert np.all(np.asarray(sol.converged)) and np.all(np.asarray(sol.residual) <= tol)
    np.testing.assert_allclose(games.fixed_point_residual(P, sol.pi, ref, beta), sol.residual, atol=2e-6)
    assert np.all(np.asarray(games.regularized_gap(P, sol.pi, ref, beta)) < 1e-8)
    # a perturbed policy has a clearly positive gap
    pert = jax.nn.softmax(jnp.log(sol.pi) + 0.1 * jax.random.normal(jax.random.key(0), sol.pi.shape))
    assert np.all(np.asarray(games.regularized_gap(P, pert, ref, beta)) > 1e-6)


def test_regularized_nash_float64_and_known_cases():
    with jax.enable_x64(True):
        P, _, ref = _random_setup(4, n=8)
        P, ref = jnp.asarray(np.asarray(P), jnp.float64), jnp.asarray(np.asarray(ref), jnp.float64)
        sol = games.regularized_nash(P, ref, 0.01)
        assert sol.pi.dtype == jnp.float64 and float(sol.residual) < 1e-10
    for P in (prefs.rock_paper_scissors(), prefs.intransitive_dice()):
        for beta in (1.0, 0.01):
            np.testing.assert_allclose(games.regularized_nash(P, jnp.full(3, 1 / 3), beta).pi, 1 / 3, atol=1e-6)


def test_regularized_nash_agrees_with_long_egpo():
    P, _, ref = _random_setup(5, n=10, batch=(3,))  # same shapes as above: no new compile
    beta, eta = 0.05, 0.5
    pis = simulate("egpo", P, ref, beta=beta, eta=eta, num_steps=3000, log_every=3000)
    np.testing.assert_allclose(pis[:, -1], games.regularized_nash(P, ref, beta).pi, atol=1e-5)


def test_regularized_nash_vmap_over_betas_equals_loop_and_jit():
    P, _, ref = _random_setup(6, n=10)
    betas = jnp.array([1.0, 0.01, 0.003])
    batched = games.regularized_nash(P, ref, betas).pi
    assert batched.shape == (3, 10)
    for i, b in enumerate(betas):
        np.testing.assert_allclose(batched[i], games.regularized_nash(P, ref, b).pi, atol=1e-6)
    # usable inside a user's jit and vmap (traced beta): one compile covers both
    vm = jax.jit(jax.vmap(lambda b: games.regularized_nash(P, ref, b).pi))(betas)
    np.testing.assert_allclose(vm, batched, atol=1e-6)


def test_bt_regularized_equilibrium_is_not_the_rlhf_optimum_but_nash_is_condorcet():
    r = jnp.array([0.0, 1.0, 2.0, -1.0])
    P = prefs.bradley_terry(r)
    ref = jnp.full(4, 0.25)
    beta = 0.5
    nash_reg = games.regularized_nash(P, ref, beta).pi
    rlhf = jax.nn.softmax(jnp.log(ref) + r / beta)
    assert float(jnp.max(jnp.abs(nash_reg - rlhf))) > 0.05  # the two code paths differ
    assert float(games.regularized_gap(P, rlhf, ref, beta)) > 1e-3
    assert float(games.regularized_gap(P, nash_reg, ref, beta)) < 1e-7
    np.testing.assert_allclose(games.nash(P), np.eye(4)[2], atol=1e-7)  # pure Condorcet winner argmax r


def test_nash_lp_has_zero_exploitability():
    P = prefs.random_game(jax.random.key(7), 12, (5,))
    eq = games.nash(P)
    assert eq.shape == (5, 12)
    np.testing.assert_allclose(eq.sum(-1), 1.0)
    with jax.enable_x64(True):
        expl = np.asarray(games.exploitability(jnp.asarray(np.asarray(P), jnp.float64), jnp.asarray(eq)))
    assert np.all(expl < 1e-7)
