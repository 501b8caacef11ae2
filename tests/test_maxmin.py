"""MaxMin-RLHF (alignjax.maxmin; Chakraborty et al. 2024, arXiv 2402.08925): the EM reward mixture
(Sec. 4, learning rewards by expectation maximisation) against a float64 numpy EM; the max-min
policy (Sec. 4, the Egalitarian objective max_pi min_u F_u) against brute force over the simplex
and a numpy solver of the dual; the registered trainer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import maxmin as mm
from alignjax.policies import tabular
from alignjax.rlhf import TRAINERS, Problem


def _pairs(seed=0, X=2, N=4, H=5, M=60, groups=None):
    rng = np.random.default_rng(seed)
    groups = np.array([0, 0, 0, 1, 1])[:H] if groups is None else groups
    r = rng.normal(size=(2, X, N)) * 2
    ann = np.repeat(np.arange(H), M // H)
    x = rng.integers(0, X, ann.size)
    a = rng.integers(0, N, ann.size)
    b = (a + rng.integers(1, N, ann.size)) % N
    p = 1 / (1 + np.exp(-(r[groups[ann], x, a] - r[groups[ann], x, b])))
    win = rng.random(ann.size) < p
    yw, yl = np.where(win, a, b), np.where(win, b, a)
    w = np.full(ann.size, 1.0 / ann.size)
    return r, mm.AnnotatedPairs(jnp.asarray(x), jnp.asarray(yw), jnp.asarray(yl), jnp.asarray(w), jnp.asarray(ann))


def _np_em(pairs, H, U, X, N, lr, em_steps, m_steps, resp0):
    """Generalised EM in float64 numpy with plain gradient-descent M-steps (the module's equations)."""
    x, yw, yl, w, ann = (np.asarray(v) for v in pairs)
    n = w * np.sum(w > 0)
    r = np.zeros((U, X, N))
    resp = resp0.copy()
    for _ in range(em_steps):
        log_mix = np.log(resp.mean(0))
        for _ in range(m_steps):
            m = r[:, x, yw] - r[:, x, yl]  # (U, M)
            coef = resp[ann].T * n[None] * (1 - 1 / (1 + np.exp(-m))) / n.sum()  # -dloss/dm
            g = np.zeros_like(r)
            for u in range(U):
                np.add.at(g[u], (x, yw), -coef[u])
                np.add.at(g[u], (x, yl), coef[u])
            r = r - lr * g
        ll = np.zeros((H, U))
        m = r[:, x, yw] - r[:, x, yl]
        for u in range(U):
            np.add.at(ll[:, u], ann, n * -np.logaddexp(0, -m[u]))
        z = log_mix[None] + ll
        resp = np.exp(z - np.logaddexp.reduce(z, axis=1, keepdims=True))
    return r, resp, log_mix


def test_em_matches_numpy_oracle():
    """fit_mixture (SGD M-steps) equals a float64 numpy EM step for step: the E-step's Bayes rule for
    the responsibilities, the mixing weights as their mean and the weighted BT M-step."""
    with jax.enable_x64(True):
        _, pairs = _pairs()
        key = jax.random.key(3)
        state, _ = mm.fit_mixture(pairs, 5, 2, {"reward_learning_rate": jnp.float64(0.5)}, 7, key, m_steps=4,
                                  optimizer="sgd", num_prompts=2, num_responses=4)
        # the same random start
        resp0 = np.asarray(jax.nn.softmax(2.0 * jax.random.normal(jax.random.split(key)[1], (5, 2)), axis=-1))
        r, resp, log_mix = _np_em(pairs, 5, 2, 2, 4, 0.5, 7, 4, resp0)
        np.testing.assert_allclose(np.asarray(state.params), r, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.exp(np.asarray(state.log_resp)), resp, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(state.log_mix), log_mix, rtol=1e-12)


def test_em_recovers_the_groups_and_is_monotone():
    """On well separated groups, soft EM assigns every annotator to its own group (up to label
    switching) and the observed-data log-likelihood does not decrease (EM's monotonicity; Adam M-steps
    make it a generalised EM, so small dips are allowed after convergence)."""
    groups = np.array([0, 0, 0, 0, 1, 1])
    _, pairs = _pairs(seed=1, H=6, M=600, groups=groups)
    state, ll = jax.jit(lambda k: mm.fit_mixture(pairs, 6, 2, {"reward_learning_rate": 0.1}, 40, k, m_steps=10,
                                                 num_prompts=2, num_responses=4))(jax.random.key(0))
    assign = np.asarray(jnp.argmax(state.log_resp, axis=-1))
    assert (assign == groups).all() or (assign == 1 - groups).all(), assign
    assert ll[-1] > ll[0]
    # hard EM gives a one-hot assignment
    hard, _ = mm.fit_mixture(pairs, 6, 2, {"reward_learning_rate": 0.1}, 5, jax.random.key(0), hard=True,
                             num_prompts=2, num_responses=4)
    assert set(np.unique(np.exp(np.asarray(hard.log_resp)))) <= {0.0, 1.0}


def test_annotator_loglik_hand_case():
    r = jnp.array([[[0.0, 1.0]], [[2.0, 0.0]]])  # U=2, X=1, N=2
    pairs = mm.AnnotatedPairs(jnp.array([0, 0]), jnp.array([1, 0]), jnp.array([0, 1]), jnp.array([0.5, 0.5]), jnp.array([0, 1]))
    ll = np.asarray(mm.annotator_loglik(r, pairs, 2))
    ls = lambda z: -np.logaddexp(0, -z)  # noqa: E731
    np.testing.assert_allclose(ll, [[ls(1.0), ls(-2.0)], [ls(-1.0), ls(2.0)]], rtol=1e-6)
    with pytest.raises(ValueError, match="annotator"):
        mm.annotator_loglik(r, pairs[:4], 2)


def test_maxmin_policy_against_brute_force():
    """One prompt, 3 responses, 2 groups: max_pi min_u F_u(pi) over a fine grid of the simplex (float64)
    equals the value of the dual solution pi_{w*} (Sion's minimax theorem), and pi_{w*} is the grid's
    maximiser to grid accuracy; at an interior w* both groups are tight."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        grid = np.linspace(0, 1, 401)
        cases = 0
        for seed in range(6):
            r = rng.normal(size=(2, 1, 3))
            ref = rng.dirichlet(np.ones(3))[None]
            beta = 0.3 + seed * 0.2
            lp = mm.maxmin_policy(jnp.log(ref), r, beta, 20000)
            w = np.asarray(mm.maxmin_weights(jnp.log(ref), r, beta, 20000))
            f = np.asarray(mm.group_objectives(lp, jnp.log(ref), r, beta))
            g = float(mm.maxmin_dual(w, jnp.log(ref), r, beta))
            a, b = np.meshgrid(grid, grid, indexing="ij")
            ok = a + b <= 1
            P = np.stack([a[ok], b[ok], 1 - a[ok] - b[ok]], -1)
            kl = np.sum(np.where(P > 0, P * np.log(np.where(P > 0, P, 1) / ref), 0), -1)
            vals = np.minimum(*[np.sum(P * ru[0], -1) - beta * kl for ru in r])
            brute = vals.max()
            assert abs(g - brute) < 2e-3 and g >= brute - 1e-9, (g, brute)
            assert abs(f.min() - g) < 1e-6, (f, g)  # max-min value = g(w*)
            if 1e-3 < w[0] < 1 - 1e-3:  # interior: both groups tight
                np.testing.assert_allclose(f[0], f[1], atol=1e-5)
                cases += 1
        assert cases >= 1


def test_maxmin_weights_against_numpy_dual_solver():
    """Three groups, several prompts: the mirror-descent minimiser of the convex dual equals a float64
    brute-force minimisation of g over a fine simplex grid, and beats every vertex (each single group)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        r = rng.normal(size=(3, 4, 5))
        ref = rng.dirichlet(np.ones(5), size=4)
        beta = 0.5

        def g_np(w):
            z = np.log(ref)[None] + np.einsum("ku,uxn->kxn", w, r) / beta
            m = z.max(-1, keepdims=True)
            return beta * np.mean((m[..., 0] + np.log(np.exp(z - m).sum(-1))), -1)

        t = np.linspace(0, 1, 201)
        a, b = np.meshgrid(t, t, indexing="ij")
        ok = a + b <= 1
        W = np.stack([a[ok], b[ok], 1 - a[ok] - b[ok]], -1)
        gw = g_np(W)
        w = np.asarray(mm.maxmin_weights(jnp.log(ref), r, beta, 20000))
        g = float(mm.maxmin_dual(w, jnp.log(ref), r, beta))
        assert g <= gw.min() + 1e-9 and gw.min() - g < 1e-3, (g, gw.min())
        assert g <= g_np(np.eye(3)).min()


def test_centered_reference_is_worth_zero_to_every_group():
    rng = np.random.default_rng(2)
    r = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
    lref = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(3, 4)), jnp.float32))
    rc = mm.center_rewards(r, lref)
    np.testing.assert_allclose(mm.group_objectives(lref, lref, rc, 0.5), 0.0, atol=1e-6)
    lp = mm.maxmin_policy(lref, rc, 0.5)
    assert float(jnp.min(mm.group_objectives(lp, lref, rc, 0.5))) >= -1e-6  # nobody below the reference


