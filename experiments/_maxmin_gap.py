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

The toy (a variant of the suite's MaxMin instance, :func:`share_instance`: 20 annotators instead of
20 + 2, the minority listed first): ``X`` prompts x ``N`` responses,
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

import jax
import jax.numpy as jnp
import numpy as np

from alignjax import claims as C
from alignjax import maxmin as mm
from alignjax.experiment import Program
from alignjax.metrics.coverage import optimal_policy
from alignjax.reward_model import reward_fitter, tabular_reward

MAXMIN_SRC = "Chakraborty et al. 2024, MaxMin-RLHF (arXiv 2402.08925, ICML 2024)"
SHARES = (0.5, 0.3, 0.2, 0.1, 0.05)
"""The minority's share of the annotators, shrinking (with 20 annotators: 10, 6, 4, 2, 1 of them)."""
SHARE_AXIS_RHO = -0.5
"""rho along the share axis: the suite's conflicting groups."""
RHOS = (1.0, 0.5, 0.0, -0.5, -1.0)
"""The correlation of the groups' rewards, falling: the groups' preferences differ more at each step in
expectation (the TV distance between them rises at every step in 29 of the full run's 32 seeds)."""
RHO_AXIS_SHARE = 0.1
"""The minority's share along the rho axis (2 of 20 annotators, 9:1; the paper's ratio is 10:1)."""
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
_SETTING = ("A variant of the suite's MaxMin instance (20 annotators, not 20 + 2; the minority listed first; labels "
            "by shared uniform thresholds): 4 prompts x 8 responses, pi_ref = softmax(0.5 N(0, 1)), r_maj ~ N(0, 1), "
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
_CONTROL_SHARE = _CONTROL + (" Here: the runs of the share axis (rho = -0.5), where the minority-only fit has 400 to "
                             "4,000 labels.")
_CONTROL_RHO = _CONTROL + (" Here: the runs of the rho axis (share 0.1), where the minority-only fit has 800 labels "
                           "at every rho.")

def _gap_spec(cid: str, statement: str, grows_with: str, axis: str, metric: str, control: str) -> C.ClaimSpec:
    """One of the two claims: the same source, setting and threshold origin, along its own axis."""
    return C.ClaimSpec(
        id=cid, statement=statement, source=_PLACE,
        paper_value=("Sec. 3: an impossibility result (a lower bound on single-reward RLHF's alignment gap for the "
                     f"minority, growing {grows_with}, as summarised). No number to compare"),
        setting=_SETTING + "; " + axis,
        check=C.Check(metric, ">", MIN_STEP,
                      f"docs/thresholds.md#{cid}: the theorem's direction (as summarised); every step, so that the "
                      "check tests 'grows', not only the two ends"),
        control=control)


SPECS = (
    _gap_spec("single-reward-gap-grows-as-minority-shrinks",
              "Single-reward RLHF's alignment gap for a minority grows as the minority's share of the annotators "
              "shrinks: with conflicting groups (rho = -0.5) the minority's regret G_min = F_min(pi*_min) - "
              "F_min(pi_single) rises at every step of the share grid 0.5, 0.3, 0.2, 0.1, 0.05 (median over seeds "
              "of the smallest step > 0).",
              "as the minority's share falls", "shares 0.5, 0.3, 0.2, 0.1, 0.05 at rho = -0.5", _SHARE_METRIC,
              _CONTROL_SHARE),
    _gap_spec("single-reward-gap-grows-with-diversity",
              "Single-reward RLHF's alignment gap for a minority grows as the groups' preferences differ more: with "
              "the minority at 2 of 20 annotators the minority's regret G_min = F_min(pi*_min) - "
              "F_min(pi_single) rises at every step of rho = 1, 0.5, 0, -0.5, -1 (median over seeds of the "
              "smallest step > 0; the total-variation distance between the groups' preference distributions is "
              "reported per rho).",
              "with the groups' diversity", "rho = 1, 0.5, 0, -0.5, -1 at share 0.1", _RHO_METRIC, _CONTROL_RHO),
)


# ----------------------------------------------------------------------------------------------- the stage
def configs() -> dict:
    """The stage's configurations as sweep leaves: the share axis (at :data:`SHARE_AXIS_RHO`), then the rho
    axis (at :data:`RHO_AXIS_SHARE`), ``len(SHARES) + len(RHOS)`` rows."""
    share = [*SHARES, *([RHO_AXIS_SHARE] * len(RHOS))]
    rho = [*([SHARE_AXIS_RHO] * len(SHARES)), *RHOS]
    return {"share": np.asarray(share, np.float32), "rho": np.asarray(rho, np.float32)}


def share_instance(key, cfg, share, rho):
    """``(r (2, X, N) centred [majority, minority], log_pi_ref (X, N), AnnotatedPairs, group (H,))``.

    :data:`ANNOTATORS` annotators, the first ``round(share H)`` in the minority (``group = 1``), each
    labelling ``labels_per_annotator`` pairs ``y, y' ~ pi_ref`` by Bradley-Terry under its group's reward:
    ``y`` wins when ``u < sigmoid(r_g(y) - r_g(y'))`` with one uniform ``u`` per pair, so configurations
    with another share or rho see the same prompts, pairs and uniforms (common random numbers).
    """
    X, N, H = cfg["mm_prompts"], cfg["mm_responses"], ANNOTATORS
    M = H * cfg["labels_per_annotator"]
    k_r, k_z, k_ref, k_x, k_a, k_b, k_u = jax.random.split(key, 7)
    r_maj = jax.random.normal(k_r, (X, N))
    r_min = rho * r_maj + jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0)) * jax.random.normal(k_z, (X, N))
    log_ref = jax.nn.log_softmax(cfg["ref_scale"] * jax.random.normal(k_ref, (X, N)), axis=-1)
    r = mm.center_rewards(jnp.stack([r_maj, r_min]), log_ref)
    group = (jnp.arange(H) < jnp.round(share * H)).astype(jnp.int32)
    ann = jnp.repeat(jnp.arange(H), cfg["labels_per_annotator"])
    x = jax.random.randint(k_x, (M,), 0, X)
    a = jax.random.categorical(k_a, log_ref[x])
    b = jax.random.categorical(k_b, log_ref[x])
    g = group[ann]
    win = jax.random.uniform(k_u, (M,)) < jax.nn.sigmoid(r[g, x, a] - r[g, x, b])
    valid = (a != b).astype(r.dtype)
    pairs = mm.AnnotatedPairs(x, jnp.where(win, a, b), jnp.where(win, b, a), valid / jnp.sum(valid), ann)
    return r, log_ref, pairs, group


