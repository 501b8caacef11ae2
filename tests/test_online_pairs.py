"""SPO, online DPO, XPO and VPO as loss-driven game dynamics: exact forms and reference implementations.

* SPO (Swamy et al. 2024, arXiv 2401.04056): the population loss of a round is the KL-proximal
  soft-policy-iteration objective whose minimiser is the registered exact ``mwu`` step; one tabular
  SGD step is the softmax policy gradient on the self-play win rate; the win-rate estimator.
* Online DPO (Guo et al. 2024, arXiv 2402.04792): the pair loss equals TRL's; on a Bradley–Terry game
  the population minimiser is the registered exact ``bt-rlhf`` policy.
* XPO (Xie et al. 2024, arXiv 2405.21046): the per-pair loss equals TRL's XPO loss.
* VPO (Cen et al. 2024, arXiv 2405.19320): its value incentive is XPO's bonus with ``alpha_XPO = alpha beta``.

The unbiasedness of every sampled form against a float64 numpy population gradient is in
``tests/test_sampled_unbiased.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.dynamics import exact_dynamics
from alignjax.dynamics import sampled as S
from alignjax.dynamics.sampled_losses import GAME_LOSSES, GameInputs, dpo_pair_loss, spo_win_rates, xpo_pair_losses
from alignjax.policies import tabular
from alignjax.prefs import bradley_terry, random_game
from alignjax.registry import DYNAMICS

NEW = ["sampled-spo", "sampled-online-dpo", "sampled-xpo", "sampled-vpo"]


def _np_neg_log_sigmoid(x):
    """``-log sigmoid(x) = log(1 + exp(-x))``, float64, stable for either sign."""
    return np.logaddexp(0.0, -x)


def _pairs(seed=0, n=5, k=64):
    """Fixed float64 inputs: log-probabilities of a policy and a reference, K index pairs and labels."""
    rng = np.random.default_rng(seed)
    logp = rng.normal(size=n)
    logp -= np.log(np.exp(logp).sum())
    logp_ref = rng.normal(size=n)
    logp_ref -= np.log(np.exp(logp_ref).sum())
    y, yt = rng.integers(0, n, size=k), rng.integers(0, n, size=k)
    o = (rng.uniform(size=k) < 0.6).astype(np.float64)
    return logp, logp_ref, y, yt, o


# ----------------------------------------------------------------------------- TRL reference losses
def _trl_xpo_loss(model_lp_model, model_lp_ref, ref_lp_ref, ref_lp_model, chosen_mask, beta, alpha):
    """TRL 0.23.0, trl/trainer/xpo_trainer.py, ``XPOTrainer._compute_losses`` (``loss_type="sigmoid"``), numpy.

    Inputs are summed sequence log-probabilities of the policy's completion ("model data") and of the
    reference model's completion ("ref data") under the policy ("model_lp_*") and the reference
    ("ref_lp_*"); ``chosen_mask`` is True where the policy's completion won. The chosen/rejected log-ratios
    are picked by the mask, the DPO term is ``-log sigmoid(beta (chosen ratio - rejected ratio))`` and the
    XPO term is ``alpha`` times the policy's log-probability of the REFERENCE completion; the loss is the
    batch mean of their sum.
    """
    chosen = np.where(chosen_mask, model_lp_model - ref_lp_model, model_lp_ref - ref_lp_ref)
    rejected = np.where(chosen_mask, model_lp_ref - ref_lp_ref, model_lp_model - ref_lp_model)
    dpo = _np_neg_log_sigmoid(beta * (chosen - rejected))
    return np.mean(dpo + alpha * model_lp_ref)


def _trl_online_dpo_loss(lp_first, lp_second, ref_first, ref_second, first_wins, beta):
    """TRL 1.16.0, trl/experimental/online_dpo/online_dpo_trainer.py, ``OnlineDPOTrainer.training_step``, numpy.

    Two completions per prompt (the batch's first and second halves), the chosen one selected by the
    mask, ``losses = -log sigmoid(beta ((chosen - rejected) - (ref_chosen - ref_rejected)))``, batch mean.
    """
    c, r = np.where(first_wins, lp_first, lp_second), np.where(first_wins, lp_second, lp_first)
    c_ref, r_ref = np.where(first_wins, ref_first, ref_second), np.where(first_wins, ref_second, ref_first)
    return np.mean(_np_neg_log_sigmoid(beta * ((c - r) - (c_ref - r_ref))))


@pytest.mark.parametrize("beta,alpha", [(0.1, 1e-5), (0.5, 0.3), (2.0, 1.0)])
def test_xpo_pair_loss_equals_trl_xpo_loss(beta, alpha):
    """Our XPO loss on (y ~ pi, yt ~ pi_ref, outcome o) is TRL's ``XPOTrainer._compute_losses`` (TRL 0.23.0).

    float64 on fixed inputs; the only differences are rounding of O(1) numbers (atol 1e-12). A wrong sign
    of the bonus, or the bonus on the policy's own response, is caught (checked below)."""
    logp, logp_ref, y, yt, o = _pairs(1)
    expected = _trl_xpo_loss(logp[y], logp[yt], logp_ref[yt], logp_ref[y], o == 1.0, beta, alpha)
    with jax.enable_x64(True):
        ours = float(jnp.mean(xpo_pair_losses(jnp.asarray(logp), jnp.asarray(logp_ref), jnp.asarray(y),
                                              jnp.asarray(yt), jnp.asarray(o), beta, alpha)))
    assert abs(ours - expected) <= 1e-12
    # power: the bonus's sign and its argument matter at this alpha
    wrong_sign = _trl_xpo_loss(logp[y], logp[yt], logp_ref[yt], logp_ref[y], o == 1.0, beta, -alpha)
    own_response = expected - alpha * np.mean(logp[yt]) + alpha * np.mean(logp[y])
    assert min(abs(ours - wrong_sign), abs(ours - own_response)) > 1e-9  # 1000x the equality tolerance


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_online_dpo_pair_loss_equals_trl_online_dpo_loss(beta):
    """Our online-DPO pair loss with a hard label equals TRL's ``OnlineDPOTrainer`` loss (TRL 1.16.0); float64."""
    logp, logp_ref, y, yp, o = _pairs(2)
    expected = _trl_online_dpo_loss(logp[y], logp[yp], logp_ref[y], logp_ref[yp], o == 1.0, beta)
    delta = logp - logp_ref
    with jax.enable_x64(True):
        ours = float(jnp.mean(dpo_pair_loss(jnp.asarray(delta[y] - delta[yp]), jnp.asarray(o), beta)))
    assert abs(ours - expected) <= 1e-12
    swapped = _trl_online_dpo_loss(logp[y], logp[yp], logp_ref[y], logp_ref[yp], o != 1.0, beta)
    assert abs(ours - swapped) > 1e-6  # the label's orientation matters


# ----------------------------------------------------------------------------- SPO
def _grad_in_logits(loss, logp):
    """Gradient of ``z -> loss(log_softmax(z))`` at ``z = logp`` (zero iff ``logp`` is stationary on the simplex)."""
    return jax.grad(lambda z: loss(jax.nn.log_softmax(z)))(logp)


@pytest.mark.parametrize("eta", [0.3, 2.0])
def test_spo_round_objective_is_minimised_by_the_exact_mwu_step(eta):
    """With ``pi_now = pi_t`` the SPO population loss ``-E_pi[P@pi_t - 1/2] + KL(pi||pi_t)/eta`` is
    minimised over all policies by ``pi_t exp(eta P @ pi_t)/Z``: the registered exact ``mwu`` step.

    Proof checked numerically: the objective is strictly convex in ``pi`` on the simplex (linear plus
    ``KL/eta``), so an interior stationary point is its unique minimiser; the registered ``mwu`` update
    is stationary (gradient in the logits ~ 1e-17, float64 rounding of O(1) terms; atol 1e-12)."""
    n = 5
    with jax.enable_x64(True):
        P = random_game(jax.random.key(4), n).astype(jnp.float64)
        logp_ref = jax.nn.log_softmax(jax.random.normal(jax.random.key(5), (n,), jnp.float64))
        logp_t = jax.nn.log_softmax(jax.random.normal(jax.random.key(6), (n,), jnp.float64))
        g = GameInputs(P, logp_ref, logp_t, logp_t)
        hp = {"eta": jnp.float64(eta)}

        def loss(lp):
            return GAME_LOSSES["spo"].population(lp, g, hp)

        mwu = exact_dynamics("mwu")
        step = mwu.update(mwu.init(logp_t, P, logp_ref, hp), P, logp_ref, hp).log_pi
        np.testing.assert_allclose(_grad_in_logits(loss, step), 0.0, rtol=0, atol=1e-12)
        # power: a real step, and neither the start nor the mwu step with another eta is stationary
        assert float(jnp.max(jnp.abs(step - logp_t))) > 1e-2
        other = mwu.update(mwu.init(logp_t, P, logp_ref, hp), P, logp_ref, {"eta": 2 * hp["eta"]}).log_pi
        for lp in (logp_t, other):
            assert float(jnp.max(jnp.abs(_grad_in_logits(loss, lp)))) > 1e-4
    assert DYNAMICS.entry("sampled-spo").meta["exact_form"] == "mwu"
    assert DYNAMICS.entry("mwu").meta["kind"] == "exact"


def test_spo_one_tabular_step_is_the_softmax_policy_gradient_not_mwu():
    """``round_length = 1``: one population SGD step is ``theta += lr pi * (P @ pi - 1/2)`` (hand-derived),
    the softmax policy gradient of the win rate against the current policy; it is MWU with the
    per-response step ``lr pi(y)``, so it differs from the ``mwu`` step with ``eta = lr``."""
    n, lr = 4, 0.5
    P = random_game(jax.random.key(7), n)[None]
    logp_ref = jax.nn.log_softmax(jax.random.normal(jax.random.key(8), (1, n)), axis=-1)
    logits0 = jax.random.normal(jax.random.key(9), (1, n))
    dyn = S.sampled_spo(tabular(1, n), mode="population")
    st, _ = dyn.update(dyn.init(jax.random.key(0), logits0), P, logp_ref, jnp.arange(1),
                       {"eta": 1.0, "learning_rate": lr}, jax.random.key(1))
    w = jax.nn.softmax(logits0[0])
    np.testing.assert_allclose(st.params[0] - logits0[0], lr * w * (P[0] @ w - 0.5), atol=1e-6)
    mwu_step = jax.nn.log_softmax(jnp.log(w) + lr * (P[0] @ w - 0.5))
    assert float(jnp.max(jnp.abs(jax.nn.log_softmax(st.params[0]) - mwu_step))) > 1e-3


def test_spo_win_rates_against_the_other_samples():
    P = jnp.asarray([[0.5, 0.8, 0.3], [0.2, 0.5, 0.9], [0.7, 0.1, 0.5]])
    y = jnp.asarray([0, 1, 1, 2])
    # probabilities: rhat_i = mean_{j != i} P[y_i, y_j]
    soft = spo_win_rates(P, y, jnp.zeros((4, 4)), bernoulli=False)
    np.testing.assert_allclose(soft, [(0.8 + 0.8 + 0.3) / 3, (0.2 + 0.5 + 0.9) / 3, (0.2 + 0.5 + 0.9) / 3,
                                      (0.7 + 0.1 + 0.1) / 3], atol=1e-6)
    # u = 0 < P: the earlier sample of every pair wins, the later one loses (one verdict per pair)
    hard = spo_win_rates(P, y, jnp.zeros((4, 4)), bernoulli=True)
    np.testing.assert_allclose(hard, [1.0, 2 / 3, 1 / 3, 0.0], atol=1e-6)
    # any uniforms: every pair has exactly one winner, so the win rates of K samples sum to K/2
    u = jax.random.uniform(jax.random.key(3), (4, 4))
    np.testing.assert_allclose(jnp.sum(spo_win_rates(P, y, u, bernoulli=True)), 2.0, atol=1e-6)


def test_spo_needs_two_samples_per_group():
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        S.sampled_spo(tabular(1, 3), mode="sampled", num_samples=1)
    S.sampled_online_dpo(tabular(1, 3), mode="sampled", num_samples=1)  # a single pair is fine for the others


# ----------------------------------------------------------------------------- online DPO / VPO / XPO
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_online_dpo_minimiser_on_a_bradley_terry_game_is_the_rlhf_optimum(beta):
    """For ``P = sigmoid(r_y - r_y')`` the online-DPO population loss (pairs weighted by ANY ``pi_now > 0``)
    is minimised where ``sigmoid(beta h) = P`` on every pair: ``pi ∝ pi_ref exp(r / beta)``, which is also
    what the registered exact rule ``bt-rlhf`` returns (it fits ``r`` back from ``P``).

    The loss is convex in the logits ``z`` (``h`` is linear in ``z``, the pair loss convex in ``h``) with a
    Hessian of rank ``N - 1`` (strict off the constant direction), so a stationary point is the minimiser,
    unique up to normalisation: checked at ``pi ∝ pi_ref exp(r/beta)`` (float64, atol 1e-12)."""
    n = 5
    with jax.enable_x64(True):
        r = jax.random.normal(jax.random.key(11), (n,), jnp.float64)
        P = bradley_terry(r)
        logp_ref = jax.nn.log_softmax(jax.random.normal(jax.random.key(12), (n,), jnp.float64))
        logp_now = jax.nn.log_softmax(jax.random.normal(jax.random.key(13), (n,), jnp.float64))
        g = GameInputs(P, logp_ref, logp_now, logp_now)
        hp = {"beta": jnp.float64(beta)}
        def loss(lp):
            return GAME_LOSSES["online_dpo"].population(lp, g, hp)

        expected = jax.nn.log_softmax(logp_ref + r / beta)
        np.testing.assert_allclose(_grad_in_logits(loss, expected), 0.0, rtol=0, atol=1e-12)
        hess = jax.hessian(lambda z: loss(jax.nn.log_softmax(z)))(expected)
        eig = np.linalg.eigvalsh(np.asarray(hess))
        assert eig[0] > -1e-12 and np.sum(eig > 1e-8) == n - 1  # convex, strictly off the constant direction
        assert float(jnp.max(jnp.abs(_grad_in_logits(loss, logp_now)))) > 1e-3  # power
        bt = exact_dynamics("bt-rlhf")
        out = bt.update(bt.init(logp_now, P, logp_ref, hp), P, logp_ref, hp).log_pi
        # bt-rlhf fits r with a ridge of 1e-6: r is biased by ~1e-6, log pi by ~1e-6/beta (measured 2.1e-6 at
        # beta = 0.5); atol 1e-5 leaves a factor 5
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_vpo_value_incentive_is_the_xpo_bonus_with_alpha_times_beta():
    """Gradient identity: ``grad(VPO) - grad(online DPO) = grad(XPO[alpha beta]) - grad(XPO[0]) = alpha beta pi_ref``
    in ``log pi`` (Cen et al. note the same link with ``pi_cal = pi_ref``)."""
    n, beta, alpha = 4, 0.3, 0.7
    with jax.enable_x64(True):
        P = random_game(jax.random.key(1), n).astype(jnp.float64)
        logp_ref = jax.nn.log_softmax(jax.random.normal(jax.random.key(2), (n,), jnp.float64))
        logp_now = jax.nn.log_softmax(jax.random.normal(jax.random.key(3), (n,), jnp.float64))
        g = GameInputs(P, logp_ref, logp_now, logp_now)

        def grad(name, a):
            return jax.grad(GAME_LOSSES[name].population)(logp_now, g, {"beta": beta, "alpha": a})

        vpo_extra = grad("vpo", alpha) - grad("online_dpo", alpha)
        xpo_extra = grad("xpo", alpha * beta) - grad("xpo", 0.0)
        np.testing.assert_allclose(vpo_extra, xpo_extra, rtol=0, atol=1e-14)
        np.testing.assert_allclose(vpo_extra, alpha * beta * jnp.exp(logp_ref), rtol=0, atol=1e-14)


def test_new_dynamics_are_registered_with_valid_defaults():
    for name in NEW:
        e = DYNAMICS.entry(name)
        assert e.meta["kind"] == "sampled" and e.meta["loss"] in GAME_LOSSES and not e.meta["extragradient"]
        S.validate_hparams(e.meta["loss"], e.hparams)
        assert set(e.hparams) == {"learning_rate", *GAME_LOSSES[e.meta["loss"]].hparams}
    with pytest.raises(ValueError, match="alpha"):
        S.validate_hparams("xpo", {"beta": 0.1, "learning_rate": 0.1})
