"""preference-models' claims on single-reward RLHF's minority gap: how it depends on the minority's
share and on how far the groups' preferences differ (Chakraborty et al. 2024, MaxMin-RLHF, Sec. 3).

What could be read of the paper: the section title of Sec. 3 ("An Impossibility Result for Single
Reward RLHF with Diverse Preferences", arXiv 2402.08925 v2 HTML, table of contents) and the abstract
("we first derive an impossibility result of alignment with single reward RLHF"). The theorem itself
could not be read; secondary summaries (the alphaxiv overview of 2402.08925: diversity between
sub-populations measured by a total-variation distance, a reward mismatch lemma, then the theorem)
state its direction: the alignment gap of single-reward RLHF for a minority grows with the groups'
diversity and with the minority's under-representation. The checks below test that direction on
the gap itself (the theorem is a lower bound; a lower bound that grows does not force the gap to
grow, so this is our reading, and it can fail).

The toy (the suite's MaxMin instance, :func:`share_instance`): ``X`` prompts x ``N`` responses,
``pi_ref = softmax(ref_scale N(0, 1))``, a majority reward ``r_maj ~ N(0, 1)`` and a minority reward
``r_min = rho r_maj + sqrt(1 - rho^2) z`` (``z ~ N(0, 1)``), both centred under ``pi_ref``; ``H``
annotators, the first ``round(share H)`` of them in the minority, each labelling
``labels_per_annotator`` pairs ``y, y' ~ pi_ref`` by Bradley-Terry under its group's reward (the same
uniform draws for every share and rho, so the configurations differ only by the share and rho).
Single-reward RLHF fits one tabular BT reward to the pooled labels (the suite's fitter and budget)
and takes its KL-regularised optimum ``pi_ref exp(r_hat / beta)``. The minority's gap is its
regret, ``G_min(pi) = F_min(pi*_min) - F_min(pi) = beta KL(pi || pi*_min)``, with ``F_u(pi) = E_pi
r_u - beta KL(pi || pi_ref)`` and ``pi*_min`` the minority's own optimum.
"""
from __future__ import annotations

from alignjax import claims as C

MAXMIN_SRC = "Chakraborty et al. 2024, MaxMin-RLHF (arXiv 2402.08925, ICML 2024)"
SHARES = (0.5, 0.3, 0.2, 0.1, 0.05)
"""The minority's share of the annotators, shrinking (with 20 annotators: 10, 6, 4, 2, 1 of them)."""
SHARE_AXIS_RHO = -0.5
"""rho along the share axis: the suite's conflicting groups."""
RHOS = (1.0, 0.5, 0.0, -0.5, -1.0)
"""The correlation of the groups' rewards, falling: the groups' preferences differ more at each step."""
RHO_AXIS_SHARE = 0.1
"""The minority's share along the rho axis (2 of 20 annotators: about the paper's 10:1)."""
ANNOTATORS = 20
MIN_STEP = 0.0
"""Every step along an axis increases the gap: the direction of the theorem (as summarised)."""

_SHARE_METRIC = ("median over seeds of the smallest step of the minority's gap G_min(single-reward RLHF) along the "
                 "shrinking share, min_i [G(share_{i+1}) - G(share_i)]")
_RHO_METRIC = ("median over seeds of the smallest step of the minority's gap G_min(single-reward RLHF) along the "
               "falling rho, min_i [G(rho_{i+1}) - G(rho_i)]")
_PLACE = (f"{MAXMIN_SRC}, Sec. 3 ('An Impossibility Result for Single Reward RLHF with Diverse Preferences'; the "
          "section title and the abstract read, the theorem's statement NOT read). Its direction, that the gap grows "
          "with the groups' diversity (a total-variation distance between their preference distributions) and as "
          "the minority's share shrinks, is taken from secondary summaries (the alphaxiv overview of 2402.08925); no "
          "theorem number or constant is cited")
_SETTING = ("The suite's MaxMin instance: 4 prompts x 8 responses, pi_ref = softmax(0.5 N(0, 1)), r_maj ~ N(0, 1), "
            "r_min = rho r_maj + sqrt(1 - rho^2) z, both centred under pi_ref; 20 annotators, the first round(20 share) "
            "in the minority, 400 Bradley-Terry labels each on pairs drawn from pi_ref (the same draws for every "
            "configuration); single-reward RLHF: one tabular BT reward fitted to the pooled labels (the suite's "
            "fitter: 60 x 20 full-batch Adam steps, learning rate 0.1), then pi_ref exp(r_hat / beta), beta = 0.5; "
            "G_min(pi) = F_min(pi*_min) - F_min(pi) = beta KL(pi || pi*_min); 8 (quick) / 32 (full) seeds, the "
            "bootstrap units. The paper's setting is language models with PPO and learned reward models")
_CONTROL = ("Minority-only RLHF: the BT reward fitted to the minority annotators' labels alone (same instances, fitter "
            "and budget) and its KL-regularised optimum; its gap G_min along the same axis, judged by the same "
            "check. It has no structural dependence on the share or on rho (it never sees the majority), so it "
            "passes only through estimation: fewer minority labels as the share shrinks (a real competitor "
            "explanation of the subject's trend), or noise along rho.")

SPECS = (
    C.ClaimSpec(
        id="single-reward-gap-grows-as-minority-shrinks",
        statement=("Single-reward RLHF's alignment gap for a minority grows as the minority's share of the annotators "
                   "shrinks: with conflicting groups (rho = -0.5) the minority's regret G_min = F_min(pi*_min) - "
                   "F_min(pi_single) rises at every step of the share grid 0.5, 0.3, 0.2, 0.1, 0.05 (median over seeds "
                   "of the smallest step > 0)."),
        source=_PLACE,
        paper_value=("Sec. 3: an impossibility result (a lower bound on single-reward RLHF's alignment gap for the "
                     "minority, growing as the minority's share falls, as summarised); v1 abstract: MaxMin improves "
                     "the minority's win rate 'by over 33%'. No number to compare"),
        setting=_SETTING + "; shares 0.5, 0.3, 0.2, 0.1, 0.05 at rho = -0.5",
        check=C.Check(_SHARE_METRIC, ">", MIN_STEP,
                      "docs/thresholds.md#single-reward-gap-grows-as-minority-shrinks: the theorem's direction (as "
                      "summarised); every step, so that the check tests 'grows', not only the two ends"),
        control=_CONTROL),
    C.ClaimSpec(
        id="single-reward-gap-grows-with-diversity",
        statement=("Single-reward RLHF's alignment gap for a minority grows as the groups' preferences differ more: with "
                   "the minority at 2 of 20 annotators the minority's regret G_min = F_min(pi*_min) - "
                   "F_min(pi_single) rises at every step of rho = 1, 0.5, 0, -0.5, -1 (median over seeds of the "
                   "smallest step > 0; the total-variation distance between the groups' preference distributions is "
                   "reported per rho)."),
        source=_PLACE,
        paper_value=("Sec. 3: an impossibility result (a lower bound on single-reward RLHF's alignment gap for the "
                     "minority, growing with the groups' diversity, as summarised). No number to compare"),
        setting=_SETTING + "; rho = 1, 0.5, 0, -0.5, -1 at share 0.1",
        check=C.Check(_RHO_METRIC, ">", MIN_STEP,
                      "docs/thresholds.md#single-reward-gap-grows-with-diversity: the theorem's direction (as "
                      "summarised); every step, so that the check tests 'grows', not only the two ends"),
        control=_CONTROL),
)