def preference_tv(r, log_ref):
    """The groups' diversity: ``mean_x E_{y, y' ~ pi_ref} |sigmoid(r_maj(y) - r_maj(y')) - sigmoid(r_min(y) -
    r_min(y'))|``, the total-variation distance between the two groups' label distributions on a pair drawn from
    ``pi_ref``, averaged over pairs and prompts."""
    p = jax.nn.sigmoid(r[:, :, :, None] - r[:, :, None, :])                         # (2, X, N, N)
    ref = jnp.exp(log_ref)
    return jnp.mean(jnp.einsum("xa,xab,xb->x", ref, jnp.abs(p[0] - p[1]), ref))


def gap_program(cfg) -> Program:
    """Single-reward RLHF (the pooled BT fit) and minority-only RLHF (the control), ``m_steps`` Adam steps of each
    fit per program step; observed: each group's regret ``G_u(pi) = F_u(pi*_u) - F_u(pi)`` under both policies
    (``(2,)``: majority, minority) and the groups' :func:`preference_tv`."""
    from alignjax_experiments.preference_models import minority_pairs  # the suite's (it imports this module)

    X, N = cfg["mm_prompts"], cfg["mm_responses"]
    model = tabular_reward(X, N)
    bt = reward_fitter(model)

    def init(h, key):
        k_inst, k_fit = jax.random.split(key)
        data = share_instance(k_inst, cfg, h["share"], h["rho"])
        p0 = model.init(k_fit)
        return {"data": data, "single": bt.init(p0), "minority_only": bt.init(p0)}

    def step(s, h):
        _, _, pairs, group = s["data"]
        lr = {"learning_rate": h["reward_learning_rate"]}

        def fit(state, data):
            return jax.lax.scan(lambda st, _: (bt.update(st, None, data, lr)[0], None), state, None,
                                length=cfg["m_steps"])[0]

        return {**s, "single": fit(s["single"], pairs),
                "minority_only": fit(s["minority_only"], minority_pairs(pairs, group))}

    def observe(s, h):
        r, log_ref, _, _ = s["data"]
        beta = h["beta"]
        best = jnp.stack([mm.group_objectives(optimal_policy(log_ref, r[u], beta), log_ref, r, beta)[u]
                          for u in range(2)])
        out = {"tv": preference_tv(r, log_ref)}
        for name in ("single", "minority_only"):
            lp = optimal_policy(log_ref, mm.center_rewards(s[name].params, log_ref), beta)
            out[f"regret_{name}"] = best - mm.group_objectives(lp, log_ref, r, beta)
        return out

    return Program(init, step, observe)


