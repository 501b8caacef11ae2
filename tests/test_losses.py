"""Math tests for the direct-alignment losses of :mod:`alignjax.losses`.

Order (house style): closed forms and hand-computed values against float64 numpy oracles,
then exact identities (limits, unbiasedness, population optima), then gradients, then
transformations (jit, vmap, no recompilation), then float32 stability properties, and last
the DPO exact optimum on a tabular bandit (arXiv:2305.18290, §4: ``pi* ∝ pi_ref exp(r/beta)``).

Formulas: ``docs/algorithms.md`` (offline losses). ``h`` is the log-ratio margin
``log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special

from alignjax import losses
from alignjax.policies import tabular
from alignjax.prefs import bradley_terry
from alignjax.registry import LOSSES

LOG2 = float(np.log(2.0))


# ----------------------------------------------------------------------------- numpy oracles
def _nls(z):
    """-log sigmoid(z) = log(1 + exp(-z)), float64, stable."""
    return np.logaddexp(0.0, -np.asarray(z, np.float64))


def _h(pc, pr, rc, rr):
    return (np.asarray(pc, np.float64) - rc) - (np.asarray(pr, np.float64) - rr)


def np_dpo(pc, pr, rc, rr, *, beta):
    return _nls(beta * _h(pc, pr, rc, rr))


def np_ipo(pc, pr, rc, rr, *, beta):
    return (_h(pc, pr, rc, rr) - 1.0 / (2.0 * beta)) ** 2


def np_cdpo(pc, pr, rc, rr, *, beta, eps):
    z = beta * _h(pc, pr, rc, rr)
    return (1 - eps) * _nls(z) + eps * _nls(-z)


def np_rdpo(pc, pr, rc, rr, *, beta, eps):
    z = beta * _h(pc, pr, rc, rr)
    return ((1 - eps) * _nls(z) - eps * _nls(-z)) / (1 - 2 * eps)


def np_simpo(pc, pr, rc, rr, *, beta, gamma, chosen_lengths=1.0, rejected_lengths=1.0):
    del rc, rr
    return _nls(beta * np.asarray(pc, np.float64) / chosen_lengths
                - beta * np.asarray(pr, np.float64) / rejected_lengths - gamma)


def np_rpo(pc, pr, rc, rr, *, beta, eta_sft):
    return np_dpo(pc, pr, rc, rr, beta=beta) - eta_sft * beta * np.asarray(pc, np.float64)


def np_gamma_dpo(pc, pr, rc, rr, *, beta, gamma):
    z = (np.asarray(pc, np.float64) - pr) + gamma * (np.asarray(rr, np.float64) - rc)
    return _nls(beta * z)


def np_slic(pc, pr, rc, rr, *, beta):
    return np.maximum(0.0, 1.0 - beta * _h(pc, pr, rc, rr))


def np_gpo_truncated_quadratic(pc, pr, rc, rr, *, beta):
    return np.maximum(0.0, 1.0 - beta * _h(pc, pr, rc, rr)) ** 2


def np_gpo_savage(pc, pr, rc, rr, *, beta):
    return special.expit(-beta * _h(pc, pr, rc, rr)) ** 2   # 1 / (1 + e^{beta h})^2, without overflow


def _np_fdpo(psi, pc, pr, rc, rr, *, beta):
    """The f-DPO loss (Wang et al. 2023) from its definition: ``-log sigmoid(beta [psi(u_w) - psi(u_l)])``
    with ``u = pi/pi_ref`` formed as a ratio of probabilities and ``psi = f'`` a function of ``u``."""
    uw = np.exp(np.asarray(pc, np.float64)) / np.exp(np.asarray(rc, np.float64))
    ul = np.exp(np.asarray(pr, np.float64)) / np.exp(np.asarray(rr, np.float64))
    return _nls(beta * (psi(uw) - psi(ul)))


# psi = f' for Table 1's divergences (Wang et al. 2023), as functions of u = pi/pi_ref
PSI_REVERSE_KL = lambda u: np.log(u) + 1.0  # noqa: E731  (f = u log u: DPO)
PSI_FORWARD_KL = lambda u: -1.0 / u  # noqa: E731  (f = -log u)
PSI_JS = lambda u: np.log(2.0 * u / (1.0 + u))  # noqa: E731  (f = u log u - (u + 1) log((u + 1)/2))


def psi_alpha(alpha):
    return lambda u: (1.0 - u ** (-alpha)) / alpha  # f = (u^{1-alpha} - (1-alpha) u - alpha)/(alpha (alpha - 1))


def np_fdpo_js(pc, pr, rc, rr, *, beta):
    """In log space (the float32 range test evaluates it at log-ratios up to 1e4):
    ``psi = log(2u/(1+u)) = log 2 + l - log(1 + e^l)``."""
    lw = np.asarray(pc, np.float64) - rc
    ll = np.asarray(pr, np.float64) - rr
    return _nls(beta * ((lw - np.logaddexp(0.0, lw)) - (ll - np.logaddexp(0.0, ll))))


def np_kto(pc, pr, rc, rr, *, beta, z0, lambda_d, lambda_u):
    """KTO (Ethayarajh et al. 2024, Sec. 4): ``lambda_y - v(x, y)`` averaged over the pair's two examples."""
    rw = np.asarray(pc, np.float64) - rc
    rl = np.asarray(pr, np.float64) - rr
    return 0.5 * ((lambda_d - lambda_d * special.expit(beta * (rw - z0)))
                  + (lambda_u - lambda_u * special.expit(beta * (z0 - rl))))


def np_orpo(pc, pr, rc, rr, *, beta, chosen_lengths=1.0, rejected_lengths=1.0):
    """ORPO (Hong et al. 2024, Eqs. 6-7): ``-log P(y_w) + beta * -log sigmoid(log odds_w - log odds_l)``
    with ``P = exp(mean token log-prob)`` and ``odds = P / (1 - P)`` formed from probabilities."""
    del rc, rr
    pw = np.exp(np.asarray(pc, np.float64) / chosen_lengths)
    pl = np.exp(np.asarray(pr, np.float64) / rejected_lengths)
    return -np.log(pw) + beta * _nls(np.log((pw / (1 - pw)) / (pl / (1 - pl))))


