"""Exact tabular game dynamics (alignjax.dynamics.exact) and the batched runner simulate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import games, prefs
from alignjax.dynamics import exact_dynamics, exact_names, simulate
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
    # the built-ins are registered (a superset: a fork's new dynamic breaks no test here)
    assert set(exact_names()) >= {"omd", "nash-md", "nash-md-schedule", "egpo", "omwu", "mpo", "mwu", "bt-rlhf"}
    for name in exact_names():
        assert DYNAMICS.entry(name).meta["kind"] == "exact"


@pytest.mark.parametrize("name", ["omd", "nash-md", "nash-md-schedule", "egpo", "omwu", "mpo", "mwu"])
def test_two_steps_equal_hand_computed_oracle(name):
    P, log_pi0, log_ref = _game3()
    beta, eta = 0.3, 0.7
    dyn = exact_dynamics(name)
    with jax.enable_x64(True):
        args = (jnp.asarray(P), jnp.asarray(log_ref), {"beta": jnp.asarray(beta), "eta": jnp.asarray(eta)})
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
    args = (jnp.asarray(P, jnp.float32), jnp.asarray(log_ref, jnp.float32), {"beta": jnp.float32(0.3), "eta": jnp.float32(0.7)})
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


def _np_regularized_nash(P, ref, beta):
    """``pi*_beta`` in float64 by scipy's root finder on the logits, ``z = log ref + A softmax(z) / beta``
    (independent of ``games.regularized_nash``); the fixed-point residual is checked."""
    from scipy.optimize import root
    from scipy.special import softmax

    A = (P - P.T) / 2
    sol = root(lambda z: z - np.log(ref) - A @ softmax(z) / beta, np.log(ref))
    pi = softmax(sol.x)
    assert np.abs(pi - softmax(np.log(ref) + A @ pi / beta)).sum() < 1e-10
    return pi


def test_nash_md_schedule_theorem_bound():
    """NLHF Thm 1 as implemented: ``KL(pi*_beta || pi_T) <= 8 / (beta^2 (T+1))`` at every ``T = 1..400``.

    The bound must be able to fail. From ``pi_0 = pi_ref`` it cannot for ``T < 16/beta - 1`` on any
    game: with ``pi* . A pi* = 0``, ``KL(pi* || pi_ref) = -log E_ref[exp(A pi* / beta)] <= 1/(2 beta)``
    (as ``A pi* >= -1/2``), below ``8/(beta^2 (T+1))`` there; and on these games it is below 0.006, under
    the bound at every ``T <= 400``, so a policy that never moved would pass. So start near a vertex
    instead, ``1 - 1e-3`` on the action the equilibrium likes least: ``KL(pi* || pi_0) ~ 6.9`` is above
    the bound already at ``T = 1`` (``4/beta^2 = 4`` and ``1``; asserted below).

    The bound does not need ``pi_0 = pi_ref``: ``eta_0 beta = 1`` makes the first mixture
    ``mu_0 = pi_0^0 pi_ref^1 = pi_ref``, so ``pi_1 = lsm(log pi_ref + eta_0 A pi_ref)`` and every later
    iterate are the same from every start (a recursion ``KL_{t+1} <= (1 - eta_t beta) KL_t + c eta_t^2``
    gives ``KL_0`` weight 0 likewise). Asserted bit for bit against the run from ``pi_ref``: the
    ``beta`` are powers of 2, so ``eta_0 beta = (2 / (2 beta)) beta`` is exactly 1 in floating point.
    """
    T, n = 400, 10
    P = np.asarray(prefs.random_game(jax.random.key(2), n, (3,)), np.float64)
    with jax.enable_x64(True):
        ref = np.asarray(jax.nn.softmax(jax.random.normal(jax.random.key(3), (3, n), jnp.float64)))
    betas = np.array([1.0, 2.0])
    star = np.array([[_np_regularized_nash(P[g], ref[g], b) for b in betas] for g in range(3)])  # (3, 2, N)
    worst = np.eye(n, dtype=bool)[np.argmin(star, axis=-1)]
    vertex = np.where(worst, 1.0 - 1e-3, 1e-3 / (n - 1))
    pi0 = np.stack([vertex, np.broadcast_to(ref[:, None], vertex.shape)], axis=2)  # (3, 2, 2 starts, N)
    with jax.enable_x64(True):
        pis = np.asarray(simulate("nash-md-schedule", P[:, None, None], ref[:, None, None], beta=betas[:, None],
                                  eta=1.0, num_steps=T, pi0=pi0))  # (3, 2, 2, T+1, N), every step logged
    kl = np.sum(star[:, :, None, None] * np.log(star[:, :, None, None] / pis), axis=-1)  # (3, 2, 2, T+1)
    bound = 8 / (betas[:, None, None] ** 2 * (np.arange(T + 1) + 1))  # (2, 1, T+1)
    np.testing.assert_array_equal(pis[:, :, 0, 1:], pis[:, :, 1, 1:])  # pi_T, T >= 1: independent of pi_0
    assert np.all(kl[..., 1:] <= bound[..., 1:])  # the theorem, at every T, from both starts
    # the bound is loose by > 1e3 at T = 400 here, so also: the iterates move on towards pi* after the first
    # step (a schedule stuck at eta_0 = 1/beta would leave pi_t = pi_1 = BR(pi_ref) for every t >= 1)
    assert np.all(kl[..., T] < kl[..., 1])
    # teeth: a policy frozen at the vertex start violates the bound at T = 1 (so at every T >= 1)
    assert np.all(kl[:, :, 0, 0] > bound[:, 0, 1])


def test_mwu_last_iterate_cycles_average_converges_on_rps():
    """RPS from ``pi_0 = (0.6, 0.3, 0.1)`` in float64; every threshold is derived.

    ``u = 1/3`` is the interior equilibrium, ``A = P - 1/2`` has ``A 1 = 0`` and ``1^T A = 0``, so
    ``u . A pi = 0`` and ``pi . A pi = 0`` for every ``pi``; gains ``A pi`` lie in ``[-1/2, 1/2]``.

    * MWU last iterate: ``KL(u || pi_{t+1}) - KL(u || pi_t) = log E_{pi_t}[exp(eta A pi_t)] >= eta pi_t . A pi_t
      = 0`` (Jensen; strict unless ``pi_t = u``): the divergence from ``u`` never decreases. On RPS the
      exploitability ``d = 2 max_y (A pi)_y = max(pi_2 - pi_1, pi_0 - pi_2, pi_1 - pi_0)``; the three
      differences sum to 0, so each is ``>= -2 d`` and ``min pi >= (1 - 4d)/3``, whence
      ``KL(u || pi) <= -log(3 min pi) <= -log(1 - 4d)``, i.e. ``d >= (1 - exp(-KL(u || pi)))/4 >=
      (1 - exp(-KL(u || pi_0)))/4 = 0.053``: the last iterate never gets closer than that.
    * MWU average of ``pi_0..pi_t``: with ``Phi_s = log sum_y pi_0(y) exp(eta G_s(y))``, ``G_s = sum_{r<s} A pi_r``,
      Hoeffding's lemma (gains of range 1) gives ``Phi_{s+1} - Phi_s <= eta pi_s . A pi_s + eta^2/8 = eta^2/8``,
      so ``G_{t+1}(y) <= (log(1/pi_0(y)) + (t+1) eta^2/8) / eta`` and the exploitability of the average,
      ``2 max_y G_{t+1}(y)/(t+1)``, is ``<= 2 (log(1/min pi_0)/eta + (t+1) eta/8) / (t+1)`` (0.0365 at t = 4000).
    * Extragradient (egpo, beta = 0): near ``u`` the centred log-policy ``x`` has ``pi = (1 + x)/3 + O(x^2)``,
      ``A pi = A x / 3``, so one update is ``x -> (I + c A + c^2 A^2) x``, ``c = eta/3``. On the plane
      ``sum x = 0``, ``A^T A = -A^2 = 3/4 I`` (eigenvalues ``+-i sqrt(3)/2``), so the map scales every ``x`` by
      exactly ``rho = sqrt((1 - y^2)^2 + y^2)``, ``y^2 = c^2 3/4 = eta^2/12``: ``rho = 0.98975`` at
      ``eta = 1/2`` (plain MWU: ``sqrt(1 + y^2) > 1``). Checked on steps 1500 -> 2000, where ``||x|| < 1e-6``:
      the neglected terms are relative ``O(||x_s||)`` per step, ``<= ||x_1500|| / (1 - rho) ~ 3e-5`` summed
      over the window, and float64 rounding ``eps / ||x_2000|| ~ 1e-7``: within ``rtol = 1e-3``. By
      ``T = 4000``, ``rho^T ||x_0|| ~ 2e-18`` is below rounding, so only rounding of ``pi`` (a few ``eps``
      ``~ 1e-15``) is left of the exploitability; asserted ``< 1e-13``.
    """
    T, every, eta = 4000, 500, 0.1
    with jax.enable_x64(True):
        P = jnp.asarray(np.asarray(prefs.rock_paper_scissors()), jnp.float64)
        pi0 = jnp.array([0.6, 0.3, 0.1], jnp.float64)
        last = np.asarray(simulate("mwu", P, pi0, beta=0.0, eta=eta, num_steps=T, log_every=every))
        avg = np.asarray(simulate("mwu", P, pi0, beta=0.0, eta=eta, num_steps=T, log_every=every, average=True))
        eg = np.asarray(simulate("egpo", P, pi0, beta=0.0, eta=0.5, num_steps=T, log_every=every))
        # average=True is the uniform average of pi_0..pi_t (checked exactly on 4 steps, every one logged)
        few = [np.asarray(simulate("mwu", P, pi0, beta=0.0, eta=eta, num_steps=4, average=a)) for a in (False, True)]
    np.testing.assert_allclose(few[1], np.cumsum(few[0], axis=0) / np.arange(1, 6)[:, None], rtol=0, atol=1e-15)  # ulps
    A = np.asarray(P) - 0.5
    expl = lambda p: 2 * np.max(p @ A.T, axis=-1)  # numpy, independent of games.exploitability
    t = np.arange(0, T + 1, every)
    u = np.full(3, 1 / 3)
    kl_u = np.sum(u * np.log(u / last), axis=-1)
    assert np.all(np.diff(kl_u) > 0)  # KL(u || pi_t) increases at every logged step
    assert np.all(expl(last) >= (1 - np.exp(-kl_u[0])) / 4)  # 0.053: the last iterate does not converge
    regret = 2 * (np.log(1 / np.asarray(pi0).min()) / eta + (t + 1) * eta / 8) / (t + 1)
    assert np.all(expl(avg) <= regret)  # the average does (0.0365 at T)
    x = np.log(eg) - np.log(eg).mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1)
    y2 = 0.5 ** 2 / 12
    rho = np.sqrt((1 - y2) ** 2 + y2)
    assert norm[3] < 1e-6  # step 1500: in the linear regime
    np.testing.assert_allclose(norm[4] / norm[3], rho ** every, rtol=1e-3)  # steps 1500 -> 2000
    assert expl(eg[-1]) < 1e-13  # extragradient: the last iterate converges (to rounding)


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
    dyn = exact_dynamics("omwu")
    args = (P[0], jnp.log(ref[0]), {"beta": jnp.float32(0.1), "eta": jnp.float32(0.4)})
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


# ----------------------------------------------------------------- hyperparameter conditions
MIXTURE = ["omd", "nash-md", "egpo", "omwu"]  # (1 - eta*beta) log pi_t + eta*beta log pi_ref
TINY32 = float(np.finfo(np.float32).tiny)  # smallest normal float32


def _unchecked_run(name, P, log_pi0, log_ref, beta, eta, num_steps):
    """``num_steps`` updates of ``name`` called directly (no check), float32; all iterates ``(T, N)``."""
    dyn = exact_dynamics(name)
    args = (jnp.asarray(P, jnp.float32), jnp.asarray(log_ref, jnp.float32), {"beta": jnp.float32(beta), "eta": jnp.float32(eta)})
    s0 = dyn.init(jnp.asarray(log_pi0, jnp.float32), *args)

    def step(s, _):
        s = dyn.update(s, *args)
        return s, s.log_pi

    _, lps = jax.lax.scan(step, s0, None, length=num_steps)
    return np.asarray(lps)


@pytest.mark.parametrize("name", MIXTURE)
def test_mixture_rules_run_finite_up_to_eta_beta_1_and_refuse_beyond(name):
    P = prefs.random_game(jax.random.key(8), 5)
    ref = jax.nn.softmax(2.0 * jax.random.normal(jax.random.key(9), (5,)))
    # eta*beta = 1 exactly, and = 1 up to float32 rounding of eta = 1/beta; 0.25; beta = 0 (no limit on eta)
    betas = np.array([0.5, 0.1, 0.3, 0.05, 0.0])
    etas = np.array([2.0, 10.0, 1 / 0.3, 5.0, 40.0])
    pis = np.asarray(simulate(name, P, ref, beta=betas, eta=etas, num_steps=600, log_every=200))
    assert np.all(np.isfinite(pis)) and np.all(pis >= 0)
    np.testing.assert_allclose(pis.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=rf"^{name} needs eta\*beta <= 1 \(the \(1 - eta\*beta\) weight of log pi_t "
                                         r"must be >= 0\); got eta\*beta = 1\.0000[0-9]*$"):
        simulate(name, P, ref, beta=0.5, eta=2.0001, num_steps=10)  # eta*beta = 1.00005
    with pytest.raises(ValueError, match=r"got eta\*beta = 4$"):
        simulate(name, P, ref, beta=np.array([0.1, 0.1]), eta=np.array([0.4, 40.0]), num_steps=10)


@pytest.mark.parametrize("name", MIXTURE)
def test_negative_mixture_weight_really_diverges_to_nan(name):
    """Why the limit: at eta*beta = 4 the weight of log pi_t is -3; without the check the run is NaN."""
    tie = np.full((5, 5), 0.5)  # A = 0: only the mixture acts
    log_ref = np.log(np.array([0.1, 0.2, 0.3, 0.15, 0.25]))
    log_pi0 = np.log(np.array([0.3, 0.1, 0.2, 0.25, 0.15]))
    lps = _unchecked_run(name, tie, log_pi0, log_ref, 0.1, 40.0, 100)
    d0, d1 = log_pi0 - log_ref, lps[0] - log_ref
    # one step: log(pi_1 / pi_ref) = (1 - eta*beta) log(pi_0 / pi_ref) + c = -3 log(pi_0 / pi_ref) + c
    np.testing.assert_allclose(d1 - d1.mean(), -3.0 * (d0 - d0.mean()), rtol=1e-5)
    assert np.argmax(d1) == np.argmin(d0)  # the order of pi / pi_ref flips every step
    bad = ~np.all(np.isfinite(lps), axis=-1)
    assert bad.any() and 70 <= np.argmax(bad) <= 90  # spread ~3^t overflows float32 after ~80 steps
    # the same game at the limit eta*beta = 1 stays finite (one step lands on pi_ref)
    ok = _unchecked_run(name, tie, log_pi0, log_ref, 0.1, 10.0, 100)
    assert np.all(np.isfinite(ok))
    np.testing.assert_allclose(ok[-1], log_ref, atol=1e-5)
    # and on a random game too
    P = np.asarray(prefs.random_game(jax.random.key(10), 5))
    assert not np.all(np.isfinite(_unchecked_run(name, P, log_pi0, log_ref, 0.1, 40.0, 100)))


def test_schedule_mpo_mwu_bt_rlhf_conditions():
    P = prefs.random_game(jax.random.key(11), 5)
    ref = jax.nn.softmax(jax.random.normal(jax.random.key(12), (5,)))
    fin = lambda x: bool(np.all(np.isfinite(np.asarray(x))))
    # nash-md-schedule ignores eta (eta_t beta = 2/(t+2) <= 1 by construction); beta must be a normal float
    assert fin(simulate("nash-md-schedule", P, ref, beta=np.array([TINY32, 0.1]), eta=40.0, num_steps=50))
    with pytest.raises(ValueError, match="beta = .* underflows in float32"):
        simulate("nash-md-schedule", P, ref, beta=TINY32 / 2, eta=1.0, num_steps=5)
    with pytest.raises(ValueError, match=r"nash-md-schedule needs beta > 0"):
        simulate("nash-md-schedule", P, ref, beta=0.0, eta=1.0, num_steps=5)
    lr = np.log(np.asarray(ref))
    assert not fin(_unchecked_run("nash-md-schedule", P, lr, lr, TINY32 / 2, 1.0, 3))  # flushed to 0: NaN
    # mpo: no upper limit on eta*beta (weights 1/(1+b), b/(1+b) in [0, 1]), even past float32's max
    pis = simulate("mpo", P, ref, beta=np.array([0.1, 1.0, 1e20]), eta=np.array([40.0, 1e30, 1e20]), num_steps=100)
    assert fin(pis)
    for kw, match in ((dict(beta=0.0, eta=1.0), "mpo needs beta > 0"), (dict(beta=0.1, eta=0.0), "mpo needs eta > 0")):
        with pytest.raises(ValueError, match=match):
            simulate("mpo", P, ref, num_steps=5, **kw)
    # mwu: eta > 0 only (beta unused)
    assert fin(simulate("mwu", P, ref, beta=-5.0, eta=40.0, num_steps=100))
    with pytest.raises(ValueError, match="mwu needs eta > 0"):
        simulate("mwu", P, ref, beta=0.1, eta=0.0, num_steps=5)
    # bt-rlhf: any beta > 0 (the reward is shifted to r - max r before / beta): tiny beta gives the BT argmax
    r = prefs.fit_bradley_terry(P)
    pis = simulate("bt-rlhf", P, ref, beta=TINY32, eta=0.0, num_steps=2)
    np.testing.assert_array_equal(np.asarray(pis[-1]), np.eye(5)[int(np.argmax(r))])
    with pytest.raises(ValueError, match="bt-rlhf needs beta > 0"):
        simulate("bt-rlhf", P, ref, beta=0.0, eta=1.0, num_steps=2)
    assert not fin(_unchecked_run("bt-rlhf", P, lr, lr, 0.0, 1.0, 1))  # r / 0: NaN


def test_check_hparams_is_public_and_checks_the_run_dtype():
    from alignjax.dynamics import check_hparams
    check_hparams("egpo", {"beta": np.array([0.1, 0.5]), "eta": np.array([10.0, 2.0])})  # eta*beta = 1: allowed
    check_hparams("egpo", {"beta": 1e-40, "eta": 1.0}, np.float64)  # fine in float64 ...
    with pytest.raises(ValueError, match=r"beta = 1e-40 underflows in float32"):
        check_hparams("egpo", {"beta": 1e-40, "eta": 1.0})  # ... subnormal (flushed to 0) in float32, the default
    with pytest.raises(ValueError, match=r"eta = 1e\+39 overflows float32"):
        check_hparams("mwu", {"beta": 0.1, "eta": 1e39})
    with pytest.raises(ValueError, match="eta must be finite"):
        check_hparams("omd", {"beta": 0.1, "eta": np.nan})
    with pytest.raises(ValueError, match="unknown exact dynamic 'sampled-egpo'"):
        check_hparams("sampled-egpo", {"beta": 0.1, "eta": 0.1})
    for name in REGULARISED + ["mwu", "bt-rlhf"]:  # every built-in exact dynamic declares its condition
        assert callable(DYNAMICS.entry(name).meta["check"]), name
        check_hparams(name, DYNAMICS.entry(name).hparams)  # defaults pass
    with pytest.raises(ValueError) as err:
        check_hparams("omwu", {"beta": 0.1, "eta": 40.0})
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------
# issue 24, item 3: omd and omwu written as rules on the public helpers, bit-identical to before
def _omd_target(log_pi, P, log_pi_ref, beta, eta, pay):
    """exact.py's ``_omd_target`` before issue 24, verbatim."""
    b = jnp.asarray(eta * beta)[..., None]
    return jax.nn.log_softmax((1.0 - b) * log_pi + b * log_pi_ref + jnp.asarray(eta)[..., None] * pay)


