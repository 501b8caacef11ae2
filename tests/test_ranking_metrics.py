"""Ranking-accuracy metrics (Chen et al. 2024, arXiv 2405.19534): hand cases and the flip theorems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignjax import losses
from alignjax.metrics import ranking as rk


def test_ranking_accuracy_hand_cases_and_ties():
    w = jnp.array([-1.0, -3.0, -2.0, -5.0])
    l = jnp.array([-2.0, -2.0, -2.0, -6.0])
    # correct, wrong, tie (counts as wrong), correct
    np.testing.assert_array_equal(rk.ranking_correct(w, l), [1.0, 0.0, 0.0, 1.0])
    assert float(rk.ranking_accuracy(w, l)) == pytest.approx(0.5)


def test_length_normalised_can_reverse_the_ranking():
    # y_w: 10 tokens, log p = -10 (mean -1); y_l: 2 tokens, log p = -4 (mean -2).
    w, l = jnp.array([-10.0]), jnp.array([-4.0])
    assert float(rk.ranking_accuracy(w, l)) == 0.0
    assert float(rk.ranking_accuracy(w, l, chosen_lengths=jnp.array([10.0]),
                                     rejected_lengths=jnp.array([2.0]))) == 1.0
    with pytest.raises(ValueError):
        rk.ranking_accuracy(w, l, chosen_lengths=jnp.array([10.0]))


def test_ranking_accuracy_keeps_leading_axes_and_jits():
    w = jnp.array([[0.0, 1.0], [2.0, -1.0]])
    l = jnp.zeros((2, 2))
    np.testing.assert_allclose(jax.jit(rk.ranking_accuracy)(w, l), [0.5, 0.5])


def test_idealized_hand_computed():
    # ref log-ratio -1 (reference misranks); alpha = 0.75 -> logit = log 3 = 1.0986.
    rw, rl = jnp.array([-3.0]), jnp.array([-2.0])
    a = jnp.array([0.75])
    np.testing.assert_allclose(rk.idealized_log_ratio(rw, rl, a, 1.0), [-1.0 + np.log(3.0)], rtol=1e-6)
    assert float(rk.idealized_ranking_accuracy(rw, rl, a, 1.0)) == 1.0   # log 3 > 1
    assert float(rk.idealized_ranking_accuracy(rw, rl, a, 2.0)) == 0.0   # log 3 / 2 < 1


def test_idealized_unanimous_votes_use_the_papers_epsilon():
    # alpha = 1 would give an infinite ratio; the paper clips to 1 - 0.001: logit = log 999 = 6.9068.
    rw, rl = jnp.array([-10.0, -10.0]), jnp.array([-3.0, -3.1])  # ref log-ratios -7.0, -6.9
    a = jnp.array([1.0, 1.0])
    np.testing.assert_allclose(rk.idealized_log_ratio(rw, rl, a, 1.0), [-7.0 + np.log(999.0), -6.9 + np.log(999.0)],
                               atol=1e-5)
    np.testing.assert_array_equal(rk.idealized_ranking_correct(rw, rl, a, 1.0), [0.0, 1.0])
    # alpha = 0 clips to 0.001, symmetric
    np.testing.assert_allclose(rk.idealized_log_ratio(jnp.array([0.0]), jnp.array([0.0]), jnp.array([0.0]), 1.0),
                               [-np.log(999.0)], rtol=1e-5)


def test_idealized_length_normalised_and_beta_sweep():
    rw, rl = jnp.array([[-10.0]]), jnp.array([[-4.0]])   # (1, num_pairs=1)
    lw, ll = jnp.array([[10.0]]), jnp.array([[2.0]])
    a = jnp.array([[0.6]])   # logit 0.405
    # unnormalised: -6 + 0.405/beta; normalised: -1 + 2 = +1 > 0 for every beta
    betas = jnp.array([[0.01], [0.1], [1.0]])
    np.testing.assert_array_equal(rk.idealized_ranking_accuracy(rw, rl, a, betas), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        rk.idealized_ranking_accuracy(rw, rl, a, betas, chosen_lengths=lw, rejected_lengths=ll), [1.0, 1.0, 1.0])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="beta"):
        rk.idealized_ranking_accuracy(jnp.zeros(2), jnp.zeros(2), jnp.full(2, 0.6), -1.0)
    with pytest.raises(ValueError, match="alpha"):
        rk.idealized_ranking_accuracy(jnp.zeros(2), jnp.zeros(2), jnp.array([0.6, 1.2]), 1.0)
    with pytest.raises(ValueError, match="beta"):
        rk.dpo_flip_threshold(jnp.zeros(2), jnp.zeros(2), 0.0)


def test_flip_threshold_hand_value():
    # c = log pi_ref(y_l)/pi_ref(y_w) = 2, beta = 0.5 -> threshold = -log sigmoid(1) = 0.3133
    thr = rk.dpo_flip_threshold(jnp.array([-3.0]), jnp.array([-1.0]), 0.5)
    np.testing.assert_allclose(thr, [np.log1p(np.exp(-1.0))], rtol=1e-6)
    # at the reference the DPO loss is log 2 > threshold: the misranked pair stays misranked
    assert np.log(2.0) > float(thr[0])


logp = st.floats(-30.0, 0.0, allow_nan=False, width=64)


@settings(max_examples=200, deadline=None)
@given(pw=logp, pl=logp, rw=logp, rl=logp, beta=st.floats(1e-2, 10.0))
def test_dpo_flip_theorem_property(pw, pl, rw, rl, beta):
    """Thm 4.1: R = 1 iff DPO loss < -log sigmoid(beta c) (float64 oracle)."""
    with jax.enable_x64(True):
        args = [jnp.array([v], jnp.float64) for v in (pw, pl, rw, rl)]
        loss = losses.dpo(*args, beta=jnp.float64(beta))
        thr = rk.dpo_flip_threshold(args[2], args[3], jnp.float64(beta))
        correct = bool(rk.ranking_correct(args[0], args[1])[0])
        # skip the measure-zero boundary where float rounding decides
        if abs(pw - pl) > 1e-9 and abs(float(loss[0] - thr[0])) > 1e-12:
            assert correct == bool(loss[0] < thr[0])


@settings(max_examples=200, deadline=None)
@given(pw=logp, pl=logp, rw=logp, rl=logp, beta=st.floats(1e-2, 10.0))
def test_ipo_flip_analogue_property(pw, pl, rw, rl, beta):
    """IPO analogue: on the branch h <= 1/(2 beta), R = 1 iff IPO loss < ipo threshold."""
    with jax.enable_x64(True):
        args = [jnp.array([v], jnp.float64) for v in (pw, pl, rw, rl)]
        h = float(losses.margin(*args)[0])
        t = 1.0 / (2.0 * beta)
        loss = losses.ipo(*args, beta=jnp.float64(beta))
        thr = rk.ipo_flip_threshold(args[2], args[3], jnp.float64(beta))
        correct = bool(rk.ranking_correct(args[0], args[1])[0])
        if h <= t and abs(pw - pl) > 1e-9 and abs(float(loss[0] - thr[0])) > 1e-12:
            assert correct == bool(loss[0] < thr[0])


def test_ipo_threshold_zero_when_difficulty_exceeds_target():
    # c = 3 > t = 1/(2*0.5) = 1: the IPO optimum h = t ranks it wrong, threshold 0
    np.testing.assert_array_equal(rk.ipo_flip_threshold(jnp.array([-4.0]), jnp.array([-1.0]), 0.5), [0.0])
    np.testing.assert_allclose(rk.ipo_flip_threshold(jnp.array([-1.0]), jnp.array([-1.5]), 0.5), [2.25])


@settings(max_examples=200, deadline=None)
@given(pw=logp, pl=logp, rw=logp, rl=logp, beta=st.floats(1e-2, 10.0))
def test_prop_2_6_low_dpo_loss_keeps_a_correct_reference_ranking(pw, pl, rw, rl, beta):
    """Chen et al. 2024, Prop. 2.6: pi_ref(y_w) >= pi_ref(y_l) and L_DPO <= 0.6 imply R = 1."""
    with jax.enable_x64(True):
        args = [jnp.array([v], jnp.float64) for v in (pw, pl, rw, rl)]
        loss = float(losses.dpo(*args, beta=jnp.float64(beta))[0])
        if rw >= rl and loss <= 0.6:
            assert bool(rk.ranking_correct(args[0], args[1])[0])


@settings(max_examples=200, deadline=None)
@given(pw=logp, pl=logp, rw=logp, rl=logp, beta=st.floats(1e-2, 10.0))
def test_prop_a7_ipo_as_the_paper_states_it(pw, pl, rw, rl, beta):
    """Chen et al. 2024, Prop. A.7 (App. A.5), IPO with tau = beta and c' = log pi_ref(y_w)/pi_ref(y_l):
    if c' < -1/(2 tau), the IPO optimum (loss 0) misranks the pair; if c' >= -1/(2 tau), a loss below
    (c' + 1/(2 tau))^2 ranks it correctly, on either side of the target (no branch condition)."""
    with jax.enable_x64(True):
        args = [jnp.array([v], jnp.float64) for v in (pw, pl, rw, rl)]
        t, c_prime = 1.0 / (2.0 * beta), rw - rl
        loss = float(losses.ipo(*args, beta=jnp.float64(beta))[0])
        if c_prime >= -t and loss < (c_prime + t) ** 2 - 1e-12:
            assert bool(rk.ranking_correct(args[0], args[1])[0])
        # the optimum: h = t exactly, i.e. m = t - c = t + c'
        m_opt = t + c_prime
        if c_prime < -t - 1e-9:
            assert m_opt < 0   # misranked at zero loss


def test_authors_code_variant_hand_cases():
    # 4 of 5 raters (alpha = 0.8): votes term 4^(1/beta)
    rw, rl, a = jnp.array([-100.0, -100.0]), jnp.array([-120.0, -80.0]), jnp.array([0.8, 0.8])
    n = jnp.array([50.0, 50.0])
    kw = dict(chosen_lengths=n, rejected_lengths=n)
    # unnormalised branch at beta = 10: f = log p_w / log p_l = 100/120 and 100/80; rho = 4^0.1 f = 1.149 f
    got = rk.authors_code_idealized_ranking_correct(rw, rl, a, 10.0, normalized=False, **kw)
    np.testing.assert_array_equal(got, [0.0, 1.0])   # 0.957 < 1.05; 1.436 >= 1.05
    # Eq. 3 at beta = 10: 20 nats of likelihood ratio against log(4)/10: the opposite verdicts
    np.testing.assert_array_equal(rk.idealized_ranking_correct(rw, rl, a, 10.0), [1.0, 0.0])
    # normalised branch: f = exp(-2 + 2.4) and exp(-2 + 1.6); rho = 1.149 * 1.49, 1.149 * 0.67
    got = rk.authors_code_idealized_ranking_correct(rw, rl, a, 10.0, normalized=True, **kw)
    np.testing.assert_array_equal(got, [1.0, 0.0])
    # the tie band: a pair predicted within 5% of a tie counts as wrong
    tie = rk.authors_code_idealized_ranking_correct(jnp.array([-10.0]), jnp.array([-10.0]), jnp.array([0.6]),
                                                    10.0, normalized=True, chosen_lengths=n[:1],
                                                    rejected_lengths=n[:1])
    np.testing.assert_array_equal(tie, [0.0])   # 1.5^0.1 = 1.041 < 1.05


# ---- Fig. 2 (Sec. 4.1): "the loss falls and the margin grows while the ranking stays wrong" is algebra
# (v2's claim fig2-loss-falls-ranking-stays, moved here in contract v3): with h = log-ratio margin,
# loss = -log sigmoid(beta h) is convex and decreasing, so by Jensen a category's mean loss below log 2
# forces its mean margin above 0; at the reference h = 0 exactly (loss log 2, margin 0), so the v2
# control could never pass; and a misranked pair (c > 0) stays misranked whenever 0 < h < c.
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=1, max_size=30), st.floats(0.01, 10.0))
def test_fig2_mean_loss_below_log2_forces_a_positive_mean_margin(h, beta):
    h = np.asarray(h, np.float64)
    loss = np.logaddexp(0.0, -beta * h)
    if loss.mean() < np.log(2.0):
        assert h.mean() > 0
    assert loss.mean() >= np.logaddexp(0.0, -beta * h.mean()) - 1e-12   # Jensen


@settings(max_examples=200, deadline=None)
@given(st.floats(-50, 0), st.floats(-50, 0), st.floats(0.01, 10.0))
def test_fig2_the_reference_has_loss_log2_and_margin_0(rc, rr, beta):
    h = (rc - rc) - (rr - rr)   # the policy is the reference
    assert h == 0.0 and np.logaddexp(0.0, -beta * h) == pytest.approx(np.log(2.0))


@settings(max_examples=200, deadline=None)
@given(st.floats(-50, 0), st.floats(-50, 0), st.floats(0.0, 1.0))
def test_fig2_a_misranked_pair_gains_margin_and_stays_misranked(rc, rr, frac):
    """A pair the reference misranks (c = rr - rc > 0) moved by a margin h in (0, c) lowers its DPO loss
    below log 2 and is still misranked: Fig. 2's incorrect->incorrect pairs with falling loss."""
    c = rr - rc
    if c <= 1e-9:
        return
    h = frac * c * 0.999 + 1e-12
    pc, pr = rc + h / 2, rr - h / 2   # the policy's log-probs after the move
    assert (pc - rc) - (pr - rr) == pytest.approx(h)
    assert np.logaddexp(0.0, -h) < np.log(2.0) and pc < pr
