"""Suite ``ranking-accuracy``: Chen et al. 2024 (arXiv 2405.19534), "Preference Learning Algorithms
Do Not Learn Preference Rankings", replayed at toy scale on a tiny token language.

Pipeline (all from one seed; see ``papers/ranking_accuracy.md``), one stage per computation
(:meth:`~alignjax.results.SuiteContext.stage`; the iterative ones run on the engine,
:func:`alignjax.sweep.run_sweep`):

1. ``sft``: a hidden Markov language (:mod:`alignjax.data.language`) and its raters; SFT of a
   tiny causal transformer on it -> ``pi_ref`` (one run of the engine);
2. ``pairs``: preference pairs ``(y1 ~ pi_ref, y2 ~ pi_ref at temperature T2)`` voted on by
   ``k`` noisy Bradley–Terry raters (``alpha`` = vote fraction of the majority response ``y_w``)
   and their reference log-probs;
3. ``tabular``: Thm 3.1 on tabular policies (soft-label DPO to convergence; a sweep over beta);
4. ``train``: offline fine-tuning the way practitioners do (Adam, a few epochs) with DPO over
   ``beta``, gamma-scaled DPO over ``gamma``, IPO, cDPO, rDPO, SimPO, RPO: **one sweep** whose
   rows are loss id x beta x gamma (array hyperparameters), plus online IPO (a sweep over beta);
5. ``evaluate``: the best-validation checkpoint of each run, observed vs idealized ranking
   accuracy, Thm 4.1 at every checkpoint, flips vs difficulty, win rate (ground-truth raters)
   vs ranking accuracy as a function of the distance ``KL(pi || pi_ref)`` (Monte Carlo).

Then :func:`claim_records` (stage outputs -> contract-v3 records of :data:`CLAIMS`) and :func:`report`
(tables and plots).

Claims (declared in :data:`CLAIMS` before any measurement code). Each is one scalar, measured for a
subject and for its own control; where it averages training pairs (or checkpoints, for the win-rate
correlations) its 95% interval is a bootstrap over them (:func:`alignjax.claims.measure`):

* (v2's ``thm31-dpo-optimum``, tabular soft-label DPO reaching ``h* = log pi_ref(y_w)/pi_ref(y_l) +
  logit(alpha)/beta`` (Eq. 2), is a unit test since v3: a convergent descent to a closed form is
  guaranteed by the optimiser; the suite still reports the tabular run's error beside ``alignment-gap``,
  whose control is that run.)
* ``alignment-gap`` / ``-unnormalised``: ``median_beta (R*(beta) - R(beta)) >= 0.10`` (length-normalised
  and not); controls: the tabular optimum's ``R~``, and ``R*`` as the released code computes it.
* ``table1-rstar-is-the-code-variant`` (beyond the paper): ``min_panel min(min_beta R*_code - 0.67,
  median_beta R*_code - 0.93) >= 0`` over two rater panels (4 raters ties dropped, 5 raters); control:
  Eq. 3's ``R*``.
* ``few-misranked-pairs-flip``: the flipped fraction of misranked pairs at beta = 0.1 is ``< 0.10``
  (Sec. 4.1); control: the tabular optimum.
* ``ranking-accuracy-barely-moves``: ``median_beta |R~ - R~(pi_ref)| <= 0.016`` at DPO's best-validation
  checkpoints (Sec. 1, Sec. 7, App. C.3 Tables 2-5); control: SimPO, no reference in its loss.
* ``winrate-ranking-correlation-near`` / ``winrate-ranking-correlation``: the sign of Pearson(R, win
  rate) near (``> 0``) and far (``< 0``, Fig. 4's anti-correlation) from ``theta_ref``; control: the
  same with validation-pair accuracy.
* ``alignment-gap-other-methods`` (beyond the paper): ``min_method median_beta (R*_own - R) >= 0.10``;
  control: the untrained reference.

Fig. 2's "loss falls while the ranking stays wrong" is algebra (a unit test in
``tests/test_ranking_metrics.py``).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignjax import claims
from alignjax import losses as L
from alignjax.data import language as lg
from alignjax.experiment import Program
from alignjax.metrics import ranking as rk
from alignjax.policies.sequence import sequence_policy
from alignjax.registry import SUITES
from alignjax.results import SuiteContext
from alignjax.sft import (bucketed_sequence_logps, length_buckets, logged_step_keys, online_ipo_step,
                          preference_step, sft_step)
from alignjax.sweep import Grid, run_sweep
from alignjax_experiments import _orpo_lambda as ORPO
from alignjax_experiments import _ranking_many as MANY

# ============================================================================ settings
SOURCE = "Chen et al. 2024 (arXiv 2405.19534)"
LOSS_NAMES = ("dpo", "ipo", "cdpo", "rdpo", "simpo", "rpo", "gamma_dpo")
METHODS = LOSS_NAMES + ("online_ipo",)
"""Every method's name, indexed by its id (the offline rows' ``loss_id``; online IPO last)."""
DPO, IPO, CDPO, RDPO, SIMPO, RPO, GAMMA_DPO, ONLINE_IPO = range(len(METHODS))
PAPER_BETAS = (0.01, 0.1, 1.0, 5.0, 10.0)

# ============================================================================ the claims (contract v3)
GAP_THRESHOLD = 0.10
"""A gap counts as large from 10 points of ranking accuracy (the paper's gaps are 19-59 points, Sec. 3.3)."""
TABLE1_R_STAR = {"min": 0.67, "median": 0.93}
"""Table 1's unnormalised R* column: the smallest min and the smallest median over beta of its four models."""
TABLE1_PER_MODEL = {"Zephyr-7B-DPO": (0.90, 0.99, 1.00), "Tulu-2-DPO-7B": (0.91, 0.99, 1.00),
                    "Gemma-7B-IT": (0.67, 0.93, 1.00), "Llama-2-7B-chat": (0.91, 0.99, 1.00)}
"""Table 1 (p. 6), column R*: min / median / max over beta in {0.01, 0.1, 1, 5, 10}, per released model."""
FLIP_THRESHOLD = 0.10
"""Sec. 4.1: fewer than 10% of the misranked pairs are flipped."""
MOVE_THRESHOLD = 0.014
"""The largest change of length-normalised ranking accuracy between a model's SFT and DPO checkpoints over the
splits of the paper's App. C.3 Tables 2-5 that measure what we measure (two responses, ties dropped): Zephyr-7B-SFT
-> Zephyr-7B-DPO, HH-RLHF test +1.4 and SHP test -1.4 points (our arithmetic on the printed numbers, June-2024
draft). Declared first as 0.016, from a row that counts ties (see the claim's history)."""
MOVE_THRESHOLD_V1 = 0.016
"""The first declaration's threshold (f022beb): Zephyr's AlpacaFarm row with ties included (Table 5, 43.9 -> 42.3)."""
THM31_TOL = 1e-3
"""Thm 3.1's check: relative error ``|h - h*| / (1 + |h*|) <= 1e-3`` (fixed in v2 before its first run)."""
RATER_PANELS = (4, 5)
"""The rater panels ``table1-rstar-is-the-code-variant`` is judged on, worst case: 4 raters with ties dropped
(Table 1's Alpaca Farm setting, adopted after the claim failed with 5) and 5 raters (the setting before)."""

_THM31 = "max over beta and pairs of |h - h*| / (1 + |h*|) after tabular soft-label DPO"
_GAP_LEN = "median over beta of R~* (Eq. 3, length-normalised) - R~ (best-validation checkpoint)"
_GAP = "median over beta of R* (Eq. 3) - R (best-validation checkpoint)"
_CODE = "min over rater panels of min(min_beta R* - 0.67, median_beta R* - 0.93), R* as the released code computes it"
_FLIP = "fraction of the reference's misranked training pairs ranked correctly at the best checkpoint, beta = 0.1"
_MOVE = ("median over beta of |R~(best-validation checkpoint) - R~(pi_ref)|, length-normalised ranking accuracy "
         "on the training pairs")
_NEAR = "Pearson(ranking accuracy on training pairs, win rate) over checkpoints at distance <= the median"
_FAR = "Pearson(ranking accuracy on training pairs, win rate) over checkpoints at distance > the median"
_TREND = ("(R(gamma_hi) - R(gamma_lo)) x (win(gamma_hi) - win(gamma_lo)), best-validation checkpoints, gamma_lo / "
          "gamma_hi the smallest / largest gamma >= 1.25 of the grid")
_OTHER = "min over IPO, cDPO, rDPO, online IPO of the median over beta of (own idealized R - observed R)"

_REGIME = ("tiny causal transformer SFT'd on a hidden Markov language; responses of ~55 tokens (at most 96), so the "
           "pair difficulty c spans about +-150 nats; 512 (quick) / 1024 (full) training pairs, 4 Bradley-Terry "
           "raters, tied votes dropped as in Table 1; DPO trained as the paper does (RMSProp, lr 1e-4, 2 epochs, "
           "best-validation checkpoint) at the paper's beta grid {0.01, 0.1, 1, 5, 10}; intervals: bootstrap over "
           "training pairs")

CLAIMS = claims.declared([
    claims.ClaimSpec(
        id="alignment-gap",
        statement=f"Preference-tuned models rank far fewer training pairs correctly than the idealized optimum would: "
                  f"on the length-normalised columns, median over beta of R~* - R~ >= {GAP_THRESHOLD}.",
        source=f"{SOURCE}, Table 1 (columns R~ and R~*) and Sec. 3.3",
        paper_value="observed R~ 53-54% vs median R~* 73-98%; gaps of 19-59 points",
        setting=_REGIME + "; the paper measures released 7B models, we measure our own DPO run at each beta",
        check=claims.Check(_GAP_LEN, ">=", GAP_THRESHOLD, "docs/thresholds.md#alignment-gap: half the paper's smallest "
                                                          "gap (19 points, Table 1, Sec. 3.3)"),
        control="Tabular soft-label DPO run to Thm 3.1's optimum on the same pairs, its R~ measured the same way (its "
                "per-sequence log-probs divided by the lengths): a learner that reaches the optimum; its R~ need not "
                "equal R~* (Eq. 3 normalises only the reference), so it is measured, not zero by construction."),
    claims.ClaimSpec(
        id="alignment-gap-unnormalised",
        statement=f"The same gap on the unnormalised columns, R* by Eq. 3: median over beta of R* - R >= "
                  f"{GAP_THRESHOLD}.",
        source=f"{SOURCE}, Table 1 (columns R and R*), Eq. 3", paper_value="observed R 40-42% vs median R* 93-99%",
        setting=_REGIME,
        check=claims.Check(_GAP, ">=", GAP_THRESHOLD, "docs/thresholds.md#alignment-gap-unnormalised: alignment-gap's "
                                                      "10 points; about a fifth of Table 1's smallest unnormalised gap"),
        control="The same gap with R* computed as the authors' released code computes it (reference factor "
                "log p(y_w)/log p(y_l), rlhf_minimizer_client.py) against the same DPO runs."),
    claims.ClaimSpec(
        id="table1-rstar-is-the-code-variant",
        statement="Table 1's unnormalised R* column (min >= 67%, median >= 93% over beta for every model) is what the "
                  "authors' released code computes (reference factor log p(y_w)/log p(y_l), a ratio of "
                  "log-likelihoods), not Eq. 3 (likelihood ratio p(y_w)/p(y_l)): on our pairs the code's variant "
                  "falls in Table 1's range with either rater panel.",
        source="beyond the paper: a finding of ours, from Chen et al. 2024 Table 1 and Eq. 3 and the released code "
               "(rlhf_minimizer_client.py, _compute_likelihood_ratios_helper, normalized=False branch, run by "
               "calculate_upper_bound_rlhf.py)",
        paper_value={"Table 1, R* min/median/max": {k: list(v) for k, v in TABLE1_PER_MODEL.items()}},
        setting=_REGIME + "; the code also ranks ratios within 5% of 1 as ties and needs >= 1.05 to rank y_w first "
                          "(applied here); judged on the worse of two rater panels over the same pairs: 4 raters "
                          "with ties dropped (Table 1's setting, adopted in v2 after this claim failed with 5 "
                          "raters) and 5 raters",
        check=claims.Check(_CODE, ">=", 0.0, "Table 1: the smallest min (67%, Gemma-7B-IT) and the smallest median "
                                             "(93%, Gemma-7B-IT) of the R* column over its four models"),
        control="The same range check on R* computed by Eq. 3 (the paper's formula) from the same pairs and panels.",
        history=(claims.CheckChange(
            claims.Check("min(min_beta R* - 0.67, median_beta R* - 0.93), R* as the released code computes it, "
                         "4 raters with ties dropped", ">=", 0.0, "Table 1"),
            "v2 judged the 4-rater panel only, a setting chosen after the claim failed with 5 raters; v3 takes the "
            "worse of both panels, so its verdict does not depend on that choice (harder).", "v2", easier=False),)),
    claims.ClaimSpec(
        id="few-misranked-pairs-flip",
        statement=f"DPO flips fewer than {FLIP_THRESHOLD:.0%} of the training pairs the reference misranks, at the "
                  "best-validation checkpoint (beta = 0.1).",
        source=f"{SOURCE}, Sec. 4.1 (and Thm 4.1, Fig. 3)", paper_value="< 10%", setting=_REGIME,
        check=claims.Check(_FLIP, "<", FLIP_THRESHOLD, "Sec. 4.1: fewer than 10% of the misranked pairs flip"),
        control="SimPO (no reference: length-normalised log-probs, margin gamma as in the sweep) at beta = 0.1, same "
                "pairs, budget and learning rate, at its own best-validation checkpoint: another offline method "
                "through the same pipeline (judged by no other claim), which could flip as few (or as many) "
                "misranked pairs."),
    claims.ClaimSpec(
        id="ranking-accuracy-barely-moves",
        statement="Preference tuning barely moves ranking accuracy away from the reference model's: at DPO's "
                  "best-validation checkpoint, the median over beta of |R~ - R~(pi_ref)| on the training pairs is "
                  f"at most {MOVE_THRESHOLD:.3f} (1.4 points).",
        source=f"{SOURCE}, Sec. 1 (contribution 3: 'the rankings are rarely flipped (Fig. 2) and the reference "
               "model likelihoods generally determine the ranking accuracy (Fig. 3)'), Sec. 7 ('the modest gain in "
               "ranking accuracy (Fig. 9a)') and App. C.3 Tables 2-5 (the SFT and DPO checkpoints of Zephyr-7B and "
               "Tulu-2-7B); read in the authors' June-2024 draft, places not verified in arXiv v4",
        paper_value="Tables 2-5, SFT -> DPO, over the six pairwise splits without ties: Zephyr-7B |change of R~| <= "
                    "1.4 points, Tulu-2-7B <= 0.9; unnormalised R: <= 0.7 and <= 0.6 (our arithmetic on the printed "
                    "numbers)",
        setting=_REGIME + "; the change is signed per pair (+1 a pair the reference misranks and the checkpoint "
                          "ranks right, -1 the reverse), averaged, then its size taken per beta",
        check=claims.Check(_MOVE, "<=", MOVE_THRESHOLD, "docs/thresholds.md#ranking-accuracy-barely-moves: the "
                                                        "largest SFT -> DPO change in App. C.3 Tables 2-5 over the "
                                                        "pairwise splits without ties (Zephyr, 1.4 points)"),
        control="SimPO (no reference model in its loss) on the common beta grid {0.1, 1, 10}, same pairs, budget "
                "and learning rate, each run at its own best-validation checkpoint, against the same pi_ref: "
                "another offline method through the same pipeline, whose ranking accuracy could move as little (or "
                "as much).",
        history=(claims.CheckChange(
            claims.Check(_MOVE, "<=", MOVE_THRESHOLD_V1, "the largest SFT -> DPO change in App. C.3 Tables 2-5 "
                                                         "(Zephyr, AlpacaFarm with ties, 1.6 points)"),
            "the first threshold came from a row that is not our metric: Table 5 counts ties (a model tie within "
            "eps counts as correct, Def. C.1) and two other splits rank more than two responses (Def. A.8); our R~ "
            "drops tied pairs. Over the comparable splits the largest change is 1.4 points. Found by the review "
            "after the first quick and full runs (both held at 0.016); the new check is harder.", "f022beb",
            easier=False),)),
    claims.ClaimSpec(
        id="winrate-ranking-correlation-near",
        statement="Close to the reference, ranking accuracy and win rate rise together: over the checkpoints of the "
                  "gamma-scaled DPO runs nearer to theta_ref than the median distance ||theta - theta_ref||^2, "
                  "Pearson(R, win rate) > 0.",
        source=f"{SOURCE}, Sec. 5 (settings 1 and 2), Fig. 4",
        paper_value="Fig. 4: ranking accuracy and win rate rise together only near theta_ref",
        setting="ranking accuracy on the training pairs (as the paper's Figs. 4, 9, 10); win rate against pi_ref on "
                "64 (quick) / 128 (full) val prompts under the raters' expected vote (whose reward includes fluency "
                "under the hidden language); gamma in {0, 0.5, 1, 1.5, 2} at beta = 0.1 (the paper: 0-2 in steps of "
                "0.25); distance ||theta - theta_ref||^2 (Fig. 4's axis), split at its median; interval: bootstrap "
                "over checkpoints",
        check=claims.Check(_NEAR, ">", 0.0, "Fig. 4: 'correlated' (sign of the correlation)"),
        control="The same correlation over the checkpoints of the offline IPO runs (beta 0.1, 1, 10; same pairs, budget "
                "and learning rate) nearer to theta_ref than their own median distance: another method's runs, "
                "whose accuracy and win rate could rise together or not."),
    claims.ClaimSpec(
        id="winrate-ranking-correlation",
        statement="Far from the reference, ranking accuracy and win rate are anti-correlated: over the checkpoints of "
                  "the gamma-scaled DPO runs beyond the median distance ||theta - theta_ref||^2, Pearson(R, win "
                  "rate) < 0.",
        source=f"{SOURCE}, Sec. 5 (settings 1 and 2), Fig. 4 (and Figs. 9-10)",
        paper_value="Fig. 4: correlated near theta_ref, then anti-correlated",
        setting="as winrate-ranking-correlation-near; the checkpoints beyond the median distance",
        check=claims.Check(_FAR, "<", 0.0, "Fig. 4: 'anti-correlated' (sign of the correlation)"),
        control="The same correlation over the checkpoints of the offline cDPO runs (beta 0.1, 1, 10; same pairs, "
                "budget and learning rate) beyond their own median distance: another method's runs.",
        history=(claims.CheckChange(
            claims.Check("min(Pearson near - 0.5, (Pearson near - 0.3) - Pearson far), point values", ">=", 0.0,
                         "v2: Pearson near >= 0.5 AND far <= near - 0.3 (thresholds of v2's first version)"),
            "weaker than the paper: v2 asked for a drop of 0.3 in the correlation far from theta_ref where Fig. 4 "
            "shows an anti-correlation; v3 states the sign, split into two claims (near and far).", "v2",
            easier=False),)),
    claims.ClaimSpec(
        id="gamma-trend-together-large-gamma",
        statement="When the reference's influence is strong (gamma >= 1.25 in Eq. 4), ranking accuracy and win rate of "
                  "the best-validation gamma-DPO model move in the same direction as gamma rises: (R(gamma_hi) - "
                  "R(gamma_lo)) x (win(gamma_hi) - win(gamma_lo)) > 0 over the grid's gammas >= 1.25.",
        source=f"{SOURCE}, Sec. 5 (setting 2, Eq. 4) and Fig. 10(a) with its caption (read in the paper's PDF as the "
               "authors' repository angie-chen55/pref-learning-ranking-acc ships it)",
        paper_value="Fig. 10(a) caption: 'For larger gamma values (gamma >= 1.25), ranking accuracy and win rate trend "
                    "in the same direction' (Pythia-2.8B, gamma in 0-2 by 0.25, best model per gamma)",
        setting="the gamma sweep of winrate-ranking-correlation-near (gamma in {0, 0.5, 1, 1.5, 2} at beta = 0.1), "
                "each run's best-validation checkpoint (the paper's 'best model for each gamma'); R on the training "
                "pairs; win rate against pi_ref per val prompt (64 quick / 128 full) under the raters' expected vote; "
                "our grid has two gammas >= 1.25 (1.5 and 2), so the trend is one step; interval: bootstrap over "
                "training pairs (R) and prompts (win rate), resampled independently",
        check=claims.Check(_TREND, ">", 0.0, "Fig. 10(a) caption: 'trend in the same direction' (the sign of the "
                                             "product of the two changes)"),
        control="The same product for the two smallest gammas of the sweep (0 and 0.5, the same step in gamma): two "
                "other runs of the sweep, whose accuracy and win rate could move together or not."),
    claims.ClaimSpec(
        id="alignment-gap-other-methods",
        statement="Every method with a closed-form optimum (IPO, cDPO, rDPO, online IPO) leaves a gap of at least "
                  f"{GAP_THRESHOLD} between its own idealized ranking accuracy and its observed one (median over the "
                  "common beta grid {0.1, 1, 10}).",
        source="beyond the paper: the idealized-accuracy argument of Thm 3.1 / Cor. 3.3 applied to each method's own "
               "population optimum", paper_value="not in the paper",
        setting=_REGIME + "; each method at the same training budget and learning rate as DPO; SimPO (no reference) "
                          "and RPO (NLL term) have no closed form and are not judged",
        check=claims.Check(_OTHER, ">=", GAP_THRESHOLD, "docs/thresholds.md#alignment-gap-other-methods: DPO's "
                                                        "threshold borrowed (no paper number for these methods)"),
        control="The reference policy itself (no training) against each method's own idealized accuracy, same pairs."),
    *ORPO.SPECS,  # orpo-sft-raises-rejected, orpo-large-lambda-lowers-chosen: experiments/_orpo_lambda.py
    *MANY.SPECS,  # four-response-ranking-barely-moves: experiments/_ranking_many.py
])


SETTINGS = {
    "quick": dict(
        seed=0, vocab_size=16, prompt_len=4, max_len=96,      # language / policy sizes
        eos_bias=-4.0, eos_slope=0.05,                        # EOS hazard: responses of ~55 tokens
        dim=48, depth=2, heads=2,                             # tiny transformer (the full setting's reference)
        num_raters=4, second_temperature=1.5,                 # raters (as Alpaca Farm's 4); second sampler
        fluency_weight=0.1,                                   # raters' reward for fluency under the language
        sft_examples=8192, sft_steps=1000, sft_batch=64, sft_learning_rate=3e-3,
        num_train=512, num_val=128,                           # preference pairs
        batch_size=32, epochs=2, logs_per_epoch=4, learning_rate=1e-4,   # offline fine-tuning (RMSProp)
        betas=PAPER_BETAS, other_betas=(0.1, 1.0, 10.0),      # DPO grid; common grid of the other methods
        gammas=(0.0, 0.5, 1.0, 1.5, 2.0), gamma_beta=0.1,     # gamma-scaled DPO sweep
        cdpo_eps=0.1, rdpo_eps=0.1, simpo_gamma=0.5, rpo_eta_sft=0.005,
        online_steps=32, online_batch=16,
        winrate_prompts=64, tabular_steps=8000,
    ),
    "full": dict(
        seed=0, vocab_size=16, prompt_len=4, max_len=96, eos_bias=-4.0, eos_slope=0.05,
        dim=48, depth=2, heads=2,
        num_raters=4, second_temperature=1.5, fluency_weight=0.1,
        sft_examples=8192, sft_steps=1000, sft_batch=64, sft_learning_rate=3e-3,
        num_train=1024, num_val=256,
        batch_size=32, epochs=2, logs_per_epoch=4, learning_rate=1e-4,
        betas=PAPER_BETAS, other_betas=(0.1, 1.0, 10.0),
        gammas=(0.0, 0.5, 1.0, 1.5, 2.0), gamma_beta=0.1,
        cdpo_eps=0.1, rdpo_eps=0.1, simpo_gamma=0.5, rpo_eta_sft=0.005,
        online_steps=64, online_batch=32,
        winrate_prompts=128, tabular_steps=8000,
    ),
}
# Tests only: the quick setting shrunk so that every stage runs in seconds. The tabular Thm 3.1
# check keeps its quick length; the rest needs the real budgets. A 10x learning rate makes the few
# offline steps move the policy enough that every measured number is defined.
SETTINGS["smoke"] = dict(
    SETTINGS["quick"], max_len=16, eos_bias=-2.0, eos_slope=0.3, dim=16, depth=1, heads=2,
    sft_examples=256, sft_steps=20, sft_batch=32,
    num_train=64, num_val=32, batch_size=16, epochs=2, learning_rate=1e-3,
    betas=(0.1, 1.0), other_betas=(0.1,), gammas=(0.0, 1.0, 1.5, 2.0),   # DPO (gamma 1) and two gammas >= 1.25 (Fig. 10)
    online_steps=2, online_batch=8, winrate_prompts=16,
)


def _rows(cfg):
    """The offline sweep: one row per (loss, beta[, gamma]); returns ``(loss_name, beta, gamma)``
    rows and their hyperparameter arrays (``loss_id`` indexes :data:`LOSS_NAMES`)."""
    rows = [("dpo", b, 1.0) for b in cfg["betas"]]
    rows += [("gamma_dpo", cfg["gamma_beta"], g) for g in cfg["gammas"]]
    for name in ("ipo", "cdpo", "rdpo", "simpo", "rpo"):
        rows += [(name, b, 1.0) for b in cfg["other_betas"]]
    eps = {"cdpo": cfg["cdpo_eps"], "rdpo": cfg["rdpo_eps"]}
    h = {
        "loss_id": np.array([LOSS_NAMES.index(r[0]) for r in rows], np.int32),
        "beta": np.array([r[1] for r in rows], np.float32),
        "gamma": np.array([r[2] for r in rows], np.float32),
        "eps": np.array([eps.get(r[0], 0.0) for r in rows], np.float32),
        "simpo_gamma": np.full(len(rows), cfg["simpo_gamma"], np.float32),
        "eta_sft": np.full(len(rows), cfg["rpo_eta_sft"], np.float32),
        "learning_rate": np.full(len(rows), cfg["learning_rate"], np.float32),
    }
    return rows, h


def _schedule(cfg):
    """Offline fine-tuning length: ``(num_steps, log_every)``, ``logs_per_epoch`` logs per epoch."""
    spe = cfg["num_train"] // cfg["batch_size"]
    log_every = spe // cfg["logs_per_epoch"]
    num_steps = spe * cfg["epochs"]
    return num_steps - num_steps % log_every, log_every


def _keys(cfg):
    """The suite's random keys, split once from ``seed``, named by their one use."""
    k = iter(jax.random.split(jax.random.key(cfg["seed"]), 32))
    named = {n: next(k) for n in ("language", "raters", "sft_prompts", "sft_responses", "policy_init", "sft")}
    for split in ("train", "val"):
        named[split] = {n: next(k) for n in ("prompts", "y1", "y2", "votes")}
    named.update({n: next(k) for n in ("offline", "online", "winrate_reference", "winrate_policy", "votes5", "orpo")})
    named.update({n: next(k) for n in ("many_y3", "many_y4")})   # appended: every earlier key keeps its value
    return named


def _policy(cfg):
    return sequence_policy(cfg["vocab_size"], cfg["prompt_len"], cfg["max_len"], dim=cfg["dim"], depth=cfg["depth"],
                           heads=cfg["heads"])


def _key_data(keys) -> np.ndarray:
    """Keys as per-row data of a grid (``uint32``): each run starts from the suite's own key."""
    return np.asarray(jax.random.key_data(keys))


def _param_names(policy) -> list[str]:
    paths, _ = jax.tree_util.tree_flatten_with_path(jax.eval_shape(policy.init, jax.random.key(0)))
    return [jax.tree_util.keystr(p, simple=True, separator=".") for p, _ in paths]


def _named(policy, params) -> dict:
    """Parameters as ``{leaf name: array}`` (how stages store them and programs observe them)."""
    return dict(zip(_param_names(policy), jax.tree.leaves(params)))


def _unnamed(policy, arrays):
    """Inverse of :func:`_named` (any leading axes)."""
    treedef = jax.tree.structure(jax.eval_shape(policy.init, jax.random.key(0)))
    return jax.tree.unflatten(treedef, [jnp.asarray(arrays[n]) for n in _param_names(policy)])


def _raters(sft) -> lg.Raters:
    return lg.Raters(**{k: jnp.asarray(v) for k, v in sft["raters"].items()})


def _pair_data(s) -> dict:
    """A pair set as the trainers read it (see :func:`~alignjax.sft.make_preference_train`)."""
    keys = ("prompts", "chosen", "chosen_mask", "rejected", "rejected_mask", "ref_chosen", "ref_rejected")
    return {k: jnp.asarray(s[k]) for k in keys}


def _say(progress, msg):
    if progress:
        print("  [ranking-accuracy]", msg, flush=True)


# ============================================================================ computations
def _combined_loss(pc, pr, rc, rr, nc, nr, h):
    """Every offline loss of the sweep, selected by the row's integer ``loss_id`` (one compile)."""
    b = h["beta"]
    ls = jnp.stack([
        L.dpo(pc, pr, rc, rr, beta=b),
        L.ipo(pc, pr, rc, rr, beta=b),
        L.cdpo(pc, pr, rc, rr, beta=b, eps=h["eps"]),
        L.rdpo(pc, pr, rc, rr, beta=b, eps=h["eps"]),
        L.simpo(pc, pr, rc, rr, beta=b, gamma=h["simpo_gamma"], chosen_lengths=nc, rejected_lengths=nr),
        L.rpo(pc, pr, rc, rr, beta=b, eta_sft=h["eta_sft"]),
        L.gamma_dpo(pc, pr, rc, rr, beta=b, gamma=h["gamma"]),
    ])
    return ls[h["loss_id"]]


def _rmsprop(h, decay=0.99, eps=1e-8):
    """RMSProp as the paper trains DPO (Chen et al. 2024, App. D.1: PyTorch's RMSprop, alpha 0.99,
    eps 1e-8, no momentum or weight decay): ``nu <- 0.99 nu + 0.01 g^2``,
    ``theta <- theta - lr g / (sqrt(nu) + eps)``, with ``lr = h["learning_rate"]`` traced."""
    return optax.chain(optax.scale_by_rms(decay=decay, eps=eps, eps_in_sqrt=False),
                       optax.scale_by_learning_rate(h["learning_rate"]))


def _adam(h, b1=0.9, b2=0.999, eps=1e-8):
    """``optax.adam(h["learning_rate"])`` with its bias corrections written as multiplications by
    reciprocals: the arithmetic XLA compiles on one device, and the same on many (a division by
    the run's broadcast step count is not; see :mod:`alignjax.sweep`)."""
    def init(params):
        return optax.ScaleByAdamState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params),
                                      optax.tree.zeros_like(params))

    def update(g, state, params=None):
        mu = optax.tree.update_moment(g, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(g, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        c1, c2 = 1.0 / (1 - b1 ** count), 1.0 / (1 - b2 ** count)
        return jax.tree.map(lambda m, v: (m * c1) / (jnp.sqrt(v * c2) + eps), mu, nu), \
            optax.ScaleByAdamState(count, mu, nu)

    return optax.chain(optax.GradientTransformation(init, update), optax.scale_by_learning_rate(h["learning_rate"]))


def _run(program, hparams, *, num_steps, log_every, shared=None, progress=False) -> dict:
    """One engine sweep with one run per row of ``hparams``: ``{metric: (rows, T, ...)}``, the
    observed parameters (``param.NAME`` metrics) gathered under ``"params"``.

    ``shared`` (a flat ``{name: array}``, see :func:`_flat`) is the data every row reads: the
    pairs, the reference's parameters, the raters. It is passed to the compiled program as an
    argument, not baked into it as constants (XLA would spend minutes constant-folding the
    gathers of a reference's embeddings at fixed tokens).

    The rows form one ``vmap`` block, so each run's numbers do not depend on the device count
    (:func:`~alignjax.sweep.run_sweep`). (Rows one at a time, ``block_size=1``, ran the offline
    sweep's steps 13% faster on CPU but broke that invariance: XLA compiled the selected loss's
    gradient differently for one device than partitioned, and an rDPO run differed in the last
    bit.) For the same reason the transformer is differentiated
    with JAX's newer softmax derivative ``y * (g - sum(y g))``: the default one divides by a
    broadcast sum, which XLA compiles into a multiplication by its reciprocal on one device
    but not when partitioned (one device and many would differ in the last bit; the forward
    pass is the same).
    """
    rows = len(next(iter(hparams.values())))
    with jax.softmax_custom_jvp(True):
        res = run_sweep(program, Grid(dict(hparams), (), 1), num_steps=num_steps, log_every=log_every,
                        block_size=rows, shared=shared, progress=progress)
    out = {k: v[:, 0] for k, v in res.metrics.items() if not k.startswith("param.")}
    params = {k.removeprefix("param."): v[:, 0] for k, v in res.metrics.items() if k.startswith("param.")}
    return {**out, "params": params} if params else out


def _flat(**groups) -> dict:
    """``{"GROUP.NAME": array}`` from ``GROUP={NAME: array}`` mappings (the engine's shared data)."""
    return {f"{g}.{k}": v for g, d in groups.items() for k, v in d.items()}


def _group(h, g) -> dict:
    """Inverse of :func:`_flat` for one group: ``{NAME: array}``."""
    return {k[len(g) + 1:]: v for k, v in h.items() if k.startswith(g + ".")}


def _observe_params(policy, params) -> dict:
    """The parameters as engine metrics, one ``param.NAME`` per leaf (see :func:`_run`)."""
    return {f"param.{n}": v for n, v in _named(policy, params).items()}


EVAL_BUCKETS = 4
"""Length buckets in which the checkpoints' log-probs are computed (:func:`~alignjax.sft.length_buckets`)."""
EVAL_CHUNK = 32
"""Responses scored at once inside a bucket (small activations stay in cache: faster on CPU)."""
SFT_CHUNK = 16
"""Examples whose SFT gradient is computed at once (:func:`~alignjax.sft.sft_step`'s ``chunk``; the minibatch's
gradient up to float rounding). Measured on the quick setting (2 cores): 69 ms per step for the minibatch of 64
at once, 48 / 46 / 52 ms in chunks of 32 / 16 / 8."""
TRAIN_CHUNK = 4
"""Pairs whose gradient is computed at once in an offline step (:func:`~alignjax.sft.chunked_value_and_grad`;
the minibatch's mean gradient up to float rounding). Measured on the quick setting (2 cores), one step of the
25 rows' ``vmap`` block: 2.8 s for whole minibatches of 32 pairs, 2.2 / 2.0 / 2.0 s in chunks of 8 / 4 / 2."""


def _chunk(batch, target):
    """The largest divisor of ``batch`` that is at most ``target`` (a static chunk size)."""
    return max(c for c in range(1, min(batch, target) + 1) if batch % c == 0)


def _truncated(cfg, named, max_len):
    """``(policy, params)`` of the same network on ``max_len <= cfg["max_len"]`` response slots:
    ``named`` parameters (:func:`_named`, any leading axes) with the first ``P + max_len`` rows
    of the position table (the only parameter whose size depends on ``max_len``)."""
    pol = _policy({**cfg, "max_len": max_len})
    pos = named["pos.value"]
    return pol, _unnamed(pol, {**named, "pos.value": pos[..., :cfg["prompt_len"] + max_len, :]})


def _checkpoint_logps(cfg, runs, sets) -> dict:
    """Log-probs of every pair of every set under every checkpoint of every sweep.

    ``runs``: ``{SWEEP: {param name: (rows, T, ...)}}`` (the parameters a program observed);
    ``sets``: ``{SET: pairs}`` (:func:`_pair_data`). Returns ``{SWEEP: {"SET_chosen": (rows, T, n),
    "SET_rejected": ...}}``. A checkpoint's ``log pi(y|x)`` depends on its parameters only, so
    checkpoints with identical parameters (every run's step 0 is ``pi_ref``) are evaluated once,
    by one compiled :func:`_logps_one` mapped over the distinct ones (:func:`_map_over_devices`).
    """
    names = _param_names(_policy(cfg))
    shapes = {r: np.shape(ps[names[0]])[:2] for r, ps in runs.items()}
    flat = {n: np.concatenate([np.asarray(ps[n]).reshape(-1, *np.shape(ps[n])[2:]) for ps in runs.values()])
            for n in names}
    blob = np.concatenate([np.ascontiguousarray(flat[n]).reshape(len(flat[n]), -1).view(np.uint8) for n in names], 1)
    _, first, inverse = np.unique(blob, axis=0, return_index=True, return_inverse=True)
    keys, (x, y, m) = _responses(sets)
    one = _logps_one(cfg, length_buckets(m, EVAL_BUCKETS))
    out = _map_over_devices(one, {n: v[first] for n, v in flat.items()}, x, y, m)[np.ravel(inverse)]
    sizes = np.cumsum([0] + [len(sets[s]["prompts"]) for s, _ in keys])
    res, at = {}, 0
    for r, (rows, T) in shapes.items():
        o = out[at:at + rows * T].reshape(rows, T, -1)
        res[r] = {f"{s}_{side}": o[..., a:b] for (s, side), a, b in zip(keys, sizes[:-1], sizes[1:])}
        at += rows * T
    return res


def _responses(sets):
    """Every response of every pair set, in one list: ``([(SET, side), ...], (prompts, responses, masks))``
    (host arrays; set by set, the chosen responses, then the rejected ones)."""
    keys = [(s, side) for s in sets for side in ("chosen", "rejected")]
    x = np.concatenate([np.asarray(sets[s]["prompts"]) for s, _ in keys])
    y = np.concatenate([np.asarray(sets[s][side]) for s, side in keys])
    m = np.concatenate([np.asarray(sets[s][f"{side}_mask"]) for s, side in keys])
    return keys, (x, y, m)


def _logps_one(cfg, plan):
    """``f(named, prompts, responses, masks) -> (n,)``: ``log pi(y|x)`` of every response under one
    parameter set, in the length buckets of ``plan``, :data:`EVAL_CHUNK` responses at a time
    (:func:`~alignjax.sft.bucketed_sequence_logps`)."""
    def one(named, x, y, m):
        def at(length):
            pol, p = _truncated(cfg, named, length)
            return lambda x, y, m: pol.sequence_logps(p, x, y, m)[0]
        return bucketed_sequence_logps(at, x, y, m, plan, chunk=EVAL_CHUNK)

    return one


def _map_over_devices(fn, stacked, *shared) -> np.ndarray:
    """``stack_k fn(stacked[k], *shared)`` as a host array: ``lax.map`` over the leading axis of
    ``stacked`` (``K`` parameter sets), split into contiguous parts over ``jax.devices()``
    (``shard_map``; ``shared`` replicated), so every CPU device (one core each) evaluates its part.
    Each device runs the same ``lax.map`` body on one parameter set at a time, so an element's value
    does not depend on the device count (checked bit for bit on the quick suite, 1 vs 2 devices);
    with one device it is ``jit(lax.map)``. The axis is padded with copies of its first element to a
    multiple of the device count, and the padding dropped."""
    from jax.sharding import Mesh, PartitionSpec as P

    k = len(jax.tree.leaves(stacked)[0])
    devices = jax.devices()[:max(1, min(len(jax.devices()), k))]
    body = lambda p, *s: jax.lax.map(lambda q: fn(q, *s), p)  # noqa: E731
    if len(devices) == 1:
        return np.asarray(jax.jit(body)(stacked, *shared))
    pad = -k % len(devices)
    stacked = jax.tree.map(lambda v: np.concatenate([np.asarray(v), np.repeat(np.asarray(v)[:1], pad, 0)]), stacked)
    mesh = Mesh(np.array(devices), ("sets",))
    f = jax.shard_map(body, mesh=mesh, in_specs=(P("sets"), *([P()] * len(shared))), out_specs=P("sets"),
                      check_vma=False)
    return np.asarray(jax.jit(f)(stacked, *shared))[:k]


def _sft_program(policy, *, num_steps, batch_size) -> Program:
    """SFT from ``policy.init(init_key)``, step ``t`` one Adam update with key ``split(key, num_steps)[t]``
    (its gradient in chunks of :data:`SFT_CHUNK` examples).

    Hyperparameters: ``learning_rate``, ``init_key`` and ``key`` (key data); shared data
    ``sft.prompts``, ``sft.responses``, ``sft.mask``. Observes the parameters and ``loss``, the
    minibatch loss of every step so far (zero after).
    """
    def init(h, _):
        params = policy.init(jax.random.wrap_key_data(h["init_key"]))
        return {"params": params, "opt": _adam(h).init(params), "t": jnp.int32(0), "loss": jnp.zeros(num_steps),
                "keys": jax.random.split(jax.random.wrap_key_data(h["key"]), num_steps)}

    def step(s, h):
        d = _group(h, "sft")
        params, opt, loss = sft_step(policy, _adam(h), s["params"], s["opt"], d["prompts"], d["responses"], d["mask"],
                                     s["keys"][s["t"]], batch_size=batch_size, chunk=_chunk(batch_size, SFT_CHUNK))
        return {**s, "params": params, "opt": opt, "t": s["t"] + 1, "loss": s["loss"].at[s["t"]].set(loss)}

    return Program(init, step, lambda s, h: {"loss": s["loss"], **_observe_params(policy, s["params"])})


def _offline_program(policy, *, batch_size, loss=None) -> Program:
    """Offline preference fine-tuning of ``pi_ref`` with :func:`_combined_loss` (the row's ``loss_id``), or with
    ``loss`` (a per-pair loss ``loss(pc, pr, rc, rr, nc, nr, h)``, e.g. ORPO's in ``_orpo_lambda``).

    Hyperparameters: those of :func:`_rows` and ``key`` (key data; its first half orders the
    epochs, as :func:`~alignjax.sft.make_preference_train`); shared data (:func:`_offline_shared`):
    the reference's parameters and the training pairs. Observes the parameters (their
    log-probs of the pairs: :func:`_checkpoint_logps`, after the sweep).
    """
    def init(h, _):
        ref = _unnamed(policy, _group(h, "ref"))
        perm_key, _ = jax.random.split(jax.random.wrap_key_data(h["key"]))
        return {"params": ref, "opt": _rmsprop(h).init(ref), "t": jnp.int32(0), "perm_key": perm_key}

    def step(s, h):
        params, opt = preference_step(policy, loss or _combined_loss, _rmsprop(h), s["params"], s["opt"], s["t"], h,
                                      _group(h, "data"), s["perm_key"], batch_size=batch_size,
                                      chunk=_chunk(batch_size, TRAIN_CHUNK))
        return {**s, "params": params, "opt": opt, "t": s["t"] + 1}

    return Program(init, step, lambda s, h: _observe_params(policy, s["params"]))


def _offline_shared(policy, ref_params, data) -> dict:
    """The data of :func:`_offline_program` as the engine's flat shared mapping."""
    return _flat(ref=_named(policy, ref_params), data=data)


def _online_program(policy, *, num_steps, batch_size) -> Program:
    """Online IPO from ``pi_ref`` against the raters' ground truth, in one logged interval.

    Hyperparameters: ``beta``, ``learning_rate`` and ``key`` (key data; step keys as
    :func:`~alignjax.sft.make_online_ipo_train`'s); shared data (:func:`_online_shared`): the
    reference, the raters and the training pairs (their prompts). Observes the parameters
    (their log-probs of the pairs: :func:`_checkpoint_logps`, after the sweep).
    """
    def init(h, _):
        ref = _unnamed(policy, _group(h, "ref"))
        keys = logged_step_keys(jax.random.wrap_key_data(h["key"]), num_steps, num_steps)
        return {"params": ref, "opt": _rmsprop(h).init(ref), "t": jnp.int32(0), "keys": keys}

    def step(s, h):
        raters = lg.Raters(**_group(h, "raters"))
        pref = lambda x, y1, m1, y2, m2: lg.preference_prob(raters, x, y1, m1, y2, m2)
        params, opt = online_ipo_step(policy, pref, _rmsprop(h), s["params"], s["opt"], _unnamed(policy, _group(h, "ref")),
                                      h, h["data.prompts"], s["keys"][s["t"]], batch_size=batch_size)
        return {**s, "params": params, "opt": opt, "t": s["t"] + 1}

    return Program(init, step, lambda s, h: _observe_params(policy, s["params"]))


def _online_shared(policy, ref_params, raters, data) -> dict:
    """The data of :func:`_online_program` as the engine's flat shared mapping."""
    r = {k: v for k, v in raters._asdict().items() if v is not None}
    return _flat(ref=_named(policy, ref_params), raters=r, data=data)


def _tabular_program(ref_c, ref_r, alpha) -> Program:
    """Thm 3.1 on tabular policies: one ``(logit_w, logit_l)`` table per pair, soft-label DPO by GD.

    ``theta`` starts at the reference log-probs. The population loss
    ``alpha l(w,l) + (1-alpha) l(l,w)`` depends on ``z = beta h``; with step ``1/beta^2`` (the
    row's ``beta``), ``z`` follows ``z <- z - 2 (sigmoid(z) - alpha)``, a contraction for every
    beta. Observes ``theta`` (``[..., 0]`` = ``log pi(y_w)``, ``[..., 1]`` = ``log pi(y_l)``).
    """
    a = jnp.clip(alpha, rk.UNANIMOUS_EPS, 1.0 - rk.UNANIMOUS_EPS)

    def loss(th, beta):
        return jnp.sum(a * L.dpo(th[:, 0], th[:, 1], ref_c, ref_r, beta=beta)
                       + (1 - a) * L.dpo(th[:, 1], th[:, 0], ref_r, ref_c, beta=beta))

    def step(th, h):
        return th - jax.grad(loss)(th, h["beta"]) * (1.0 / h["beta"] ** 2)   # a reciprocal: see alignjax.sweep

    return Program(lambda h, _: jnp.stack([ref_c, ref_r], -1), step, lambda th, h: {"theta": th})


def _tabular_thm31(ref_c, ref_r, alpha, betas, steps):
    """The tabular trajectory ``(len(betas), 11, n, 2)`` at 11 evenly spaced steps, in float64."""
    with jax.enable_x64(True):   # float32 updates stall below ulp(theta) near the optimum
        f64 = lambda x: jnp.asarray(np.asarray(x, np.float64))
        return _run(_tabular_program(f64(ref_c), f64(ref_r), f64(alpha)), {"beta": np.asarray(betas, np.float64)},
                    num_steps=steps, log_every=steps // 10)["theta"]


def run_sft(cfg, progress=False) -> dict:
    """Stage ``sft``: the raters, and ``pi_ref`` fine-tuned on the hidden language (one engine run)."""
    k = _keys(cfg)
    V, P = cfg["vocab_size"], cfg["prompt_len"]
    lang = lg.make_language(k["language"], vocab_size=V, prompt_len=P, max_len=cfg["max_len"],
                            eos_bias=cfg["eos_bias"], eos_slope=cfg["eos_slope"])
    xs = lg.sample_prompts(k["sft_prompts"], cfg["sft_examples"], P, V)
    ys, ms = lg.sample_language(lang, xs, k["sft_responses"])
    hp = {"learning_rate": np.array([cfg["sft_learning_rate"]]), "init_key": _key_data(k["policy_init"])[None],
          "key": _key_data(k["sft"])[None]}
    m = _run(_sft_program(_policy(cfg), num_steps=cfg["sft_steps"], batch_size=cfg["sft_batch"]), hp,
             num_steps=cfg["sft_steps"], log_every=cfg["sft_steps"],
             shared=_flat(sft={"prompts": xs, "responses": ys, "mask": ms}), progress=progress)
    loss = m["loss"][0, -1]
    _say(progress, f"SFT: token NLL {loss[:10].mean():.3f} -> {loss[-10:].mean():.3f}")
    raters = lg.make_raters(k["raters"], V, num_raters=cfg["num_raters"])
    raters = raters._replace(fluency=lg.fluency_table(lang, cfg["fluency_weight"]))
    return {"raters": raters._asdict(),
            "ref_params": {n: v[0, -1] for n, v in m["params"].items()}, "sft_loss": loss}


def sample_pairs(cfg, sft, progress=False) -> dict:
    """Stage ``pairs``: train and val pairs sampled from ``pi_ref``, rated, with their reference log-probs."""
    k, policy = _keys(cfg), _policy(cfg)
    ref_params = _unnamed(policy, sft["ref_params"])
    sample, logps = jax.jit(policy.sample), jax.jit(policy.sequence_logps)

    def pair_set(n, k):
        # twice the candidates, then the first n whose votes do not tie (Table 1 excludes ties)
        x = lg.sample_prompts(k["prompts"], 2 * n, cfg["prompt_len"], cfg["vocab_size"])
        y1, m1 = sample(ref_params, x, k["y1"], 1.0)
        y2, m2 = sample(ref_params, x, k["y2"], cfg["second_temperature"])
        pairs = lg.make_pairs(_raters(sft), k["votes"], x, y1, m1, y2, m2)
        keep = np.flatnonzero(np.asarray(pairs.alpha) > 0.5)[:n]
        if len(keep) < n:
            raise RuntimeError(f"only {len(keep)} of {2 * n} candidate pairs have untied votes; need {n}")
        pairs = jax.tree.map(lambda a: jnp.asarray(a)[keep], pairs)
        rc, nc = logps(ref_params, pairs.prompts, pairs.chosen, pairs.chosen_mask)
        rr, nr = logps(ref_params, pairs.prompts, pairs.rejected, pairs.rejected_mask)
        return {**pairs._asdict(), "ref_chosen": rc, "ref_rejected": rr, "chosen_len": nc, "rejected_len": nr}

    _say(progress, f"pairs: {cfg['num_train']} train / {cfg['num_val']} val")
    return {"train": pair_set(cfg["num_train"], k["train"]), "val": pair_set(cfg["num_val"], k["val"])}


def run_tabular(cfg, pairs, progress=False) -> dict:
    """Stage ``tabular``: Thm 3.1's soft-label DPO on tabular policies, a sweep over the DPO betas."""
    tr = pairs["train"]
    _say(progress, f"Thm 3.1 tabular: {len(cfg['betas'])} betas x {cfg['tabular_steps']} steps")
    return {"theta": _tabular_thm31(tr["ref_chosen"], tr["ref_rejected"], tr["alpha"],
                                    np.asarray(cfg["betas"], np.float32), cfg["tabular_steps"])}


def run_training(cfg, sft, pairs, progress=False) -> dict:
    """Stage ``train``: the offline sweep (loss id x beta x gamma rows, one compile) and online IPO over beta.

    Keeps every checkpoint's log-probs of the train and val pairs (computed after both sweeps
    from their observed parameters, :func:`_checkpoint_logps`), and the parameters of the
    gamma-DPO runs (their win rates are measured in ``evaluate``).
    """
    k, policy = _keys(cfg), _policy(cfg)
    ref_params = _unnamed(policy, sft["ref_params"])
    data, val = _pair_data(pairs["train"]), _pair_data(pairs["val"])
    rows, hp = _rows(cfg)
    num_steps, log_every = _schedule(cfg)
    t0 = time.time()
    off = _run(_offline_program(policy, batch_size=cfg["batch_size"]),
               {**hp, "key": _key_data(jax.random.split(k["offline"], len(rows)))},
               num_steps=num_steps, log_every=log_every, shared=_offline_shared(policy, ref_params, data),
               progress=progress)
    _say(progress, f"offline sweep: {len(rows)} rows x {num_steps} steps in one compile ({time.time() - t0:.0f}s)")
    t0 = time.time()
    o_betas = np.asarray(cfg["other_betas"], np.float32)
    on = _run(_online_program(policy, num_steps=cfg["online_steps"], batch_size=cfg["online_batch"]),
              {"beta": o_betas, "learning_rate": np.full(len(o_betas), cfg["learning_rate"], np.float32),
               "key": _key_data(jax.random.split(k["online"], len(o_betas)))},
              num_steps=cfg["online_steps"], log_every=cfg["online_steps"],
              shared=_online_shared(policy, ref_params, _raters(sft), data), progress=progress)
    _say(progress, f"online IPO: {len(o_betas)} betas x {cfg['online_steps']} steps ({time.time() - t0:.0f}s)")
    t0 = time.time()
    logps = _checkpoint_logps(cfg, {"offline": off["params"], "online": on.pop("params")}, {"train": data, "val": val})
    off.update(logps["offline"])
    on.update(logps["online"])
    _say(progress, f"log-probs of the pairs at every checkpoint ({time.time() - t0:.0f}s)")
    wr = np.flatnonzero(hp["loss_id"] == GAMMA_DPO)   # Sec. 5: the gamma sweep (gamma = 1 is DPO at gamma_beta)
    # the win-rate claims' controls: the IPO runs (near) and the cDPO runs (far), their own checkpoints
    wc = np.flatnonzero(np.isin(hp["loss_id"], WINRATE_CONTROL_METHODS))
    all_params = off.pop("params")
    params = {n: v[wr] for n, v in all_params.items()}
    return {"offline": {"loss_id": hp["loss_id"], "beta": [r[1] for r in rows], "gamma": [r[2] for r in rows],
                        "steps": np.arange(num_steps // log_every + 1) * log_every, **off, "winrate_rows": wr,
                        "params": params, "winrate_control_rows": wc,
                        "control_params": {n: v[wc] for n, v in all_params.items()}},
            "online": {"beta": o_betas, **on}}


WINRATE_CONTROL_METHODS = (IPO, CDPO)
"""Loss ids (:data:`LOSS_NAMES`: IPO, cDPO) whose offline runs' checkpoints are the win-rate claims' controls:
IPO's for the near claim, cDPO's for the far claim (each split at its own median distance)."""

FLIP_BINS = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0, np.inf)
"""Bins of ``beta * c`` (misranked pairs, ``c > 0``) for the flipped-fraction table (Thm 4.1 depends on ``beta c`` only)."""
CATEGORIES = ("correct->correct", "correct->incorrect", "incorrect->correct", "incorrect->incorrect")
"""The paper's Fig. 2 categories: the reference's ranking of a pair -> the trained policy's."""


def evaluate(cfg, sft, pairs, tabular, train, progress=False) -> dict:
    """Stage ``evaluate``: every measured number of the claims, tables and plots.

    Best-validation checkpoints; Table 1 both ways (observed ``R``, ``R~`` against ``R*``, ``R~*``
    by Eq. 3 and as the authors' code computes them); Thm 3.1 on tabular policies; flips of
    misranked pairs against ``beta c``; Fig. 2's four categories along every DPO run; each
    method against its own idealized value; win rates against ``pi_ref`` along the DPO and
    gamma-DPO runs (ground-truth raters; Monte Carlo KL).
    """
    f64 = lambda a: np.asarray(a, np.float64)
    tr, va, off, on = pairs["train"], pairs["val"], train["offline"], train["online"]
    trc, trr, trnc, trnr = map(f64, (tr["ref_chosen"], tr["ref_rejected"], tr["chosen_len"], tr["rejected_len"]))
    alpha_tr = tr["alpha"]
    loss_id, row_beta = off["loss_id"], [float(b) for b in off["beta"]]
    tr_pc, tr_pr, va_pc, va_pr = map(f64, (off["train_chosen"], off["train_rejected"], off["val_chosen"],
                                           off["val_rejected"]))
    lens = dict(chosen_lengths=tr["chosen_len"], rejected_lengths=tr["rejected_len"])
    ideal = lambda b, **kw: float(rk.idealized_ranking_accuracy(tr["ref_chosen"], tr["ref_rejected"], alpha_tr, b,
                                                                **kw))
    code = lambda b, normalized: float(np.mean(rk.authors_code_idealized_ranking_correct(
        trc, trr, alpha_tr, b, normalized=normalized, **lens)))

    # Thm 3.1 (tabular): the learned log-ratio vs the closed form, and R = R* per beta; the
    # reference policy (the trajectory's first point) as the negative control
    betas = np.asarray(cfg["betas"], np.float32)[:, None]
    row = lambda *a: [np.asarray(x)[None] for x in a]
    tab = np.asarray(tabular["theta"], np.float64)
    target = np.asarray(rk.idealized_log_ratio(*row(tr["ref_chosen"], tr["ref_rejected"], alpha_tr), betas), np.float64)
    rel_err = lambda th: (np.abs((th[..., 0] - th[..., 1]) - target) / (1.0 + np.abs(target))).max()
    r_star = np.array([ideal(float(b)) for b in betas[:, 0]])
    thm31 = {"max_rel_err": rel_err(tab[:, -1]), "R": (tab[:, -1, :, 0] > tab[:, -1, :, 1]).mean(axis=1),
             "R_star": r_star, "control_max_rel_err": rel_err(tab[:, 0]),
             "control_R": (tab[:, 0, :, 0] > tab[:, 0, :, 1]).mean(axis=1), "early_max_rel_err": rel_err(tab[:, 1])}

    # the best-validation checkpoint of every offline run, and its ranking accuracies
    hp = {k: jnp.asarray(v) for k, v in _rows(cfg)[1].items()}
    val_loss = np.asarray(jax.vmap(lambda pc, pr, h: jnp.mean(jax.vmap(
        lambda a, b: _combined_loss(a, b, va["ref_chosen"], va["ref_rejected"], va["chosen_len"], va["rejected_len"],
                                    h))(pc, pr), axis=-1))(off["val_chosen"], off["val_rejected"], hp))   # (rows, T)
    best = val_loss.argmin(axis=1)
    idx = np.arange(len(loss_id))
    R_tr, R_va = (tr_pc > tr_pr).mean(-1), (va_pc > va_pr).mean(-1)                           # (rows, T)
    Rln_tr = (tr_pc / trnc > tr_pr / trnr).mean(-1)
    pc_best, pr_best = tr_pc[idx, best], tr_pr[idx, best]                                      # (rows, n)

    # Table 1 both ways, per DPO beta: Eq. 3 (R*, R~*) and the authors' code (both branches)
    dpo_rows = np.flatnonzero(loss_id == DPO)
    dpo_betas = [row_beta[r] for r in dpo_rows]
    table1 = {"beta": np.array(dpo_betas), "R": R_tr[dpo_rows, best[dpo_rows]],
              "R_len": Rln_tr[dpo_rows, best[dpo_rows]],
              "R_star_eq3": np.array([ideal(b) for b in dpo_betas]),
              "R_len_star_eq3": np.array([ideal(b, **lens) for b in dpo_betas]),
              "R_star_code": np.array([code(b, False) for b in dpo_betas]),
              "R_len_star_code": np.array([code(b, True) for b in dpo_betas]),
              "R_ref": float((trc > trr).mean()), "R_len_ref": float((trc / trnc > trr / trnr).mean())}

    # flips of the pairs the reference misranks (c > 0), at DPO's best checkpoints, against beta c;
    # the idealized policy (Thm 3.1's optimum) at the same beta as the control
    c_tr = trr - trc
    mis = c_tr > 0
    ok = np.stack([pc_best[r] > pr_best[r] for r in dpo_rows])                                  # (betas, n)
    ok_ideal = np.stack([np.asarray(rk.idealized_ranking_correct(trc, trr, alpha_tr, b)) > 0 for b in dpo_betas])
    bc = np.asarray(dpo_betas)[:, None] * c_tr[None]                                            # (betas, n)
    bins = np.digitize(bc, FLIP_BINS[1:-1])
    binned = [(mis[None] & (bins == i)) for i in range(len(FLIP_BINS) - 1)]
    flips = {"fraction": ok[:, mis].mean(-1) if mis.any() else np.full(len(dpo_rows), np.nan),
             "fraction_ideal": ok_ideal[:, mis].mean(-1) if mis.any() else np.full(len(dpo_rows), np.nan),
             "median_beta_c": np.median(bc[:, mis], axis=-1) if mis.any() else np.full(len(dpo_rows), np.nan),
             "num_misranked": int(mis.sum()), "median_c": float(np.median(c_tr[mis])) if mis.any() else np.nan,
             "bin_count": np.array([m.sum() for m in binned]),
             "bin_fraction": np.array([ok[m].mean() if m.any() else np.nan for m in binned]),
             "bin_fraction_ideal": np.array([ok_ideal[m].mean() if m.any() else np.nan for m in binned]),
             "difficulty": c_tr, "margin_best": (pc_best - trc) - (pr_best - trr), "correct_best": pc_best > pr_best,
             # few-misranked-pairs-flip's control: SimPO at the beta nearest 0.1, its best checkpoint
             "simpo_correct_best": _correct_best_of(SIMPO, loss_id, row_beta, pc_best, pr_best)}

    # Fig. 2: the four categories (reference ranking -> policy ranking) along every DPO run,
    # with each category's share of the data, mean DPO loss and mean reward margin beta h
    ref_ok = trc > trr
    cat_share, cat_loss, cat_margin = [], [], []
    for r in dpo_rows:
        b = row_beta[r]
        h = (tr_pc[r] - trc) - (tr_pr[r] - trr)                                                 # (T, n)
        loss = np.logaddexp(0.0, -b * h)
        now_ok = tr_pc[r] > tr_pr[r]
        masks = [ref_ok & now_ok, ref_ok & ~now_ok, ~ref_ok & now_ok, ~ref_ok & ~now_ok]
        mean_in = lambda v, m: np.where(m.any(-1), (v * m).sum(-1) / np.maximum(m.sum(-1), 1), np.nan)
        cat_share.append(np.stack([m.mean(-1) for m in masks], -1))
        cat_loss.append(np.stack([mean_in(loss, m) for m in masks], -1))
        cat_margin.append(np.stack([mean_in(b * h, m) for m in masks], -1))
    fig2 = {"share": np.stack(cat_share), "loss": np.stack(cat_loss), "margin": np.stack(cat_margin),
            "best_index": best[dpo_rows]}                                                       # (betas, T, 4)

    # every method against its own idealized value (population minimiser under soft labels)
    soft = {CDPO: alpha_tr * (1 - cfg["cdpo_eps"]) + (1 - alpha_tr) * cfg["cdpo_eps"],
            RDPO: np.clip((alpha_tr - cfg["rdpo_eps"]) / (1 - 2 * cfg["rdpo_eps"]), 0.0, 1.0)}

    def own_idealized(m, b):
        if m in (DPO, GAMMA_DPO):
            return ideal(b)
        if m == IPO:
            return float(np.mean((trc - trr) + (alpha_tr - 0.5) / b > 0))
        if m in soft:
            return float(rk.idealized_ranking_accuracy(tr["ref_chosen"], tr["ref_rejected"], soft[m], b))
        return float("nan")   # simpo (no reference), rpo (NLL term): no closed form

    offline = {"loss_id": loss_id, "best_step": off["steps"][best], "R_train": R_tr[idx, best],
               "R_len_train": Rln_tr[idx, best], "R_val": R_va[idx, best],
               "R_star_dpo": np.array([ideal(b) for b in row_beta]),
               "R_star_len_dpo": np.array([ideal(b, **lens) for b in row_beta]),
               "R_star_own": np.array([own_idealized(m, b) for m, b in zip(loss_id, row_beta)])}
    o_pc, o_pr, o_vc, o_vr = map(f64, (on["train_chosen"], on["train_rejected"], on["val_chosen"], on["val_rejected"]))
    online = {"R_train": (o_pc > o_pr).mean(-1)[:, -1], "R_len_train": (o_pc / trnc > o_pr / trnr).mean(-1)[:, -1],
              "R_val": (o_vc > o_vr).mean(-1)[:, -1],
              "R_star_dpo": np.array([ideal(float(b)) for b in on["beta"]]),
              "R_star_len_dpo": np.array([ideal(float(b), **lens) for b in on["beta"]]),
              # online IPO's population optimum targets the ground-truth P: h* = (P - 1/2)/beta
              "R_star_own": np.array([float(np.mean((trc - trr) + (f64(tr["p_true"]) - 0.5) / float(b) > 0))
                                      for b in on["beta"]])}
    # per method: median over the common beta grid of (own idealized - observed); NaN without a closed form
    common = [float(b) for b in cfg["other_betas"]]
    own_gap = {}
    for m in range(len(LOSS_NAMES)):
        sel = [r for r in np.flatnonzero(loss_id == m) if row_beta[r] in common]
        own_gap[METHODS[m]] = float(np.median(offline["R_star_own"][sel] - offline["R_train"][sel])) if sel else np.nan
    own_gap[METHODS[ONLINE_IPO]] = float(np.median(online["R_star_own"] - online["R_train"]))

    per_pair = _per_pair_indicators(cfg, sft, tr, tab, tr_pc, tr_pr, best, loss_id, row_beta, online, o_pc, o_pr)

    t0 = time.time()
    win, kl = _winrates(cfg, sft, va["prompts"], off["params"])
    # the controls' checkpoints in a call of their own (the subject's program, shapes and numbers unchanged)
    win_c, _ = _winrates(cfg, sft, va["prompts"], off["control_params"])
    _say(progress, f"win rates: {win.size} + {win_c.size} (controls) checkpoints ({time.time() - t0:.0f}s)")
    Rw = R_tr[off["winrate_rows"]]   # training pairs, as the paper's Figs. 4, 9, 10 (Figs. 11-12: test set)
    # the paper's distance (Fig. 4): squared L2 distance of the weights from the reference's
    ref_named = sft["ref_params"]
    distance = lambda ps: sum(np.sum((np.asarray(v, np.float64) - np.asarray(ref_named[n], np.float64)[None, None])
                                     ** 2, axis=tuple(range(2, np.ndim(v)))) for n, v in ps.items())  # (runs, T)
    dist = distance(off["params"])
    d_med = np.median(dist)
    wc = np.asarray(off["winrate_control_rows"])
    control = {"win": win_c, "R_train": R_tr[wc], "distance": distance(off["control_params"]),
               "loss_id": np.asarray(loss_id)[wc]}
    near, far = dist <= d_med, dist > d_med
    boot = lambda m: _bootstrap_pearson(Rw[m], win[m], cfg["seed"])
    # Fig. 10(a): each gamma run's best-validation checkpoint, per training pair (R) and per prompt (win rate)
    wrr = np.asarray(off["winrate_rows"])
    wb = best[wrr]
    best_params = {n: np.asarray(v)[np.arange(len(wrr)), wb][:, None] for n, v in off["params"].items()}
    fig10 = {"gamma": np.asarray(off["gamma"], np.float64)[wrr], "best_index": wb,
             "correct": tr_pc[wrr, wb] > tr_pr[wrr, wb],                                         # (runs, pairs)
             "win_per_prompt": _winrates(cfg, sft, va["prompts"], best_params, per_prompt=True)[:, 0],  # (runs, prompts)
             "win_stored": win[np.arange(len(wrr)), wb], "distance": dist[np.arange(len(wrr)), wb]}
    return {"tabular": thm31, "table1": table1, "offline": offline, "online": online, "own_gap": own_gap,
            "flips": flips, "fig2": fig2, "per_pair": per_pair, "fig10": fig10,
            "winrate": {"win": win, "kl": kl, "distance": dist, "R_train": Rw, "split": d_med,
                        "R_val": R_va[off["winrate_rows"]], "R_len_train": Rln_tr[off["winrate_rows"]], "near": near,
                        "pearson_near": _pearson(Rw[near], win[near]), "pearson_far": _pearson(Rw[far], win[far]),
                        "ci_near": boot(near), "ci_far": boot(far), "control": control}}


def _correct_best_of(method, loss_id, row_beta, pc_best, pr_best) -> np.ndarray:
    """Per training pair, whether the ``method`` row (a :data:`LOSS_NAMES` index) at the beta nearest 0.1
    ranks it correctly at its best-validation checkpoint: ``log pi(y_w|x) > log pi(y_l|x)`` (shape ``(n,)``)."""
    rows = np.flatnonzero(np.asarray(loss_id) == method)
    r = rows[_near([row_beta[i] for i in rows], 0.1)]
    return pc_best[r] > pr_best[r]


def _len_correct_best_of(method, betas, loss_id, row_beta, best, tr_pc, tr_pr, nc, nr) -> np.ndarray:
    """``(len(betas), n)``: ``1[log pi(y_w)/|y_w| > log pi(y_l)/|y_l|]`` for ``method``'s row at each of ``betas``,
    at that row's best-validation checkpoint ``best[row]`` (``tr_pc``, ``tr_pr``: ``(rows, T, n)``)."""
    rows = [next(r for r in np.flatnonzero(loss_id == method) if row_beta[r] == b) for b in betas]
    return np.stack([tr_pc[r, best[r]] / nc > tr_pr[r, best[r]] / nr for r in rows])


def _five_rater_panel(cfg, sft, tr) -> dict:
    """The training pairs re-voted by 5 raters (the setting before v2 adopted Table 1's 4 raters, ties dropped).

    The raters are drawn as v2's first version drew them (``make_raters(k["raters"], num_raters=5)``, with
    the fluency term); each pair is reordered by the new majority: ``alpha5 = max(f, 1 - f)`` with ``f`` the
    fraction of the 5 votes for the current ``y_w``, and the reference log-probs and lengths swapped where
    ``f < 1/2``. No language-model call: the responses and their reference log-probs are the stage's.
    """
    k = _keys(cfg)
    raters = lg.make_raters(k["raters"], cfg["vocab_size"], num_raters=5)._replace(
        fluency=jnp.asarray(sft["raters"]["fluency"]))
    votes = lg.rater_votes(raters, k["votes5"], jnp.asarray(tr["prompts"]), jnp.asarray(tr["chosen"]),
                           jnp.asarray(tr["chosen_mask"]), jnp.asarray(tr["rejected"]), jnp.asarray(tr["rejected_mask"]))
    f = np.asarray(jnp.mean(votes, axis=-1), np.float64)
    first = f >= 0.5
    pick = lambda a, b: np.where(first, np.asarray(a, np.float64), np.asarray(b, np.float64))
    return {"alpha": np.where(first, f, 1.0 - f), "ref_chosen": pick(tr["ref_chosen"], tr["ref_rejected"]),
            "ref_rejected": pick(tr["ref_rejected"], tr["ref_chosen"]),
            "chosen_len": pick(tr["chosen_len"], tr["rejected_len"]),
            "rejected_len": pick(tr["rejected_len"], tr["chosen_len"])}


def _per_pair_indicators(cfg, sft, tr, tab, tr_pc, tr_pr, best, loss_id, row_beta, online, o_pc, o_pr) -> dict:
    """Per training pair, the 0/1 indicators the claims average (their intervals bootstrap over pairs).

    ``(betas, n)`` for DPO's beta grid: observed ``R`` and ``R~`` of DPO's best-validation checkpoint
    (``1[log pi(y_w) > log pi(y_l)]``, the same with mean token log-probs), Eq. 3's ``R*`` and ``R~*``,
    the tabular optimum's ``R`` and ``R~`` (the ``tabular`` stage's last point); ``(panels, betas, n)``
    for the rater panels of :data:`RATER_PANELS`: ``R*`` by Eq. 3 and as the released code computes
    it; ``(n,)`` the reference's ``R~``; ``(common betas, n)`` SimPO's ``R~`` at its best-validation
    checkpoints; ``(methods, betas, n)`` for IPO, cDPO, rDPO and online IPO on the common grid: each method's own
    idealized indicator minus its observed one, and minus the reference's.
    """
    f64 = lambda a: np.asarray(a, np.float64)
    trc, trr, nc, nr, alpha = map(f64, (tr["ref_chosen"], tr["ref_rejected"], tr["chosen_len"], tr["rejected_len"],
                                        tr["alpha"]))
    dpo = np.flatnonzero(loss_id == DPO)
    betas = [row_beta[r] for r in dpo]
    pc, pr = tr_pc[dpo, best[dpo]], tr_pr[dpo, best[dpo]]                                      # (betas, n)
    eq3 = lambda rc, rr, a, b, **kw: np.asarray(rk.idealized_ranking_correct(rc, rr, a, b, **kw)) > 0
    panels = {4: {"alpha": alpha, "ref_chosen": trc, "ref_rejected": trr, "chosen_len": nc, "rejected_len": nr},
              5: _five_rater_panel(cfg, sft, tr)}
    code = lambda d, b: np.asarray(rk.authors_code_idealized_ranking_correct(
        d["ref_chosen"], d["ref_rejected"], d["alpha"], b, normalized=False, chosen_lengths=d["chosen_len"],
        rejected_lengths=d["rejected_len"])) > 0
    th = tab[:, -1]
    ref_ok = (trc > trr).astype(np.float64)
    soft = {CDPO: alpha * (1 - cfg["cdpo_eps"]) + (1 - alpha) * cfg["cdpo_eps"],
            RDPO: np.clip((alpha - cfg["rdpo_eps"]) / (1 - 2 * cfg["rdpo_eps"]), 0.0, 1.0)}
    own = {IPO: lambda b: (trc - trr) + (alpha - 0.5) / b > 0,
           CDPO: lambda b: eq3(trc, trr, soft[CDPO], b), RDPO: lambda b: eq3(trc, trr, soft[RDPO], b)}
    common = [float(b) for b in cfg["other_betas"]]
    gap, gap_ref = [], []
    for m in (IPO, CDPO, RDPO):
        rows = [next(r for r in np.flatnonzero(loss_id == m) if row_beta[r] == b) for b in common]
        ideal = np.stack([own[m](b) for b in common]).astype(np.float64)
        gap.append(ideal - (tr_pc[rows, best[rows]] > tr_pr[rows, best[rows]]))
        gap_ref.append(ideal - ref_ok[None])
    simpo_len = _len_correct_best_of(SIMPO, common, loss_id, row_beta, best, tr_pc, tr_pr, nc, nr)
    p_true = f64(tr["p_true"])
    ideal_on = np.stack([(trc - trr) + (p_true - 0.5) / b > 0 for b in common]).astype(np.float64)
    gap.append(ideal_on - (o_pc[:, -1] > o_pr[:, -1]))
    gap_ref.append(ideal_on - ref_ok[None])
    return {"R": pc > pr, "R_len": pc / nc > pr / nr, "R_len_reference": trc / nc > trr / nr,
            "simpo_R_len": simpo_len,
            "R_star": np.stack([eq3(trc, trr, alpha, b) for b in betas]),
            "R_len_star": np.stack([eq3(trc, trr, alpha, b, chosen_lengths=nc, rejected_lengths=nr) for b in betas]),
            "tabular_R": th[..., 0] > th[..., 1], "tabular_R_len": th[..., 0] / nc > th[..., 1] / nr,
            "panel_R_star_eq3": np.stack([[eq3(d["ref_chosen"], d["ref_rejected"], d["alpha"], b) for b in betas]
                                          for d in (panels[k] for k in RATER_PANELS)]),
            "panel_R_star_code": np.stack([[code(d, b) for b in betas] for d in (panels[k] for k in RATER_PANELS)]),
            "other_gap": np.stack(gap), "other_gap_reference": np.stack(gap_ref)}


def _bootstrap_pearson(a, b, seed, num=1000):
    """90% bootstrap interval ``(5%, 95%)`` of the Pearson correlation of paired points (resampled pairs)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3:
        return np.array([np.nan, np.nan])
    idx = np.random.default_rng(seed).integers(0, a.size, (num, a.size))
    x, y = a[idx], b[idx]
    x, y = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    r = np.where(den > 0, (x * y).sum(1) / np.where(den > 0, den, 1.0), np.nan)
    return np.nanpercentile(r, [5, 95]) if np.isfinite(r).any() else np.array([np.nan, np.nan])


TREND_GAMMA = 1.25
"""Fig. 10(a)'s caption: ranking accuracy and win rate trend together for gamma >= 1.25."""


def _trend_measurement(fig10, rows, seed, resamples=2000) -> claims.Measurement:
    """``(R(hi) - R(lo)) * (win(hi) - win(lo))`` for the first and last of ``rows`` (indices into ``fig10``'s
    runs, in increasing gamma), with a 95% percentile bootstrap interval: the training pairs (``R``, the
    mean of per-pair indicators) and the prompts (win rate, the mean of per-prompt win probabilities)
    resampled independently, ``numpy.random.default_rng(seed)``. Units: the smaller of the two counts.
    NaN with fewer than two rows."""
    if len(rows) < 2:
        return claims.Measurement(float("nan"), float("nan"), float("nan"), 0)
    lo, hi = rows[0], rows[-1]
    d_r = np.asarray(fig10["correct"][hi], np.float64) - np.asarray(fig10["correct"][lo], np.float64)
    d_w = np.asarray(fig10["win_per_prompt"][hi], np.float64) - np.asarray(fig10["win_per_prompt"][lo], np.float64)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(d_r), (resamples, len(d_r)))
    j = rng.integers(0, len(d_w), (resamples, len(d_w)))
    stats = d_r[i].mean(1) * d_w[j].mean(1)
    value = float(d_r.mean() * d_w.mean())
    q_lo, q_hi = np.quantile(stats, [0.025, 0.975])
    return claims.Measurement(value, float(min(q_lo, value)), float(max(q_hi, value)), int(min(len(d_r), len(d_w))))


def _winrates(cfg, sft, val_prompts, params, per_prompt=False):
    """Win rate against ``pi_ref`` (ground-truth raters) and Monte Carlo ``KL(pi || pi_ref)`` on the
    first ``winrate_prompts`` val prompts, for stacked parameters ``(runs, T, ...)``; float64.

    The win rate of a checkpoint is ``mean_x P(y > y_ref | x)``, ``y ~ pi(.|x)`` and ``y_ref ~ pi_ref(.|x)``
    drawn with the suite's two win-rate keys (the same draws for every checkpoint). With
    ``per_prompt=True`` returns only ``P(y > y_ref | x)`` per prompt, ``(runs, T, prompts)``.
    """
    k, policy, raters = _keys(cfg), _policy(cfg), _raters(sft)
    ref_params = _unnamed(policy, sft["ref_params"])
    xw = val_prompts[: cfg["winrate_prompts"]]
    yref, mref = jax.jit(policy.sample)(ref_params, xw, k["winrate_reference"], 1.0)

    def wins(params):
        y, m = policy.sample(params, xw, k["winrate_policy"])
        return y, m, lg.preference_prob(raters, xw, y, m, yref, mref)

    def winrate(params):
        y, m, p = wins(params)
        lp, _ = policy.sequence_logps(params, xw, y, m)
        lr, _ = policy.sequence_logps(ref_params, xw, y, m)
        return jnp.mean(p), jnp.mean(lp - lr)

    if per_prompt:
        return np.asarray(jax.jit(jax.vmap(jax.vmap(lambda q: wins(q)[2])))(_unnamed(policy, params)), np.float64)
    win, kl = jax.jit(jax.vmap(jax.vmap(winrate)))(_unnamed(policy, params))
    return np.asarray(win, np.float64), np.asarray(kl, np.float64)


def _pearson(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _num(x):
    """A float for a claim's measurements, ``None`` where it is undefined (e.g. a correlation of constants)."""
    x = float(x)
    return x if np.isfinite(x) else None


def _near(values, x):
    """Index of the value closest to ``x``."""
    return int(np.argmin(np.abs(np.asarray(values, float) - x)))


# ============================================================================ claims
def _median_over_beta_of_mean(x):
    """``median_beta mean_pairs x`` for ``x`` of shape ``(pairs, betas)`` (the gap claims' statistic)."""
    return float(np.median(np.mean(x, axis=0)))


def _median_over_beta_of_size(x):
    """``median_beta |mean_pairs x|`` for ``x`` of shape ``(pairs, betas)`` (ranking-accuracy-barely-moves: the
    size of the change of ranking accuracy, ``x`` the per-pair change in ``{-1, 0, 1}``)."""
    return float(np.median(np.abs(np.mean(x, axis=0))))


def _table1_range_margin(x):
    """Distance inside Table 1's R* range, worst panel: for ``x`` of shape ``(pairs, panels, betas)`` (0/1
    idealized indicators), ``R*_{k,b} = mean_pairs x`` and the value is
    ``min_k min(min_b R*_{k,b} - 0.67, median_b R*_{k,b} - 0.93)`` (>= 0 iff every panel is in the range)."""
    r = np.mean(x, axis=0)
    return float(np.min(np.minimum(r.min(-1) - TABLE1_R_STAR["min"], np.median(r, -1) - TABLE1_R_STAR["median"])))


def _worst_method_gap(x):
    """``min_m median_b mean_pairs x`` for ``x`` of shape ``(pairs, methods, betas)``."""
    return float(np.min(np.median(np.mean(x, axis=0), axis=-1)))


def _pearson_of_points(xy):
    """Pearson correlation of the rows ``(x, y)`` of ``xy`` (shape ``(points, 2)``); 0 where either is constant
    (a resample with no spread has no linear relation to report)."""
    x, y = xy[:, 0], xy[:, 1]
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def claim_records(cfg, ev) -> list:
    """The contract-v3 records of :data:`CLAIMS`, in order, from the ``evaluate`` stage (subject and control
    measured for each; the framework gives the verdicts)."""
    spec = lambda i: claims.by_id(CLAIMS, i)
    tab, t1, fl, wr, pp = ev["tabular"], ev["table1"], ev["flips"], ev["winrate"], ev["per_pair"]
    per_beta = lambda v: dict(zip(map(str, cfg["betas"]), np.round(np.asarray(v, float), 4).tolist()))
    mmm = lambda v: [round(float(np.min(v)), 4), round(float(np.median(v)), 4), round(float(np.max(v)), 4)]
    pairs_first = lambda a: np.moveaxis(np.asarray(a, np.float64), -1, 0)                # pairs on the leading axis
    b01 = _near(cfg["betas"], 0.1)
    out = []

    gap_len = pairs_first(pp["R_len_star"].astype(float) - pp["R_len"])
    gap_len_tab = pairs_first(pp["R_len_star"].astype(float) - pp["tabular_R_len"])
    out.append(claims.evaluate(
        spec("alignment-gap"), claims.measure(gap_len, _median_over_beta_of_mean),
        claims.measure(gap_len_tab, _median_over_beta_of_mean),
        measured={"R_len_observed": per_beta(t1["R_len"]), "R_len_star": per_beta(t1["R_len_star_eq3"]),
                  "R_len_star_min_med_max": mmm(t1["R_len_star_eq3"]), "R_len_reference": t1["R_len_ref"],
                  "R_len_tabular_optimum": per_beta(pp["tabular_R_len"].mean(-1)),
                  "tabular_control_reached_thm31": {
                      "max_rel_err": float(tab["max_rel_err"]), "tolerance": THM31_TOL,
                      "R_tabular": per_beta(tab["R"]), "R_star": per_beta(tab["R_star"]),
                      "R_equals_R_star_at_every_beta": bool(np.array_equal(tab["R"], tab["R_star"]))}},
        note="R~ compares mean token log-probs; R~* by Eq. 3 with the length-normalised reference (the released "
             "code's normalized=True branch agrees up to its 5% tie band: R_len_star_code in table1.csv)"))

    gap = pairs_first(pp["R_star"].astype(float) - pp["R"])
    gap_code = pairs_first(pp["panel_R_star_code"][0].astype(float) - pp["R"])
    out.append(claims.evaluate(
        spec("alignment-gap-unnormalised"), claims.measure(gap, _median_over_beta_of_mean),
        claims.measure(gap_code, _median_over_beta_of_mean),
        measured={"R_observed": per_beta(t1["R"]), "R_star_eq3": per_beta(t1["R_star_eq3"]),
                  "R_star_code": per_beta(t1["R_star_code"]), "R_reference": t1["R_ref"]},
        note="Eq. 3's R* falls toward the reference's accuracy once beta * c dominates logit(alpha) (beta >= 1 "
             "here), so three of five betas cannot show a gap; with the released code's R* (the control) the gap "
             "is large: the paper's R* column is the code's (see table1-rstar-is-the-code-variant)"))

    code, eq3 = pp["panel_R_star_code"], pp["panel_R_star_eq3"]                               # (panels, betas, n)
    side = {f"{k} raters": {"R_star_eq3_min_med_max": mmm(eq3[i].mean(-1)),
                            "R_star_code_min_med_max": mmm(code[i].mean(-1)),
                            "R_star_code": per_beta(code[i].mean(-1)), "R_star_eq3": per_beta(eq3[i].mean(-1))}
            for i, k in enumerate(RATER_PANELS)}
    out.append(claims.evaluate(
        spec("table1-rstar-is-the-code-variant"), claims.measure(pairs_first(code), _table1_range_margin),
        claims.measure(pairs_first(eq3), _table1_range_margin),
        measured={"ours (one reference model, ~40k parameters)": side,
                  "Table 1 R* min/med/max per model": {k: list(v) for k, v in TABLE1_PER_MODEL.items()},
                  "R_len_star_code": per_beta(t1["R_len_star_code"])},
        note="side by side: Table 1's R* per released model, and on our pairs Eq. 3's R* and the code's R* per "
             "rater panel; the code's reference factor log p(y_w)/log p(y_l) stays near 1 for long responses, so "
             "the vote term decides and R* stays high at every beta"))
    claims.judge_old_check(out[-1], claims.measure(pairs_first(code[:1]), _table1_range_margin))

    mis = fl["difficulty"] > 0
    out.append(claims.evaluate(
        spec("few-misranked-pairs-flip"), claims.measure(pp["R"][b01, mis].astype(float)),
        claims.measure(np.asarray(fl["simpo_correct_best"])[mis].astype(float)),
        measured={"flipped_fraction": per_beta(fl["fraction"]), "median_beta_c": per_beta(fl["median_beta_c"]),
                  "flipped_fraction_tabular_optimum_beta_0.1 (v3's first control, alignment-gap's control run)":
                      round(float(pp["tabular_R"][b01, mis].mean()), 4),
                  "by_beta_c": [{"beta_c": f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">{lo:g}", "pairs": int(n),
                                 "flipped": None if not np.isfinite(f) else round(float(f), 4)}
                                for lo, hi, n, f in zip(FLIP_BINS[:-1], FLIP_BINS[1:], fl["bin_count"],
                                                        fl["bin_fraction"])],
                  "num_misranked": int(fl["num_misranked"])},
        note=f"median beta*c over misranked pairs at beta = 0.1: {fl['median_beta_c'][b01]:.2g} (the paper's Fig. 3 "
             "shows c up to ~500 nats, beta*c up to ~50 at beta = 0.1)"))

    ref_len = np.asarray(pp["R_len_reference"], np.float64)
    moved, moved_simpo = (pairs_first(np.asarray(pp[k], np.float64) - ref_len) for k in ("R_len", "simpo_R_len"))
    ref_raw = (np.asarray(fl["difficulty"]) < 0).astype(np.float64)         # c = log pi_ref(y_l) - log pi_ref(y_w)
    sens = {"unnormalised R (the same statistic; not the check)":
                claims.measure(pairs_first(np.asarray(pp["R"], np.float64) - ref_raw), _median_over_beta_of_size),
            "the tabular optimum's R~ (Thm 3.1; alignment-gap's control run)":
                claims.measure(pairs_first(np.asarray(pp["tabular_R_len"], np.float64) - ref_len),
                               _median_over_beta_of_size)}
    change = lambda v: dict(zip(map(str, cfg["betas"]), np.round(np.asarray(v, float) - ref_len.mean(), 4).tolist()))
    out.append(claims.evaluate(
        spec("ranking-accuracy-barely-moves"), claims.measure(moved, _median_over_beta_of_size),
        claims.measure(moved_simpo, _median_over_beta_of_size),
        measured={"R_len_reference": round(float(ref_len.mean()), 4),
                  "R_len_change_per_beta (signed)": change(np.asarray(pp["R_len"], float).mean(-1)),
                  "R_change_per_beta (unnormalised, signed)": dict(zip(
                      map(str, cfg["betas"]), np.round(np.asarray(pp["R"], float).mean(-1) - t1["R_ref"], 4).tolist())),
                  "simpo_R_len_change_per_beta (signed; the control)": dict(zip(
                      map(str, cfg["other_betas"]),
                      np.round(np.asarray(pp["simpo_R_len"], float).mean(-1) - ref_len.mean(), 4).tolist())),
                  "pairs_moved_up_per_beta": dict(zip(map(str, cfg["betas"]), np.sum(
                      np.asarray(pp["R_len"]) & ~np.asarray(pp["R_len_reference"], bool), -1).tolist())),
                  "pairs_moved_down_per_beta": dict(zip(map(str, cfg["betas"]), np.sum(
                      ~np.asarray(pp["R_len"]) & np.asarray(pp["R_len_reference"], bool), -1).tolist())),
                  "same statistic, other runs and metrics": {k: m.as_dict() for k, m in sens.items()},
                  "best-validation checkpoint index per beta (0 = pi_ref itself)": (
                      dict(zip(map(str, cfg["betas"]), np.asarray(ev["fig2"]["best_index"]).tolist()))
                      if "fig2" in ev else None)},
        note="declared (v3, session 8) after earlier runs had printed R~ per beta and R~(pi_ref) in "
             "alignment-gap's measured fields; the threshold is the paper's number (Tables 2-5), not ours"))

    near = np.asarray(wr["near"], bool)
    pts = lambda R, m: np.stack([np.asarray(R, np.float64)[m], np.asarray(wr["win"], np.float64)[m]], -1)
    common = {"split_distance": float(wr["split"]), "distance": "||theta - theta_ref||^2",
              "points": int(np.asarray(wr["win"]).size)}
    ctl = wr["control"]

    def control_points(method, want_near):
        """(points, 2) of the control runs of ``method``: their checkpoints nearer than (or beyond) their own
        median distance."""
        sel = np.asarray(ctl["loss_id"]) == method
        d = np.asarray(ctl["distance"], np.float64)[sel]
        side = d <= np.median(d) if want_near else d > np.median(d)
        return np.stack([np.asarray(ctl["R_train"], np.float64)[sel][side],
                         np.asarray(ctl["win"], np.float64)[sel][side]], -1)

    val_near = _pearson(np.asarray(wr["R_val"], np.float64)[near], np.asarray(wr["win"], np.float64)[near])
    val_far = _pearson(np.asarray(wr["R_val"], np.float64)[~near], np.asarray(wr["win"], np.float64)[~near])
    len_near = _pearson(np.asarray(wr["R_len_train"], np.float64)[near], np.asarray(wr["win"], np.float64)[near])
    out.append(claims.evaluate(
        spec("winrate-ranking-correlation-near"), claims.measure(pts(wr["R_train"], near), _pearson_of_points),
        claims.measure(control_points(IPO, True), _pearson_of_points),
        measured={**common, "pearson_near_validation_accuracy (v3's first control)": _num(val_near),
                  "pearson_near_length_normalised_accuracy (v3's second control)": _num(len_near)},
        note="points: every checkpoint of the gamma runs nearer than the median distance; they are not independent "
             "(consecutive checkpoints of one run), so the interval is optimistic"))
    far_note = ("the far checkpoints of the gamma >= 1.5 runs lose win rate as their samples leave the language "
                "(the fluency term) while their ranking accuracy keeps its level, but across runs ranking accuracy "
                "and win rate still rise together, so the pooled correlation far away is positive where Fig. 4 "
                "shows it negative: the anti-correlation does not reproduce in our toy")
    out.append(claims.evaluate(
        spec("winrate-ranking-correlation"), claims.measure(pts(wr["R_train"], ~near), _pearson_of_points),
        claims.measure(control_points(CDPO, False), _pearson_of_points),
        measured={**common, "pearson_near": _num(wr["pearson_near"]),
                  "pearson_far_validation_accuracy (v3's first control)": _num(val_far)}, note=far_note))
    pn, pf = float(wr["pearson_near"]), float(wr["pearson_far"])
    if np.isfinite(pn) and np.isfinite(pf):
        claims.judge_old_check(out[-1], claims.exact(min(pn - 0.5, (pn - 0.3) - pf)))

    f10 = ev["fig10"]
    gam = np.asarray(f10["gamma"], np.float64)
    order = np.argsort(gam, kind="stable")
    large = [i for i in order if gam[i] >= TREND_GAMMA]
    out.append(claims.evaluate(
        spec("gamma-trend-together-large-gamma"), _trend_measurement(f10, large, cfg["seed"]),
        _trend_measurement(f10, list(order[:2]), cfg["seed"]),
        measured={"per_gamma (best-validation checkpoint)": [
                      {"gamma": float(gam[i]), "best_step_index": int(f10["best_index"][i]),
                       "R_train": round(float(np.mean(f10["correct"][i])), 4),
                       "win_rate": round(float(np.mean(f10["win_per_prompt"][i])), 4),
                       "win_rate_in_winrate_points (the same checkpoint, batched with the others)":
                           round(float(f10["win_stored"][i]), 4),
                       "distance": round(float(f10["distance"][i]), 4)} for i in order],
                  "gammas_judged": [float(gam[i]) for i in large], "control_gammas": [float(gam[i]) for i in order[:2]]},
        note="one step in gamma (1.5 -> 2) where the paper's Fig. 10(a) plots five gammas >= 1.25 (1.25 to 2.25); the "
             "product is positive when both rise or both fall"))

    methods = [METHODS[m] for m in (IPO, CDPO, RDPO, ONLINE_IPO)]
    out.append(claims.evaluate(
        spec("alignment-gap-other-methods"), claims.measure(pairs_first(pp["other_gap"]), _worst_method_gap),
        claims.measure(pairs_first(pp["other_gap_reference"]), _worst_method_gap),
        measured={"median_gap_own_idealized": dict(zip(methods, np.round(np.median(
                      np.asarray(pp["other_gap"]).mean(-1), -1), 4).tolist())),
                  "beta_grid": [float(b) for b in cfg["other_betas"]]},
        note="each method's own idealized accuracy (IPO (alpha - 1/2)/beta, cDPO and rDPO their effective labels, "
             "online IPO the true preference) collapses to the reference's for beta >= 1, as Eq. 3's does"))
    return out

# ============================================================================ tables and plots
def report(ctx: SuiteContext, cfg, train, ev) -> None:
    """The tables (``table1.csv``, ``alignment_gap.csv``, ``flips_by_beta_c.csv``, ``fig2_categories.csv``,
    ``winrate_points.csv``, ``fig10_gamma.csv``) and figures, from the stage outputs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    off, o, fl, wr = ev["offline"], ev["online"], ev["flips"], ev["winrate"]
    loss_id = train["offline"]["loss_id"]
    row_beta, row_gamma = ([float(v) for v in train["offline"][k]] for k in ("beta", "gamma"))
    table = [{"method": METHODS[m], "beta": float(b), "gamma": float(g) if m == GAMMA_DPO else "",
              "best_step": int(off["best_step"][r]), "R_train": off["R_train"][r], "R_len_train": off["R_len_train"][r],
              "R_val": off["R_val"][r], "R_star_dpo": off["R_star_dpo"][r], "R_star_len_dpo": off["R_star_len_dpo"][r],
              "R_star_own": off["R_star_own"][r], "R_ref": ev["table1"]["R_ref"]}
             for r, (m, b, g) in enumerate(zip(loss_id, row_beta, row_gamma))]
    table += [{"method": METHODS[ONLINE_IPO], "beta": float(b), "gamma": "", "best_step": cfg["online_steps"],
               "R_train": o["R_train"][i], "R_len_train": o["R_len_train"][i], "R_val": o["R_val"][i],
               "R_star_dpo": o["R_star_dpo"][i], "R_star_len_dpo": o["R_star_len_dpo"][i], "R_star_own": o["R_star_own"][i],
               "R_ref": ev["table1"]["R_ref"]} for i, b in enumerate(train["online"]["beta"])]
    ctx.write_csv("alignment_gap.csv", table)
    t1 = ev["table1"]
    ctx.write_csv("table1.csv", [{k: (t1[k][i] if np.ndim(t1[k]) else t1[k]) for k in t1} for i in range(len(t1["beta"]))])
    ctx.write_csv("flips_by_beta_c.csv", [
        {"beta_c_from": FLIP_BINS[i], "beta_c_to": FLIP_BINS[i + 1], "misranked_pairs": int(fl["bin_count"][i]),
         "flipped_fraction_dpo": fl["bin_fraction"][i], "flipped_fraction_idealized": fl["bin_fraction_ideal"][i]}
        for i in range(len(FLIP_BINS) - 1)])
    f2, steps_all = ev["fig2"], train["offline"]["steps"]
    ctx.write_csv("fig2_categories.csv", [
        {"beta": float(b), "step": int(steps_all[t]), "category": CATEGORIES[c], "share": f2["share"][i, t, c],
         "mean_loss": f2["loss"][i, t, c], "mean_margin": f2["margin"][i, t, c]}
        for i, b in enumerate(cfg["betas"]) for t in range(len(steps_all)) for c in range(len(CATEGORIES))])
    wr_rows, steps = train["offline"]["winrate_rows"], train["offline"]["steps"]
    ctx.write_csv("winrate_points.csv", [
        {"method": METHODS[loss_id[r]], "beta": float(row_beta[r]), "gamma": float(row_gamma[r]), "step": int(steps[s]),
         "kl": wr["kl"][i, s], "distance": wr["distance"][i, s], "win_rate": wr["win"][i, s],
         "R_train": wr["R_train"][i, s]}
        for i, r in enumerate(wr_rows) for s in range(len(steps))])
    f10 = ev["fig10"]
    ctx.write_csv("fig10_gamma.csv", [
        {"gamma": float(f10["gamma"][i]), "best_step": int(steps[f10["best_index"][i]]),
         "R_train": float(np.mean(f10["correct"][i])), "win_rate": float(np.mean(f10["win_per_prompt"][i])),
         "distance": float(f10["distance"][i])} for i in np.argsort(f10["gamma"], kind="stable")])

    betas = np.asarray(cfg["betas"], np.float32)
    dpo = np.flatnonzero(loss_id == DPO)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(betas, t1["R_star_eq3"], "o-", label="idealized R* (Eq. 3)")
    ax[0].plot(betas, t1["R_star_code"], "o:", label="idealized R* (authors' code)")
    ax[0].plot(betas, t1["R_len_star_eq3"], "s--", label="idealized R~*")
    ax[0].plot(betas, off["R_train"][dpo], "o-", label="observed R (DPO, best val ckpt)")
    ax[0].plot(betas, off["R_len_train"][dpo], "s--", label="observed R~")
    ax[0].axhline(t1["R_ref"], color="gray", lw=0.8, label="reference R")
    ax[0].set_xscale("log"); ax[0].set_xlabel("beta"); ax[0].set_ylabel("ranking accuracy (train pairs)")
    ax[0].legend(fontsize=7); ax[0].set_title("alignment gap")
    r01 = dpo[_near([row_beta[r] for r in dpo], 0.1)]
    b01, c_tr = row_beta[r01], fl["difficulty"]
    cc = np.linspace(c_tr.min(), c_tr.max(), 200)
    lossb = np.logaddexp(0.0, -b01 * fl["margin_best"][r01])
    okb = fl["correct_best"][r01]
    ax[1].scatter(c_tr[okb], lossb[okb], s=6, label="ranked correctly")
    ax[1].scatter(c_tr[~okb], lossb[~okb], s=6, label="ranked incorrectly")
    ax[1].plot(cc, np.logaddexp(0.0, -b01 * cc), "k-", lw=1, label="threshold -log sigmoid(beta c)")
    ax[1].set_xlabel("difficulty c = log pi_ref(y_l)/pi_ref(y_w)"); ax[1].set_ylabel("DPO loss at best ckpt")
    ax[1].set_title(f"Thm 4.1 (beta={b01})"); ax[1].legend(fontsize=7)
    ctx.savefig(fig, "alignment_gap_and_flips.png")

    i01 = _near(cfg["betas"], 0.1)
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
    for c, name in enumerate(CATEGORIES):
        for a, key in zip(ax, ("loss", "margin", "share")):
            a.plot(steps_all, f2[key][i01, :, c], "o-", ms=3, label=name)
    for a, key in zip(ax, ("mean DPO loss", "mean reward margin beta*h", "share of the data")):
        a.axvline(steps_all[f2["best_index"][i01]], color="gray", ls="--", lw=0.8)
        a.set_xlabel("step"); a.set_ylabel(key)
    ax[2].legend(fontsize=7); ax[0].set_title(f"Fig. 2 analogue (DPO, beta={cfg['betas'][i01]:g}; dashed: best val)")
    ctx.savefig(fig, "fig2_categories.png")

    Rw, win = wr["R_train"], wr["win"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for i, r in enumerate(wr_rows):
        lab = f"{METHODS[loss_id[r]]} b={row_beta[r]:g}" + (f" g={row_gamma[r]:g}" if loss_id[r] == GAMMA_DPO else "")
        ax[0].plot(Rw[i], win[i], "o-", ms=3, label=lab)
    ax[0].set_xlabel("ranking accuracy (train pairs)"); ax[0].set_ylabel("win rate vs pi_ref (ground truth)")
    ax[0].legend(fontsize=6)
    sc = ax[1].scatter(Rw.ravel(), win.ravel(), c=np.log10(np.maximum(wr["distance"].ravel(), 1e-8)), s=10)
    fig.colorbar(sc, ax=ax[1], label="log10 ||theta - theta_ref||^2")
    ax[1].set_title(f"corr near={wr['pearson_near']:.2f}, far={wr['pearson_far']:.2f} "
                    f"(split at ||theta-theta_ref||^2={wr['split']:.3g})")
    ax[1].set_xlabel("ranking accuracy (train pairs)")
    ctx.savefig(fig, "winrate_vs_ranking.png")


# ============================================================================ the suite
def reproduce(ctx: SuiteContext):
    """Suite ``ranking-accuracy`` (Chen et al. 2024, arXiv 2405.19534): see ``papers/ranking_accuracy.md``."""
    cfg = dict(SETTINGS[ctx.scale])
    num_steps, log_every = _schedule(cfg)
    ctx.config["scale"] = ctx.scale
    ctx.config.update({k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()})
    ctx.config.update({"num_steps": num_steps, "log_every": log_every, "offline_rows": len(_rows(cfg)[0])})
    p = ctx.progress
    sft = ctx.stage("sft", lambda: run_sft(cfg, p))
    pairs = ctx.stage("pairs", lambda: sample_pairs(cfg, sft, p))
    tabular = ctx.stage("tabular", lambda: run_tabular(cfg, pairs, p))
    train = ctx.stage("train", lambda: run_training(cfg, sft, pairs, p))
    ev = ctx.stage("evaluate", lambda: evaluate(cfg, sft, pairs, tabular, train, p))
    report(ctx, cfg, train, ev)
    orpo = ctx.stage("orpo", lambda: ORPO.orpo_stage(cfg, sft, pairs, p))
    many = ctx.stage("many-responses", lambda: MANY.many_stage(cfg, sft, pairs, train, ev, p))
    return claim_records(cfg, ev) + ORPO.orpo_claims(orpo) + MANY.many_claims(many)


SUITES.register("ranking-accuracy", reproduce,
                meta={"description": "Chen et al. 2024: ranking accuracy vs idealized, flip theorem, win-rate "
                                     "correlation, on a tiny SFT'd token LM",
                      "claims": CLAIMS,
                      "quick_seconds": 350})  # a hint: `reproduce all --jobs N` starts the longest suites first


# ============================================================================ the page's claims tables
RESTATED = (
    {"id": "thm31-dpo-optimum", "old_statement": "Tabular soft-label DPO reaches Thm 3.1's closed form and R = R*.",
     "old_check": "max rel. err <= 1e-3 AND R == R* at every beta; control: the reference policy (off by "
                  "logit(alpha)/beta by construction).",
     "old_verdict": "holds (quick and full); control fails", "new_id": None,
     "new": "unit test `tests/test_ranking_suite.py::test_tabular_soft_label_dpo_reaches_the_thm31_optimum`; the "
            "suite's tabular run and its error are reported beside `alignment-gap` (its control)",
     "why": "issue 22 review: a gradient descent on a strictly convex one-dimensional loss per pair reaching its "
            "closed-form minimiser is guaranteed by the optimiser (a unit test, not a reproduction). An earlier v3 "
            "version kept it as a claim with the descent at a tenth of its budget as control (holds / fails)."},
    {"id": "alignment-gap", "old_statement": "median over beta of R~* - R~ >= 0.10 (Table 1, Sec. 3.3).",
     "old_check": "median gap >= 0.10 (point value); control: tabular DPO's R against R* (0 by construction, "
                  "shared by three claims).",
     "old_verdict": "holds (quick and full); control fails", "new_id": "alignment-gap",
     "why": "same check with a bootstrap interval over pairs; the control is the tabular optimum's R~ (length "
            "normalisation makes it differ from R~*: measured, not zero by construction)."},
    {"id": "alignment-gap-unnormalised", "old_statement": "median over beta of R* (Eq. 3) - R >= 0.10.",
     "old_check": "median gap >= 0.10; control: the shared tabular control (0 by construction).",
     "old_verdict": "fails (quick and full); control fails", "new_id": "alignment-gap-unnormalised",
     "why": "same check with an interval; the control is the same gap with the released code's R*, a run that "
            "can pass."},
    {"id": "table1-rstar-is-the-code-variant",
     "old_statement": "Table 1's R* column is what the released code computes (attributed to Table 1, Eq. 3 and the "
                      "code).",
     "old_check": "code's R* min >= 0.67 AND median >= 0.93 (4 raters, ties dropped); control: Eq. 3's R*.",
     "old_verdict": "holds (quick and full); control fails", "new_id": "table1-rstar-is-the-code-variant",
     "why": "mis-attributed: a finding of ours, now labelled beyond the paper; its v2 verdict depended on the "
            "4-rater panel chosen after it failed with 5 raters, so v3 takes the worse of both panels (harder); "
            "Eq. 3's, the code's and Table 1's values side by side below."},
    {"id": "few-misranked-pairs-flip", "old_statement": "DPO flips < 10% of the misranked pairs (beta = 0.1).",
     "old_check": "flipped fraction < 0.10; control: the idealized policy (closed form).",
     "old_verdict": "holds (quick and full); control fails", "new_id": "few-misranked-pairs-flip",
     "why": "same check with an interval over misranked pairs. The control was first the tabular run at its optimum "
            "(a run, not the closed form: fails), but that run is also alignment-gap's control; one control per "
            "claim, so it is now SimPO at beta = 0.1 at its best checkpoint (the tabular optimum's fraction stays "
            "in measured)."},
    {"id": "fig2-loss-falls-ranking-stays",
     "old_statement": "Pairs that stay misranked have mean loss < log 2 and mean margin > 0; few change category.",
     "old_check": "loss < log 2 - 1e-4 AND margin > 1e-4 AND incorrect->correct share < 0.10; control: the reference "
                  "(loss log 2, margin 0 by construction).",
     "old_verdict": "holds (quick and full); control fails", "new_id": None,
     "new": "unit tests `tests/test_ranking_metrics.py::test_fig2_*` (Jensen: mean loss < log 2 forces mean margin "
            "> 0; the reference has loss log 2 and margin 0; a misranked pair moved by 0 < h < c lowers its loss and "
            "stays misranked); the share is few-misranked-pairs-flip's quantity.",
     "why": "algebra: the loss is a decreasing convex function of the margin, and the control could not pass."},
    {"id": "winrate-ranking-correlation",
     "old_statement": "Ranking accuracy and win rate correlate near theta_ref and much less far from it.",
     "old_check": "Pearson near >= 0.5 AND far <= near - 0.3; control: win rates shuffled across checkpoints.",
     "old_verdict": "holds (quick and full); control fails", "new_id": "winrate-ranking-correlation",
     "why": "weaker than the paper: Fig. 4 shows anti-correlation far from theta_ref; v3 checks its sign (and the "
            "near half as winrate-ranking-correlation-near); the shuffled control was the same data reordered, now "
            "the checkpoints of the cDPO runs beyond their median distance (a second run; the validation-pair accuracy of "
            "the same checkpoints, v3's first control, was a measurement of the subject's own runs: reported)."},
    {"id": "(part of winrate-ranking-correlation)", "old_statement": "the near half of the v2 compound check.",
     "old_check": "Pearson near >= 0.5.", "old_verdict": "holds (quick and full)",
     "new_id": "winrate-ranking-correlation-near",
     "why": "split out: Fig. 4 says 'correlated' near theta_ref (the sign), not a size. Its control was first the "
            "validation-pair version, which was also the far claim's control, then the length-normalised accuracy "
            "R~ of the same checkpoints; both read the subject's own runs, so it is now the checkpoints of the IPO "
            "runs nearer than their median distance (both earlier versions stay in measured)."},
    {"id": "alignment-gap-other-methods",
     "old_statement": "Beyond the paper: IPO, cDPO, rDPO, online IPO each >= 0.10 below their own idealized accuracy.",
     "old_check": "every method's median gap >= 0.10; control: the shared tabular control (0 by construction).",
     "old_verdict": "fails (quick and full); control fails", "new_id": "alignment-gap-other-methods",
     "why": "same check as one scalar (min over methods) with an interval; the control is the untrained reference "
            "against each method's own idealized accuracy."},
)
"""The suite's v2 claims and how contract v3 restates them (old verdicts from the v2 page)."""


def _table1_side_by_side(run: dict) -> list[str]:
    """Markdown: Table 1's R* (min/median/max over beta) per released model beside Eq. 3's and the code's on our
    pairs, per rater panel, read from a run's summary."""
    rec = next(c for c in run["claims"] if c["id"] == "table1-rstar-is-the-code-variant")
    m = rec["measured"]
    fmt = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    lines = ["| model | R* by Eq. 3 (min / med / max) | R* as the released code computes it | Table 1's R* |",
             "|---|---|---|---|"]
    for name, v in m["Table 1 R* min/med/max per model"].items():
        lines.append(f"| {name} (Table 1) | not computable (no released data) | not computable | {fmt(v)} |")
    for panel, d in m["ours (one reference model, ~40k parameters)"].items():
        lines.append(f"| ours, {panel} | {fmt(d['R_star_eq3_min_med_max'])} | {fmt(d['R_star_code_min_med_max'])} | "
                     "(range: min >= 0.67, median >= 0.93) |")
    return lines


def claims_tables(quick_dir, full_dir=None) -> str:
    """The markdown of ``papers/ranking_accuracy.md``'s claims sections from the runs' ``summary.json``: the
    verdict table (quick, and full where given), Table 1 side by side, the checks changed after a run, and the
    table "claims restated in v3"."""
    from alignjax_experiments import _claims_page as page

    quick = page.escaped(page.load_summary(quick_dir))   # a bare | in a check's text would split a table cell
    full = page.escaped(page.load_summary(full_dir)) if full_dir else None
    lines = []
    if full:
        lines += [*page.verdict_table(quick, full), "", page.agreement_text(quick, full)]
    else:
        lines += ["| claim | check | subject, quick | verdict quick | control, quick | control verdict quick |",
                  "|---|---|---|---|---|---|"]
        for c in quick["claims"]:
            lines.append(f"| `{c['id']}` | {page.check_text(c['check'])} | {page.interval(c['subject'])} | "
                         f"{c['verdict']} | {page.interval(c['control'])} | {c['control']['verdict']} |")
        lines += ["", "Full: not rerun under v3 yet (see below)."]
    src = full or quick
    lines += ["", "### Table 1's R*: Eq. 3, the released code, the paper", "", *_table1_side_by_side(src), "",
              "### Checks changed after a run", "",
              *[h if full else h.replace("verdict at full:", "verdict at quick:") for h in page.history_lines(src)],
              "", "### Claims restated in v3", "",
              *page.restated_table(RESTATED, quick, src)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m alignjax_experiments.ranking_accuracy QUICK_DIR [FULL_DIR]
    import sys

    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m alignjax_experiments.ranking_accuracy QUICK_DIR [FULL_DIR]")
    print(claims_tables(*sys.argv[1:]), end="")
