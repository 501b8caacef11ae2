"""dpo-bandit's claim ``fdpo-divergence-trades-reward-for-diversity`` (Wang et al. 2023/2024, f-DPO).

Wang, Jiang, Yang, Liu, Chen, "Beyond Reverse KL: Generalizing Direct Preference Optimization with
Diverse Divergence Constraints" (arXiv 2309.16240; ICLR 2024) replace DPO's reverse KL by an
f-divergence. By the KKT conditions the regularised optimum is

    pi*(y|x) = pi_ref(y|x) g((r(x, y) + c(x)) / beta),    g = (f')^{-1},

with ``c(x)`` the constant that normalises ``pi*(.|x)`` (it exists and is unique for the reverse KL,
the Jensen-Shannon and every alpha-divergence: ``f'`` is increasing with range ``(-inf, sup f')``),
and f-DPO's pair loss is ``-log sigmoid(beta (f'(u_w) - f'(u_l)))``, ``u = pi / pi_ref``
(:func:`alignjax.losses.fdpo_alpha`, :func:`alignjax.losses.fdpo_js`). Read (session 9): the
abstract, "Empirically, adopting these divergences ensures a balance between alignment performance
and generation diversity"; the ICLR reviews summarise the experiments as the reverse KL reaching the
highest reward and the lowest diversity, the forward KL the opposite, the alpha-divergences in
between; the authors' code (``alecwangcq/f-divergence-dpo``) compares the divergences at a fixed beta
(0.1, also 0.3 and 0.9) with alpha in {0.3, 0.5, 0.7}. The paper's own body (its theorem number, its
tables) could not be read here.

The toy: the suite's tabular bandit (8 prompts x 16 responses, ``r ~ N(0, 1)``, ``pi_ref =
softmax(N(0, 1))``), every ordered pair compared with its Bradley-Terry probability as a soft label
(the population loss, so each loss's minimiser is its divergence's regularised optimum above and no
finite-data effect enters). The policy class is tabular, so it contains every optimum and each arm's
policy is its divergence's optimum, computed exactly in float64 (:func:`optimum`; the population loss
:func:`arm_losses` is stationary there, a unit test). No optimiser is run: a plumbing check before the
claim was declared found Adam from ``pi_ref`` still 0.08 nats of entropy from the forward-KL optimum after
2,000 steps (the loss is flat where ``u = pi / pi_ref`` is large), which an exact solve avoids. Divergences (:data:`ARMS`): the
alpha family at alpha in :data:`ALPHAS` (alpha = 0 is the reverse KL, i.e. DPO; alpha = 1 the forward
KL) and the Jensen-Shannon divergence (reported). Alignment is the expected true reward
``R = mean_x sum_y pi(y|x) r(x, y)``, diversity the entropy ``H = mean_x -sum_y pi log pi``.

Metric of the claim, per seed: the smallest step of the trade-off along the alpha grid,
``m = min over beta and consecutive alpha_i < alpha_{i+1} of min(R(alpha_i) - R(alpha_{i+1}),
H(alpha_{i+1}) - H(alpha_i))``: positive exactly when, at every beta, moving from the reverse towards
the forward KL lowers the reward and raises the entropy at every step of the grid.
The control trains the same arms on labels from a permuted reward (each prompt's rewards shuffled
over its responses, the true reward still used to measure ``R``): the divergences then spread mass
around the wrong responses, and the reward ordering holds only by chance.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignjax import claims as C
from alignjax.losses import fdpo_alpha, fdpo_js

FDPO_SRC = "Wang, Jiang, Yang, Liu, Chen 2023 (f-DPO, arXiv 2309.16240; ICLR 2024)"
ALPHAS = (0.0, 0.3, 0.5, 0.7, 1.0)  # 0: reverse KL (DPO); 0.3/0.5/0.7: the authors' HH runs; 1: forward KL
ARMS = tuple(f"alpha={a:g}" for a in ALPHAS) + ("js",)
BETAS = (0.1, 0.3, 0.9)  # the authors' HH betas (their code); 0.1 also their MT-Bench beta
PROMPTS, RESPONSES = 8, 16
MIN_STEP = 0.0  # the ordering itself: 'highest reward, least diverse' ... 'most diverse, lowest reward'

SPEC = C.ClaimSpec(
    id="fdpo-divergence-trades-reward-for-diversity",
    statement=(
        "The divergence of f-DPO sets a trade-off between alignment and diversity: at a fixed beta the reverse KL "
        "(DPO) reaches the highest reward and the lowest diversity, the forward KL the lowest reward and the highest "
        "diversity, the alpha-divergences in between. Measured at the optima of the population losses on a tabular "
        "bandit (the policies f-DPO's losses converge to with every pair compared), at each "
        f"beta in {list(BETAS)}: along alpha in {list(ALPHAS)} (0 the reverse KL, 1 the forward KL) the expected "
        "true reward falls and the entropy rises at every step; the median over seeds of the smallest such step is "
        f"> {MIN_STEP:g}."),
    source=(f"{FDPO_SRC}: abstract ('Empirically, adopting these divergences ensures a balance between alignment "
            "performance and generation diversity'), read; the ordering (reverse KL: highest reward, least diverse; "
            "forward KL: most diverse, lowest reward; alpha-divergences between) as the ICLR 2024 reviews summarise "
            "the paper's experiments, read; the paper's body (its experiment section and tables) could NOT be "
            "read, so no section or table number is cited; the betas (0.1, 0.3, 0.9) and alphas (0.3, 0.5, 0.7) "
            "are those of the authors' code (alecwangcq/f-divergence-dpo)"),
    paper_value=("no number read: the paper measures reward (or GPT-4 win rate) and diversity (entropy, and per the "
                 "reviews self-BLEU and distinct-n) of Pythia-2.8B on Anthropic HH and GPT-2-large on IMDB; the "
                 "reviews: reverse KL 'maximizes the reward but is the least diverse', forward KL 'the most diverse "
                 "but lowest reward'"),
    setting=(f"The suite's tabular bandit: {PROMPTS} prompts x {RESPONSES} responses, r ~ N(0, 1), pi_ref = "
             "softmax(N(0, 1)); every ordered pair compared, soft labels sigmoid(r_y - r_y') (the population loss: "
             "each loss's minimiser is its divergence's regularised optimum pi_ref g((r + c)/beta), g = (f')^{-1}, in the "
             "tabular class; computed exactly in float64 by bisection on c, no optimiser run); divergences: the "
             f"alpha family at alpha in {list(ALPHAS)} and Jensen-Shannon (reported, not checked); beta in "
             f"{list(BETAS)}; 16 seeds (quick) or 64 (full), the bootstrap units. The paper trains language models "
             "with finite data and reads them at checkpoints; the "
             "expected true reward stands in for its reward model's score and the entropy of pi(.|x) for its "
             "diversity measures"),
    check=C.Check("median over seeds of min over beta and consecutive alpha_i < alpha_{i+1} of min(R(alpha_i) - "
                  "R(alpha_{i+1}), H(alpha_{i+1}) - H(alpha_i)) at the optima (R expected true reward, H entropy, "
                  "means over prompts)", ">", MIN_STEP,
                  "docs/thresholds.md#fdpo-divergence-trades-reward-for-diversity: the ordering the paper reports "
                  "(as its reviews summarise it); zero is the ordering itself, no margin"),
    control=("The same arms, betas and seeds at the optima of soft labels from a permuted reward (each "
             "prompt's rewards shuffled over its responses), R still the true reward: the entropy ordering is the "
             "divergences' own, the reward ordering holds only by chance, so it passes only if the trade-off does "
             "not need the labels to carry the reward being measured."),
)


def _instance(key):
    """``(r, log_ref, r_label)``: the suite's instance (:func:`alignjax_experiments.dpo_bandit._instance`)
    and the control's label reward, ``r`` shuffled over the responses of each prompt."""
    from alignjax_experiments.dpo_bandit import _instance as bandit_instance

    k_inst, k_perm = jax.random.split(key)
    r, log_ref = bandit_instance(k_inst, PROMPTS, RESPONSES, 1.0)
    perm = jax.vmap(lambda k: jax.random.permutation(k, RESPONSES))(jax.random.split(k_perm, PROMPTS))
    return r, log_ref, jnp.take_along_axis(r, perm, -1)


