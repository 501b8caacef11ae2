"""regularized_nash: property tests of the solution, input validation, convergence reporting."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from alignjax import games, prefs


def _np_game(seed: int, n: int, kind: str) -> np.ndarray:
    """A float64 preference matrix built in numpy: ``P[i, j]`` for ``i > j`` drawn, ``P[j, i] = 1 - P[i, j]``."""
    rng = np.random.default_rng(seed)
    if kind == "bradley-terry":  # transitive, rewards spread over ~20 nats
        r = 5.0 * rng.normal(size=n)
        return 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    u = rng.uniform(size=(n, n)) if kind == "uniform" else rng.integers(0, 2, size=(n, n)).astype(np.float64)
    lower = np.tril(u, -1)
    return lower + (1.0 - lower).T * np.triu(np.ones((n, n)), 1) + 0.5 * np.eye(n)


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([2, 3, 10, 57, 300]),  # few shapes: few compiles
       kind=st.sampled_from(["uniform", "tournament", "bradley-terry"]),
       log10_beta=st.floats(-4.0, 3.0), ref_scale=st.floats(0.0, 3.0))
@example(seed=0, n=300, kind="uniform", log10_beta=-4.0, ref_scale=1.0)
@example(seed=1, n=2, kind="tournament", log10_beta=3.0, ref_scale=0.0)
def test_regularized_nash_is_the_fixed_point_float64(seed, n, kind, log10_beta, ref_scale):
    beta = 10.0 ** log10_beta
    P = _np_game(seed, n, kind)
    ref = _np_softmax(ref_scale * np.random.default_rng(seed + 1).normal(size=n))
    with jax.enable_x64(True):
        sol = games.regularized_nash(jnp.asarray(P), jnp.asarray(ref), beta)
        pi = np.asarray(sol.pi, np.float64)
    tol = max(1e-10, 2.0 ** -52 / beta)  # the documented float64 default
    assert bool(sol.converged), (float(sol.residual), int(sol.iterations))
    assert int(sol.iterations) <= 32 * (max(0, int(np.ceil(-np.log2(beta)))) + 2)
    # on the simplex
    assert pi.shape == (n,) and np.all(np.isfinite(pi)) and np.all(pi >= 0)
    assert abs(pi.sum() - 1.0) < 1e-12
    # the fixed point, checked independently in numpy with P itself (not its antisymmetric part)
    br = _np_softmax(np.log(ref) + P @ pi / beta)
    assert np.abs(pi - br).sum() <= tol + 1e-11


def test_the_issue_case_converges_n200_beta1e4_float64():
    """200 actions, beta = 1e-4: the old fixed cap of 100 stopped with residual 1.8 and no warning."""
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(0))
        P = prefs.random_game(k1, 200).astype(jnp.float64)
        ref = jax.nn.softmax(jax.random.normal(k2, (200,), jnp.float64))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sol = games.regularized_nash(P, ref, 1e-4)
        assert bool(sol.converged) and float(sol.residual) <= 1e-10
        assert int(sol.iterations) < 100


def test_default_cap_and_tol_follow_their_formulas():
    # 32 (S + 2), S = max(0, ceil(log2(1/beta)))
    betas = np.array([1e3, 1.0, 0.5, 0.3, 1e-3, 1e-4])
    want = 32 * (np.array([0, 0, 1, 2, 10, 14]) + 2)
    np.testing.assert_array_equal(games.default_max_iter(betas.astype(np.float32)), want)
    np.testing.assert_allclose(games.default_tol(np.float32(1.0)), 1e-5, rtol=1e-6)
    np.testing.assert_allclose(games.default_tol(np.float32(1e-4)), 2.0 ** -23 / 1e-4, rtol=1e-6)
    with jax.enable_x64(True):
        np.testing.assert_allclose(games.default_tol(np.float64(1e-2)), 1e-10, rtol=1e-12)
        np.testing.assert_allclose(games.default_tol(np.float64(1e-8)), 2.0 ** -52 / 1e-8, rtol=1e-12)


def test_result_has_converged_as_its_last_field():
    assert games.RegularizedNash._fields == ("pi", "residual", "iterations", "converged")
    P = prefs.rock_paper_scissors()
    sol = games.regularized_nash(P, jnp.full(3, 1 / 3), 0.1)
    assert sol.converged.dtype == jnp.bool_ and bool(sol.converged)
    with pytest.raises(ValueError):  # the old 3-way unpacking fails loudly
        pi, residual, iterations = sol


_GOOD = dict(P=np.asarray(prefs.rock_paper_scissors()), pi_ref=np.full(3, 1 / 3), beta=0.1)


@pytest.mark.parametrize("override, match", [
    (dict(beta=-0.1), r"beta must be finite and > 0; got -0\.1"),
    (dict(beta=0.0), "beta must be finite and > 0"),
    (dict(beta=np.nan), "beta must be finite and > 0"),
    (dict(beta=np.inf), "beta must be finite and > 0"),
    (dict(beta=np.array([0.1, -1.0])), "beta must be finite and > 0; got -1"),
    (dict(beta=1e-39), r"too small for float32"),  # float32: subnormal (flushed to 0), 1/beta = 1e39 > max
    (dict(P=np.array([[0.5, np.nan, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])), "NaN"),
    (dict(P=np.full((3, 4), 0.5)), r"shape \(\.\.\., N, N\)"),
    (dict(P=np.full(3, 0.5)), r"shape \(\.\.\., N, N\)"),
    (dict(P=np.array([[0.5, 0.9, 0.5], [0.9, 0.5, 0.5], [0.5, 0.5, 0.5]])), r"P \+ P.T = 1"),
    (dict(P=np.array([[0.5, 1.5], [-0.5, 0.5]])), r"\[0, 1\]"),
    (dict(pi_ref=np.array([0.5, 0.5, 0.0])), "pi_ref must be finite and > 0"),
    (dict(pi_ref=np.array([0.5, 0.6, -0.1])), "pi_ref must be finite and > 0"),
    (dict(pi_ref=np.array([0.5, np.nan, 0.5])), "pi_ref must be finite and > 0"),
    (dict(pi_ref=np.array([0.5, 0.5])), r"pi_ref must have shape \(\.\.\., 3\)"),
    (dict(tol=0.0), "tol must be finite and > 0"),
    (dict(tol=-1e-3), "tol must be finite and > 0"),
    (dict(max_iter=0), "max_iter must be a positive integer"),
    (dict(max_iter=2.5), "max_iter must be a positive integer"),
])
def test_bad_inputs_raise_one_line_value_error(override, match):
    args = {**_GOOD, **override}
    with pytest.raises(ValueError, match=match) as err:
        games.regularized_nash(**args)
    assert "\n" not in str(err.value)


def test_tiny_max_iter_reports_non_convergence_and_warns():
    P = prefs.random_game(jax.random.key(3), 10)
    ref = jnp.full(10, 0.1)
    with pytest.warns(games.ConvergenceWarning) as rec:
        sol = games.regularized_nash(P, ref, 1e-3, max_iter=2)
    assert issubclass(games.ConvergenceWarning, RuntimeWarning)
    assert not bool(sol.converged) and int(sol.iterations) == 2
    r = float(sol.residual)
    np.testing.assert_allclose(r, games.fixed_point_residual(P, sol.pi, ref, 1e-3), rtol=1e-5)
    assert r > 2.0 ** -23 / 1e-3  # above the default tol, so the flag is right
    msg = str(rec[0].message)
    assert f"residual {r:.3g}" in msg and f"tol {2.0 ** -23 / 1e-3:.3g}" in msg and "after 2 iterations" in msg
    # the same call with the default cap converges, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bool(games.regularized_nash(P, ref, 1e-3).converged)


def test_batch_flags_only_the_games_that_did_not_converge():
    P = prefs.random_game(jax.random.key(4), 6)
    betas = jnp.array([1.0, 10.0, 1e-3])  # one or two Newton steps solve beta >= 1; 1e-3 needs ~S + 10
    with pytest.warns(games.ConvergenceWarning, match="did not converge for 1 of 3 games"):
        sol = games.regularized_nash(P, jnp.full(6, 1 / 6), betas, max_iter=3)
    np.testing.assert_array_equal(sol.converged, [True, True, False])


def test_traced_calls_skip_checks_and_warnings_but_return_the_flag():
    P = prefs.random_game(jax.random.key(5), 6)
    ref = jnp.full(6, 1 / 6)
    f = jax.jit(lambda b: games.regularized_nash(P, ref, b, max_iter=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = f(jnp.float32(1e-3))
    assert not bool(out.converged)
    # the default cap is computed in-graph from the traced beta
    g = jax.jit(jax.vmap(lambda b: games.regularized_nash(P, ref, b)))
    betas = jnp.array([1.0, 10.0, 1e-3])
    out = g(betas)
    assert np.all(np.asarray(out.converged))
    np.testing.assert_allclose(out.pi, games.regularized_nash(P, ref, betas).pi, atol=1e-6)  # same shapes as above
