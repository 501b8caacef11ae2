"""Tests of the loss-driven (sampled) preference-game dynamics.

Exact answers first: one tabular SGD step of the population loss equals the hand-derived
exact step (EGPO / OMD with ``eta = 4 lr/(N beta)``, Nash-MD-PG's policy gradient, SPPO);
the population minimisers of INPO and online IPO are the OMD steps (float64 Newton);
then sampled-mode gradients average to the population gradient; jit == no-jit; keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignjax.dynamics import sampled as S
from alignjax.dynamics.sampled_losses import GAME_LOSSES, GameInputs
from alignjax.policies import loglinear, mlp, tabular
from alignjax.prefs import random_game, rock_paper_scissors
from alignjax.registry import DYNAMICS

HP = {"beta": 0.3, "learning_rate": 0.05, "eta": 0.7, "mixture": 0.2}
NAMES = ["sampled-egpo", "sampled-online-ipo-1", "sampled-online-ipo-2", "sampled-nash-md-pg",
         "sampled-inpo", "sampled-sppo"]


def _game(n=4, b=1, seed=0, dtype=jnp.float32):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    P = jax.vmap(lambda k: random_game(k, n))(jax.random.split(k1, b)).astype(dtype)
    logp_ref = jax.nn.log_softmax(jax.random.normal(k2, (b, n), dtype), axis=-1)
    logits0 = jax.random.normal(k3, (b, n), dtype)
    return P, logp_ref, logits0


def _omd(logp_t, logp_ref, P, beta, eta, opponent_logp=None):
    opp = jnp.exp(logp_t if opponent_logp is None else opponent_logp)
    return jax.nn.log_softmax((1 - eta * beta) * logp_t + eta * beta * logp_ref
                              + eta * jnp.einsum("bij,bj->bi", P, opp), axis=-1)


@pytest.mark.parametrize("b", [1, 3])
def test_online_ipo1_and_egpo_tabular_step_equal_exact_omd_and_extragradient(b):
    n = 5
    P, logp_ref, logits0 = _game(n, b, seed=1)
    pol = tabular(b, n)
    x = jnp.arange(b)
    beta, lr = HP["beta"], HP["learning_rate"]
    # the loss is a MEAN over the B prompts of a batch: each prompt's step is divided by B
    eta = 4 * lr / (n * beta * b)
    logp_t = jax.nn.log_softmax(logits0, axis=-1)

    dyn = S.sampled_online_ipo_1(pol, mode="population")
    st, _ = dyn.update(dyn.init(jax.random.key(0), logits0), P, logp_ref, x, HP, jax.random.key(1))
    np.testing.assert_allclose(jax.nn.log_softmax(st.params, axis=-1), _omd(logp_t, logp_ref, P, beta, eta),
                               atol=2e-5)

    dyn = S.sampled_egpo(pol, mode="population")
    st, _ = dyn.update(dyn.init(jax.random.key(0), logits0), P, logp_ref, x, HP, jax.random.key(1))
    half = _omd(logp_t, logp_ref, P, beta, eta)
    expected = _omd(logp_t, logp_ref, P, beta, eta, opponent_logp=half)
    np.testing.assert_allclose(jax.nn.log_softmax(st.params, axis=-1), expected, atol=2e-5)
    # and EGPO is not online IPO 1 (the half step changes the opponent)
    assert np.max(np.abs(expected - _omd(logp_t, logp_ref, P, beta, eta))) > 1e-4


def test_tabular_steps_match_the_registered_exact_dynamics():
    # cross-check with alignjax.dynamics.exact (a separate code path): eta = 4 lr/(N beta)
    n = 6
    P, logp_ref, logits0 = _game(n, 1, seed=9)
    beta, lr = 0.2, 0.03
    eta = 4 * lr / (n * beta)
    for sampled_name, exact_name in (("sampled-egpo", "egpo"), ("sampled-online-ipo-1", "omd")):
        dyn = DYNAMICS.get(sampled_name)(tabular(1, n), mode="population")
        st, _ = dyn.update(dyn.init(jax.random.key(0), logits0), P, logp_ref, jnp.arange(1),
                           {"beta": beta, "learning_rate": lr}, jax.random.key(1))
        ex = DYNAMICS.get(exact_name)
        es = ex.update(ex.init(jax.nn.log_softmax(logits0[0]), P[0], logp_ref[0], beta, eta), P[0], logp_ref[0],
                       beta, eta)
        np.testing.assert_allclose(jax.nn.log_softmax(st.params[0]), es.log_pi, atol=2e-5)


def test_nash_md_pg_and_sppo_tabular_steps_are_the_hand_derived_ones():
    n = 4
    P, logp_ref, logits0 = _game(n, 1, seed=2)
    pol, x = tabular(1, n), jnp.arange(1)
    w = jax.nn.softmax(logits0, axis=-1)[0]
    lr, beta, m, eta = HP["learning_rate"], HP["beta"], HP["mixture"], HP["eta"]
    # Nash-MD-PG: theta' = theta + lr * w * (A - w.A), A = P@pi_mix - 1/2 - beta*Delta
    dyn = S.sampled_nash_md_pg(pol, mode="population")
    st, _ = dyn.update(dyn.init(jax.random.key(0), logits0), P, logp_ref, x, HP, jax.random.key(1))
    mix = jax.nn.softmax((1 - m) * jnp.log(w) + m * logp_ref[0])
    adv = P[0] @ mix - 0.5 - beta * (jnp.log(w) - logp_ref[0])
    np.testing.assert_allclose(st.params[0] - logits0[0], lr * w * (adv - w @ adv), atol=1e-6)
    # SPPO: theta' = theta + 4 lr eta w * (P@w - 1/2)   (w @ P @ w = 1/2, so no centring term)
    dyn = S.sampled_sppo(pol, mode="population")
    st, _ = dyn.update(dyn.init(jax.random.key(0), logits0), P, logp_ref, x, HP, jax.random.key(1))
    np.testing.assert_allclose(st.params[0] - logits0[0], 4 * lr * eta * w * (P[0] @ w - 0.5), atol=1e-6)


def test_one_step_inpo_with_eta_one_over_beta_is_online_ipo_2():
    # derived: with the anchor = the current policy (round_length=1) the INPO population gradient on
    # tabular logits is 4 eta w * (beta (Delta - E_w Delta) - (P@w - 1/2)), online IPO 2's with eta = 1/beta
    n = 5
    P, logp_ref, logits0 = _game(n, 1, seed=10)
    hp = dict(HP, eta=1.0 / HP["beta"])
    out = []
    for name in ("sampled-inpo", "sampled-online-ipo-2"):
        dyn = DYNAMICS.get(name)(tabular(1, n), mode="population")
        out.append(dyn.update(dyn.init(jax.random.key(0), logits0), P, logp_ref, jnp.arange(1), hp,
                              jax.random.key(1))[0].params)
    assert float(jnp.max(jnp.abs(out[1] - logits0))) > 1e-3
    np.testing.assert_allclose(out[0] - logits0, out[1] - logits0, rtol=1e-4, atol=1e-7)


def _newton_minimise(loss, z0, iters=30):
    @jax.jit
    def newton(z):
        return z - jnp.linalg.pinv(jax.hessian(loss)(z), rtol=1e-10) @ jax.grad(loss)(z)

    z = z0
    for _ in range(iters):
        z = newton(z)
    return z


@pytest.mark.parametrize("name", ["inpo", "online_ipo_1", "online_ipo_2"])
def test_population_minimiser_is_the_omd_step(name):
    with jax.enable_x64(True):
        P, logp_ref, logits0 = _game(3, 1, seed=3, dtype=jnp.float64)
        P, logp_ref = P[0], logp_ref[0]
        logp_t = jax.nn.log_softmax(logits0[0])
        beta, eta = 0.4, 0.9
        hp = {"beta": jnp.float64(beta), "eta": jnp.float64(eta), "mixture": jnp.float64(0.0)}
        g = GameInputs(P, logp_ref, logp_t, logp_t)
        loss = lambda z: GAME_LOSSES[name].population(jax.nn.log_softmax(z), g, hp)  # noqa: E731
        z = _newton_minimise(loss, jnp.zeros(3, jnp.float64))
        # INPO: OMD with step eta; online IPO 1 and 2: OMD with eta*beta = 1 (the best response)
        step = eta if name == "inpo" else 1.0 / beta
        expected = _omd(logp_t[None], logp_ref[None], P[None], beta, step)[0]
        np.testing.assert_allclose(jax.nn.log_softmax(z), expected, atol=1e-9)
        assert float(jnp.max(jnp.abs(expected - logp_t))) > 1e-2  # not the trivial fixed point


_FAST_UNBIASED = ("sampled-online-ipo-1", "sampled-online-ipo-2", "sampled-nash-md-pg")


@pytest.mark.parametrize("name,bernoulli", [
    pytest.param(n, True, marks=() if n in _FAST_UNBIASED else pytest.mark.slow) for n in NAMES
] + [("sampled-inpo", False)])
def test_sampled_gradient_is_unbiased(name, bernoulli):
    n, b, lr = 4, 2, 1.0
    P, logp_ref, logits0 = _game(n, b, seed=4)
    pol, x = tabular(b, n), jnp.arange(b)
    hp = dict(HP, learning_rate=lr)
    pop = DYNAMICS.get(name)(pol, mode="population")
    smp = DYNAMICS.get(name)(pol, mode="sampled", num_samples=8, bernoulli=bernoulli)
    st0 = pop.init(jax.random.key(0), logits0)
    expected = pop.update(st0, P, logp_ref, x, hp, jax.random.key(0))[0].params - logits0

    if name == "sampled-egpo":
        # the extragradient half step is itself random: check the main-step gradient only,
        # with the half step switched off (that is online IPO 1's update).
        smp = S.sampled_online_ipo_1(pol, mode="sampled", num_samples=8, bernoulli=bernoulli)
        expected = S.sampled_online_ipo_1(pol).update(st0, P, logp_ref, x, hp, jax.random.key(0))[0].params - logits0

    def one(key):
        return smp.update(st0, P, logp_ref, x, hp, key)[0].params - logits0

    steps = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), 3000))
    mean, se = steps.mean(0), steps.std(0) / np.sqrt(steps.shape[0])
    assert float(jnp.max(jnp.abs(expected))) > 1e-3
    np.testing.assert_array_less(np.abs(mean - expected), 5 * se + 1e-4)


def test_jit_equals_nojit():
    # eager execution is slow on a loaded CPU: one algorithm covering every code path
    # (extragradient half step + sampling + Bernoulli feedback)
    n, b = 4, 2
    P, logp_ref, logits0 = _game(n, b, seed=5)
    dyn = S.sampled_egpo(tabular(b, n), mode="sampled", num_samples=16)
    st0 = dyn.init(jax.random.key(0), logits0)
    k = jax.random.key(3)
    a, ma = dyn.update(st0, P, logp_ref, jnp.arange(b), HP, k)
    j, mj = jax.jit(dyn.update)(st0, P, logp_ref, jnp.arange(b), HP, k)
    np.testing.assert_allclose(a.params, j.params, atol=1e-6)
    np.testing.assert_allclose(ma["loss"], mj["loss"], rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_numbers_other_key_other_numbers(name):
    n, b = 4, 2
    P, logp_ref, logits0 = _game(n, b, seed=5)
    pol, x = tabular(b, n), jnp.arange(b)
    dyn = DYNAMICS.get(name)(pol, mode="sampled", num_samples=16)
    st0 = dyn.init(jax.random.key(0), logits0)
    k = jax.random.key(3)
    j, _ = jax.jit(dyn.update)(st0, P, logp_ref, x, HP, k)
    again, _ = jax.jit(dyn.update)(st0, P, logp_ref, x, HP, k)
    np.testing.assert_array_equal(j.params, again.params)
    other, _ = jax.jit(dyn.update)(st0, P, logp_ref, x, HP, jax.random.key(4))
    assert float(jnp.max(jnp.abs(other.params - j.params))) > 0


def test_equilibrium_is_a_fixed_point_of_population_egpo():
    # rock-paper-scissors with a uniform reference: the uniform policy is pi*_beta for every beta
    P = rock_paper_scissors()[None]
    logp_ref = jnp.full((1, 3), -jnp.log(3.0))
    for name in ("sampled-egpo", "sampled-online-ipo-1", "sampled-online-ipo-2", "sampled-nash-md-pg",
                 "sampled-inpo"):
        dyn = DYNAMICS.get(name)(tabular(1, 3), mode="population")
        st, m = dyn.update(dyn.init(jax.random.key(0)), P, logp_ref, jnp.arange(1), HP, jax.random.key(1))
        np.testing.assert_allclose(st.params, jnp.zeros((1, 3)), atol=1e-6)
        assert float(m["grad_norm"]) < 1e-6


def _gap(P, logp, logp_ref, beta):
    from alignjax.games import regularized_gap
    return regularized_gap(P, jnp.exp(logp), jnp.exp(logp_ref), beta)


@pytest.mark.parametrize("family", ["loglinear", "mlp"])
def test_function_approximation_and_contextual_batch_reduce_the_gap(family):
    n, b = 5, 3
    P, logp_ref, _ = _game(n, b, seed=6)
    kx = jax.random.key(11)
    if family == "loglinear":
        d = 16  # >= b*(n-1): the equilibria of the 3 prompts are representable
        pol = loglinear(d, n)
        x = (jax.random.normal(kx, (b, n, d)), logp_ref)  # pi = pi_ref * exp(<phi, theta>) / Z
        opt, lr = None, 0.1
    else:
        d = 4
        pol = mlp(d, n, width=16, depth=1)
        x = jax.random.normal(kx, (b, d))
        opt, lr = optax.scale_by_adam(), 0.01
    hp = {"beta": 0.5, "learning_rate": lr}
    dyn = S.sampled_egpo(pol, mode="population", optimizer=opt)
    st = dyn.init(jax.random.key(0))
    g0 = _gap(P, pol.log_probs(st.params, x), logp_ref, 0.5)

    def body(st, k):
        return dyn.update(st, P, logp_ref, x, hp, k)[0], None

    st, _ = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(1), 300)))(st)
    g1 = _gap(P, pol.log_probs(st.params, x), logp_ref, 0.5)
    assert g0.shape == (b,) and bool(jnp.all(jnp.isfinite(g1)))
    assert float(g1.mean()) < 0.5 * float(g0.mean())


def test_registry_and_bad_input():
    for name in NAMES:
        e = DYNAMICS.entry(name)
        assert e.meta["kind"] == "sampled" and e.meta["extragradient"] == (name == "sampled-egpo")
        S.validate_hparams(e.meta["loss"], e.hparams)  # the defaults are complete and valid
    with pytest.raises(ValueError, match="beta"):
        S.validate_hparams("online_ipo_2", {"beta": -1.0, "learning_rate": 0.1})
    with pytest.raises(ValueError, match="learning_rate"):
        S.validate_hparams("online_ipo_2", {"beta": 1.0})
    with pytest.raises(ValueError, match="mixture"):
        S.validate_hparams("nash_md_pg", {"beta": 1.0, "learning_rate": 0.1, "mixture": 1.5})
    with pytest.raises(ValueError, match="mode"):
        S.sampled_egpo(tabular(1, 3), mode="exact")
    with pytest.raises(ValueError, match="nope"):
        S.make_dynamics("nope", tabular(1, 3))
    with pytest.raises(ValueError, match="num_samples"):
        S.sampled_inpo(tabular(1, 3), mode="sampled", num_samples=0)


def test_round_length_keeps_the_anchor():
    n = 3
    P, logp_ref, logits0 = _game(n, 1, seed=8)
    dyn = S.sampled_inpo(tabular(1, n), mode="population", round_length=3)
    st = dyn.init(jax.random.key(0), logits0)
    for t in range(3):
        st, _ = dyn.update(st, P, logp_ref, jnp.arange(1), HP, jax.random.key(t))
        np.testing.assert_array_equal(st.anchor, logits0)  # anchor fixed during the round
    st, _ = dyn.update(st, P, logp_ref, jnp.arange(1), HP, jax.random.key(9))
    assert float(jnp.max(jnp.abs(st.anchor - logits0))) > 1e-6  # refreshed at step 3


@pytest.mark.slow
def test_sampled_suite_quick_path(tmp_path):
    from experiments._nash_sampled import sampled_claims
    from alignjax.results import SuiteContext

    ctx = SuiteContext(out_dir=tmp_path, quick=True)
    claims = sampled_claims(ctx)
    assert {c.id for c in claims} == {"sampled-egpo-noise-floor-shrinks", "online-ipo2-nash-md-pg-stall-small-beta",
                                      "egpo-lowest-gap-every-beta", "neural-egpo-reduces-gap"}
    for name in ("sampled_tabular.png", "sampled_noise_floor.png", "sampled_neural.png",
                 "sampled_tabular_final.csv", "sampled_tabular_curves.csv", "sampled_noise_floor.csv",
                 "sampled_neural.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert "timings_s" in ctx.config["sampled"]