# name -> (implementation, oracle, list of extra-hparam settings to test)
CASES = {
    "dpo": (losses.dpo, np_dpo, [{}]),
    "ipo": (losses.ipo, np_ipo, [{}]),
    "cdpo": (losses.cdpo, np_cdpo, [{"eps": 0.0}, {"eps": 0.1}, {"eps": 0.4}]),
    "rdpo": (losses.rdpo, np_rdpo, [{"eps": 0.0}, {"eps": 0.1}, {"eps": 0.4}]),
    "simpo": (losses.simpo, np_simpo, [{"gamma": 0.0}, {"gamma": 0.5}, {"gamma": 2.0}]),
    "rpo": (losses.rpo, np_rpo, [{"eta_sft": 0.0}, {"eta_sft": 0.005}, {"eta_sft": 1.0}]),
    "gamma_dpo": (losses.gamma_dpo, np_gamma_dpo, [{"gamma": 0.0}, {"gamma": 1.0}, {"gamma": 0.3}]),
    # the GPO family (Tang et al. 2024, Table 1: f(beta h) with f hinge, truncated quadratic, Savage)
    "slic": (losses.slic, np_slic, [{}]),
    "gpo_truncated_quadratic": (losses.gpo_truncated_quadratic, np_gpo_truncated_quadratic, [{}]),
    "gpo_savage": (losses.gpo_savage, np_gpo_savage, [{}]),
    # f-DPO (Wang et al. 2023) with the Jensen-Shannon divergence; KTO (Ethayarajh et al. 2024); ORPO
    # (Hong et al. 2024). f-DPO's alpha and forward-KL members declare the domain log-ratio >= -60.
    "fdpo_js": (losses.fdpo_js, np_fdpo_js, [{}]),
    "fdpo_alpha": (losses.fdpo_alpha, lambda *a, beta, alpha: _np_fdpo(psi_alpha(alpha), *a, beta=beta),
                   [{"alpha": 0.5}, {"alpha": 0.1}, {"alpha": 0.9}]),
    "fdpo_forward_kl": (losses.fdpo_forward_kl, lambda *a, beta: _np_fdpo(PSI_FORWARD_KL, *a, beta=beta), [{}]),
    "kto": (losses.kto, np_kto, [{"z0": 0.0, "lambda_d": 1.0, "lambda_u": 1.0},
                                 {"z0": 0.7, "lambda_d": 1.33, "lambda_u": 1.0},
                                 {"z0": 0.0, "lambda_d": 1.0, "lambda_u": 1.5}]),
    "orpo": (losses.orpo, np_orpo, [{}]),
}
NAMES = sorted(CASES)
CASE_PARAMS = [(n, i) for n in NAMES for i in range(len(CASES[n][2]))]


def _inputs(seed, shape=(7,), scale=3.0):
    """Four arrays of (negative) sequence log-probs: chosen/rejected under pi and pi_ref."""
    rng = np.random.default_rng(seed)
    return tuple(-scale * rng.random(shape) - 0.01 for _ in range(4))


def test_every_case_names_a_registered_loss():
    # a subset, not a fixed list: a fork's new loss (in losses.py or its own module) breaks no
    # test here; the registry-wide tests in test_registry.py cover it
    assert set(CASES) <= set(losses.__all__) and set(CASES) <= set(LOSSES.names())


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("name,k", CASE_PARAMS)
@pytest.mark.parametrize("beta", [1e-2, 0.1, 1.0, 7.5])
def test_matches_float64_oracle(name, k, beta):
    fn, oracle, settings_ = CASES[name]
    hp = settings_[k]
    args = _inputs(seed=k + 17 * len(name))
    with jax.enable_x64(True):
        got = np.asarray(fn(*map(jnp.asarray, args), beta=beta, **hp))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, oracle(*args, beta=beta, **hp), rtol=1e-12, atol=1e-12)


def test_margin_is_the_log_ratio_difference():
    got = losses.margin(-1.0, -2.0, -1.5, -4.0)  # (-1 + 1.5) - (-2 + 4) = -1.5
    assert float(got) == pytest.approx(-1.5)


@pytest.mark.parametrize("beta", [0.01, 0.5, 3.0])
def test_hand_computed_values_at_zero_margin(beta):
    """At ``h = 0``: DPO = cDPO = rDPO = log 2 for any eps; IPO = 1/(4 beta^2)."""
    z = jnp.zeros(())
    a = (z - 1.0, z - 2.0, z - 1.0, z - 2.0)  # h = 0 but the log-probs are not 0
    assert float(losses.dpo(*a, beta=beta)) == pytest.approx(LOG2, rel=1e-6)
    for eps in (0.0, 0.2, 0.45):
        assert float(losses.cdpo(*a, beta=beta, eps=eps)) == pytest.approx(LOG2, rel=1e-6)
        assert float(losses.rdpo(*a, beta=beta, eps=eps)) == pytest.approx(LOG2, rel=1e-6)
    assert float(losses.ipo(*a, beta=beta)) == pytest.approx(1.0 / (4 * beta**2), rel=1e-6)


@pytest.mark.parametrize("beta", [0.01, 0.5, 3.0])
def test_gpo_members_hand_values(beta):
    """GPO (Tang et al. 2024, Table 1) at ``h = 0``: hinge 1, truncated quadratic 1, Savage 1/4; at
    ``beta h = 2`` the hinge and truncated quadratic are exactly 0 (the pair is past the margin) and
    Savage is ``sigmoid(-2)^2``; at ``beta h = -1``: 2, 4, ``sigmoid(1)^2``."""
    z = jnp.zeros(())
    at = lambda x: (z + x / beta - 1.0, z - 1.0, z - 1.0, z - 1.0)  # noqa: E731  (h = x / beta)
    for x, hinge, tq, sav in ((0.0, 1.0, 1.0, 0.25), (2.0, 0.0, 0.0, float(special.expit(-2.0)) ** 2),
                              (-1.0, 2.0, 4.0, float(special.expit(1.0)) ** 2)):
        assert float(losses.slic(*at(x), beta=beta)) == pytest.approx(hinge, abs=1e-5)
        assert float(losses.gpo_truncated_quadratic(*at(x), beta=beta)) == pytest.approx(tq, abs=1e-5)
        assert float(losses.gpo_savage(*at(x), beta=beta)) == pytest.approx(sav, rel=1e-5)


def test_hand_computed_values():
    # h = 2, beta = 0.5: DPO = log(1 + e^{-1}).
    a = (-1.0, -3.0, -2.0, -2.0)
    assert float(losses.dpo(*a, beta=0.5)) == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-6)
    # IPO: (2 - 1/(2*0.5))^2 = 1.
    assert float(losses.ipo(*a, beta=0.5)) == pytest.approx(1.0, rel=1e-6)
    # RPO adds eta_sft * beta * (-log pi(y_w)) = 0.1 * 0.5 * 1 on top of DPO.
    assert float(losses.rpo(*a, beta=0.5, eta_sft=0.1)) == pytest.approx(np.log1p(np.exp(-1.0)) + 0.05, rel=1e-6)
    # SimPO ignores the reference: beta/|y| log pi: 0.5*(-1/1) - 0.5*(-3/3) - 0 = 0 -> log 2.
    got = losses.simpo(-1.0, -3.0, -100.0, 5.0, beta=0.5, gamma=0.0, chosen_lengths=1.0, rejected_lengths=3.0)
    assert float(got) == pytest.approx(LOG2, rel=1e-6)
    # gamma_dpo, gamma = 0: no reference, z = log pi(y_w)/pi(y_l) = 2 -> log(1 + e^{-1}) at beta 0.5.
    assert float(losses.gamma_dpo(-1.0, -3.0, 9.0, -9.0, beta=0.5, gamma=0.0)) == pytest.approx(
        np.log1p(np.exp(-1.0)), rel=1e-6)


def test_simpo_is_reference_free_and_length_normalised():
    pc, pr = jnp.array([-4.0, -6.0]), jnp.array([-9.0, -2.0])
    base = losses.simpo(pc, pr, jnp.zeros(2), jnp.zeros(2), beta=2.0, gamma=0.3)
    other_ref = losses.simpo(pc, pr, jnp.array([-50.0, 3.0]), jnp.array([7.0, -1.0]), beta=2.0, gamma=0.3)
    np.testing.assert_array_equal(np.asarray(base), np.asarray(other_ref))
    # Scaling a response's log-prob and its length together leaves the loss unchanged.
    scaled = losses.simpo(3 * pc, 5 * pr, None, None, beta=2.0, gamma=0.3, chosen_lengths=3.0, rejected_lengths=5.0)
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(base), rtol=1e-6)


