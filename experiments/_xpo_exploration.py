"""dpo-bandit's claim ``xpo-explores-past-poor-coverage``: XPO's exploration bonus (Xie et al. 2024/2025).

Xie, Foster, Krishnamurthy, Rosset, Awadallah, Rakhlin, "Exploratory Preference Optimization: Harnessing
Implicit Q*-Approximation for Sample-Efficient RLHF" (arXiv 2405.21046; ICLR 2025). Abstract (read,
session 9, the ICLR text): XPO, "a one-line modification to (online) Direct Preference Optimization",
"augments the DPO objective with a novel and principled exploration bonus, enabling the algorithm to
strategically explore beyond the support of the initial model and preference feedback data. We prove
that XPO is provably sample-efficient and converges to a near-optimal policy under natural exploration
conditions, regardless of the initial model's coverage"; the arXiv v1 abstract adds that XPO is "more
sample-efficient than non-exploratory DPO variants" (read in session 8). Its theorems, its bandit example
(a secondary summary calls it Proposition 2.1: online DPO needs samples exponential in 1/beta when the
reference covers the best response poorly) and its choice of the bonus weight were not read.

XPO's loss (Alg. 1, as :func:`alignjax.dynamics.sampled_losses.xpo_pair_losses` implements it): DPO on
the pair ``(y ~ pi, yt ~ pi_ref)`` ordered by one preference vote, plus ``alpha log pi(yt)``; minimising
the second term lowers what ``pi_ref`` says. Here each step is one SGD step on fresh pairs (as TRL's
trainer), not Alg. 1's argmin over all the data so far; in expectation the bonus's gradient in the
logits is ``alpha (pi_ref - pi)``, which raises the responses the policy already weighs above ``pi_ref``
and lowers the others.

The toy: the suite's tabular bandit (8 prompts x 16 responses, ``r ~ N(0, 1)``, Bradley-Terry votes)
with a reference that covers the best response poorly: ``pi_ref = softmax(N(0, 1))`` over the other 15
responses and ``pi_ref(y*) =`` :data:`COVER` on the best one. Three policies (:data:`ARMS`) start at
``pi_ref`` and take :data:`STEPS` steps ``theta <- theta - (ETA / beta^2) grad L`` at ``beta =`` :data:`BETA`,
``L`` the mean over prompts and :data:`BATCH` fresh pairs per prompt per step, each with one vote:

* ``online-dpo``: ``y, y' ~ pi`` (the current policy, not differentiated), DPO;
* ``xpo``: ``y ~ pi``, ``yt ~ pi_ref``, DPO plus ``alpha log pi(yt)`` with ``alpha =`` :data:`ALPHA`;
* ``xpo-no-bonus`` (the control): the same pairs with ``alpha = 0``.

The metric is XPO's objective, the KL-regularised value ``J(pi) = mean_x [E_pi r - beta KL(pi || pi_ref)]``,
whose maximiser is ``pi* ∝ pi_ref exp(r / beta)``.

**The bonus weight** (fixed before the first run): the bonus adds ``alpha (pi_ref - pi)`` per prompt to
the logits' gradient; against DPO's population loss, whose curvature in ``h = log pi/pi_ref`` is of order
``beta^2 / 4``, it moves the stationary point by ``Delta h ~ 4 alpha / beta^2`` and the implicit reward
``beta h`` by ``~ 4 alpha / beta``. ``alpha = beta^2 / 10 = 1e-3`` keeps that shift at 0.04 reward units
(4% of the reward's scale). (Its sign, noted after the first run by the review: up where ``pi > pi_ref``,
down where ``pi < pi_ref``, which includes a best response that DPO's normalisation has pushed below
``pi_ref``.)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignjax import claims as C
from alignjax.dynamics.sampled_losses import xpo_pair_losses
from alignjax.experiment import Program
from alignjax_experiments._online_dpo import _draw, _label

XPO_SRC = "Xie et al. 2024 (XPO, arXiv 2405.21046; ICLR 2025)"
ARMS = ("online-dpo", "xpo", "xpo-no-bonus")
BETA = 0.1
ALPHA = BETA ** 2 / 10  # see the module docstring, "The bonus weight"
COVER = 1e-3  # pi_ref's mass on each prompt's best response
PROMPTS, RESPONSES = 8, 16
BATCH = 8  # fresh pairs per prompt per step, every arm
ETA = 0.25  # step ETA / beta^2 on the mean loss (the online-dpo claim's)
STEPS = 2000
MIN_ADVANTAGE = 0.0  # "more sample-efficient than non-exploratory DPO variants"

SPEC = C.ClaimSpec(
    id="xpo-explores-past-poor-coverage",
    statement=(
        "XPO's exploration bonus makes online DPO sample-efficient when the initial model covers the best response "
        "poorly: with the same steps, batch and preference votes, XPO ends with a higher KL-regularised value than "
        f"online DPO. Measured with pi_ref(best) = {COVER:g} on every prompt: the median over seeds of J(XPO) - "
        f"J(online DPO) after {STEPS:,} steps > {MIN_ADVANTAGE:g}, J = E_pi r - beta KL(pi || pi_ref)."),
    source=(f"{XPO_SRC}: abstract (ICLR 2025 text), read: XPO 'augments the DPO objective with a novel and principled "
            "exploration bonus, enabling the algorithm to strategically explore beyond the support of the initial "
            "model' and 'converges to a near-optimal policy under natural exploration conditions, regardless of the "
            "initial model's coverage'; arXiv v1 abstract (read in session 8): 'more sample-efficient than "
            "non-exploratory DPO variants'. Alg. 1 as implemented in alignjax (xpo_pair_losses). The theorems and "
            "the paper's bandit example were not read, so no theorem or proposition number is cited"),
    paper_value=("abstract: sample-efficient, near-optimal 'regardless of the initial model's coverage'; 'more "
                 "sample-efficient than non-exploratory DPO variants' (no number read)"),
    setting=(f"The suite's tabular bandit: {PROMPTS} prompts x {RESPONSES} responses, r ~ N(0, 1), Bradley-Terry "
             f"votes; pi_ref = softmax(N(0, 1)) on the other responses and pi_ref(best) = {COVER:g}; beta = {BETA}; "
             f"{BATCH} fresh pairs per prompt per step, one vote each; step {ETA}/beta^2 on the mean loss, "
             f"{STEPS:,} steps from pi_ref; XPO's bonus weight alpha = beta^2/10 = {ALPHA:g} (fixed before the first "
             "run from the shift it causes in the stationary implicit reward, about 4 alpha / beta = 0.04); one "
             "reference sample per pair (as TRL); float32; 16 seeds (quick and full alike), the bootstrap units"),
    check=C.Check(f"median over seeds of J(XPO) - J(online DPO) after {STEPS:,} steps, J = mean_x [E_pi r - beta "
                  "KL(pi || pi_ref)]", ">", MIN_ADVANTAGE,
                  "docs/thresholds.md#xpo-explores-past-poor-coverage: the abstract's comparison with "
                  "non-exploratory DPO; the zero is the paper's"),
    control=("XPO's pairs (one response from the policy, one from pi_ref) without the bonus (alpha = 0), same steps, "
             "votes budget, seeds and metric, judged by the same check against online DPO: it passes if drawing the "
             "second response from pi_ref, not the bonus, is what helps."),
)


def _instance(key):
    """``(r, log_ref)`` ``(X, N)``: ``r ~ N(0, 1)``; ``pi_ref`` gives :data:`COVER` to each prompt's best
    response and ``(1 - COVER) softmax(N(0, 1))`` over the others."""
    k_r, k_ref = jax.random.split(key)
    r = jax.random.normal(k_r, (PROMPTS, RESPONSES))
    best = jax.nn.one_hot(jnp.argmax(r, -1), RESPONSES, dtype=bool)
    z = jnp.where(best, -jnp.inf, jax.random.normal(k_ref, (PROMPTS, RESPONSES)))
    log_ref = jnp.where(best, jnp.log(COVER), jnp.log1p(-COVER) + jax.nn.log_softmax(z, -1))
    return r, log_ref


def value(logp, r, log_ref, beta):
    """``J = mean_x [sum_y pi (r - beta (log pi - log pi_ref))]`` for log-policies ``(..., X, N)``."""
    lead = (None,) * (jnp.ndim(logp) - 2)  # broadcast the instance over leading axes
    return jnp.sum(jnp.exp(logp) * (r[lead] - beta * (logp - log_ref[lead])), -1).mean(-1)


def xpo_loss(theta, y, yt, o, log_ref, beta, alpha):
    """``mean_{x, b} [dpo(h(y) - h(yt); o) + alpha log pi(yt)]`` (:func:`~alignjax.dynamics.sampled_losses.xpo_pair_losses`
    per prompt) for pairs ``y, yt`` ``(X, B)`` with outcomes ``o`` (1: ``y`` won) under logits ``theta`` ``(X, N)``;
    ``alpha = 0`` with ``yt ~ pi`` is online DPO."""
    lp = jax.nn.log_softmax(theta, -1)
    per = jax.vmap(lambda l, lr, a, b, w: xpo_pair_losses(l, lr, a, b, w, beta, alpha))(lp, log_ref, y, yt, o)
    return jnp.mean(per)


def xpo_program() -> Program:
    """The three arms of :data:`ARMS` on one instance per key, one program.

    State: logits ``(3, X, N)`` (from ``log pi_ref``), the instance and a key. Step (keys split from the
    state's key, never reused): online DPO draws ``y, y' ~ pi`` (its own policy), the two XPO arms
    ``y ~ pi`` (their own) and ``yt ~ pi_ref``; one Bradley-Terry vote per pair, ``o = 1`` when the first
    response wins; then each arm's gradient step on :func:`xpo_loss` (``alpha = ALPHA`` for ``xpo``, 0
    otherwise). Observes ``value`` ``(3,)`` (:func:`value`), ``value_opt`` (``J(pi*)``), ``p_best`` ``(3,)``
    (``mean_x pi(y*|x)``) and ``kl_ref`` ``(3,)``.
    """
    X, B = PROMPTS, BATCH

    def init(h, key):
        k_inst, key = jax.random.split(key)
        r, log_ref = _instance(k_inst)
        return {"theta": jnp.broadcast_to(log_ref, (len(ARMS), X, RESPONSES)), "r": r, "log_ref": log_ref,
                "key": key}

    def step(s, h):
        beta = h["beta"]
        key, *ks = jax.random.split(s["key"], 10)
        grads = []
        for i, alpha in enumerate((0.0, ALPHA, 0.0)):
            pol = jax.lax.stop_gradient(jax.nn.log_softmax(s["theta"][i], -1))
            y = _draw(ks[3 * i], pol, B)
            yt = _draw(ks[3 * i + 1], pol if i == 0 else s["log_ref"], B)
            w, _ = _label(ks[3 * i + 2], s["r"], y, yt)
            o = (w == y).astype(pol.dtype)
            grads.append(jax.grad(xpo_loss)(s["theta"][i], y, yt, o, s["log_ref"], beta, alpha))
        return {**s, "theta": s["theta"] - (ETA / beta ** 2) * jnp.stack(grads), "key": key}

    def observe(s, h):
        lp = jax.nn.log_softmax(s["theta"], -1)
        beta = h["beta"]
        log_star = jax.nn.log_softmax(s["log_ref"] + s["r"] / beta, -1)
        best = jax.nn.one_hot(jnp.argmax(s["r"], -1), RESPONSES)
        return {"value": value(lp, s["r"], s["log_ref"], beta), "value_opt": value(log_star, s["r"], s["log_ref"], beta),
                "p_best": jnp.sum(jnp.exp(lp) * best[None], -1).mean(-1),
                "kl_ref": jnp.sum(jnp.exp(lp) * (lp - s["log_ref"][None]), -1).mean(-1)}

    return Program(init, step, observe)


def xpo_stage(s) -> dict:
    """Stage ``xpo-exploration``: :func:`xpo_program` at ``beta = BETA`` for ``s["xpo_seeds"]`` seeds and
    ``s["xpo_steps"]`` steps: ``{"steps", "value", "p_best", "kl_ref": (seeds, logs, arms), "value_opt":
    (seeds, logs)}``. One ``vmap`` block."""
    from alignjax_experiments._arm_runs import seeds_run

    return seeds_run(xpo_program(), BETA, s["xpo_seeds"], s["xpo_steps"])


def xpo_claim(st) -> dict:
    """``xpo-explores-past-poor-coverage``: per seed the final ``J(xpo) - J(online-dpo)`` (subject) and
    ``J(xpo-no-bonus) - J(online-dpo)`` (control); the median over seeds, bootstrapped over seeds."""
    d = st["xpo-exploration"]
    v = np.asarray(d["value"])[:, -1]  # (seeds, arms)
    med = lambda x: float(np.median(x))  # noqa: E731
    measured = {
        "J at the last step, median over seeds": {a: med(v[:, i]) for i, a in enumerate(ARMS)},
        "J(pi*) (the maximiser), median over seeds": med(np.asarray(d["value_opt"])[:, -1]),
        "J(pi_ref) (the start), median over seeds": med(np.asarray(d["value"])[:, 0, 0]),
        "mean_x pi(best | x) at the last step, median over seeds": {
            a: med(np.asarray(d["p_best"])[:, -1, i]) for i, a in enumerate(ARMS)},
        "pi*(best) is reported through J(pi*); pi_ref(best)": COVER,
        "KL(pi || pi_ref) at the last step, median over seeds": {
            a: med(np.asarray(d["kl_ref"])[:, -1, i]) for i, a in enumerate(ARMS)},
        "J(xpo) - J(online-dpo) at each logged step, median over seeds": [
            med(np.asarray(d["value"])[:, t, 1] - np.asarray(d["value"])[:, t, 0])
            for t in range(np.shape(d["value"])[1])],
        "seeds where xpo beats online-dpo / xpo-no-bonus beats online-dpo": [
            int(np.sum(v[:, 1] > v[:, 0])), int(np.sum(v[:, 2] > v[:, 0]))],
    }
    note = ("Every arm takes the same steps with the same number of votes; they differ in where the second response "
            "of each pair comes from (the policy or pi_ref) and in XPO's bonus alpha log pi(yt). J is XPO's own "
            "objective, maximised by pi*. No arm finds the best response: DPO's steps raise the covered winners' "
            "logits, whose normaliser lowers pi(best) below pi_ref's 1e-3, and the bonus's expected gradient "
            "alpha (pi_ref - pi) amplifies that deviation. One SGD step per batch (as TRL) is tested, not Alg. 1's "
            "argmin over the accumulated data.")
    return C.evaluate(SPEC, C.measure(v[:, 1] - v[:, 0], np.median), C.measure(v[:, 2] - v[:, 0], np.median),
                      measured=measured, note=note)


def xpo_plot(ctx, d) -> None:
    """``xpo_exploration.png``: each arm's J and pi(best) along training (median and range over seeds)."""
    import matplotlib.pyplot as plt

    from alignjax_experiments._arm_runs import plot_arms

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.asarray(d["steps"])
    for k, a_ in (("value", ax[0]), ("p_best", ax[1])):
        plot_arms(a_, steps, d[k], ARMS)
    ax[0].plot(steps, np.median(np.asarray(d["value_opt"]), 0), "k:", lw=1, label="J(pi*)")
    ax[0].set(xlabel="step", ylabel="J = E r - beta KL(pi || pi_ref)", title=f"pi_ref(best) = {COVER:g}, beta = {BETA}")
    ax[1].set(xlabel="step", ylabel="mean_x pi(best | x)", yscale="log", title="mass on the best response")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "xpo_exploration.png")
