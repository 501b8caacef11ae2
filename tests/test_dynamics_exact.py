"""Exact tabular game dynamics (alignjax.dynamics.exact) and the batched runner simulate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import games, prefs
from alignjax.dynamics import exact_names, simulate
from alignjax.registry import DYNAMICS

REGULARISED = ["omd", "nash-md", "nash-md-schedule", "egpo", "omwu", "mpo"]


def _lsm(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def _oracle_step(name, log_pi, P, log_ref, beta, eta, t=0, prev_pay=None, magnet=None):
    """Hand-written float64 numpy step (spec §2), with P @ pi (not the antisymmetric part)."""
    pi = np.exp(log_pi)
    b = eta * beta
    if name == "omd":
        return _lsm((1 - b) * log_pi + b * log_ref + eta * P @ pi)
    if name in ("nash-md", "nash-md-schedule"):
        if name == "nash-md-schedule":
            eta = 2.0 / (beta * (t + 2))
            b = eta * beta
        log_mu = _lsm((1 - b) * log_pi + b * log_ref)
        return _lsm(log_mu + eta * P @ np.exp(log_mu))
    if name == "egpo":
        half = _lsm((1 - b) * log_pi + b * log_ref + eta * P @ pi)
        return _lsm((1 - b) * log_pi + b * log_ref + eta * P @ np.exp(half))
    if name == "omwu":
        prev = P @ pi if prev_pay is None else prev_pay
        return _lsm((1 - b) * log_pi + b * log_ref + eta * (2 * P @ pi - prev))
    if name == "mpo":
        m = log_ref if magnet is None else magnet
        return _lsm((log_pi + b * m + eta * P @ pi) / (1 + b))
    if name == "mwu":
        return _lsm(log_pi + eta * P @ pi)
    raise KeyError(name)


def _game3():
    P = np.array([[0.5, 0.8, 0.3], [0.2, 0.5, 0.9], [0.7, 0.1, 0.5]])
    return P, np.log(np.array([0.2, 0.5, 0.3])), np.log(np.array([0.6, 0.1, 0.3]))


def test_registry_lists_every_exact_dynamic():
    assert set(exact_names()) == {"omd", "nash-md", "nash-md-schedule", "egpo", "omwu", "mpo", "mwu", "bt-rlhf"}
    for name in exact_names():
        assert DYNAMICS.entry(name).meta["kind"] == "exact"


@pytest.mark.parametrize("name", ["omd", "nash-md", "nash-md-schedule", "egpo", "omwu", "mpo", "mwu"])
def test_two_steps_equal_hand_computed_oracle(name):
    P, log_pi0, log_ref = _game3()
    beta, eta = 0.3, 0.7
    dyn = DYNAMICS.get(name)
    with jax.enable_x64(True):
        args = (jnp.asarray(P), jnp.asarray(log_ref), jnp.asarray(beta), jnp.asarray(eta))
        s = dyn.init(jnp.asarray(log_pi0), *args)
        s1 = dyn.update(s, *args)
        s2 = dyn.update(s1, *args)
    want1 = _oracle_step(name, log_pi0, P, log_ref, beta, eta, t=0)
    want2 = _oracle_step(name, want1, P, log_ref, beta, eta, t=1, prev_pay=P @ np.exp(log_pi0))
    np.testing.assert_allclose(np.asarray(s1.log_pi), want1, atol=1e-12)
    np.testing.assert_allclose(np.asarray(s2.log_pi), want2, atol=1e-12)
    assert not np.allclose(want1, log_pi0)  # the step does move


def test_mpo_magnet_reset_and_mwu_average():
    P, log_pi0, log_ref = _game3()
    from alignjax.dynamics.exact import mpo, mwu
    dyn = mpo(reset_every=2)
    args = (jnp.asarray(P, jnp.float32), jnp.asarray(log_ref, jnp.float32), jnp.float32(0.3), jnp.float32(0.7))
    s = dyn.init(jnp.asarray(log_pi0, jnp.float32), *args)
    s = dyn.update(s, *args)
    np.testing.assert_allclose(s.extra, log_ref, atol=1e-6)  # not reset after 1 step
    s = dyn.update(s, *args)
    np.testing.assert_allclose(s.extra, s.log_pi, atol=0)  # reset after the 2nd
    dyn = mwu()
    s = dyn.init(jnp.asarray(log_pi0, jnp.float32), *args)
    pis = [np.exp(log_pi0)]
    for _ in range(3):
        s = dyn.update(s, *args)
        pis.append(np.exp(np.asarray(s.log_pi)))
    np.testing.assert_allclose(s.extra, np.mean(pis, axis=0), atol=1e-6)


def test_bt_rlhf_is_the_kl_regularised_reward_optimum():
    r = jnp.array([0.5, -0.3, 1.2, 0.0])
    P = prefs.bradley_terry(r)
    ref = jax.nn.softmax(jnp.array([0.1, 0.4, -0.2, 0.0]))
    pis = simulate("bt-rlhf", P, ref, beta=0.5, eta=1.0, num_steps=2)
    want = jax.nn.softmax(jnp.log(ref) + r / 0.5)
    np.testing.assert_allclose(pis[1], want, atol=1e-5)
    np.testing.assert_allclose(pis[2], want, atol=1e-5)
    np.testing.assert_allclose(pis[0], ref, atol=1e-6)


def _equilibria():
    """(label, exact float64 P, exact equilibrium)."""
    third = np.full(3, 1 / 3)
    dice = np.round(np.asarray(prefs.intransitive_dice(), np.float64) * 18) / 18  # multiples of 1/18
    out = [("rps", np.asarray(prefs.rock_paper_scissors(), np.float64), third), ("dice", dice, third)]
    for e in (-0.3, -0.1, 0.0, 0.15, 0.3):
        with jax.enable_x64(True):
            P = np.asarray(prefs.three_rater_cycle(np.float64(e)))
        out.append((f"three-rater e={e}", P, np.array([1 / 3 + e / 2, 1 / 3 + e / 2, 1 / 3 - e])))
    return out


@pytest.mark.parametrize("label, P, eq", _equilibria(), ids=[k for k, _, _ in _equilibria()])
def test_known_equilibria_are_fixed_points_with_zero_gap(label, P, eq):
    np.testing.assert_allclose(games.nash(P), eq, atol=1e-7)  # the LP finds it
    # an interior equilibrium (A pi = 0) is the regularised equilibrium for pi_ref = pi itself,
    # for every beta; for RPS and dice that reference is uniform
    with jax.enable_x64(True):
        P64, eq64 = jnp.asarray(P), jnp.asarray(eq)
        assert float(games.exploitability(P64, eq64)) < 1e-14
        betas = jnp.array([1.0, 0.1, 0.01])
        assert np.all(np.asarray(games.regularized_gap(P64, eq64, eq64, betas)) < 1e-14)
        for name in REGULARISED + ["mwu"]:  # 3 updates (the point is a fixed point, repelling for some)
            pis = simulate(name, P64, eq64, beta=betas, eta=0.5, num_steps=3, pi0=eq64)
            np.testing.assert_allclose(pis[:, -1], jnp.broadcast_to(eq64, (3, 3)), atol=1e-11, err_msg=name)
        # a perturbed start is not a fixed point (the check can fail)
        pert = jax.nn.softmax(jnp.log(eq64) + jnp.array([0.1, 0.0, -0.1]))
        moved = simulate("egpo", P64, eq64, beta=betas, eta=0.5, num_steps=3, pi0=pert)[1, -1]  # same compile
        assert float(jnp.max(jnp.abs(moved - pert))) > 1e-4


def test_egpo_converges_and_plain_fixed_points_differ_for_nash_md():
    P = prefs.random_game(jax.random.key(0), 10, (3,))  # (3, 10, 10): shapes shared with test_games
    ref = jax.nn.softmax(jax.random.normal(jax.random.key(1), (3, 10)))
    beta = 0.2
    star = games.regularized_nash(P, ref, beta).pi
    last = {n: simulate(n, P, ref, beta=beta, eta=0.5, num_steps=1500, log_every=1500)[:, -1]
            for n in ("egpo", "nash-md", "omd", "omwu")}
    for n in ("egpo", "omd", "omwu"):
        np.testing.assert_allclose(last[n], star, atol=1e-5, err_msg=n)
    # constant-step Nash-MD has a biased fixed point: clearly positive gap
    assert np.all(np.asarray(games.regularized_gap(P, last["nash-md"], ref, beta)) > 1e-6)


def test_nash_md_schedule_theorem_bound():
    P = prefs.random_game(jax.random.key(2), 10, (3,))
    ref = jax.nn.softmax(jax.random.normal(jax.random.key(3), (3, 10)))
    beta, T = 0.5, 400
    pis = simulate("nash-md-schedule", P, ref, beta=beta, eta=1.0, num_steps=T, log_every=100)
    star = games.regularized_nash(P, ref, beta).pi
    kl = np.asarray(games.kl(star[:, None], pis))  # (3 games, 5 logged)
    steps = np.arange(0, T + 1, 100)
    assert np.all(kl[:, 1:] <= 8 / (beta ** 2 * (steps[1:] + 1)))
    assert np.all(kl[:, -1] < kl[:, 1])  # decreasing


def test_mwu_last_iterate_cycles_average_converges_on_rps():
    P = prefs.rock_paper_scissors()
    pi0 = jnp.array([0.6, 0.3, 0.1])
    last = simulate("mwu", P, pi0, beta=0.0, eta=0.1, num_steps=4000, log_every=4000)[-1]
    avg = simulate("mwu", P, pi0, beta=0.0, eta=0.1, num_steps=4000, log_every=4000, average=True)[-1]
    assert float(games.exploitability(P, last)) > 0.2
    assert float(games.exploitability(P, avg)) < 0.05
    eg = simulate("egpo", P, pi0, beta=0.0, eta=0.5, num_steps=4000, log_every=4000)[-1]
    assert float(games.exploitability(P, eg)) < 0.01  # extragradient: last iterate converges


def test_simulate_vmap_over_betas_equals_loop_and_jit_equals_eager():
    P = prefs.random_game(jax.random.key(4), 5, (3,))
    ref = jax.nn.softmax(jax.random.normal(jax.random.key(5), (3, 5)))
    betas = jnp.array([0.5, 0.1, 0.02])
    batched = simulate("egpo", P[:, None], ref[:, None], beta=betas, eta=0.3, num_steps=30, log_every=10)
    assert batched.shape == (3, 3, 4, 5)
    for i in range(3):
        for j in range(3):
            one = simulate("egpo", P[i], ref[i], beta=betas[j], eta=0.3, num_steps=30, log_every=10)
            np.testing.assert_allclose(batched[i, j], one, atol=1e-6)
    dyn = DYNAMICS.get("omwu")
    args = (P[0], jnp.log(ref[0]), jnp.float32(0.1), jnp.float32(0.4))
    s = dyn.init(jnp.log(ref[0]), *args)
    eager = dyn.update(dyn.update(s, *args), *args)
    jitted = jax.jit(lambda s: dyn.update(dyn.update(s, *args), *args))(s)
    np.testing.assert_allclose(eager.log_pi, jitted.log_pi, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="nope"), "unknown exact dynamic"),
    (dict(P=np.array([[0.5, 0.9, 0.5], [0.9, 0.5, 0.5], [0.5, 0.5, 0.5]])), r"P \+ P.T"),
    (dict(beta=-0.1), "beta"),
    (dict(name="nash-md-schedule", beta=0.0), "beta"),
    (dict(eta=0.0), "eta"),
    (dict(pi_ref=np.array([0.5, 0.5, 0.0])), "pi_ref"),
    (dict(pi_ref=np.array([0.5, 0.5])), "pi_ref"),
    (dict(log_every=3), "log_every"),
])
def test_simulate_rejects_bad_input(kwargs, match):
    args = dict(name="egpo", P=prefs.rock_paper_scissors(), pi_ref=np.full(3, 1 / 3), beta=0.1, eta=0.1,
                num_steps=10, log_every=1)
    args.update(kwargs)
    name, P, ref = args.pop("name"), args.pop("P"), args.pop("pi_ref")
    with pytest.raises(ValueError, match=match):
        simulate(name, P, ref, **args)