# ----------------------------------------------------------------------------- exact identities
@pytest.mark.parametrize("name", ["cdpo", "rdpo"])
def test_eps_zero_is_dpo_and_eps_to_zero_limit(name):
    fn = CASES[name][0]
    args = _inputs(seed=3)
    with jax.enable_x64(True):
        a = tuple(map(jnp.asarray, args))
        ref = np.asarray(losses.dpo(*a, beta=0.7))
        np.testing.assert_array_equal(np.asarray(fn(*a, beta=0.7, eps=0.0)), ref)
        errs = [float(np.max(np.abs(np.asarray(fn(*a, beta=0.7, eps=e)) - ref))) for e in (1e-2, 1e-4, 1e-6)]
    # |l_eps - l_dpo| = O(eps): shrinks by ~100x per step of 100x in eps.
    assert errs[0] > 0 and errs[1] < 2e-2 * errs[0] and errs[2] < 2e-2 * errs[1]


@pytest.mark.parametrize("eps", [0.05, 0.2, 0.45])
@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_rdpo_is_unbiased_for_the_clean_dpo_loss(eps, beta):
    """Exact expectation over one label flip with rate eps: (1-eps) l(w,l) + eps l(l,w) = l_dpo(w,l)."""
    pc, pr, rc, rr = map(jnp.asarray, _inputs(seed=11))
    with jax.enable_x64(True):
        pc, pr, rc, rr = (x.astype(jnp.float64) for x in (pc, pr, rc, rr))
        kept = losses.rdpo(pc, pr, rc, rr, beta=beta, eps=eps)
        flipped = losses.rdpo(pr, pc, rr, rc, beta=beta, eps=eps)
        clean = losses.dpo(pc, pr, rc, rr, beta=beta)
        np.testing.assert_allclose(np.asarray((1 - eps) * kept + eps * flipped), np.asarray(clean), rtol=1e-10, atol=1e-12)
        # ... and the naive DPO loss on noisy labels is biased (this assertion can fail).
        naive = (1 - eps) * losses.dpo(pc, pr, rc, rr, beta=beta) + eps * losses.dpo(pr, pc, rr, rc, beta=beta)
        assert float(jnp.max(jnp.abs(naive - clean))) > 1e-3


@pytest.mark.parametrize("beta", [0.1, 1.0, 4.0])
def test_gamma_dpo_with_gamma_one_is_dpo(beta):
    a = tuple(map(jnp.asarray, _inputs(seed=5)))
    np.testing.assert_allclose(np.asarray(losses.gamma_dpo(*a, beta=beta, gamma=1.0)),
                               np.asarray(losses.dpo(*a, beta=beta)), rtol=1e-6, atol=1e-7)
    # gamma != 1 differs whenever the reference ratio is not 0.
    assert not np.allclose(np.asarray(losses.gamma_dpo(*a, beta=beta, gamma=0.5)), np.asarray(losses.dpo(*a, beta=beta)))


def test_rpo_with_zero_weight_is_dpo():
    a = tuple(map(jnp.asarray, _inputs(seed=6)))
    np.testing.assert_array_equal(np.asarray(losses.rpo(*a, beta=0.3, eta_sft=0.0)),
                                  np.asarray(losses.dpo(*a, beta=0.3)))


def _pop_optimum_cases():
    logit = lambda a: np.log(a / (1 - a))  # noqa: E731
    eps = 0.15
    return [
        # name, hparams, closed-form minimiser h*(alpha, beta) of alpha l(h) + (1-alpha) l(-h)
        ("dpo", {}, lambda a, b: logit(a) / b),
        ("ipo", {}, lambda a, b: (a - 0.5) / b),
        ("cdpo", {"eps": eps}, lambda a, b: logit((1 - eps) * a + eps * (1 - a)) / b),
        # rDPO de-noises: observed soft label alpha = (1-eps) a + eps (1-a) gives back logit(a).
        ("rdpo", {"eps": eps}, lambda a, b: logit((a - eps) / (1 - 2 * eps)) / b),
    ]


@functools.cache
def _population_loss(name):
    """Jitted ``alpha l(h) + (1-alpha) l(-h)`` and its h-derivative (one compile per loss and dtype)."""
    fn = CASES[name][0]

    def pop(h, alpha, beta, hp):
        zero = jnp.zeros_like(h)
        return alpha * fn(h, zero, zero, zero, beta=beta, **hp) + (1 - alpha) * fn(-h, zero, zero, zero, beta=beta, **hp)

    return jax.jit(pop), jax.jit(jax.grad(pop))


@pytest.mark.parametrize("name,hp,h_star", _pop_optimum_cases(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.73, 0.95])
@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_population_optimum_with_soft_labels(name, hp, h_star, alpha, beta):
    """min_h alpha l(h) + (1-alpha) l(-h): DPO's minimiser satisfies sigmoid(beta h) = alpha."""
    with jax.enable_x64(True):
        f64 = lambda v: jnp.asarray(v, jnp.float64)  # noqa: E731
        pop_fn, grad_fn = _population_loss(name)
        hp64 = {k: f64(v) for k, v in hp.items()}

        def pop(h):
            return float(pop_fn(f64(h), f64(alpha), f64(beta), hp64))

        if name == "rdpo" and not hp["eps"] < alpha < 1 - hp["eps"]:
            # Observed labels cleaner than the assumed flip rate allows: unbounded below in h.
            vals = [pop(h) for h in (1.0, 10.0, 100.0, 1000.0)]
            assert vals == sorted(vals, reverse=True) and vals[-1] < -10.0
            return
        target = h_star(alpha, beta)
        res = optimize.minimize_scalar(pop, bracket=(target - 1.0, target + 1.0), tol=1e-12)
        assert res.x == pytest.approx(target, abs=1e-5 * (1 + abs(target)))
        assert abs(float(grad_fn(f64(target), f64(alpha), f64(beta), hp64))) < 1e-10 * (1 + beta)
    if name == "dpo":
        assert 1 / (1 + np.exp(-beta * res.x)) == pytest.approx(alpha, abs=1e-6)


# ----------------------------------------------------------------------------- gradients
def _fd_grad(f, x, step=1e-5):
    return (f(x + step) - f(x - step)) / (2 * step)


@pytest.mark.parametrize("name,k", CASE_PARAMS)
def test_gradients_match_finite_differences_float64(name, k):
    fn, _, settings_ = CASES[name]
    hp = settings_[k]
    pc, pr, rc, rr = (float(v[0]) for v in _inputs(seed=23 + k, shape=(1,)))
    with jax.enable_x64(True):
        keys = ["pc", "pr", "rc", "rr", "beta", *sorted(hp)]
        point = {"pc": pc, "pr": pr, "rc": rc, "rr": rr, "beta": 0.8, **hp}

        def f(**kw):
            kw = {n: jnp.asarray(v, jnp.float64) for n, v in kw.items()}
            extra = {n: kw[n] for n in hp}
            return fn(kw["pc"], kw["pr"], kw["rc"], kw["rr"], beta=kw["beta"], **extra)

        grads = jax.grad(lambda p: f(**p))({n: jnp.asarray(point[n], jnp.float64) for n in keys})
        for n in keys:
            fd = _fd_grad(lambda v: float(f(**{**point, n: v})), point[n])
            assert float(grads[n]) == pytest.approx(fd, rel=1e-6, abs=1e-8), n


