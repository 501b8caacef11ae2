"""dpo-bandit's claim ``online-dpo-beats-offline``: DPO with online feedback (Guo et al. 2024, OAIF).

Guo et al., "Direct Language Model Alignment from Online AI Feedback" (arXiv 2402.04792), abstract
(read, session 9): the preference datasets of direct alignment methods "are usually collected ahead of
training and never updated, thus the feedback is purely offline. Moreover, responses in these datasets
are often sampled from a language model distinct from the one being aligned, and since the model evolves
over training, the alignment phase is inevitably off-policy"; OAIF instead, "on each training iteration,
[samples] two responses from the current model and prompt[s] the LLM annotator to choose which one is
preferred", and "OAIF outperforms both offline DAP and RLHF methods" (human evaluation). The opening of
Sec. 1 (read in session 8): offline methods train on the distribution induced by the data's model but
are evaluated on the distribution induced by the policy.

The toy: the suite's tabular bandit (8 prompts x 16 responses, ``r ~ N(0, 1)``, ``pi_ref =
softmax(N(0, 1))``, Bradley-Terry preferences ``P(y > y') = sigmoid(r_y - r_y')``), and a distinct data
model ``rho = softmax(N(0, 1))`` drawn independently of ``pi_ref``. Three policies (:data:`ARMS`) start
at ``pi_ref`` and take the same :data:`STEPS` steps of the same size on the DPO loss at ``beta =``
:data:`BETA`, each step on :data:`BATCH` pairs per prompt with one Bradley-Terry vote each
(:func:`online_program`):

* ``offline``: a fixed dataset of :data:`DATASET` pairs per prompt, both responses drawn from ``rho``,
  labelled once before training; each step takes :data:`BATCH` of them uniformly at random;
* ``online`` (OAIF): each step draws :data:`BATCH` fresh pairs per prompt from the current policy
  (two independent samples, not differentiated) and labels them on the spot;
* ``fresh-offline`` (the control): each step draws :data:`BATCH` fresh pairs per prompt from ``rho``
  and labels them: as many labels as ``online``, none of them on-policy.

The step is ``theta <- theta - (ETA / beta^2) grad L`` with ``L`` the mean DPO loss over the step's
pairs and prompts. The metric is the win rate against the reference under the true preferences,
``W(pi) = mean_x sum_{y, y'} pi(y|x) pi_ref(y'|x) sigmoid(r_y - r_y')`` (the suite's, as in the KTO
claim; the paper's is a human-judged win rate).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignjax import claims as C
from alignjax.experiment import Program
from alignjax.losses import dpo

OAIF_SRC = "Guo et al. 2024 (OAIF, arXiv 2402.04792)"
ARMS = ("offline", "online", "fresh-offline")
BETA = 0.1  # DPO's usual beta (the suite's default)
PROMPTS, RESPONSES = 8, 16
DATASET = 64  # pairs per prompt in the fixed offline dataset (one vote each), as the KTO claim's
BATCH = 8  # pairs per prompt per step, every arm
ETA = 0.25  # step ETA / beta^2 on the mean loss (see online_program: stable for DPO on any pairs)
STEPS, LOG_EVERY = 2000, 200
MIN_ADVANTAGE = 0.0  # "OAIF outperforms both offline DAP and RLHF methods"

SPEC = C.ClaimSpec(
    id="online-dpo-beats-offline",
    statement=(
        "Online feedback improves direct alignment: DPO that samples its pairs from the current policy and labels "
        "them on the spot (OAIF) outperforms DPO on a fixed dataset whose responses come from a distinct model, with "
        "the same steps and batch. Measured: the median over seeds of W(online DPO) - W(offline DPO) after "
        f"{STEPS:,} steps > {MIN_ADVANTAGE:g}, W the win rate against the reference under the true preferences."),
    source=(f"{OAIF_SRC}: abstract, read (session 9): offline datasets 'are usually collected ahead of training and "
            "never updated', their responses 'often sampled from a language model distinct from the one being "
            "aligned'; OAIF samples 'two responses from the current model' on each iteration; 'OAIF outperforms both "
            "offline DAP and RLHF methods'. The opening of Sec. 1 read in session 8; the experiments' sections, "
            "figures and tables were not read, so no figure or table number is cited"),
    paper_value=("abstract: 'Despite its simplicity, we demonstrate via human evaluation in several tasks that OAIF "
                 "outperforms both offline DAP and RLHF methods' (win rates in the paper's figures, not read)"),
    setting=(f"The suite's tabular bandit: {PROMPTS} prompts x {RESPONSES} responses, r ~ N(0, 1), pi_ref = "
             "softmax(N(0, 1)), Bradley-Terry votes; the offline data's model rho = softmax(N(0, 1)) drawn "
             f"independently of pi_ref; offline: {DATASET} pairs per prompt from rho, one vote each, fixed; online: "
             f"{BATCH} fresh pairs per prompt per step from the current policy (not differentiated), one vote each; "
             f"every arm: DPO at beta = {BETA}, {BATCH} pairs per prompt per step, step {ETA}/beta^2 on the mean "
             f"loss, {STEPS:,} steps from pi_ref; float32; 16 seeds (quick and full alike), the bootstrap units. The "
             "paper's models are language models judged by humans; the win rate against the reference under the "
             "true preferences stands in for its human-judged win rate"),
    check=C.Check(f"median over seeds of W(online DPO) - W(offline DPO) after {STEPS:,} steps", ">", MIN_ADVANTAGE,
                  "docs/thresholds.md#online-dpo-beats-offline: the abstract's comparison ('OAIF outperforms ... "
                  "offline DAP'); the zero is the paper's"),
    control=(f"DPO on {BATCH} fresh pairs per prompt per step drawn from rho (not from the policy) and labelled on the "
             "spot: as many labels as the online arm, none on-policy; same steps, step size, seeds and metric, judged "
             "by the same check against the offline arm. It passes if fresh labels alone beat the fixed dataset; "
             "beside the subject it shows what sampling from the current policy adds."),
)


def _instance(key):
    """``(r, log_ref, log_rho)`` ``(X, N)``: the suite's instance
    (:func:`alignjax_experiments.dpo_bandit._instance`) and the data's model ``rho = softmax(N(0, 1))``."""
    from alignjax_experiments.dpo_bandit import _instance as bandit_instance

    k_inst, k_rho = jax.random.split(key)
    r, log_ref = bandit_instance(k_inst, PROMPTS, RESPONSES, 1.0)
    return r, log_ref, jax.nn.log_softmax(jax.random.normal(k_rho, (PROMPTS, RESPONSES)), -1)