def test_maxmin_trainer_registered_and_reaches_the_maxmin_policy():
    """``maxmin-rlhf`` (the paper's Algorithm: steps on the worst-off group) ends near the exact
    max-min policy of its own fitted rewards: its worst-group objective within 2e-3 of g(w*)."""
    entry = TRAINERS.entry("maxmin-rlhf")
    assert entry.meta["kind"] == "online" and entry.meta["needs"] == ["annotator"]
    _, pairs = _pairs(seed=1, H=6, M=600, groups=np.array([0, 0, 0, 0, 1, 1]))
    lref = jnp.log(jnp.full((2, 4), 0.25))
    prob = Problem(jnp.arange(2), lref, pairs, jnp.zeros((2, 4, 1)))
    pol = tabular(2, 4, init_logits=lref)
    trainer = entry.obj(pol, num_annotators=6, em_steps=30)
    hp = {k: jnp.float32(v) for k, v in entry.hparams.items()} | {"beta": jnp.float32(0.5),
                                                                   "learning_rate": jnp.float32(0.01)}

    def run(key):
        s = trainer.init(pol.init(key), prob, hp, key)
        s, m = jax.lax.scan(lambda s, k: trainer.update(s, prob, hp, k), s, jax.random.split(key, 1500))
        return s, m

    s, m = jax.jit(run)(jax.random.key(0))
    rewards = s.reward_params["rewards"]
    f = mm.group_objectives(pol.log_probs(s.params, jnp.arange(2)), lref, rewards, 0.5)
    target = mm.maxmin_dual(mm.maxmin_weights(lref, rewards, 0.5), lref, rewards, 0.5)
    assert float(target - jnp.min(f)) < 2e-3 and float(jnp.min(f)) > 0.0, (f, target)
    with pytest.raises(ValueError, match="num_annotators"):
        entry.obj(pol)