def gap_stage(cfg, sweep, progress=False) -> dict:
    """Stage ``minority-gap``: metrics ``(configs, seeds, logs, ...)`` of :func:`gap_program` over :func:`configs`
    (one sweep, one compile); ``sweep(program, leaves, seeds, num_steps, log_every, progress)`` is the suite's."""
    leaves = configs()
    n = len(leaves["share"])
    leaves = {**leaves, "beta": [cfg["mm_beta"]] * n, "reward_learning_rate": [cfg["reward_learning_rate"]] * n}
    return sweep(gap_program(cfg), leaves, cfg["seeds"], cfg["em_steps"], cfg["em_steps"] // 2, progress)


def axes(stage) -> dict:
    """``{"share": {...}, "rho": {...}}``: per axis the final minority regret of each policy, ``(seeds, points)``,
    and the final value of every other metric, ``(seeds, points, ...)``, in the axis's order."""
    k = len(SHARES)
    fin = {m: np.moveaxis(np.asarray(v)[:, :, -1], 0, 1) for m, v in stage.items() if m != "steps"}  # (seeds, cfg, ...)
    out = {}
    for name, sl in (("share", slice(0, k)), ("rho", slice(k, k + len(RHOS)))):
        out[name] = {m: v[:, sl] for m, v in fin.items()}
    return out


def smallest_step(g) -> np.ndarray:
    """Per seed ``min_i [g_{i+1} - g_i]`` of an ``(seeds, points)`` array: positive iff ``g`` rises at every step."""
    return np.min(np.diff(np.asarray(g, np.float64), axis=1), axis=1)


def claim_records(stage) -> list:
    """The two claims' records: subject the median over seeds of :func:`smallest_step` of single-reward RLHF's
    minority regret along each axis, control the same of minority-only RLHF."""
    ax = axes(stage)
    recs = []
    for cid, name, grid in (("single-reward-gap-grows-as-minority-shrinks", "share", SHARES),
                            ("single-reward-gap-grows-with-diversity", "rho", RHOS)):
        a = ax[name]
        g_s, g_c = a["regret_single"][..., 1], a["regret_minority_only"][..., 1]
        subject = C.measure(smallest_step(g_s), np.median)
        control = C.measure(smallest_step(g_c), np.median)
        per_point = lambda g: {f"{grid[i]:g}": float(np.median(g[:, i])) for i in range(len(grid))}  # noqa: E731
        measured = {
            f"minority regret G_min along {name} (median over seeds)": {
                "single-reward RLHF": per_point(g_s), "minority-only RLHF (control)": per_point(g_c)},
            f"majority regret G_maj of single-reward RLHF along {name} (median over seeds)":
                per_point(a["regret_single"][..., 0]),
            f"groups' preference TV distance along {name} (median over seeds)": per_point(a["tv"]),
            "seeds whose every step rises": {"single-reward RLHF": float(np.mean(smallest_step(g_s) > 0)),
                                             "minority-only RLHF (control)": float(np.mean(smallest_step(g_c) > 0))},
            "median over seeds of the whole rise, last point minus first": {
                "single-reward RLHF": float(np.median(g_s[:, -1] - g_s[:, 0])),
                "minority-only RLHF (control)": float(np.median(g_c[:, -1] - g_c[:, 0]))},
        }
        note = ("G_min(pi) = F_min(pi*_min) - F_min(pi) = beta KL(pi || pi*_min) >= 0, the minority's regret under its "
                "own KL-regularised objective. The theorem (Sec. 3) is a lower bound whose direction we take from "
                "secondary summaries; the check tests the gap itself at every step of the grid.")
        recs.append(C.evaluate(C.by_id(SPECS, cid), subject, control, measured=measured, note=note))
    return recs


def write_outputs(ctx, stage) -> None:
    """``minority_gap.csv`` (one row per axis point: medians over seeds of each policy's regrets and the TV) and
    ``minority_gap.png`` (the minority's regret along each axis, single-reward RLHF and the control)."""
    ax = axes(stage)
    rows = []
    for name, grid in (("share", SHARES), ("rho", RHOS)):
        a = ax[name]
        for i, v in enumerate(grid):
            rows.append({"axis": name, "share": SHARES[i] if name == "share" else RHO_AXIS_SHARE,
                         "rho": SHARE_AXIS_RHO if name == "share" else RHOS[i],
                         "G_min_single": float(np.median(a["regret_single"][:, i, 1])),
                         "G_maj_single": float(np.median(a["regret_single"][:, i, 0])),
                         "G_min_minority_only": float(np.median(a["regret_minority_only"][:, i, 1])),
                         "tv": float(np.median(a["tv"][:, i]))})
    ctx.write_csv("minority_gap.csv", rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, (name, grid, xlabel) in zip(axs, (("share", SHARES, "minority share of annotators"),
                                                 ("rho", RHOS, "rho (groups' reward correlation)"))):
        a = ax[name]
        for key, label, c in (("regret_single", "single-reward RLHF", "C0"),
                              ("regret_minority_only", "minority-only RLHF (control)", "C1")):
            g = a[key][..., 1]
            axis.plot(grid, np.median(g, axis=0), "o-", color=c, label=label)
            axis.fill_between(grid, np.quantile(g, 0.25, axis=0), np.quantile(g, 0.75, axis=0), color=c, alpha=0.2)
        axis.set(xlabel=xlabel, ylabel="minority regret G_min (median, IQR)")
        if name == "share":
            axis.set_xscale("log")
        else:
            axis.invert_xaxis()
        axis.legend(fontsize=7)
    axs[0].set_title(f"rho = {SHARE_AXIS_RHO:g}")
    axs[1].set_title(f"share = {RHO_AXIS_SHARE:g}")
    fig.tight_layout()
    ctx.savefig(fig, "minority_gap.png")