@pytest.mark.parametrize("beta", [0.05, 1.0, 20.0])
def test_dpo_gradient_closed_form(beta):
    """d/dh -log sigmoid(beta h) = -beta sigmoid(-beta h), also far in the tails."""
    h = jnp.array([-300.0, -3.0, 0.0, 0.5, 300.0])
    g = jax.vmap(jax.grad(lambda x: losses.dpo(x, 0.0, 0.0, 0.0, beta=beta)))(h)
    np.testing.assert_allclose(np.asarray(g), -beta * special.expit(-beta * np.asarray(h, np.float64)), rtol=1e-5, atol=1e-30)


# ----------------------------------------------------------------------------- transformations
@pytest.mark.parametrize("name,k", CASE_PARAMS)
def test_jit_equals_no_jit(name, k):
    fn, _, settings_ = CASES[name]
    a = tuple(map(jnp.asarray, _inputs(seed=k, shape=(3, 5))))
    hp = {n: jnp.asarray(v) for n, v in settings_[k].items()}
    eager = fn(*a, beta=jnp.asarray(0.4), **hp)
    jitted = jax.jit(fn)(*a, beta=jnp.asarray(0.4), **hp)
    assert jitted.shape == eager.shape == (3, 5)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,k", CASE_PARAMS)
def test_vmap_over_batch_equals_per_example(name, k):
    fn, _, settings_ = CASES[name]
    hp = settings_[k]
    a = tuple(map(jnp.asarray, _inputs(seed=40 + k, shape=(6,))))
    betas = jnp.array([0.01, 0.1, 0.5, 1.0, 2.0, 10.0])
    batched = jax.vmap(lambda pc, pr, rc, rr, b: fn(pc, pr, rc, rr, beta=b, **hp))(*a, betas)
    per = [float(fn(*(x[i] for x in a), beta=betas[i], **hp)) for i in range(6)]
    np.testing.assert_allclose(np.asarray(batched), per, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_sweeping_beta_and_hparams_does_not_recompile(name):
    fn, _, settings_ = CASES[name]
    traces = []

    @jax.jit
    def wrapped(a, beta, hp):
        traces.append(1)  # Python side effect: runs once per trace
        return fn(*a, beta=beta, **hp)

    a = tuple(map(jnp.asarray, _inputs(seed=1, shape=(4,))))
    outs = []
    for beta in (0.1, 0.2, 3.0):
        for hp in settings_:
            outs.append(wrapped(a, jnp.float32(beta), {n: jnp.float32(v) for n, v in hp.items()}))
    assert len(traces) == len({tuple(sorted(hp)) for hp in settings_}) == 1
    assert wrapped._cache_size() == 1
    # The swept values really changed the output (the test would pass vacuously otherwise).
    assert len({tuple(np.asarray(o).round(6)) for o in outs}) > 1


# ----------------------------------------------------------------------------- float32 stability
_EXTRA_RANGES = {
    "dpo": {}, "ipo": {}, "cdpo": {"eps": (0.0, 0.45)}, "rdpo": {"eps": (0.0, 0.45)},
    "simpo": {"gamma": (0.0, 5.0)}, "rpo": {"eta_sft": (0.0, 1.0)}, "gamma_dpo": {"gamma": (0.0, 2.0)},
    "slic": {}, "gpo_truncated_quadratic": {}, "gpo_savage": {},
    "fdpo_js": {}, "fdpo_alpha": {"alpha": (0.0, 1.0)}, "fdpo_forward_kl": {}, "kto": {"z0": (-5.0, 5.0), "lambda_d": (0.0, 2.0), "lambda_u": (0.0, 2.0)}, "orpo": {},
}
# Lipschitz constant of the loss in z = beta * (margin), for the float32 accuracy bound.
_LIPSCHITZ_IN_Z = {"dpo": 1.0, "cdpo": 1.0, "gamma_dpo": 1.0, "slic": 1.0, "gpo_savage": 1.0,
                   "fdpo_js": 1.0,  # log sigmoid is 1-Lipschitz in each log-ratio
                   "kto": 1.0}  # each term is (lambda/2) sigmoid(.), lambda <= 2: Lipschitz <= 1/4


@functools.cache
def _value_and_grads(name):
    fn = CASES[name][0]

    def f(pc, pr, rc, rr, beta, hp):
        return fn(pc, pr, rc, rr, beta=beta, **hp)

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4)))


_logp = st.floats(-5000.0, 0.0, width=32)  # four of them: |margin| <= 1e4
_log10_beta = st.floats(-4.0, 3.0)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(pc=_logp, pr=_logp, rc=_logp, rr=_logp, log10_beta=_log10_beta, u=st.floats(0.0, 1.0))
def test_float32_finite_values_and_gradients(name, pc, pr, rc, rr, log10_beta, u):
    beta = np.float32(10.0**log10_beta)
    hp = {n: np.float32(lo + u * (hi - lo)) for n, (lo, hi) in _EXTRA_RANGES[name].items()}
    floor = LOSSES.entry(name).meta.get("min_log_ratio")
    if floor is not None:  # a declared domain: log pi - log pi_ref >= floor on both responses
        rc, rr = min(rc, pc - floor), min(rr, pr - floor)
    args = [np.float32(v) for v in (pc, pr, rc, rr)]
    val, grads = _value_and_grads(name)(*args, beta, hp)
    assert val.dtype == jnp.float32
    assert np.isfinite(float(val)), (name, args, beta, hp)
    assert all(np.isfinite(float(g)) for g in grads), (name, args, beta, hp, grads)
    if name in _LIPSCHITZ_IN_Z:
        # Accurate, not just finite: float32 rounding of the margin (a few ulps of the
        # inputs' magnitude), times beta, times the loss's Lipschitz constant in z.
        oracle = float(CASES[name][1](*args, beta=float(beta), **{n: float(v) for n, v in hp.items()}))
        scale = sum(abs(float(v)) for v in args) * (1.0 + float(hp.get("gamma", 1.0)))
        tol = 1e-5 * (1 + abs(oracle)) + _LIPSCHITZ_IN_Z[name] * float(beta) * 4 * 2.0**-23 * scale
        assert abs(float(val) - oracle) <= tol, (name, float(val), oracle, tol)


@pytest.mark.parametrize("h", [1e4, -1e4, 1e7, -1e7])
def test_dpo_tails_are_exact_in_float32(h):
    """-log sigmoid(z) -> max(-z, 0) with no overflow or underflow to NaN."""
    val = float(losses.dpo(jnp.float32(h), 0.0, 0.0, 0.0, beta=jnp.float32(1.0)))
    assert val == pytest.approx(max(-h, 0.0), abs=1e-6)
    g = float(jax.grad(lambda x: losses.dpo(x, 0.0, 0.0, 0.0, beta=1.0))(jnp.float32(h)))
    assert g == pytest.approx(-1.0 if h < 0 else 0.0, abs=1e-6)