def _simple_init(log_pi0, P, log_pi_ref, hparams):
    from alignjax.dynamics.base import ExactState

    return ExactState(jax.nn.log_softmax(jnp.asarray(log_pi0)), jnp.zeros(log_pi0.shape[:-1], jnp.int32), ())


def _omd_before():
    """omd as written before issue 24 (verbatim, its private helpers copied above)."""
    from alignjax.dynamics.base import ExactDynamics, ExactState, payoff

    def update(s, P, log_pi_ref, hp):
        beta, eta = hp["beta"], hp["eta"]
        return ExactState(_omd_target(s.log_pi, P, log_pi_ref, beta, eta, payoff(P, s.log_pi)), s.t + 1, ())

    return ExactDynamics(_simple_init, update)


def _omwu_before():
    """omwu as written before issue 24."""
    from alignjax.dynamics.base import ExactDynamics, ExactState, payoff

    def init(log_pi0, P, log_pi_ref, hp):
        lp = jax.nn.log_softmax(jnp.asarray(log_pi0))
        return ExactState(lp, jnp.zeros(lp.shape[:-1], jnp.int32), payoff(P, lp))

    def update(s, P, log_pi_ref, hp):
        pay = payoff(P, s.log_pi)
        return ExactState(_omd_target(s.log_pi, P, log_pi_ref, hp["beta"], hp["eta"], 2.0 * pay - s.extra),
                          s.t + 1, pay)

    return ExactDynamics(init, update)