def arm_losses(lp, log_ref, r_label, beta):
    """The population f-DPO loss of each arm: ``(arms,)`` from log-policies ``lp`` ``(arms, X, N)``.

    ``L_a = mean_x (1/N) sum_{y != y'} sigmoid(r_y - r_y') l_a(y, y')`` with ``l_a`` the pair loss of
    arm ``a`` (``fdpo_alpha`` at ``ALPHAS[a]``, then ``fdpo_js``) on ``(log pi(y), log pi(y'))``
    against ``pi_ref``; ``r_label`` sets the soft labels. The diagonal ``y = y'`` is excluded.
    """
    n = lp.shape[-1]
    p = jax.nn.sigmoid(r_label[:, :, None] - r_label[:, None, :])  # (X, N, N): y beats y'
    off = (1.0 - jnp.eye(n))[None]
    lw, ll = lp[..., :, None], lp[..., None, :]  # (arms, X, N, 1), (arms, X, 1, N)
    rw, rl = log_ref[:, :, None], log_ref[:, None, :]
    out = []
    for i, a in enumerate(ALPHAS):
        out.append(fdpo_alpha(lw[i], ll[i], rw, rl, beta=beta, alpha=a))
    out.append(fdpo_js(lw[-1], ll[-1], rw, rl, beta=beta))
    pair = jnp.stack(out)  # (arms, X, N, N)
    return jnp.sum((p * off)[None] * pair, (-2, -1)).mean(-1) / n