def win_rate(logp, r, log_ref):
    """``W = mean_x sum_{y, y'} pi(y|x) pi_ref(y'|x) sigmoid(r_y - r_y')`` for log-policies ``(..., X, N)``."""
    beats = jax.nn.sigmoid(r[:, :, None] - r[:, None, :])
    return jnp.einsum("...xn,xnm,xm->...x", jnp.exp(logp), beats, jnp.exp(log_ref)).mean(-1)


def _label(key, r, a, b):
    """One Bradley-Terry vote per pair ``(a, b)`` ``(X, B)``: ``(winner, loser)``."""
    take = lambda i: jnp.take_along_axis(r, i, -1)  # noqa: E731
    a_wins = jax.random.bernoulli(key, jax.nn.sigmoid(take(a) - take(b)))
    return jnp.where(a_wins, a, b), jnp.where(a_wins, b, a)


def _draw(key, logp, n):
    """``n`` independent responses per prompt from ``softmax(logp)`` ``(X, N)``: ``(X, n)``."""
    return jax.random.categorical(key, logp[:, None, :], axis=-1, shape=(logp.shape[0], n))


def pairs_loss(theta, w, lo, log_ref, beta):
    """``L = mean_{x, b} -log sigmoid(beta (h(w_xb) - h(l_xb)))`` with ``h = log softmax(theta) - log pi_ref``:
    the mean DPO loss (:func:`alignjax.losses.dpo`) of pairs ``(w, lo)`` ``(X, B)`` under logits ``theta`` ``(X, N)``."""
    lp = jax.nn.log_softmax(theta, -1) - log_ref
    hw, hl = jnp.take_along_axis(lp, w, -1), jnp.take_along_axis(lp, lo, -1)
    return jnp.mean(dpo(hw, hl, jnp.zeros_like(hw), jnp.zeros_like(hl), beta=beta))


