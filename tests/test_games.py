"""Closed-form game quantities and equilibrium solvers (alignjax.games)."""

from decimal import Decimal, localcontext

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


def _dec_gap(P, pi, ref, beta):
    """Independent oracle at 60 significant digits (``decimal``; no cancellation at that precision).

    The gap is the best-response value minus the value at ``pi``, twice: ``J(pi, pi) = 1/2`` and
    ``J(q, pi) + J(pi, q) = 1``, so ``max_q J(q, pi) - min_q J(pi, q) = 2 max_q J(q, pi) - 1
    = 2 (F(BR) - F(pi))`` with ``F(q) = q @ P @ pi - beta KL(q || ref)``, whose maximiser is
    ``BR = ref exp(P @ pi / beta) / Z`` (Gibbs: ``F(q) = beta log Z - beta KL(q || BR)``). Uses ``P`` itself,
    not its antisymmetric part; the float64 inputs are converted exactly.
    """
    with localcontext() as ctx:
        ctx.prec = 60
        n, b = len(pi), Decimal(float(beta))
        p, r = [Decimal(float(x)) for x in pi], [Decimal(float(x)) for x in ref]
        pay = [sum(Decimal(float(P[i, j])) * p[j] for j in range(n)) for i in range(n)]  # (P @ pi)_i
        s = [r[i].ln() + pay[i] / b for i in range(n)]
        w = [(x - max(s)).exp() for x in s]
        br = [x / sum(w) for x in w]

        def F(q):
            return sum(q[i] * pay[i] for i in range(n)) - b * sum(q[i] * (q[i] / r[i]).ln() for i in range(n) if q[i])

        return float(2 * (F(br) - F(p)))


def _dyadic_simplex(p, bits=40):
    """Round to multiples of ``2^-bits`` with the remainder on the largest entry: sums to exactly 1 in float64."""
    q = np.round(np.asarray(p, np.float64) * 2.0 ** bits) / 2.0 ** bits
    k = np.argmax(q, axis=-1)[..., None]
    others = np.where(np.arange(q.shape[-1]) == k, 0.0, q)
    return np.where(np.arange(q.shape[-1]) == k, 1.0 - others.sum(-1, keepdims=True), q)


def _sandwich(P, pi, ref, beta):
    """Float64 numpy bounds on the gap from its exploitability: with ``s = log ref + A pi / beta`` (A = P - P^T over 2),
    ``gap = 2 beta logsumexp(s) + 2 beta KL(pi || ref)`` and ``max_y s_y <= logsumexp(s) <= max_y (A pi)_y / beta``
    (``sum ref = 1``), so ``2 max_y [(A pi)_y + beta log ref_y] + 2 beta KL <= gap <= exploitability + 2 beta KL``.
    The width is at most ``2 beta log(1 / ref_y*)``, ``y* = argmax A pi``: both sides tend to the exploitability
    as ``beta -> 0``. Returns ``(lower, upper)``, the upper side with the library's ``exploitability``."""
    Api = np.einsum("...ij,...j->...i", (P - np.swapaxes(P, -1, -2)) / 2, pi)
    kl = np.sum(np.where(pi > 0, pi * np.log(np.where(pi > 0, pi, 1.0) / ref), 0.0), axis=-1)
    with jax.enable_x64(True):
        expl = np.asarray(games.exploitability(P, pi))
    np.testing.assert_allclose(expl, 2 * Api.max(-1), rtol=0, atol=1e-15)  # = numpy's 2 max_y (A pi)_y
    return 2 * np.max(Api + beta * np.log(ref), axis=-1) + 2 * beta * kl, expl + 2 * beta * kl


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.01, 0.05, 0.5, 2.0]))
def test_gap_equals_best_response_value_minus_value_at_pi_property(seed, beta):
    """float64 ``regularized_gap`` against the 60-digit oracle, on a random policy, a pure one (zeros: the
    off-support term), the equilibrium and its perturbations by 1e-2..1e-6 in the logits (gaps down to
    ~1e-17: the branch without cancellation), and the equilibrium with its smallest entry removed.

    Tolerance: the library evaluates ``s`` with absolute error ``e_s ~ eps (|log ref| + 1/beta)`` and, for small
    gaps, ``gap ~ beta E_pi[g^2]``, so its relative error is ``~ e_s sqrt(beta / gap)``: ``< 1e-7`` for these
    perturbations (measured <= 2e-8); ``rtol = 1e-6``. (A wrong cubic term in the series of ``expm1(x) - x``
    changes small gaps by ~|x|/3 relative, ~1e-5 here.) ``atol = 1e-22`` covers the equilibrium rounded to
    multiples of 2^-40 (gap ~ beta 1e-24: the oracle and the library agree there to ~1e-26).
    """
    n = 4
    P, pi, ref = (np.asarray(x, np.float64) for x in _random_setup(seed, n=n))
    ref = _dyadic_simplex(ref)  # sums exactly 1 (the sandwich's upper side needs it; the gap does not)
    assert np.all(P + P.T == 1)  # exactly: P @ pi and A @ pi + 1/2 are the same game
    with jax.enable_x64(True):
        sol = games.regularized_nash(P, ref, beta)
    star, res_star = np.asarray(sol.pi), float(sol.residual)
    z = np.random.default_rng(seed).normal(size=(3, n))
    cut = np.where(np.arange(n) == np.argmin(star), 0.0, star)
    pols = _dyadic_simplex(np.stack([pi, np.eye(n)[seed % n], star, cut / cut.sum(),
                                     *(star * np.exp(e * zi) / np.sum(star * np.exp(e * zi)) for e, zi in zip((1e-2, 1e-4, 1e-6), z))]))
    with jax.enable_x64(True):
        gap = np.asarray(games.regularized_gap(P, jnp.asarray(np.concatenate([pols, star[None]])), ref, beta))
        res = np.asarray(games.fixed_point_residual(P, pols, ref, beta))
    gap, gap_star = gap[:-1], gap[-1]
    np.testing.assert_allclose(gap, [_dec_gap(P, p, ref, beta) for p in pols], rtol=1e-6, atol=1e-22)
    # zero at regularized_nash's output: gap = 2 beta KL(pi || BR(pi)) (the oracle's identity) and
    # KL(p || q) <= chi^2(p || q) <= ||p - q||_1^2 / min q, with ||pi - BR(pi)||_1 the solver's residual,
    # itself known up to 2 e_s (the rounding of the logits s, e_s as in the docstring)
    s = np.log(ref) + P @ star / beta
    br_min = np.min(np.exp(s - s.max()) / np.exp(s - s.max()).sum())
    e_s = np.finfo(np.float64).eps * (np.max(np.abs(np.log(ref))) + 1 / beta)
    assert 0 <= gap_star <= 2 * beta * (res_star + 2 * e_s) ** 2 / br_min
    # positive elsewhere, quantitatively: Pinsker, KL(pi || BR(pi)) >= ||pi - BR(pi)||_1^2 / 2 (not the
    # rounded equilibrium, index 2, whose residual is rounding)
    moved = np.arange(len(pols)) != 2
    assert np.all(gap[moved] >= beta * res[moved] ** 2) and np.all(res[moved] > 0)
    # the exploitability sandwich (see _sandwich), up to float64 rounding of its O(|upper|) terms
    lo, hi = _sandwich(P, pols, ref, beta)
    slack = 64 * np.finfo(np.float64).eps * (1 + np.abs(hi))
    assert np.all(lo <= gap + slack) and np.all(gap <= hi + slack)