@pytest.mark.parametrize("name, before", [("omd", _omd_before), ("omwu", _omwu_before)])
def test_rules_on_the_public_helpers_are_bit_identical_to_before(name, before):
    """300 updates in float64 on random games, references, starts and hyperparameters (a batch of 16,
    ``eta beta`` up to 1): every iterate and memory equal bit for bit."""
    from alignjax.dynamics import exact_dynamics

    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(24), 5)
        n, rows = 6, 16
        P = jax.vmap(lambda key: prefs.random_game(key, n))(jax.random.split(k[0], rows)).astype(jnp.float64)
        log_ref = jax.nn.log_softmax(jax.random.normal(k[1], (rows, n), jnp.float64))
        log_pi0 = jax.random.normal(k[2], (rows, n), jnp.float64)
        eta = jax.random.uniform(k[3], (rows,), jnp.float64, 0.05, 2.0)
        hp = {"eta": eta, "beta": jax.random.uniform(k[4], (rows,), jnp.float64) / eta}

        def run(dyn):
            def body(s, _):
                s = dyn.update(s, P, log_ref, hp)
                return s, s

            return jax.lax.scan(body, dyn.init(log_pi0, P, log_ref, hp), None, length=300)[1]

        new, old = jax.jit(lambda: run(exact_dynamics(name)))(), jax.jit(lambda: run(before()))()
        assert new.log_pi.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(new.log_pi)))
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_check_written_with_assert_is_a_one_line_refusal():
    """Found by a newcomer's trial (2026-12-07): a fork's ``meta["check"]`` using ``assert`` gave a 36-line
    traceback and exit 1 instead of ``alignjax: error:`` and exit 2."""
    from alignjax.dynamics import check_hparams

    name = "test-assert-checked-mwu"

    def check(hp, dtype):
        assert np.all(hp["eta"] < 5), "eta must stay below 5\n(for this test)"

    DYNAMICS.register(name, DYNAMICS.get("mwu"), hparams={"eta": 1.0}, meta={"kind": "exact", "check": check})
    try:
        check_hparams(name, {"eta": 1.0})
        with pytest.raises(ValueError, match="refuses these hyperparameters: eta must stay below 5") as err:
            check_hparams(name, {"eta": 6.0})
        assert "\n" not in str(err.value)
    finally:
        DYNAMICS._entries.pop(name, None)