def online_program() -> Program:
    """The three arms of :data:`ARMS` on one instance per key, one program.

    State: logits ``theta`` ``(3, X, N)`` (each arm's, from ``log pi_ref``), the instance, the fixed
    offline dataset ``(X, DATASET)`` (winners, losers; drawn from ``rho`` and labelled at ``init``) and a
    key. Step ``t``, with keys split from the state's key (never reused):

    * offline: ``BATCH`` indices per prompt uniform over the dataset, its winners and losers;
    * online: ``y, y' ~ pi_theta_online`` (``BATCH`` pairs per prompt, ``stop_gradient``), one vote each;
    * fresh-offline: ``y, y' ~ rho``, one vote each;

    then ``theta_a <- theta_a - (ETA / beta^2) grad L_a``, ``L_a = mean_{x, pairs} -log sigmoid(beta
    (h_w - h_l))`` (:func:`alignjax.losses.dpo`), ``h = log pi - log pi_ref``. Stability: ``L_a``'s Hessian
    in one prompt's logits is ``beta^2 / (X B)`` times a weighted graph Laplacian of the step's pairs
    (weights ``<= 1/4``), whose eigenvalues are at most ``2 B / 4`` (a response in every pair), so the
    step's curvature times ``ETA / beta^2`` is at most ``ETA / (2 X) < 2``. Observes ``winrate`` ``(3,)``
    (:func:`win_rate`), ``kl_opt`` ``(3,)`` (``mean_x KL(pi* || pi)``, ``pi* ∝ pi_ref exp(r / beta)``),
    ``kl_ref`` ``(3,)`` (``mean_x KL(pi || pi_ref)``) and ``winrate_opt`` (``W(pi*)``).
    """
    X, B = PROMPTS, BATCH

    def init(h, key):
        k_inst, k_data, k_vote, key = jax.random.split(key, 4)
        r, log_ref, log_rho = _instance(k_inst)
        a, b = jnp.split(_draw(k_data, log_rho, 2 * DATASET), 2, axis=-1)
        w, lo = _label(k_vote, r, a, b)
        inst = {"r": r, "log_ref": log_ref, "log_rho": log_rho, "w": w, "l": lo}
        return {"theta": jnp.broadcast_to(log_ref, (len(ARMS), X, RESPONSES)), "inst": inst, "key": key}

    def step(s, h):
        beta, d = h["beta"], s["inst"]
        key, k_idx, k_on, k_on_vote, k_fr, k_fr_vote = jax.random.split(s["key"], 6)
        idx = jax.random.randint(k_idx, (X, B), 0, DATASET)
        off = (jnp.take_along_axis(d["w"], idx, -1), jnp.take_along_axis(d["l"], idx, -1))
        pol = jax.lax.stop_gradient(jax.nn.log_softmax(s["theta"][1], -1))
        a, b = jnp.split(_draw(k_on, pol, 2 * B), 2, axis=-1)
        on = _label(k_on_vote, d["r"], a, b)
        a, b = jnp.split(_draw(k_fr, d["log_rho"], 2 * B), 2, axis=-1)
        fresh = _label(k_fr_vote, d["r"], a, b)
        grads = [jax.grad(pairs_loss)(s["theta"][i], *pairs, d["log_ref"], beta) for i, pairs in enumerate((off, on, fresh))]
        return {**s, "theta": s["theta"] - (ETA / beta ** 2) * jnp.stack(grads), "key": key}

    def observe(s, h):
        d = s["inst"]
        lp = jax.nn.log_softmax(s["theta"], -1)
        log_star = jax.nn.log_softmax(d["log_ref"] + d["r"] / h["beta"], -1)
        kl = lambda p, q: jnp.sum(jnp.exp(p) * (p - q), -1).mean(-1)  # noqa: E731
        return {"winrate": win_rate(lp, d["r"], d["log_ref"]), "kl_opt": kl(log_star[None], lp),
                "kl_ref": kl(lp, d["log_ref"][None]), "winrate_opt": win_rate(log_star, d["r"], d["log_ref"])}

    return Program(init, step, observe)