def test_gap_exploitability_sandwich_binds_at_small_beta():
    """The sandwich of ``_sandwich`` is not vacuous: at ``beta = 0.01`` its lower side is positive in every draw
    (the exploitability dominates ``2 beta log(1/ref)``) and the gap sits on it (``logsumexp(s) = max s`` up to
    the other terms, ``exp(-(s_y* - s_y))``); its width is at most ``2 beta log(1/ref_y*)``.
    At ``beta = 2`` the lower side is negative in some draws (the bound says nothing there) but not all.
    (The bound this replaces, ``gap >= exploitability - 2 beta max(-log ref)``, had a negative right-hand side in
    every draw at ``beta = 0.5`` and ``2``.)
    """
    P, pi, ref = (np.asarray(x, np.float64) for x in _random_setup(11, n=4, batch=(64,)))
    pi, ref = _dyadic_simplex(pi), _dyadic_simplex(ref)  # sums exactly 1: the identities above are exact
    with jax.enable_x64(True):
        gaps = {b: np.asarray(games.regularized_gap(P, pi, ref, b)) for b in (0.01, 2.0)}
    lo, hi = _sandwich(P, pi, ref, 0.01)
    gap = gaps[0.01]
    slack = 64 * np.finfo(np.float64).eps * (1 + np.abs(hi))
    assert np.all(lo <= gap + slack) and np.all(gap <= hi + slack)
    assert np.all(lo > 0)
    assert np.min((gap - lo) / gap) < 1e-6  # binding: the gap equals the lower side to 6 digits somewhere
    y_star = np.argmax(np.einsum("bij,bj->bi", (P - np.swapaxes(P, -1, -2)) / 2, pi), axis=-1)
    width = 2 * 0.01 * np.log(1 / ref[np.arange(64), y_star])
    assert np.all(hi - lo <= width + slack)
    lo2, hi2 = _sandwich(P, pi, ref, 2.0)
    slack2 = 64 * np.finfo(np.float64).eps * (1 + np.abs(hi2))
    assert np.all(lo2 <= gaps[2.0] + slack2) and np.all(gaps[2.0] <= hi2 + slack2)
    assert 0 < np.mean(lo2 > 0) < 1


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


def test_three_rater_equilibrium_matches_the_stated_formula():
    """NLHF §3.2's equilibrium (1/3 + e/2, 1/3 + e/2, 1/3 - e) for our three-rater construction
    (an identity of the construction, so a unit test rather than a suite claim)."""
    es = np.round(np.linspace(-0.3, 0.3, 13), 4)
    nash3 = games.nash(prefs.three_rater_cycle(jnp.asarray(es, jnp.float32)))
    expected = np.stack([1 / 3 + es / 2, 1 / 3 + es / 2, 1 / 3 - es], 1)
    np.testing.assert_allclose(nash3, expected, atol=1e-5)


def test_qre_exploitability_bound():
    """exploitability(pi*_beta) <= 2 beta log(1/min pi_ref) (the bound egpo-original-game-small-beta uses):
    (A pi*)(y) = beta log(pi*(y)/pi_ref(y)) - beta KL(pi* || pi_ref) <= beta log(1/pi_ref(y))."""
    P = prefs.random_game(jax.random.key(3), 8)
    ref = jax.nn.softmax(jax.random.normal(jax.random.key(4), (8,)))
    for beta in (1.0, 0.1, 0.01):
        star = games.regularized_nash(P, ref, beta)
        assert float(games.exploitability(P, star.pi)) <= 2 * beta * float(-jnp.log(ref.min())) + 1e-5
