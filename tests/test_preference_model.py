"""The general preference model (alignjax.preference_model; Zhang et al. 2024, arXiv 2410.02197):
preference embeddings with the skew-symmetric block operator R (the paper's preference score
s(y > y') = <R v_y, v_y'>, P = sigmoid(s)), checked against a float64 numpy formula and against the
authors' code (general_preference/models/loss.py, HighDimGeneralPreferenceLoss: R[2i, 2i+1] = -1,
R[2i+1, 2i] = 1, result = (chosen @ R.T) . rejected); exact skew-symmetry; fitting; the GPO trainer."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import preference_model as gp
from alignjax.data.bandits import Pairs
from alignjax.games import regularized_nash
from alignjax.policies import tabular
from alignjax.rlhf import TRAINERS, Problem


def test_skew_operator_is_the_authors_block_matrix():
    R = gp.skew_operator(6)
    assert (R.T == -R).all()
    for i in range(0, 6, 2):
        assert R[i, i + 1] == -1 and R[i + 1, i] == 1
    assert np.count_nonzero(R) == 6
    with pytest.raises(ValueError, match="even"):
        gp.skew_operator(3)


def test_probabilities_match_numpy_formula():
    """P(y > y') = sigmoid(<R v_y, v_y'>) (the paper's preference score through a sigmoid) in float64,
    computed as the authors' code does: (v_chosen @ R.T) . v_rejected."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        emb = rng.normal(size=(3, 5, 4)) * 2
        R = gp.skew_operator(4)
        S_np = np.einsum("xad,xbd->xab", emb @ R.T, emb)
        P_np = 1 / (1 + np.exp(-S_np))
        np.testing.assert_allclose(gp.score_matrix(emb), S_np, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(gp.preference_matrix(emb), P_np, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(gp.preference_score(emb[0, 0], emb[0, 1]), S_np[0, 0, 1], rtol=1e-13)


def test_skew_symmetry_is_exact():
    """P(a > b) + P(b > a) = 1 and s(a > b) = -s(b > a) exactly (not to a tolerance), in float32 and
    float64, for large and tiny scores; the diagonal is exactly 1/2."""
    rng = np.random.default_rng(1)
    for dtype, scale in itertools.product((np.float32, np.float64), (1e-3, 1.0, 30.0)):
        with jax.enable_x64(dtype == np.float64):
            emb = jnp.asarray(rng.normal(size=(4, 7, 6)) * scale, dtype)
            S, P = gp.score_matrix(emb), gp.preference_matrix(emb)
            assert P.dtype == dtype
            assert bool(jnp.all(S == -jnp.swapaxes(S, -1, -2)))
            assert bool(jnp.all(P + jnp.swapaxes(P, -1, -2) == 1.0))
            assert bool(jnp.all(jnp.diagonal(P, axis1=-2, axis2=-1) == 0.5))


def test_two_dimensional_embedding_is_rock_paper_scissors():
    """Three unit vectors 120 degrees apart: each beats the next with sigmoid(sin(120 deg)) -- a cycle
    that no Bradley-Terry reward (P = sigmoid(r_y - r_y')) can produce."""
    ang = np.deg2rad([0.0, 120.0, 240.0])
    emb = np.stack([np.cos(ang), np.sin(ang)], -1) * 2.0
    P = np.asarray(gp.preference_matrix(jnp.asarray(emb, jnp.float32)))
    p = 1 / (1 + np.exp(-4.0 * np.sin(np.deg2rad(120.0))))
    np.testing.assert_allclose([P[0, 1], P[1, 2], P[2, 0]], p, rtol=1e-6)
    assert gp.best_transitive_accuracy(P) < gp.bayes_accuracy(P)


def test_accuracy_helpers_hand_case():
    # 3-cycle with p = 0.9: Bayes 0.9; the best ranking gets 2 of 3 pairs: (0.9 + 0.9 + 0.1) / 3
    P = np.full((3, 3), 0.5)
    for i in range(3):
        P[i, (i + 1) % 3], P[(i + 1) % 3, i] = 0.9, 0.1
    np.testing.assert_allclose(gp.bayes_accuracy(P), 0.9, rtol=1e-6)
    np.testing.assert_allclose(gp.best_transitive_accuracy(P), (0.9 + 0.9 + 0.1) / 3, rtol=1e-12)
    np.testing.assert_allclose(gp.expected_accuracy(np.full((3, 3), 0.5), P), 0.5, rtol=1e-6)  # ties: coin flips
    np.testing.assert_allclose(gp.expected_accuracy(P.T, P), 0.1, rtol=1e-6)


def _cyclic_pairs(seed=0, X=3, N=5, M=400, p=0.9):
    rng = np.random.default_rng(seed)
    base = np.full((N, N), 0.5)
    for i in range(N):
        for d in (1, 2):
            base[i, (i + d) % N], base[(i + d) % N, i] = p, 1 - p
    P = np.stack([base[np.ix_(q, q)] for q in (rng.permutation(N) for _ in range(X))])
    x = np.repeat(np.arange(X), M)
    a = rng.integers(0, N, x.size)
    b = (a + rng.integers(1, N, x.size)) % N
    win = rng.random(x.size) < P[x, a, b]
    pairs = Pairs(jnp.asarray(x), jnp.asarray(np.where(win, a, b)), jnp.asarray(np.where(win, b, a)),
                  jnp.full(x.size, 1.0 / x.size))
    return P, pairs


def test_fit_gpm_learns_a_cycle():
    P, pairs = _cyclic_pairs()
    model = gp.tabular_gpm(3, 5, 4)
    hp = {"embedding_init_scale": 0.1, "reward_learning_rate": 0.05}
    emb, losses = jax.jit(lambda k: gp.fit_gpm(model, None, pairs, hp, 1500, k))(jax.random.key(0))
    assert float(losses[-1]) < float(losses[0])
    np.testing.assert_allclose(gp.expected_accuracy(gp.preference_matrix(emb), P), gp.bayes_accuracy(P), atol=1e-6)
    # gradient at v = 0 vanishes (the bilinear score's saddle): a zero start would never move
    g = jax.grad(lambda e: gp.gpm_loss(e, pairs))(jnp.zeros((3, 5, 4)))
    assert float(jnp.max(jnp.abs(g))) == 0.0


def test_gpm_loss_matches_numpy():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        emb = rng.normal(size=(2, 4, 2))
        pairs = Pairs(jnp.array([0, 1, 1]), jnp.array([0, 2, 3]), jnp.array([1, 0, 2]), jnp.array([0.2, 0.3, 0.5]))
        s = emb[[0, 1, 1], [0, 2, 3], 0] * emb[[0, 1, 1], [1, 0, 2], 1] - emb[[0, 1, 1], [0, 2, 3], 1] * emb[[0, 1, 1], [1, 0, 2], 0]
        np.testing.assert_allclose(gp.gpm_loss(emb, pairs), np.sum([0.2, 0.3, 0.5] * np.logaddexp(0, -s)), rtol=1e-13)


def test_gpo_trainer_reaches_the_regularised_nash_of_the_fitted_preference():
    """``gpo`` (exact self-play gradient on the fitted GPM) ends at the regularised Nash equilibrium of
    its own fitted preference matrix (games.regularized_nash). Plain gradient steps (SGD): self-play
    gradient play contracts in the KL-regularised game; Adam's normalised steps would hover around
    the equilibrium at a distance of order the learning rate."""
    entry = TRAINERS.entry("gpm-gpo")
    assert entry.meta["kind"] == "online"
    P, pairs = _cyclic_pairs(M=300)
    lref = jnp.log(jnp.full((3, 5), 0.2))
    prob = Problem(jnp.arange(3), lref, pairs, jnp.zeros((3, 5, 1)))
    pol = tabular(3, 5, init_logits=lref)
    trainer = entry.obj(pol, gpm_steps=800, optimizer="sgd")
    hp = {k: jnp.float32(v) for k, v in entry.hparams.items()} | {"beta": jnp.float32(0.5),
                                                                   "learning_rate": jnp.float32(1.0)}

    def run(key):
        s = trainer.init(pol.init(key), prob, hp, key)
        s, _ = jax.lax.scan(lambda s, k: trainer.update(s, prob, hp, k), s, jax.random.split(key, 1500))
        return s

    s = jax.jit(run)(jax.random.key(0))
    p_hat = s.reward_params["preference"]
    target = regularized_nash(p_hat, jnp.full((3, 5), 0.2), jnp.full((3,), 0.5)).pi
    pi = jnp.exp(pol.log_probs(s.params, jnp.arange(3)))
    np.testing.assert_allclose(pi, target, atol=2e-3)
    with pytest.raises(ValueError, match="payoff"):
        entry.obj(pol, payoff="nope")


@pytest.mark.parametrize("payoff", ["prob", "score"])
def test_gpo_sampled_step_is_unbiased_for_the_exact_step(payoff):
    """The RLOO step of ``gpo`` (SGD, lr 1) averages to the exact self-play gradient step: 5 standard
    errors per coordinate over 20000 keys; the check rejects the zero step."""
    _, pairs = _cyclic_pairs(M=100)
    lref = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32))
    prob = Problem(jnp.arange(3), lref, pairs, jnp.zeros((3, 5, 1)))
    pol = tabular(3, 5, init_logits=lref)
    hp = {"beta": jnp.float32(0.3), "learning_rate": jnp.float32(1.0), "reward_learning_rate": jnp.float32(0.05),
          "embedding_init_scale": jnp.float32(0.1)}
    params = pol.init(jax.random.key(0)) + jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)
    steps = {}
    for mode in ("exact", "sampled"):
        tr = TRAINERS.get("gpm-gpo")(pol, gpm_steps=300, payoff=payoff, mode=mode, num_samples=4, optimizer="sgd")
        s0 = tr.init(params, prob, hp, jax.random.key(0))
        one = lambda k: tr.update(s0, prob, hp, k)[0].params - params  # noqa: E731
        steps[mode] = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), 20000 if mode == "sampled" else 1))
    exact, est = np.asarray(steps["exact"][0]), np.asarray(steps["sampled"])
    mean, se = est.mean(0), est.std(0) / np.sqrt(est.shape[0])
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-4), (mean, exact)
    assert np.any(np.abs(exact) > 5 * se + 1e-4)
