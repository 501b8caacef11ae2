"""Suite ``preference-models``: preferences beyond one Bradley–Terry reward, one claim per paper.

1. **MaxMin-RLHF** (Chakraborty et al. 2024, arXiv 2402.08925; :mod:`alignjax.maxmin`). A tabular
   bandit (``X`` prompts, ``N`` responses, ``pi_ref`` random) and two annotator groups with
   conflicting true rewards: ``r_maj ~ N(0, 1)``, ``r_min = rho r_maj + sqrt(1 - rho^2) z`` (``rho <
   0``), both centred under ``pi_ref``; ``H_maj`` majority and ``H_min`` minority annotators (10:1),
   each labelling ``labels_per_annotator`` pairs ``y, y' ~ pi_ref`` by Bradley–Terry under their
   group's reward. Compared, each by its true per-group objective ``F_u(pi) = E_pi r_u - beta
   KL(pi || pi_ref)`` (``F_u(pi_ref) = 0``) and win rate against ``pi_ref``:

   * single-reward RLHF: the pooled BT fit (:func:`alignjax.reward_model.reward_fitter`), then its
     KL-regularised optimum ``pi_ref exp(r_hat / beta)``;
   * MaxMin-RLHF: the EM mixture of ``U = 2`` BT rewards (:func:`alignjax.maxmin.mixture_em`), then
     the exact max-min policy of the fitted rewards (:func:`alignjax.maxmin.maxmin_policy`); and the
     registered trainer ``maxmin-rlhf`` (the paper's policy steps on the worst-off group);
   * the control: the same MaxMin pipeline with the groups merged (``U = 1``);
   * the oracle: the max-min policy of the true rewards.

2. **General preference model** (Zhang et al. 2024, arXiv 2410.02197; :mod:`alignjax.preference_model`).
   ``X`` prompts with ``N = 5`` responses and a cyclic preference: response ``y`` beats ``y + 1``
   and ``y + 2`` (mod 5) with probability ``p_win`` (a regular tournament, randomly relabelled per
   prompt); ``pairs_per_prompt`` training pairs per prompt (uniform over ``y != y'``, one
   Bernoulli label each). A tabular GPM (``2k = 4``) and a tabular BT reward are fitted by maximum
   likelihood (Adam); each is scored by its expected accuracy on a fresh labelled pair
   (:func:`alignjax.preference_model.expected_accuracy`, exact: no test-set noise), against the
   Bayes rate and the best accuracy of any transitive predictor (enumerated). The same fit on
   transitive (BT) data is reported beside it.

Claims (declared in :data:`CLAIMS`, before any measurement code; contract v3):

* ``maxmin-serves-minority``: the mean over seeds of MaxMin's worst-group objective
  ``min_u F_u(pi_MaxMin)`` is above ``0 = F_u(pi_ref)``. Threshold from the max-min inequality:
  with every reward centred under ``pi_ref``, ``max_pi min_u F_u(pi) >= min_u F_u(pi_ref) = 0``.
  Control: single-reward RLHF (the pooled BT reward, its KL-regularised optimum), same metric.
* ``maxmin-keeps-majority``: the paper's "without compromising the performance of majority
  groups": the majority's win rate against ``pi_ref`` under MaxMin minus under single-reward
  RLHF, mean over seeds, is at least ``-0.01`` (at most one win-rate point lost). Control:
  minority-only RLHF (the BT reward fitted to the minority's labels alone, its KL-regularised
  optimum), same metric: it serves the minority at whatever cost to the majority, so it passes only
  if the groups' rewards do not conflict. (The first v3 control, the same pipeline on groups that
  agree, ``rho = 1``, could not fail: with one reward the max-min policy is single-reward RLHF's;
  it is still run and reported.)
* ``gpm-fits-cycles``: the mean over seeds of the GPM's shortfall from the Bayes rate on cyclic
  data is at most :data:`GPM_TOL`. Control: the same GPM fit with the votes shuffled over the pairs
  (the BT reward fitted to the same pairs, v2's control, is reported: its verdict is fixed by the
  best-transitive bound).

* ``single-reward-gap-grows-as-minority-shrinks`` and ``single-reward-gap-grows-with-diversity``
  (:mod:`alignjax_experiments._maxmin_gap`, stage ``minority-gap``): single-reward RLHF's regret for
  the minority, ``beta KL(pi_single || pi*_min)``, rises at every step as the minority's share of 20
  annotators shrinks (0.5 to 0.05) and as the groups' reward correlation falls (1 to -1); control:
  minority-only RLHF, the same check.

Quick and full differ only in seeds (8 and 32); smoke shrinks steps and seeds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignjax import claims
from alignjax import maxmin as mm
from alignjax import preference_model as gp
from alignjax.data.bandits import Pairs
from alignjax.experiment import Program
from alignjax.metrics.coverage import optimal_policy
from alignjax.policies import tabular
from alignjax.registry import SUITES
from alignjax.results import scale_name
from alignjax.reward_model import bt_loss, make_optimizer, reward_fitter, tabular_reward, with_hparams
from alignjax.rlhf import TRAINERS, Problem
from alignjax.sweep import Grid, run_sweep
from alignjax_experiments import _maxmin_gap as GAP

MAXMIN_SRC = "Chakraborty et al. 2024, MaxMin-RLHF (arXiv 2402.08925, ICML 2024)"
GPM_SRC = "Zhang et al. 2024, Beyond Bradley-Terry Models: A General Preference Model (arXiv 2410.02197, ICML 2025)"
GPM_TOL = 0.02
"""GPM fits the cycle if its expected accuracy is within 0.02 of the Bayes rate: with ~6 labels per
unordered pair at p_win = 0.9 the majority label is wrong for about 1% of pairs, and one misordered
pair costs 0.8 / 10 of one prompt's accuracy, so the expected shortfall is ~0.01 (0.8 x 1.3%: derivation in
docs/thresholds.md#gpm-fits-cycles; an earlier version of this comment said ~1e-3); the best transitive
predictor is 0.24 below the Bayes rate."""
MAXMIN_FLOOR = 0.0
"""The reference's value to every group (rewards centred under pi_ref): the exact max-min policy of the
true rewards never serves the worst group below it (``min_u F_u(pi_MM) >= min_u F_u(pi_ref) = 0``)."""
MAJORITY_TOL = -0.01
""""Without compromising the performance of majority groups" (the paper's v1 abstract), read as: the
majority's win rate against pi_ref loses at most one point (0.01) when MaxMin replaces single-reward RLHF."""
AGREE_RHO = 1.0
"""Groups that agree (the minority's reward equals the majority's, ``rho = 1``): the first v3 control of
``maxmin-keeps-majority``, reported beside it."""

_WORST = "worst-group objective min_u F_u(pi), mean over seeds"
_MAJ = "majority win rate vs pi_ref, MaxMin-RLHF minus single-reward RLHF, mean over seeds"
_SHORT = "Bayes rate minus expected accuracy on cyclic data, mean over seeds"

CLAIMS = claims.declared([
    claims.ClaimSpec(
        id="maxmin-serves-minority",
        statement="A single reward learned from diverse preferences cannot align with a minority group (the "
                  "paper's impossibility result), while MaxMin-RLHF, an EM mixture of group rewards and the "
                  "Egalitarian objective max_pi min_u F_u(pi), serves every group: with a 10:1 majority:minority "
                  "split and conflicting rewards, MaxMin's worst-off group ends above the reference (mean over "
                  "seeds of min_u F_u(pi_MaxMin) > 0 = F_u(pi_ref)).",
        source=f"{MAXMIN_SRC}, Sec. 3 (impossibility result for single-reward RLHF with diverse preferences) and "
               "Sec. 4 (EM for the reward mixture, the MaxMin objective); Sec. 5 (experiments with majority and "
               "minority groups); abstract of v1 for the number (theorem, algorithm and figure numbers not "
               "re-checked)",
        paper_value="abstract (v1): MaxMin 'improves the win-rate (accuracy) for minority groups by over 33%'; "
                    "Sec. 3: single-reward RLHF's alignment gap for a minority grows with the groups' diversity "
                    "and shrinks as the minority's share grows (as secondary summaries state it; the theorem's text "
                    "was not read)",
        setting="tabular bandit (4 prompts x 8 responses), two annotator groups with anti-correlated rewards "
                "(rho = -0.5), the paper's 10:1 ratio (20 + 2 annotators, 400 BT labels each); EM mixture of two "
                "tabular BT rewards, exact max-min policy of the fitted rewards; beta = 0.5; 8 (quick) / 32 "
                "(full) seeds. The paper uses GPT-2 / Tulu2-7B with PPO and reward models.",
        check=claims.Check(_WORST, ">", MAXMIN_FLOOR,
                           "F_u(pi_ref) = 0 for rewards centred under pi_ref, and max_pi min_u F_u(pi) >= "
                           "min_u F_u(pi_ref) = 0 (the max-min inequality; module docstring, docs/algorithms.md "
                           "Sec. 6.1)"),
        control="Single-reward RLHF through the same pipeline: the pooled BT reward fitted to the same labels and "
                "its KL-regularised optimum; the same metric (its worst group is the minority).",
        history=(claims.CheckChange(
            claims.Check(_WORST, ">", MAXMIN_FLOOR, "as now"),
            "v2's check was compound: this AND 'mean F_minority(single-reward RLHF) < 0'; v3 checks one scalar, "
            "and the second part is now the control (single-reward RLHF judged by the same check). The v2 control "
            "(MaxMin with U = 1, equal to single-reward RLHF to the last digit) was judged by the compound check, "
            "which it could not pass: it needed single-reward RLHF's minority both above and below 0.",
            "v2", easier=True),)),
    claims.ClaimSpec(
        id="maxmin-keeps-majority",
        statement="MaxMin-RLHF serves the minority without compromising the majority: the majority's win rate "
                  "against pi_ref under MaxMin-RLHF is at most one point below its win rate under single-reward "
                  "RLHF (mean over seeds).",
        source=f"{MAXMIN_SRC}, abstract (v1) and Sec. 5 (experiments with majority and minority groups)",
        paper_value="abstract (v1): MaxMin improves the minority's win rate 'without compromising the "
                    "performance of majority groups'",
        setting="as maxmin-serves-minority; the win rate of pi against pi_ref under each group's true BT "
                "preference (1/2 = the reference), the toy's analogue of the paper's reward-model-judged win rate.",
        check=claims.Check(_MAJ, ">=", MAJORITY_TOL,
                           "docs/thresholds.md#maxmin-keeps-majority: the abstract's 'without compromising the "
                           "performance of majority groups', read as at most one win-rate point lost (a convention)"),
        control="Minority-only RLHF: the BT reward fitted to the minority annotators' labels alone (same "
                "instances, optimiser and steps) and its KL-regularised optimum, in MaxMin's place; the same "
                "metric. It passes if serving the minority costs the majority nothing (rewards that do not "
                "conflict)."),
    claims.ClaimSpec(
        id="gpm-fits-cycles",
        statement="Preference embeddings with a skew-symmetric operator represent cyclic (intransitive) "
                  "preferences that any Bradley-Terry reward cannot: on a cyclic preference the GPM's expected "
                  f"accuracy on a fresh labelled pair reaches the Bayes rate within {GPM_TOL:g} (mean over seeds).",
        source=f"{GPM_SRC}: the cyclic-preference experiment (Sec. 6.2, Table 1: accuracies on the 'Cyclic No. "
               "1'-'Cyclic No. 4' datasets; read in the arXiv v3 text, session 8; the numbers are also on the "
               "authors' project page, general-preference/general-preference-model index.html:271-274) and the "
               "expressiveness of the skew-symmetric preference score (Sec. 4, Theorem 4.4)",
        paper_value="Table 1: BT RM 62.4 / 61.6 / 50.0 / 62.9% on Cyclic No. 1-4, GPM 100.0% on each (random guess "
                    "50.0%; measured on the training prompts with other comparison pairs, Sec. 6.2)",
        setting="8 prompts x 5 responses, each beating the next two (mod 5) with probability 0.9 (a regular "
                "tournament, relabelled per prompt); 64 training pairs per prompt, one label each; tabular GPM "
                "(2k = 4) and tabular BT, 2000 full-batch Adam steps; 8 (quick) / 32 (full) seeds. The paper "
                "trains LLM reward heads on cyclic datasets built from UltraFeedback criteria.",
        check=claims.Check(_SHORT, "<=", GPM_TOL, "docs/thresholds.md#gpm-fits-cycles: twice the expected shortfall "
                                                   "(0.010) of a fit that follows each pair's majority label"),
        control="The same GPM fit on the same pairs with the votes permuted over the pairs (shuffled labels: "
                "they carry no information about the preference); the same metric. It passes if the pipeline "
                "leaks the true preference to the fit other than through the labels."),
    *GAP.SPECS,  # single-reward-gap-grows-as-minority-shrinks, -with-diversity: experiments/_maxmin_gap.py
])


def settings(scale) -> dict:
    """Static sizes and continuous defaults; ``scale`` is "full", "quick" or "smoke" (a bool: quick/full)."""
    scale = scale_name(scale)
    s = {
        # MaxMin
        "mm_prompts": 4, "mm_responses": 8, "mm_majority": 20, "mm_minority": 2, "labels_per_annotator": 400,
        "mm_beta": 0.5, "rho": -0.5, "ref_scale": 0.5, "em_steps": 60, "m_steps": 20, "reward_learning_rate": 0.1,
        "dual_steps": 3000, "trainer_steps": 1500, "trainer_learning_rate": 0.01,
        # GPM
        "gpm_prompts": 8, "gpm_responses": 5, "p_win": 0.9, "pairs_per_prompt": 64, "gpm_dim": 4,
        "gpm_steps": 2000, "gpm_learning_rate": 0.05, "bt_learning_rate": 0.1, "embedding_init_scale": 0.1,
        "bt_reward_scale": 2.0,
        "seeds": 8 if scale == "quick" else 32,
    }
    if scale == "smoke":
        s.update(seeds=2, em_steps=10, dual_steps=500, trainer_steps=100, gpm_steps=200)
    return s


def _sweep(program, leaves, seeds, num_steps, log_every, progress):
    grid = Grid({k: np.asarray(v) for k, v in leaves.items()}, ("config",), seeds)
    res = run_sweep(program, grid, num_steps=num_steps, log_every=log_every, progress=progress, block_size=grid.size)
    return {"steps": res.steps, **res.metrics}


# ----------------------------------------------------------------------------------------------- MaxMin
def maxmin_instance(key, cfg, rho):
    """``(r_true (2, X, N) centred, log_pi_ref (X, N), AnnotatedPairs, group (H,))`` of one seed."""
    X, N = cfg["mm_prompts"], cfg["mm_responses"]
    H = cfg["mm_majority"] + cfg["mm_minority"]
    M = H * cfg["labels_per_annotator"]
    k_r, k_z, k_ref, k_x, k_a, k_b, k_l = jax.random.split(key, 7)
    r_maj = jax.random.normal(k_r, (X, N))
    r_min = rho * r_maj + jnp.sqrt(1.0 - rho * rho) * jax.random.normal(k_z, (X, N))
    log_ref = jax.nn.log_softmax(cfg["ref_scale"] * jax.random.normal(k_ref, (X, N)), axis=-1)
    r = mm.center_rewards(jnp.stack([r_maj, r_min]), log_ref)
    group = (jnp.arange(H) >= cfg["mm_majority"]).astype(jnp.int32)
    ann = jnp.repeat(jnp.arange(H), cfg["labels_per_annotator"])
    x = jax.random.randint(k_x, (M,), 0, X)
    a = jax.random.categorical(k_a, log_ref[x])
    b = jax.random.categorical(k_b, log_ref[x])
    g = group[ann]
    win = jax.random.bernoulli(k_l, jax.nn.sigmoid(r[g, x, a] - r[g, x, b]))
    valid = (a != b).astype(r.dtype)
    pairs = mm.AnnotatedPairs(x, jnp.where(win, a, b), jnp.where(win, b, a), valid / jnp.sum(valid), ann)
    return r, log_ref, pairs, group


def win_rates(logp, log_ref, rewards):
    """Each group's win rate of ``pi`` against ``pi_ref``: ``mean_x sum_{y,y'} pi(y) pi_ref(y')
    sigmoid(r_u(y) - r_u(y'))``, ``(U,)`` (1/2 for ``pi = pi_ref``)."""
    p = jax.nn.sigmoid(rewards[:, :, :, None] - rewards[:, :, None, :])
    return jnp.mean(jnp.einsum("xa,uxab,xb->ux", jnp.exp(logp), p, jnp.exp(log_ref)), axis=-1)


def minority_pairs(pairs: mm.AnnotatedPairs, group) -> mm.AnnotatedPairs:
    """The pairs labelled by the minority (group 1) alone: weights ``w_i 1[group(a_i) = 1]``, renormalised
    to sum 1 (the data of minority-only RLHF, the control of ``maxmin-keeps-majority``)."""
    w = pairs.weight * (group[pairs.annotator] == 1).astype(pairs.weight.dtype)
    return pairs._replace(weight=w / jnp.maximum(jnp.sum(w), 1e-30))


def maxmin_program(cfg) -> Program:
    """EM (U = 2 and U = 1) and the pooled BT fit, one EM iteration (and ``m_steps`` BT steps) per step."""
    X, N = cfg["mm_prompts"], cfg["mm_responses"]
    H = cfg["mm_majority"] + cfg["mm_minority"]
    model = tabular_reward(X, N)
    em2 = mm.mixture_em(H, 2, model, m_steps=cfg["m_steps"])
    em1 = mm.mixture_em(H, 1, model, m_steps=cfg["m_steps"])
    bt = reward_fitter(model)

    def init(h, key):
        k_inst, k2, k1 = jax.random.split(key, 3)
        r, log_ref, pairs, group = maxmin_instance(k_inst, cfg, h["rho"])
        return {"data": (r, log_ref, pairs, group), "em2": em2.init(k2), "em1": em1.init(k1),
                "bt": bt.init(model.init(k1)), "bt_minority": bt.init(model.init(k1))}

    def step(s, h):
        r, log_ref, pairs, group = s["data"]
        e2, _ = em2.update(s["em2"], pairs, None, h)
        e1, _ = em1.update(s["em1"], pairs, None, h)
        lr = {"learning_rate": h["reward_learning_rate"]}
        b, _ = jax.lax.scan(lambda st, _: bt.update(st, None, pairs, lr), s["bt"], None, length=cfg["m_steps"])
        bm, _ = jax.lax.scan(lambda st, _: bt.update(st, None, minority_pairs(pairs, group), lr), s["bt_minority"],
                             None, length=cfg["m_steps"])
        return {**s, "em2": e2, "em1": e1, "bt": b, "bt_minority": bm}

    def observe(s, h):
        r, log_ref, pairs, group = s["data"]
        beta = h["beta"]
        r2 = mm.center_rewards(em2.rewards(s["em2"].params, None), log_ref)
        r1 = mm.center_rewards(em1.rewards(s["em1"].params, None), log_ref)
        rbt = mm.center_rewards(s["bt"].params, log_ref)
        rmin = mm.center_rewards(s["bt_minority"].params, log_ref)
        # the fitted and the true rewards' max-min policies in one dual solve; with one group the max-min
        # policy is the group's RLHF optimum (w* = 1)
        both = jax.vmap(lambda rr: mm.maxmin_policy(log_ref, rr, beta, cfg["dual_steps"]))(jnp.stack([r2, r]))
        pols = {"maxmin": both[0], "merged": optimal_policy(log_ref, r1[0], beta),
                "single": optimal_policy(log_ref, rbt, beta), "oracle": both[1],
                "minority_only": optimal_policy(log_ref, rmin, beta)}
        out = {}
        for name, lp in pols.items():
            out[f"F_{name}"] = mm.group_objectives(lp, log_ref, r, beta)
            out[f"win_{name}"] = win_rates(lp, log_ref, r)
        assign = jnp.argmax(s["em2"].log_resp, axis=-1)
        agree = jnp.mean((assign == group).astype(r.dtype))
        out["assign_acc"] = jnp.maximum(agree, 1.0 - agree)  # up to label switching
        return out

    return Program(init, step, observe)


def maxmin_stage(cfg, progress=False) -> dict:
    """The EM / max-min stage: metrics ``(seeds, logs, ...)`` of the conflicting groups (``rho``) at the top
    level, and under ``"agree"`` the same pipeline on groups that agree (``rho = AGREE_RHO``, the control of
    ``maxmin-keeps-majority``); the two configs share one sweep (one compile)."""
    leaves = {"beta": [cfg["mm_beta"]] * 2, "rho": [cfg["rho"], AGREE_RHO],
              "reward_learning_rate": [cfg["reward_learning_rate"]] * 2}
    res = _sweep(maxmin_program(cfg), leaves, cfg["seeds"], cfg["em_steps"], cfg["em_steps"] // 2, progress)
    out = {k: (v if k == "steps" else v[0]) for k, v in res.items()}
    out["agree"] = {k: v[1] for k, v in res.items() if k != "steps"}
    return out


def maxmin_trainer_program(cfg) -> Program:
    """The registered ``maxmin-rlhf`` trainer (exact mode, Adam) on the same instances, from ``pi_ref``."""
    X, N = cfg["mm_prompts"], cfg["mm_responses"]
    H = cfg["mm_majority"] + cfg["mm_minority"]
    pol = tabular(X, N)
    trainer = TRAINERS.get("maxmin-rlhf")(pol, num_annotators=H, em_steps=cfg["em_steps"], m_steps=cfg["m_steps"],
                                         mode="exact", optimizer="adam")

    def problem(s):
        r, log_ref, pairs, _ = s["data"]
        return Problem(jnp.arange(X), log_ref, pairs, jnp.zeros((X, N, 1)))

    def init(h, key):
        k_inst, k_em, _ = jax.random.split(key, 3)
        data = maxmin_instance(k_inst, cfg, h["rho"])
        s = {"data": data}
        return {**s, "train": trainer.init(data[1], problem(s), h, k_em)}

    def step(s, h):
        train, _ = trainer.update(s["train"], problem(s), h, jax.random.key(0))  # exact mode: key unused
        return {**s, "train": train}

    def observe(s, h):
        r, log_ref, _, _ = s["data"]
        lp = pol.log_probs(s["train"].params, jnp.arange(X))
        fitted = s["train"].reward_params["rewards"]
        w = mm.maxmin_weights(log_ref, fitted, h["beta"], cfg["dual_steps"])
        return {"F_true": mm.group_objectives(lp, log_ref, r, h["beta"]),
                "win_true": win_rates(lp, log_ref, r),
                "fitted_gap": mm.maxmin_dual(w, log_ref, fitted, h["beta"])
                - jnp.min(mm.group_objectives(lp, log_ref, fitted, h["beta"]))}

    return Program(init, step, observe)


def maxmin_trainer_stage(cfg, progress=False) -> dict:
    leaves = {"beta": [cfg["mm_beta"]], "rho": [cfg["rho"]], "reward_learning_rate": [cfg["reward_learning_rate"]],
              "learning_rate": [cfg["trainer_learning_rate"]]}
    steps = cfg["trainer_steps"]
    res = _sweep(maxmin_trainer_program(cfg), leaves, cfg["seeds"], steps, steps // 5, progress)
    return {k: (v if k == "steps" else v[0]) for k, v in res.items()}


# ----------------------------------------------------------------------------------------------- GPM
def cyclic_preference(num_responses: int, p_win: float) -> np.ndarray:
    """The regular tournament: ``y`` beats ``y + d (mod N)`` for ``d = 1..(N-1)/2`` with probability ``p_win``."""
    n = num_responses
    P = np.full((n, n), 0.5)
    for i in range(n):
        for d in range(1, (n - 1) // 2 + 1):
            P[i, (i + d) % n], P[(i + d) % n, i] = p_win, 1.0 - p_win
    return P


def gpm_program(cfg) -> Program:
    """GPM and BT fits (one Adam step each per step) on cyclic (``h["cyclic"] = 1``) or BT data; with
    ``h["shuffle_labels"] = 1`` the votes are permuted over the pairs (labels carry no information)."""
    X, N, M = cfg["gpm_prompts"], cfg["gpm_responses"], cfg["pairs_per_prompt"]
    gmodel = gp.tabular_gpm(X, N, cfg["gpm_dim"])
    bmodel = tabular_reward(X, N)
    base = jnp.asarray(cyclic_preference(N, cfg["p_win"]))
    tx = make_optimizer("adam")

    def losses(params, pairs):
        return (gp.gpm_loss(gmodel.embeddings(params["gpm"], None), pairs),
                bt_loss(bmodel.rewards(params["bt"], None), pairs))

    def init(h, key):
        k_perm, k_r, k_shuffle, k_a, k_d, k_l, k_init = jax.random.split(key, 7)
        perm = jax.vmap(lambda k: jax.random.permutation(k, N))(jax.random.split(k_perm, X))
        p_cyc = base.astype(jnp.result_type(float))[perm[:, :, None], perm[:, None, :]]
        r = cfg["bt_reward_scale"] * jax.random.normal(k_r, (X, N))
        p_bt = jax.nn.sigmoid(r[:, :, None] - r[:, None, :])
        P = jnp.where(h["cyclic"] > 0.5, p_cyc, p_bt)
        x = jnp.repeat(jnp.arange(X), M)
        a = jax.random.randint(k_a, (X * M,), 0, N)
        b = (a + jax.random.randint(k_d, (X * M,), 1, N)) % N
        win = jax.random.bernoulli(k_l, P[x, a, b])
        # the control's labels: the same votes, permuted over the pairs (independent of which pair they label)
        win = jnp.where(h["shuffle_labels"] > 0.5, win[jax.random.permutation(k_shuffle, X * M)], win)
        pairs = Pairs(x, jnp.where(win, a, b), jnp.where(win, b, a), jnp.full((X * M,), 1.0 / (X * M)))
        params = {"gpm": h["embedding_init_scale"] * gmodel.init(k_init), "bt": bmodel.init(k_init)}
        return {"P": P, "pairs": pairs, "params": params, "opt": {k: tx.init(v) for k, v in params.items()}}

    def step(s, h):
        g_g = jax.grad(lambda p: gp.gpm_loss(gmodel.embeddings(p, None), s["pairs"]))(s["params"]["gpm"])
        g_b = jax.grad(lambda p: bt_loss(bmodel.rewards(p, None), s["pairs"]))(s["params"]["bt"])
        new, opt = {}, {}
        for name, g, lr in (("gpm", g_g, h["gpm_learning_rate"]), ("bt", g_b, h["bt_learning_rate"])):
            upd, opt[name] = tx.update(g, with_hparams(s["opt"][name], {"learning_rate": lr}), s["params"][name])
            new[name] = optax.apply_updates(s["params"][name], upd)
        return {**s, "params": new, "opt": opt}

    def observe(s, h):
        P = s["P"]
        pg = gp.preference_matrix(gmodel.embeddings(s["params"]["gpm"], None))
        rb = bmodel.rewards(s["params"]["bt"], None)
        pb = jax.nn.sigmoid(rb[:, :, None] - rb[:, None, :])
        lg, lb = losses(s["params"], s["pairs"])
        return {"acc_gpm": gp.expected_accuracy(pg, P), "acc_bt": gp.expected_accuracy(pb, P),
                "bayes": gp.bayes_accuracy(P), "loss_gpm": lg, "loss_bt": lb, "P": P}

    return Program(init, step, observe)


def gpm_stage(cfg, progress=False) -> dict:
    """Cyclic (config 0), transitive BT data (config 1) and cyclic data with shuffled labels (config 2, the
    control of ``gpm-fits-cycles``; the same pairs as config 0 by common random numbers): metrics ``(3, seeds,
    logs, ...)`` and the best transitive accuracy per config and seed (enumerated on the host from the final
    ``P``)."""
    leaves = {"cyclic": [1.0, 0.0, 1.0], "shuffle_labels": [0.0, 0.0, 1.0],
              "gpm_learning_rate": [cfg["gpm_learning_rate"]] * 3,
              "bt_learning_rate": [cfg["bt_learning_rate"]] * 3,
              "embedding_init_scale": [cfg["embedding_init_scale"]] * 3}
    steps = cfg["gpm_steps"]
    res = _sweep(gpm_program(cfg), leaves, cfg["seeds"], steps, steps // 10, progress)
    P = np.asarray(res.pop("P"))[:, :, -1]  # (2, seeds, X, N, N)
    trans = np.array([[gp.best_transitive_accuracy(P[c, s]) for s in range(P.shape[1])] for c in range(P.shape[0])])
    return {**res, "transitive": trans}


# ----------------------------------------------------------------------------------------------- claims
GROUPS = ("majority", "minority")


def final_values(stage: dict) -> dict:
    """``{metric: array (seeds, ...)}``: the last logged value of every metric of one config of a stage."""
    return {k: np.asarray(v)[:, -1] for k, v in stage.items() if k != "steps" and not isinstance(v, dict)}


def per_group(a) -> dict:
    """``{"majority": mean_seeds a[:, 0], "minority": mean_seeds a[:, 1]}`` of an ``(seeds, 2)`` array."""
    return {g: float(v) for g, v in zip(GROUPS, np.mean(a, axis=0))}


def worst_group(F) -> np.ndarray:
    """Per seed ``min_u F_u(pi)`` of an ``(seeds, U)`` array of group objectives."""
    return np.asarray(F).min(axis=-1)


def majority_win_change(fin: dict) -> np.ndarray:
    """Per seed ``win_majority(pi_MaxMin) - win_majority(pi_single)``: what MaxMin costs the majority."""
    return fin["win_maxmin"][:, 0] - fin["win_single"][:, 0]


def relative_minority_gain(fin: dict) -> float:
    """``mean win_minority(pi_MaxMin) / mean win_minority(pi_single) - 1``, the quantity behind the paper's
    "improves the win-rate for minority groups by over 33%"."""
    return float(np.mean(fin["win_maxmin"][:, 1]) / np.mean(fin["win_single"][:, 1]) - 1.0)


def maxmin_measured(fin: dict, t_fin: dict) -> dict:
    """The per-group table of every policy of the MaxMin stage (means over seeds) and the pipeline's
    diagnostics, reported beside the two MaxMin claims."""
    return {
        "objective per group (mean over seeds)": {
            "single-reward RLHF": per_group(fin["F_single"]), "MaxMin-RLHF": per_group(fin["F_maxmin"]),
            "MaxMin with the groups merged (U = 1)": per_group(fin["F_merged"]),
            "MaxMin trainer (paper's Algorithm)": per_group(t_fin["F_true"]),
            "oracle max-min (true rewards)": per_group(fin["F_oracle"])},
        "win rate vs pi_ref per group (mean over seeds)": {
            "single-reward RLHF": per_group(fin["win_single"]), "MaxMin-RLHF": per_group(fin["win_maxmin"]),
            "MaxMin trainer (paper's Algorithm)": per_group(t_fin["win_true"]),
            "oracle max-min (true rewards)": per_group(fin["win_oracle"])},
        "seeds with worst-group objective > 0": {"MaxMin-RLHF": float(np.mean(worst_group(fin["F_maxmin"]) > 0)),
                                                 "single-reward RLHF": float(np.mean(worst_group(fin["F_single"]) > 0))},
        "EM annotator assignment accuracy (mean)": _mean(fin["assign_acc"]),
        "trainer: fitted max-min value minus its worst-group objective (mean)": _mean(t_fin["fitted_gap"]),
    }


def claim_maxmin_minority(cfg, st, tr) -> dict:
    """``maxmin-serves-minority``: subject ``measure(min_u F_u(pi_MaxMin) per seed)``, control the same of
    single-reward RLHF (the pooled BT reward's optimum), both on the conflicting groups."""
    fin, t_fin = final_values(st), final_values(tr)
    subject = claims.measure(worst_group(fin["F_maxmin"]))
    control = claims.measure(worst_group(fin["F_single"]))
    gain = relative_minority_gain(fin)
    measured = {**maxmin_measured(fin, t_fin),
                "minority win rate, MaxMin relative to single-reward RLHF (paper: over +33%)": gain,
                "minority objective under single-reward RLHF (mean, v2's second condition)": _mean(fin["F_single"][:, 1])}
    note = ("F_u is each group's true KL-regularised objective with its reward centred under pi_ref, so the "
            "reference is worth 0 to everyone and the exact max-min policy of the true rewards never serves the "
            "worst group below 0 (oracle row); the fitted pipeline approaches it through EM's reward estimates. "
            "Single-reward RLHF fits one BT reward on the pooled labels: with 20 of 22 annotators in the majority "
            "it is almost the majority's reward, which the minority's anti-correlated reward rates below the "
            f"reference. The minority's win rate rises by {100 * gain:+.0f}% relative to single-reward RLHF "
            "(the paper's abstract: over 33% on language models; the size depends on our rho and beta, so it is "
            "reported, not checked). The majority pays for it: see maxmin-keeps-majority.")
    return claims.evaluate(claims.by_id(CLAIMS, "maxmin-serves-minority"), subject, control, measured=measured,
                           note=note)


def claim_maxmin_majority(cfg, st, tr) -> dict:
    """``maxmin-keeps-majority``: subject ``measure(win_maj(MaxMin) - win_maj(single))`` per seed on the
    conflicting groups; control ``measure(win_maj(minority-only RLHF) - win_maj(single))`` on the same
    seeds; the same pipeline on groups that agree (``st["agree"]``) is reported."""
    fin, agree = final_values(st), final_values(st["agree"])
    subject = claims.measure(majority_win_change(fin))
    control = claims.measure(fin["win_minority_only"][:, 0] - fin["win_single"][:, 0])
    measured = {"win rate vs pi_ref per group (mean over seeds)": {
                    "single-reward RLHF": per_group(fin["win_single"]), "MaxMin-RLHF": per_group(fin["win_maxmin"]),
                    "oracle max-min (true rewards)": per_group(fin["win_oracle"]),
                    "minority-only RLHF (control)": per_group(fin["win_minority_only"])},
                "oracle max-min minus single-reward RLHF, majority win rate (mean)":
                    _mean(fin["win_oracle"][:, 0] - fin["win_single"][:, 0]),
                "groups that agree (rho = 1; v3's first control, which could not fail), win rate per group": {
                    "single-reward RLHF": per_group(agree["win_single"]), "MaxMin-RLHF": per_group(agree["win_maxmin"])}}
    note = ("On anti-correlated group rewards the max-min policy must move away from the majority's optimum to lift "
            "the minority: the exact max-min of the true rewards (oracle) costs the majority about as much as the "
            "fitted pipeline, so the loss is the Egalitarian objective's price on this toy, not an estimation "
            "error. The paper's 'without compromising' headline on language models does not carry over to "
            "conflicting rewards here. Minority-only RLHF (control) shows what serving only the minority "
            "would cost the majority. On groups that agree (reported) there is nothing to trade and the majority "
            "keeps its win rate.")
    return claims.evaluate(claims.by_id(CLAIMS, "maxmin-keeps-majority"), subject, control, measured=measured,
                           note=note)


def claim_gpm(cfg, st) -> dict:
    """``gpm-fits-cycles``: subject ``measure(bayes - acc_GPM)`` per seed on cyclic data, control the same of
    the GPM fitted to the same pairs with shuffled labels (config 2); BT on the same pairs is reported."""
    acc_g = np.asarray(st["acc_gpm"])[:, :, -1]  # (2, seeds)
    acc_b = np.asarray(st["acc_bt"])[:, :, -1]
    bayes = np.asarray(st["bayes"])[:, :, -1]
    trans = np.asarray(st["transitive"])
    cyc, bt_data, shuffled = 0, 1, 2
    subject = claims.measure(bayes[cyc] - acc_g[cyc])
    control = claims.measure(bayes[shuffled] - acc_g[shuffled])
    measured = {
        "cyclic data": {"GPM accuracy": _mean(acc_g[cyc]), "BT accuracy": _mean(acc_b[cyc]),
                        "Bayes rate": _mean(bayes[cyc]), "best transitive accuracy": _mean(trans[cyc]),
                        "seeds with GPM within tolerance": float(np.mean(acc_g[cyc] >= bayes[cyc] - GPM_TOL)),
                        "BT shortfall from the Bayes rate (v2's control)": _mean(bayes[cyc] - acc_b[cyc])},
        "cyclic data, shuffled labels (the control)": {"GPM accuracy": _mean(acc_g[shuffled]),
                                                       "BT accuracy": _mean(acc_b[shuffled])},
        "transitive (BT) data, beyond the paper": {"GPM accuracy": _mean(acc_g[bt_data]),
                                                   "BT accuracy": _mean(acc_b[bt_data]),
                                                   "Bayes rate": _mean(bayes[bt_data])},
    }
    note = ("Accuracy is the expected accuracy on a fresh labelled pair (exact, no test-set noise): the Bayes rate "
            f"is p_win = {cfg['p_win']} (labels are noisy), where the paper's deterministic labels give 100%. BT's "
            "predictions are a ranking, so its accuracy cannot exceed the best transitive accuracy (0.66 here, "
            "0.24 below the Bayes rate): BT's shortfall (the paper's point, v2's control) is reported, not used as "
            "the control, since that bound fixes its verdict; its value (BT near 0.5, as the paper's Cyclic No. "
            "3) is measured. The control is the GPM on shuffled labels, which reaches the Bayes rate only if "
            "the fit sees the preference other than through the votes. On transitive data (reported, not "
            f"claimed) the GPM is {_mean(acc_g[bt_data]) - _mean(acc_b[bt_data]):+.3f} from BT and "
            f"{_mean(acc_g[bt_data]) - _mean(bayes[bt_data]):+.3f} from the Bayes rate: both models only differ "
            "by the statistical error of the finite pairs (the GPM contains BT but has more parameters).")
    return claims.evaluate(claims.by_id(CLAIMS, "gpm-fits-cycles"), subject, control, measured=measured, note=note)


def _mean(a):
    return float(np.mean(a))


# ----------------------------------------------------------------------------------------------- outputs
def tables(ctx, st, tr, gs):
    rows = []
    for name in ("single", "maxmin", "merged", "oracle"):
        f = np.asarray(st[f"F_{name}"])[:, -1]
        w = np.asarray(st[f"win_{name}"])[:, -1]
        rows.append({"policy": name, "F_majority": f[:, 0].mean(), "F_minority": f[:, 1].mean(),
                     "win_majority": w[:, 0].mean(), "win_minority": w[:, 1].mean()})
    f, w = np.asarray(tr["F_true"])[:, -1], np.asarray(tr["win_true"])[:, -1]
    rows.append({"policy": "maxmin-trainer", "F_majority": f[:, 0].mean(), "F_minority": f[:, 1].mean(),
                 "win_majority": w[:, 0].mean(), "win_minority": w[:, 1].mean()})
    ctx.write_csv("maxmin.csv", rows)
    g_rows = []
    for c, data in enumerate(("cyclic", "transitive", "cyclic, shuffled labels")):
        g_rows.append({"data": data, "acc_gpm": np.asarray(gs["acc_gpm"])[c, :, -1].mean(),
                       "acc_bt": np.asarray(gs["acc_bt"])[c, :, -1].mean(),
                       "bayes": np.asarray(gs["bayes"])[c, :, -1].mean(), "best_transitive": gs["transitive"][c].mean()})
    ctx.write_csv("gpm.csv", g_rows)


def plots(ctx, st, tr, gs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    names = ("single", "merged", "maxmin", "oracle")
    f = np.stack([np.asarray(st[f"F_{n}"])[:, -1].mean(0) for n in names] + [np.asarray(tr["F_true"])[:, -1].mean(0)])
    x = np.arange(len(names) + 1)
    ax[0].bar(x - 0.2, f[:, 0], 0.4, label="majority")
    ax[0].bar(x + 0.2, f[:, 1], 0.4, label="minority")
    ax[0].axhline(0, color="k", lw=1)
    ax[0].set_xticks(x, ["single RLHF", "MaxMin U=1", "MaxMin", "oracle", "MaxMin trainer"], fontsize=8)
    ax[0].set(ylabel="F_u(pi) (0 = pi_ref)", title="MaxMin-RLHF: per-group objective")
    ax[0].legend()
    steps = gs["steps"]
    for c, (data, ls) in enumerate((("cyclic", "-"), ("transitive", "--"))):
        ax[1].plot(steps, np.asarray(gs["acc_gpm"])[c].mean(0), ls, color="C0", label=f"GPM, {data}")
        ax[1].plot(steps, np.asarray(gs["acc_bt"])[c].mean(0), ls, color="C1", label=f"BT, {data}")
    ax[1].axhline(np.asarray(gs["bayes"])[0, :, -1].mean(), color="k", ls=":", lw=1, label="Bayes (cyclic)")
    ax[1].axhline(gs["transitive"][0].mean(), color="r", ls=":", lw=1, label="best transitive (cyclic)")
    ax[1].set(xlabel="fit step", ylabel="expected accuracy", title="GPM vs BT on cyclic and transitive data")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    ctx.savefig(fig, "preference_models.png")


def reproduce(ctx) -> list:
    """Suite ``preference-models``: stages ``maxmin``, ``maxmin-trainer``, ``gpm``, ``minority-gap``; the claims
    of :data:`CLAIMS`."""
    cfg = settings(ctx.scale)
    ctx.config.update({"scale": ctx.scale, **cfg, "thresholds": {"gpm_tol": GPM_TOL, "maxmin_floor": MAXMIN_FLOOR,
                                                            "majority_tol": MAJORITY_TOL, "agree_rho": AGREE_RHO}})
    st = ctx.stage("maxmin", lambda: maxmin_stage(cfg, ctx.progress))
    tr = ctx.stage("maxmin-trainer", lambda: maxmin_trainer_stage(cfg, ctx.progress))
    gs = ctx.stage("gpm", lambda: gpm_stage(cfg, ctx.progress))
    mg = ctx.stage("minority-gap", lambda: GAP.gap_stage(cfg, _sweep, ctx.progress))
    tables(ctx, st, tr, gs)
    GAP.write_outputs(ctx, mg)
    plots(ctx, st, tr, gs)
    return [claim_maxmin_minority(cfg, st, tr), claim_maxmin_majority(cfg, st, tr), claim_gpm(cfg, gs),
            *GAP.claim_records(mg)]


SUITES.register("preference-models", reproduce,
                meta={"description": "MaxMin-RLHF (reward mixture by EM, max-min policy) serves a minority group that "
                                     "single-reward RLHF does not; the general preference model fits cyclic "
                                     "preferences that Bradley-Terry cannot",
                      "claims": CLAIMS, "quick_seconds": 40})  # cold-cache seconds, a scheduling hint


RESTATED = (
    {"id": "maxmin-serves-minority",
     "old_statement": "Single-reward RLHF leaves the minority below the reference while MaxMin's worst-off group ends "
                      "above it.",
     "old_check": "mean min_u F_u(pi_MaxMin) > 0 AND mean F_minority(single-reward RLHF) < 0; control: MaxMin with "
                  "U = 1 (equal to single-reward RLHF) judged by the same compound check.",
     "old_verdict": "holds (quick and full); control fails", "new_id": "maxmin-serves-minority",
     "why": "one scalar; the single-reward half of the old check is now the control (a run that could pass: a "
            "pooled reward that served both groups would); the old control could not pass the compound check."},
    {"id": "(part of maxmin-serves-minority)",
     "old_statement": "Not checked: the paper's 'without compromising the performance of majority groups'; v2 "
                      "said in its page that the majority loses (0.67 -> 0.58).",
     "old_check": "none.", "old_verdict": "not a claim", "new_id": "maxmin-keeps-majority",
     "why": "the v2 claim was weaker than the paper: the paper claims both halves; the majority's half is now its "
            "own claim, and it fails (the Egalitarian objective's price on conflicting rewards). Its first control "
            "(groups that agree, rho = 1) could not fail: with one reward the max-min policy is single-reward "
            "RLHF's; the control is now minority-only RLHF (reported: the rho = 1 run)."},
    {"id": "gpm-fits-cycles",
     "old_statement": "The GPM reaches the Bayes rate on cyclic preferences where BT cannot.",
     "old_check": "mean GPM accuracy >= mean Bayes rate - 0.02; control: BT on the same pairs.",
     "old_verdict": "holds (quick and full); control fails", "new_id": "gpm-fits-cycles",
     "why": "the same check written as one scalar (the mean shortfall), now with an interval over seeds; the "
            "control is now the GPM on shuffled labels (a run that passes if the pipeline leaks the preference): "
            "BT's accuracy is capped by the best transitive accuracy (0.66 < Bayes 0.9 - 0.02), so v2's control "
            "could not pass; BT's shortfall is still reported."},
)
"""The suite's v2 claims and how contract v3 restates them (the old verdicts are those of the v2 page)."""


def claims_tables(full_dir, quick_dir) -> str:
    """The markdown of ``papers/preference_models.md``'s claims sections, read from a full and a quick run's
    ``summary.json``: the verdict table, the checks changed after a run, the table "claims restated in v3"."""
    from alignjax_experiments import _claims_page as page

    full, quick = page.load_summary(full_dir), page.load_summary(quick_dir)
    lines = [*page.verdict_table(quick, full), "", *page.history_lines(full), "", "### Claims restated in v3", "",
             *page.restated_table(RESTATED, quick, full)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m alignjax_experiments.preference_models FULL_DIR QUICK_DIR
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m alignjax_experiments.preference_models FULL_DIR QUICK_DIR")
    print(claims_tables(sys.argv[1], sys.argv[2]), end="")