def test_sampled_trainer_step_is_unbiased_for_the_exact_step():
    """The RLOO step of ``maxmin-rlhf`` (mode="sampled", SGD, lr 1) has the exact step (the gradient of
    F_{u_min}, the paper's policy stage in population form) as its expectation: 5 standard errors per
    coordinate over 20000 keys, and the check rejects the zero step."""
    _, pairs = _pairs(seed=1, H=6, M=600, groups=np.array([0, 0, 0, 0, 1, 1]))
    lref = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(0).normal(size=(2, 4)), jnp.float32))
    prob = Problem(jnp.arange(2), lref, pairs, jnp.zeros((2, 4, 1)))
    pol = tabular(2, 4, init_logits=lref)
    hp = {"beta": jnp.float32(0.5), "learning_rate": jnp.float32(1.0), "reward_learning_rate": jnp.float32(0.1)}
    params = pol.init(jax.random.key(0)) + jnp.asarray(np.random.default_rng(1).normal(size=(2, 4)), jnp.float32)
    steps = {}
    for mode in ("exact", "sampled"):
        tr = TRAINERS.get("maxmin-rlhf")(pol, num_annotators=6, em_steps=20, mode=mode, num_samples=4, optimizer="sgd")
        s0 = tr.init(params, prob, hp, jax.random.key(0))  # same EM key: the same fitted rewards
        one = lambda k: tr.update(s0, prob, hp, k)[0].params - params  # noqa: E731
        steps[mode] = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), 20000 if mode == "sampled" else 1))
    exact, est = np.asarray(steps["exact"][0]), np.asarray(steps["sampled"])
    mean, se = est.mean(0), est.std(0) / np.sqrt(est.shape[0])
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-4), (mean, exact)
    assert np.any(np.abs(exact) > 5 * se + 1e-4)