def online_stage(s) -> dict:
    """Stage ``online-dpo``: :func:`online_program` at ``beta = BETA`` for ``s["online_seeds"]`` seeds and
    ``s["online_steps"]`` steps: ``{"steps", "winrate": (seeds, logs, arms), "kl_opt", "kl_ref", "winrate_opt":
    (seeds, logs)}``. The rows form one ``vmap`` block (the numbers do not depend on the device count)."""
    from alignjax_experiments._arm_runs import seeds_run

    return seeds_run(online_program(), BETA, s["online_seeds"], s["online_steps"])


def online_claim(st) -> dict:
    """``online-dpo-beats-offline``: per seed the final ``W(online) - W(offline)`` (subject) and
    ``W(fresh-offline) - W(offline)`` (control); the median over seeds, bootstrapped over seeds."""
    d = st["online-dpo"]
    w = np.asarray(d["winrate"])[:, -1]  # (seeds, arms)
    gap = {a: w[:, i] - w[:, 0] for i, a in enumerate(ARMS)}
    med = lambda v: float(np.median(v))  # noqa: E731
    measured = {
        "win rate against pi_ref at the last step, median over seeds": {a: med(w[:, i]) for i, a in enumerate(ARMS)},
        "win rate of pi* (the DPO/RLHF optimum at beta), median over seeds": med(np.asarray(d["winrate_opt"])[:, -1]),
        "win rate against pi_ref at the start (pi_ref itself)": med(np.asarray(d["winrate"])[:, 0, 0]),
        "KL(pi* || pi) at the last step, median over seeds": {a: med(np.asarray(d["kl_opt"])[:, -1, i])
                                                             for i, a in enumerate(ARMS)},
        "KL(pi || pi_ref) at the last step, median over seeds": {a: med(np.asarray(d["kl_ref"])[:, -1, i])
                                                                for i, a in enumerate(ARMS)},
        "W(online) - W(offline) at each logged step, median over seeds": [
            med(np.asarray(d["winrate"])[:, t, 1] - np.asarray(d["winrate"])[:, t, 0])
            for t in range(np.shape(d["winrate"])[1])],
        "seeds where online beats offline / fresh-offline beats offline": [
            int(np.sum(gap["online"] > 0)), int(np.sum(gap["fresh-offline"] > 0))],
        # added after the first run (the review): what sampling from the policy adds beyond fresh labels
        "W(online) - W(fresh-offline) at the last step: median over seeds, seeds above 0 (added after the first run)": [
            med(w[:, 1] - w[:, 2]), int(np.sum(w[:, 1] > w[:, 2]))],
    }
    note = ("Every arm takes the same steps on the same loss; they differ only in where the step's pairs come from. "
            "The control holds too: most of the online arm's lead over the fixed dataset comes from fresh labels, "
            "not from sampling the current policy. The offline arm reuses each of its 64 single-vote pairs about 250 "
            "times, and DPO overfits single votes (the suite's hard-labels-overfit); the on-policy part (online "
            "minus fresh pairs from rho, reported) is a speed effect at this horizon. 'Outperforms' is a statement "
            "at 2,000 steps; no arm beats the exact RLHF optimum pi* at the same beta (its win rate is reported).")
    return C.evaluate(SPEC, C.measure(gap["online"], np.median), C.measure(gap["fresh-offline"], np.median),
                      measured=measured, note=note)


def online_plot(ctx, d) -> None:
    """``online_dpo.png``: each arm's win rate against the reference along training (median and range over
    seeds), with pi*'s."""
    import matplotlib.pyplot as plt

    from alignjax_experiments._arm_runs import plot_arms

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_arms(ax, d["steps"], d["winrate"], ARMS)
    ax.plot(np.asarray(d["steps"]), np.median(np.asarray(d["winrate_opt"]), 0), "k:", lw=1, label="pi* (median)")
    ax.set(xlabel="step", ylabel="win rate against pi_ref (true preferences)",
           title=f"DPO: online (OAIF) vs a fixed offline dataset, beta = {BETA}")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "online_dpo.png")