def optimum(r, log_ref, beta, arm) -> np.ndarray:
    """The regularised optimum of arm ``arm`` (an index of :data:`ARMS`), float64: ``log pi*`` ``(X, N)``.

    ``pi*(y|x) = pi_ref(y|x) g((r(x, y) + c(x)) / beta)`` with ``g = (f')^{-1}``: ``exp(s)`` for the
    reverse KL (alpha = 0), ``(1 - alpha s)^(-1/alpha)`` for an alpha-divergence, ``e^s / (2 - e^s)``
    for Jensen-Shannon; ``c(x)`` by bisection (200 halvings, every prompt at once) on ``sum_y pi*(y|x)
    = 1``, whose left side increases in ``c`` from 0 (``c -> -inf``) to infinity (``c`` -> the end of
    ``g``'s domain). It is the population f-DPO loss's minimiser (:func:`arm_losses` is stationary there:
    ``tests/test_dpo_bandit.py``).
    """
    r, log_ref = np.asarray(r, np.float64), np.asarray(log_ref, np.float64)
    if arm < len(ALPHAS) and ALPHAS[arm] == 0.0:
        z = log_ref + r / beta
        return z - np.logaddexp.reduce(z, -1, keepdims=True)
    if arm < len(ALPHAS):
        a = ALPHAS[arm]
        top = beta / a  # s < 1/alpha
        log_g = lambda t: -np.log1p(-a * t) / a  # noqa: E731
    else:
        top = beta * np.log(2.0)  # s < log 2
        log_g = lambda t: t - np.log(2.0 - np.exp(t))  # noqa: E731
    hi = top - r.max(-1, keepdims=True)  # c < hi, per prompt
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = lambda c: np.logaddexp.reduce(log_ref + log_g((r + c) / beta), -1, keepdims=True)  # noqa: E731
        gap = np.ones_like(hi)
        while np.any(total(hi - gap) > 0.0):
            gap = np.where(total(hi - gap) > 0.0, 2.0 * gap, gap)
        lo, up = hi - gap, hi
        for _ in range(200):
            mid = 0.5 * (lo + up)
            below = total(mid) < 0.0
            lo, up = np.where(below, mid, lo), np.where(below, up, mid)
        out = log_ref + log_g((r + lo) / beta)
    return out - np.logaddexp.reduce(out, -1, keepdims=True)  # the bisection's last rounding


def instances(num_seeds: int):
    """``(r, log_ref, r_perm)``, each ``(seeds, X, N)`` float64: seed ``i``'s instance from key
    ``split(key(0), num_seeds)[i]`` (:func:`_instance`)."""
    draw = jax.jit(jax.vmap(_instance))(jax.random.split(jax.random.key(0), num_seeds))
    return tuple(np.asarray(v, np.float64) for v in draw)


def fdpo_stage(s) -> dict:
    """Stage ``fdpo-divergence``: every arm's regularised optimum (:func:`optimum`) on ``s["fdpo_seeds"]``
    instances, at every beta of :data:`BETAS`, for the true and the permuted labels: ``{"beta", "reward",
    "entropy", "kl": (betas, seeds, 2, arms), "r", "log_ref", "r_perm": (seeds, X, N)}``; ``reward`` under
    the true reward, means over prompts."""
    r, log_ref, r_perm = instances(s["fdpo_seeds"])
    shape = (len(BETAS), len(r), 2, len(ARMS))
    out = {k: np.empty(shape) for k in ("reward", "entropy", "kl")}
    for b, beta in enumerate(BETAS):
        for i in range(len(r)):
            for j, lab in enumerate((r, r_perm)):
                for a in range(len(ARMS)):
                    lp = optimum(lab[i], log_ref[i], beta, a)
                    pi = np.exp(lp)
                    out["reward"][b, i, j, a] = np.mean(np.sum(pi * r[i], -1))
                    out["entropy"][b, i, j, a] = np.mean(-np.sum(pi * lp, -1))
                    out["kl"][b, i, j, a] = np.mean(np.sum(pi * (lp - log_ref[i]), -1))
    return {"beta": np.asarray(BETAS), **out, "r": r, "log_ref": log_ref, "r_perm": r_perm}