# ----------------------------------------------------------------------------- tabular DPO optimum
def test_dpo_exact_optimum_on_a_tabular_bandit():
    """Population DPO with BT soft labels over all ordered pairs, minimised by gradient descent
    on tabular logits (float64), converges to pi* ∝ pi_ref exp(r / beta) (arXiv:2305.18290 §4)."""
    num_prompts, n, beta = 2, 5, 0.5
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(0))
        log_ref = jax.nn.log_softmax(jax.random.normal(k1, (num_prompts, n), jnp.float64), axis=-1)
        r = jax.random.normal(k2, (num_prompts, n), jnp.float64)
        P = bradley_terry(r)  # (X, N, N): label y beats y' with prob P[y, y']
        policy = tabular(num_prompts, n)
        prompts = jnp.arange(num_prompts)

        def population_loss(theta):
            logp = policy.log_probs(theta, prompts)  # (X, N)
            pair = losses.dpo(logp[:, :, None], logp[:, None, :], log_ref[:, :, None], log_ref[:, None, :],
                              beta=beta)  # (X, N, N): y as chosen, y' as rejected
            return jnp.sum(P * pair) / (num_prompts * n * (n - 1))

        def step(theta, _):
            return theta - 50.0 * jax.grad(population_loss)(theta), None

        theta, _ = jax.jit(lambda t: jax.lax.scan(step, t, None, length=500))(jnp.zeros((num_prompts, n), jnp.float64))
        log_pi = policy.log_probs(theta, prompts)
        log_pi_star = jax.nn.log_softmax(log_ref + r / beta, axis=-1)
        err = float(jnp.max(jnp.abs(log_pi - log_pi_star)))
        assert log_pi.dtype == jnp.float64
        assert err < 1e-4, err
        # The optimum is not the reference and not the greedy policy (the test discriminates).
        assert float(jnp.max(jnp.abs(log_pi_star - log_ref))) > 0.5


# ----------------------------------------------------------------------------- f-DPO, KTO, ORPO
def _logsigmoid(x):
    return -np.logaddexp(0.0, -np.asarray(x, np.float64))


def trl_fdpo_sigmoid_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, *, beta,
                          f_divergence_type, f_alpha_divergence_coef=0.5):
    """Float64 numpy transcription of TRL 1.16.0, ``trl/trainer/dpo_trainer.py``,
    ``DPOTrainer._compute_loss``: the ``f_divergence_type`` scores, then ``loss_type="sigmoid"``
    (``-logsigmoid(beta * (chosen_scores - rejected_scores))``). TRL's alpha-divergence clamps the
    exponent at 80 for float32 (its table has no float64 entry); kept, it does not bind on these inputs."""
    cl = np.asarray(chosen_logps, np.float64) - ref_chosen_logps
    rl = np.asarray(rejected_logps, np.float64) - ref_rejected_logps
    if f_divergence_type == "reverse_kl":
        cs, rs = cl, rl
    elif f_divergence_type == "forward_kl":  # f'(t) = 1 - 1/t
        cs, rs = 1 - np.exp(-cl), 1 - np.exp(-rl)
    elif f_divergence_type == "js_divergence":  # f'(t) = log 2 + logsigmoid(log t)
        cs, rs = np.log(2) + _logsigmoid(cl), np.log(2) + _logsigmoid(rl)
    elif f_divergence_type == "alpha_divergence":  # f'(t) = (t^(a-1) - 1)/(a-1)
        a = f_alpha_divergence_coef
        if abs(a - 1.0) < 1e-6:
            cs, rs = cl, rl
        else:
            coef = 1.0 / (a - 1.0)
            cs = (np.exp(np.minimum((a - 1.0) * cl, 80.0)) - 1.0) * coef
            rs = (np.exp(np.minimum((a - 1.0) * rl, 80.0)) - 1.0) * coef
    else:
        raise ValueError(f_divergence_type)
    return -_logsigmoid(beta * (cs - rs))


def _moderate_inputs(seed, n=64):
    """Log-probs with log-ratios in about [-6, 6] (the f-DPO alpha member's float64 overflow is far)."""
    rng = np.random.default_rng(seed)
    return tuple(-6.0 * rng.random(n) - 0.01 for _ in range(4))


@pytest.mark.parametrize("beta", [0.05, 0.5, 4.0])
def test_fdpo_with_reverse_kl_is_dpo(beta):
    """Wang et al. 2023, the f-DPO loss with ``psi = f' = log u + 1`` (reverse KL): exactly DPO
    (the constant 1 cancels); and the alpha member at ``alpha = 0`` (``psi = log u``) is DPO."""
    args = _moderate_inputs(1)
    with jax.enable_x64(True):
        dpo = np.asarray(losses.dpo(*map(jnp.asarray, args), beta=beta))
        a0 = np.asarray(losses.fdpo_alpha(*map(jnp.asarray, args), beta=beta, alpha=0.0))
    np.testing.assert_allclose(_np_fdpo(PSI_REVERSE_KL, *args, beta=beta), dpo, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(a0, dpo)


@pytest.mark.parametrize("beta", [0.05, 0.5, 4.0])
def test_fdpo_members_match_their_definition_float64(beta):
    """Wang et al. 2023, the f-DPO loss with Table 1's ``f'``: JS ``log(2u/(1+u))``, forward KL
    ``-1/u``, alpha ``(1 - u^-alpha)/alpha``, each evaluated on the probability ratio ``u``."""
    args = _moderate_inputs(2)
    with jax.enable_x64(True):
        a = tuple(map(jnp.asarray, args))
        got = {"js": losses.fdpo_js(*a, beta=beta), "fkl": losses.fdpo_forward_kl(*a, beta=beta),
               **{al: losses.fdpo_alpha(*a, beta=beta, alpha=al) for al in (1e-3, 0.25, 0.5, 0.9, 1.0)}}
    want = {"js": _np_fdpo(PSI_JS, *args, beta=beta), "fkl": _np_fdpo(PSI_FORWARD_KL, *args, beta=beta),
            **{al: _np_fdpo(psi_alpha(al), *args, beta=beta) for al in (1e-3, 0.25, 0.5, 0.9, 1.0)}}
    for k in want:
        # the definition's (1 - u^-alpha)/alpha cancels for small alpha: its own error ~ 1e-16/alpha
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-10, atol=1e-12, err_msg=str(k))
    np.testing.assert_array_equal(np.asarray(got["fkl"]), np.asarray(got[1.0]))  # forward KL = alpha 1


def test_fdpo_hand_values():
    """Table 1's ``f'`` at simple ratios: JS with ``u_w = 1, u_l = 1/3``: ``psi_w - psi_l = 0 - log(1/2)``,
    loss ``log(1 + 2^-beta)``; forward KL with ``u_w = 1, u_l = 1/2``: ``-1 - (-2) = 1``; alpha 1/2 with
    ``u_w = 1, u_l = 1/4``: ``0 - (1 - 2)/(1/2) = 2``; the alpha member with ``alpha -> 0`` tends to DPO
    at rate O(alpha)."""
    z = jnp.zeros(())
    at = lambda lw, ll: (z + lw - 2.0, z + ll - 1.0, z - 2.0, z - 1.0)  # noqa: E731  (log-ratios lw, ll)
    assert float(losses.fdpo_js(*at(0.0, np.log(1 / 3)), beta=1.0)) == pytest.approx(np.log(1.5), rel=1e-6)
    assert float(losses.fdpo_js(*at(0.0, np.log(1 / 3)), beta=3.0)) == pytest.approx(np.log1p(2.0**-3), rel=1e-6)
    assert float(losses.fdpo_forward_kl(*at(0.0, -np.log(2)), beta=1.0)) == pytest.approx(
        np.log1p(np.exp(-1.0)), rel=1e-6)
    assert float(losses.fdpo_alpha(*at(0.0, -np.log(4)), beta=0.5, alpha=0.5)) == pytest.approx(
        np.log1p(np.exp(-1.0)), rel=1e-6)
    with jax.enable_x64(True):
        a = tuple(map(jnp.asarray, _moderate_inputs(3)))
        dpo = np.asarray(losses.dpo(*a, beta=0.7))
        errs = [float(np.max(np.abs(np.asarray(losses.fdpo_alpha(*a, beta=0.7, alpha=al)) - dpo)))
                for al in (1e-2, 1e-4, 1e-6)]
    assert errs[0] > 0 and errs[1] < 2e-2 * errs[0] and errs[2] < 2e-2 * errs[1]


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_fdpo_matches_trl(beta):
    """Against TRL 1.16.0 (``trl/trainer/dpo_trainer.py``, ``DPOTrainer._compute_loss``,
    ``f_divergence_type`` in reverse_kl / forward_kl / js_divergence / alpha_divergence, loss_type
    "sigmoid"), transcribed to float64 numpy above. TRL's alpha coefficient ``a`` writes
    ``f'(t) = (t^(a-1) - 1)/(a-1)``, which is the paper's ``(1 - t^-alpha)/alpha`` at ``alpha = 1 - a``."""
    args = _moderate_inputs(4)
    kw = dict(beta=beta)
    with jax.enable_x64(True):
        a = tuple(map(jnp.asarray, args))
        pairs = [(losses.dpo(*a, **kw), trl_fdpo_sigmoid_loss(*args, **kw, f_divergence_type="reverse_kl")),
                 (losses.fdpo_js(*a, **kw), trl_fdpo_sigmoid_loss(*args, **kw, f_divergence_type="js_divergence")),
                 (losses.fdpo_forward_kl(*a, **kw), trl_fdpo_sigmoid_loss(*args, **kw, f_divergence_type="forward_kl"))]
        for coef in (0.1, 0.5, 0.8, 1.0):
            pairs.append((losses.fdpo_alpha(*a, **kw, alpha=1.0 - coef),
                          trl_fdpo_sigmoid_loss(*args, **kw, f_divergence_type="alpha_divergence",
                                                f_alpha_divergence_coef=coef)))
    for ours, trl in pairs:
        np.testing.assert_allclose(np.asarray(ours), trl, rtol=1e-11, atol=1e-13)