def trade_off_step(reward, entropy) -> np.ndarray:
    """The claim's per-seed metric from ``reward``, ``entropy`` ``(betas, seeds, alphas)``: ``(seeds,)``,
    ``min over beta and i of min(R_i - R_{i+1}, H_{i+1} - H_i)`` along :data:`ALPHAS`."""
    r, h = np.asarray(reward, np.float64), np.asarray(entropy, np.float64)
    step = np.minimum(r[..., :-1] - r[..., 1:], h[..., 1:] - h[..., :-1])  # (betas, seeds, alphas - 1)
    return step.min(axis=(0, 2))


def fdpo_claim(st) -> dict:
    """``fdpo-divergence-trades-reward-for-diversity``: the per-seed smallest trade-off step
    (:func:`trade_off_step`) of the alpha arms' optima, true labels (subject) and permuted labels (control);
    the median over seeds, bootstrapped over seeds. Reported: each arm's reward, entropy and KL (medians
    over seeds) and the seeds whose every step holds."""
    d = st["fdpo-divergence"]
    rew, ent, kl = (np.asarray(d[k]) for k in ("reward", "entropy", "kl"))  # (betas, seeds, 2, arms)
    na = len(ALPHAS)
    subj = trade_off_step(rew[:, :, 0, :na], ent[:, :, 0, :na])
    ctrl = trade_off_step(rew[:, :, 1, :na], ent[:, :, 1, :na])
    med = lambda v: float(np.median(v))  # noqa: E731
    per_arm = lambda x, lab: {f"beta={b:g}": {a: med(x[i, :, lab, j]) for j, a in enumerate(ARMS)}  # noqa: E731
                              for i, b in enumerate(BETAS)}
    steps = lambda lab: {  # noqa: E731
        f"beta={b:g}": float(np.median(trade_off_step(rew[i:i + 1, :, lab, :na], ent[i:i + 1, :, lab, :na])))
        for i, b in enumerate(BETAS)}
    measured = {
        "expected true reward R, median over seeds (true labels)": per_arm(rew, 0),
        "entropy H, median over seeds (true labels)": per_arm(ent, 0),
        "KL(pi || pi_ref), median over seeds (true labels)": per_arm(kl, 0),
        "expected true reward R, median over seeds (permuted labels, the control)": per_arm(rew, 1),
        "entropy H, median over seeds (permuted labels, the control)": per_arm(ent, 1),
        "the claim's metric per beta, median over seeds (true labels)": steps(0),
        "the claim's metric per beta, median over seeds (permuted labels)": steps(1),
        "seeds whose trade-off holds at every beta and step (true / permuted labels)": [
            int(np.sum(subj > 0)), int(np.sum(ctrl > 0))],
        "seeds": int(rew.shape[1]),
    }
    note = ("Each arm is its divergence's regularised optimum pi_ref g((r + c)/beta), g = (f')^{-1}, the minimiser of "
            "its population f-DPO loss (the gradient of the loss vanishes there: a unit test). The verdict is about "
            "these optima at a fixed beta, not about trained language models: one beta is not one strength across "
            "divergences. Every alpha-divergence has f''(1) = 1, but for 0 < alpha < 1 it is bounded (by "
            "1/(alpha (1 - alpha))), so moving mass onto a best response of low prior costs little, where the reverse "
            "KL charges log(1/pi_ref); the forward KL KL(pi_ref || pi) weighs by pi_ref and barely charges mass added "
            "to a low-prior response; Jensen-Shannon has f''(1) = 1/2 and a bounded score (log 2), so it acts like a "
            "weaker regulariser and is the most concentrated arm.")
    return C.evaluate(SPEC, C.measure(subj, np.median), C.measure(ctrl, np.median), measured=measured, note=note)


def fdpo_plot(ctx, d) -> None:
    """``fdpo_tradeoff.png``: reward against entropy of every arm at each beta (medians over seeds, true labels)."""
    import matplotlib.pyplot as plt

    rew, ent = (np.asarray(d[k])[:, :, 0] for k in ("reward", "entropy"))  # (betas, seeds, arms), true labels
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, b in enumerate(BETAS):
        x, y = np.median(ent[i], 0), np.median(rew[i], 0)
        na = len(ALPHAS)
        ax.plot(x[:na], y[:na], "o-", color=f"C{i}", label=f"beta = {b:g}: alpha 0 (reverse KL) -> 1 (forward KL)")
        ax.plot(x[na:], y[na:], "s", color=f"C{i}", mfc="none", label=f"beta = {b:g}: Jensen-Shannon")
        ax.annotate("RKL", (x[0], y[0]), fontsize=7)
        ax.annotate("FKL", (x[na - 1], y[na - 1]), fontsize=7)
    ax.set(xlabel="entropy of pi(.|x) (nats, mean over prompts)", ylabel="expected true reward",
           title="f-DPO's optima: reward vs diversity")
    ax.legend(fontsize=7)
    ctx.savefig(fig, "fdpo_tradeoff.png")