def test_fdpo_alpha_float32_domain():
    """The alpha and forward-KL members' documented float32 domain: values and gradients finite for
    ``alpha (-l) <= 60`` on both responses (``beta <= 1e3``, ``|h| <= 1e4``), and accurate there; beyond
    it the true loss (``~ beta e^{-alpha l}/alpha``) exceeds float32's maximum and the value is inf,
    which is why they are registered with the declared domain ``meta["min_log_ratio"] = -60`` (the
    registry contract's full range reaches ``l = -5000``)."""
    rng = np.random.default_rng(7)
    n = 2048
    alpha = rng.uniform(0.0, 1.0, n).astype(np.float32)
    lo = -np.minimum(60.0 / np.maximum(alpha, 1e-6), 5000.0)
    lw, ll = (rng.uniform(0.0, 1.0, n) * (5000.0 - lo) + lo for _ in range(2))  # log-ratios in [lo, 5000]
    ref = rng.uniform(-5000.0, 0.0, (2, n))
    args = [np.asarray(x, np.float32) for x in (lw + ref[0], ll + ref[1], ref[0], ref[1])]
    beta = (10.0 ** rng.uniform(-4.0, 3.0, n)).astype(np.float32)

    def total(pc, pr, rc, rr, beta, alpha):
        return jnp.sum(losses.fdpo_alpha(pc, pr, rc, rr, beta=beta, alpha=alpha))

    val = jax.jit(lambda *a: losses.fdpo_alpha(*a[:4], beta=a[4], alpha=a[5]))(*args, beta, alpha)
    grads = jax.jit(jax.grad(total, argnums=(0, 1, 2, 3, 4, 5)))(*args, beta, alpha)
    assert np.all(np.isfinite(np.asarray(val)))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    with jax.enable_x64(True):
        exact = np.asarray(losses.fdpo_alpha(*(np.float64(x) for x in args), beta=np.float64(beta),
                                             alpha=np.float64(alpha)))
    assert float(np.max(exact)) > 1e6  # the domain reaches large losses
    # float32 error: a few ulps of the log-ratios (up to 1e4) moved through e^{-alpha l} (slope alpha),
    # relative to the loss's size
    np.testing.assert_allclose(np.asarray(val, np.float64), exact, rtol=2e-2, atol=1e-4)
    # Outside the domain: the forward KL's loss at l_w = -100 is about e^100 > 3.4e38.
    assert float(losses.fdpo_forward_kl(jnp.float32(-101.0), -1.0, -1.0, -1.0, beta=1.0)) == np.inf


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_kto_unpaired_and_paired_forms(beta):
    """Ethayarajh et al. 2024, Sec. 4: a pair's KTO loss is the mean of its chosen (desirable) and its
    rejected (undesirable) example's ``lambda_y - v``; the unpaired form takes any mix of labels."""
    pc, pr, rc, rr = _moderate_inputs(5, n=16)
    hp = dict(z0=0.4, lambda_d=1.33, lambda_u=0.8)
    with jax.enable_x64(True):
        good = np.asarray(losses.kto_unpaired(pc, rc, True, beta=beta, **hp))
        bad = np.asarray(losses.kto_unpaired(pr, rr, np.zeros(16, bool), beta=beta, **hp))
        paired = np.asarray(losses.kto(pc, pr, rc, rr, beta=beta, **hp))
        mixed = np.asarray(losses.kto_unpaired(np.concatenate([pc, pr]), np.concatenate([rc, rr]),
                                               np.arange(32) < 16, beta=beta, **hp))
    np.testing.assert_allclose(paired, 0.5 * (good + bad), rtol=1e-14)
    np.testing.assert_allclose(mixed, np.concatenate([good, bad]), rtol=1e-14)
    rw, rl = pc - rc, pr - rr
    # (1 - sigmoid) as written in the paper: absolute error ~1e-16 where the loss is near 0
    tol = dict(rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(good, hp["lambda_d"] * (1 - special.expit(beta * (rw - hp["z0"]))), **tol)
    np.testing.assert_allclose(bad, hp["lambda_u"] * (1 - special.expit(beta * (hp["z0"] - rl))), **tol)


def test_kto_hand_values_and_reference_point():
    """At ``r_w = r_l = z0`` both sigmoids are 1/2: ``l = (lambda_D + lambda_U)/4``. The reference point
    ``max(0, mean KL)`` is clamped at 0 and carries no gradient."""
    for z0, ld, lu in ((0.0, 1.0, 1.0), (0.7, 1.33, 1.0), (-2.0, 0.5, 2.0)):
        got = float(losses.kto(-1.0 + z0, -3.0 + z0, -1.0, -3.0, beta=2.0, z0=z0, lambda_d=ld, lambda_u=lu))
        assert got == pytest.approx((ld + lu) / 4, rel=1e-6)
    # r_w = z0 + 1, r_l = z0 - 1, beta = 1: 1/2 [sigmoid(-1) + sigmoid(-1)] = sigmoid(-1)
    assert float(losses.kto(0.0, -2.0, -1.0, -1.0, beta=1.0, z0=0.0, lambda_d=1.0, lambda_u=1.0)) == pytest.approx(
        float(special.expit(-1.0)), rel=1e-6)
    kl_pi, kl_ref = jnp.array([-3.0, -2.0, -5.0]), jnp.array([-2.0, -2.5, -4.0])  # mean KL = -0.5 < 0
    assert float(losses.kto_reference_point(kl_pi, kl_ref)) == 0.0
    assert float(losses.kto_reference_point(kl_ref, kl_pi)) == pytest.approx(0.5, rel=1e-6)
    g = jax.grad(lambda x: losses.kto_reference_point(x, kl_pi))(kl_ref)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def trl_kto_losses(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, kl_logps, ref_kl_logps,
                   *, beta, desirable_weight, undesirable_weight):
    """Float64 numpy transcription of TRL 1.16.0, ``trl/trainer/kto_trainer.py``,
    ``KTOTrainer._compute_loss`` with ``loss_type="kto"``: ``kl = clamp(mean(KL_logps - ref_KL_logps),
    min=0)`` (detached; one process), ``1 - sigmoid(beta (r - kl))`` for chosen and ``1 - sigmoid(beta
    (kl - r))`` for rejected examples, weighted and concatenated; the batch loss is their ``nanmean``."""
    kl = max(float(np.mean(np.asarray(kl_logps, np.float64) - ref_kl_logps)), 0.0)
    chosen = 1 - special.expit(beta * ((np.asarray(chosen_logps, np.float64) - ref_chosen_logps) - kl))
    rejected = 1 - special.expit(beta * (kl - (np.asarray(rejected_logps, np.float64) - ref_rejected_logps)))
    return np.concatenate([desirable_weight * chosen, undesirable_weight * rejected])


@pytest.mark.parametrize("beta", [0.1, 1.0])
@pytest.mark.parametrize("kl_shift", [-1.0, 0.5])  # mean KL estimate below 0 (clamped) and above
def test_kto_matches_trl(beta, kl_shift):
    """Against TRL 1.16.0's KTO (``trl/trainer/kto_trainer.py``, ``KTOTrainer._compute_loss``), transcribed
    above: with ``z0 = kto_reference_point`` of the mismatched-pair log-probs, our per-example losses equal
    TRL's, and on a balanced batch the mean of the paired loss ``kto`` is TRL's batch loss; also on an
    unbalanced batch (3 desirable, 5 undesirable) through ``kto_unpaired``."""
    rng = np.random.default_rng(11)
    pc, pr, rc, rr = _moderate_inputs(6, n=8)
    kl_ref = -6.0 * rng.random(8)
    kl_pi = kl_ref + kl_shift + 0.3 * rng.standard_normal(8)
    w = dict(desirable_weight=1.33, undesirable_weight=1.0)
    trl = trl_kto_losses(pc, pr, rc, rr, kl_pi, kl_ref, beta=beta, **w)
    with jax.enable_x64(True):
        z0 = losses.kto_reference_point(kl_pi, kl_ref)
        assert (float(z0) == 0.0) == (kl_shift < 0)
        hp = dict(beta=beta, z0=z0, lambda_d=1.33, lambda_u=1.0)
        ours = np.concatenate([np.asarray(losses.kto_unpaired(pc, rc, True, **hp)),
                               np.asarray(losses.kto_unpaired(pr, rr, False, **hp))])
        paired = float(jnp.mean(losses.kto(pc, pr, rc, rr, **hp)))
        unbalanced = np.asarray(losses.kto_unpaired(np.concatenate([pc[:3], pr[:5]]), np.concatenate([rc[:3], rr[:5]]),
                                                    np.arange(8) < 3, **hp))
    np.testing.assert_allclose(ours, trl, rtol=1e-12, atol=1e-15)
    assert paired == pytest.approx(float(np.nanmean(trl)), rel=1e-12)
    trl_unbalanced = trl_kto_losses(pc[:3], pr[:5], rc[:3], rr[:5], kl_pi, kl_ref, beta=beta, **w)
    assert float(np.mean(unbalanced)) == pytest.approx(float(np.nanmean(trl_unbalanced)), rel=1e-12)


def test_orpo_hand_values_and_reference_free():
    """Hong et al. 2024, Eqs. 6-7. ``P_w = P_l = 1/2``: odds 1 and 1, ``L_OR = log 2``, ``L_SFT = log 2``:
    ``l = (1 + beta) log 2``. ``P_w = 3/4``, ``P_l = 1/4`` (odds 3 and 1/3) over 2 and 3 tokens:
    ``l = -log(3/4) + beta log(1 + 1/9)``. The reference log-probs are ignored."""
    h = np.log(0.5)
    assert float(losses.orpo(h, h, beta=0.3)) == pytest.approx(1.3 * np.log(2), rel=1e-6)
    got = float(losses.orpo(2 * np.log(0.75), 3 * np.log(0.25), -9.0, 4.0, beta=0.5, chosen_lengths=2.0,
                            rejected_lengths=3.0))
    assert got == pytest.approx(-np.log(0.75) + 0.5 * np.log(10 / 9), rel=1e-6)
    pc, pr = jnp.array([-4.0, -6.0]), jnp.array([-9.0, -2.0])
    np.testing.assert_array_equal(np.asarray(losses.orpo(pc, pr, jnp.zeros(2), jnp.zeros(2), beta=2.0)),
                                  np.asarray(losses.orpo(pc, pr, jnp.array([-50.0, 3.0]), None, beta=2.0)))


def test_orpo_log_odds_are_stable_in_float32_near_zero():
    """``log(1 - P)`` for ``P = e^a`` near 1: the stable form stays finite and accurate in float32 for
    average log-probs down to the cap ``-eps``, where the naive ``log(1 - exp(a))`` is off by 0.7% and, once
    ``|a| < 3e-8``, ``-inf`` (the control: the test can fail); above the cap the log-odds are ``-log eps``."""
    a = np.array([-2e-7, -1e-6, -1e-4, -0.01, -0.5, -0.7, -1.0, -30.0, -5000.0])  # cap: -1.19e-7
    got = np.asarray(losses.orpo_log_odds(jnp.asarray(a, jnp.float32)), np.float64)
    a32 = a.astype(np.float32).astype(np.float64)
    exact = a32 - np.log(-np.expm1(a32))
    np.testing.assert_allclose(got, exact, rtol=2e-6, atol=1e-6)  # log-odds cross 0 near a = -log 2
    naive = lambda x: np.asarray(x - jnp.log(1.0 - jnp.exp(x)), np.float64)  # noqa: E731
    assert np.max(np.abs(naive(jnp.asarray(a, jnp.float32)) - exact) / np.abs(exact)) > 1e-3  # inaccurate
    assert naive(jnp.float32(-1e-9)) == np.inf  # e^a rounds to 1
    eps = float(jnp.finfo(jnp.float32).eps)
    for zero in (0.0, -1e-45, -1e-30):
        assert float(losses.orpo_log_odds(jnp.float32(zero))) == pytest.approx(-np.log(eps) - eps, rel=1e-6)
    g = jax.grad(lambda x: losses.orpo(x, jnp.float32(0.0), beta=1e3, chosen_lengths=1.0))(jnp.float32(-2e-7))
    assert np.isfinite(float(g)) and abs(float(g)) > 1e6  # the slope -1/expm1(a) near the cap, times beta


def trl_orpo_loss(chosen_token_logps, rejected_token_logps, *, beta):
    """Float64 numpy transcription of TRL 1.16.0, ``trl/experimental/orpo/orpo_trainer.py``:
    ``ORPOTrainer.odds_ratio_loss`` (with its module-level ``log1mexp``, branch at ``-ln 2``) on the
    length-averaged log-probs of ``get_batch_logps(average_log_prob=True)``, and
    ``get_batch_loss_metrics``'s ``loss = policy_nll_loss - losses.mean()``, where ``policy_nll_loss``
    is the token-mean cross-entropy over the chosen sequences (here: no prompt tokens; TRL also counts
    the prompt's). Inputs: per-token log-probs ``(batch, tokens)``. Returns (loss, per-pair ``losses``)."""
    def log1mexp(x):
        return np.where(x < -0.6931471805599453, np.log1p(-np.exp(x)), np.log(-np.expm1(x)))

    c = np.mean(chosen_token_logps, axis=-1)
    r = np.mean(rejected_token_logps, axis=-1)
    log_odds = (c - r) - (log1mexp(c) - log1mexp(r))
    losses_ = beta * _logsigmoid(log_odds)
    nll = -np.sum(chosen_token_logps) / chosen_token_logps.size
    return nll - np.mean(losses_), losses_


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_matches_trl(beta):
    """Against TRL 1.16.0's ORPO (``trl/experimental/orpo/orpo_trainer.py``, ``odds_ratio_loss``),
    transcribed above: the odds-ratio term per pair equals TRL's ``-losses``, and with equal response
    lengths (so that TRL's token-mean NLL is the mean of per-pair averages) the batch mean equals TRL's loss."""
    rng = np.random.default_rng(13)
    tokens = 5
    ctok = np.log(rng.uniform(0.05, 0.999, (16, tokens)))
    rtok = np.log(rng.uniform(0.05, 0.999, (16, tokens)))
    ctok[0] = -1e-4  # average log-probs near 0 (P near 1): the log1mexp branch TRL and we both take
    trl_loss, trl_losses = trl_orpo_loss(ctok, rtok, beta=beta)
    pc, pr = ctok.sum(-1), rtok.sum(-1)
    with jax.enable_x64(True):
        ours = np.asarray(losses.orpo(pc, pr, None, None, beta=beta, chosen_lengths=float(tokens),
                                      rejected_lengths=float(tokens)))
    np.testing.assert_allclose(ours - (-pc / tokens), -trl_losses, rtol=1e-11, atol=1e-14)
    assert float(np.mean(ours)) == pytest.approx(trl_loss, rel=1e-12)


def _f_optimum(log_ref, r, beta, ell_of_t):
    """The f-regularised RLHF optimum on one prompt: ``beta psi(pi/pi_ref) = r + const``, i.e. log-ratio
    ``l(y) = ell_of_t(r(y)/beta + c)`` with ``c`` the root of ``sum_y pi_ref(y) e^{l(y)} = 1`` (brentq)."""
    t = r / beta

    def mass(c):
        return float(np.sum(np.exp(log_ref + ell_of_t(t + c)))) - 1.0

    hi = -np.max(t)  # every ell_of_t below is defined for arguments < 0 ...
    lo = hi - 1.0
    while mass(lo) > 0:
        lo -= 2 * (hi - lo)
    c = optimize.brentq(mass, lo, hi - 1e-15, xtol=1e-15, rtol=1e-15)
    return log_ref + ell_of_t(t + c)


# psi^{-1} on log-ratios, shifted so that the argument's domain is (-inf, 0): JS's psi = log 2 + log sigmoid(l)
# (t - log 2 -> t), alpha's psi = (1 - e^{-alpha l})/alpha (t - 1/alpha -> t)
def _js_ell(t):
    return t - np.log(-np.expm1(t))  # log sigmoid(l) = t  <=>  l = logit(e^t)


def _alpha_ell(alpha):
    return lambda t: -np.log(-alpha * t) / alpha  # 1 - alpha psi = e^{-alpha l} = -alpha t


@pytest.mark.parametrize("name,ell_of_t,fn", [
    ("js", _js_ell, losses.fdpo_js),
    ("alpha=0.5", _alpha_ell(0.5), functools.partial(losses.fdpo_alpha, alpha=0.5)),
    ("forward_kl", _alpha_ell(1.0), losses.fdpo_forward_kl),
], ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_fdpo_population_optimum_is_the_f_regularised_optimum(name, ell_of_t, fn, beta):
    """Wang et al. 2023 (f-DPO: the optimal policy of ``max E_pi r - beta D_f(pi || pi_ref)`` satisfies
    ``beta f'(pi/pi_ref) = r + const``, and the f-DPO loss is the Bradley–Terry likelihood under that
    reward): the population f-DPO loss with BT soft labels over every ordered pair, minimised over
    tabular logits (float64, L-BFGS), ends at that optimum, which is not DPO's ``pi_ref e^{r/beta}``."""
    n = 5
    rng = np.random.default_rng(19)
    log_ref = np.log(rng.dirichlet(np.ones(n)))
    r = rng.standard_normal(n)
    log_star = _f_optimum(log_ref, r, beta, ell_of_t)
    assert abs(float(special.logsumexp(log_star))) < 1e-12
    with jax.enable_x64(True):
        P = np.asarray(bradley_terry(jnp.asarray(r)))
        off = 1.0 - np.eye(n)

        @jax.jit
        def pop(theta):
            lp = jax.nn.log_softmax(theta)
            pair = fn(lp[:, None], lp[None, :], log_ref[:, None], log_ref[None, :], beta=beta)
            return jnp.sum(off * P * pair)

        vg = jax.jit(jax.value_and_grad(pop))
        res = optimize.minimize(lambda x: tuple(np.asarray(v, np.float64) for v in vg(jnp.asarray(x))),
                                log_ref.copy(), jac=True, method="L-BFGS-B",
                                options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 5000})
        log_pi = np.asarray(jax.nn.log_softmax(jnp.asarray(res.x)))
    assert np.max(np.abs(log_pi - log_star)) < 1e-5, (name, res.message, np.max(np.abs(log_pi - log_star)))
    log_dpo = log_ref + r / beta - special.logsumexp(log_ref + r / beta)
    assert np.max(np.abs(log_star - log_dpo)) > 0.05  # the f-optimum is not DPO's (the test discriminates)
