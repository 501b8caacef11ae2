"""ranking-accuracy's ORPO claims: what ORPO's SFT term and its weight ``lambda`` do to the log-probabilities.

Hong et al. (ORPO, arXiv 2403.07691; read in the ar5iv render of v2) train with ``L = L_SFT + lambda L_OR``
(Eqs. 6-7): ``L_SFT`` the chosen response's token-averaged NLL, ``L_OR = -log sigmoid(log odds(y_w) -
log odds(y_l))`` on length-averaged log-likelihoods (Eqs. 3-4), no reference model. They state:

* Sec. 3 (Fig. 3, OPT-350M fine-tuned on HH-RLHF's chosen responses): with SFT alone "there are no
  mechanisms to penalize rejected responses when compensating for the chosen responses. Therefore, the
  log probabilities of the tokens in the rejected responses increase along with the chosen responses".
* App. E.1 (the ablation over lambda in {0.1, 0.5, 1.0}): with lambda = 0.1 the rejected responses'
  log-probabilities "do not decrease, but rather, the log probabilities of the chosen responses
  increase"; with lambda = 1.0 "the chosen responses diminish along with the rejected responses while
  enlarging the margin".

The toy: the suite's tiny causal LM (shared token parameters, so training on one response moves
others), started at ``pi_ref`` (the model before preference tuning; unlike the paper's pre-trained
model it is already fine-tuned on the hidden language, and the pairs are its own samples),
trained on the suite's training pairs with the suite's offline budget and optimiser (RMSProp, learning
rate 1e-4, batch 32, 2 epochs) at ``lambda in {0, 0.1, 1}`` (``lambda = 0`` is SFT on the chosen
responses alone). Measured per pair: the change from step 0 to the last step of the length-averaged
log-likelihood ``a = log pi(y|x)/|y|`` (the quantity the paper plots and ORPO's loss reads) of the chosen
and of the rejected response.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignjax import claims as C

ORPO_SRC = "Hong et al. 2024, ORPO (arXiv 2403.07691; read in the ar5iv render of v2)"
LAMBDAS = (0.0, 0.1, 1.0)
"""The ORPO weights run: 0 (SFT alone, Sec. 3), 0.1 and 1.0 (App. E.1's smallest and largest)."""
_SETTING = ("the suite's tiny causal LM (shared token parameters) from pi_ref, the suite's training pairs (512 quick / "
            "1024 full), RMSProp lr 1e-4, batch 32, 2 epochs (the suite's offline budget); lambda in {0, 0.1, 1}; "
            "a = log pi(y|x) / |y|, changed from step 0 to the last step; interval: bootstrap over training pairs. "
            "The paper trains OPT / Phi-2 / Llama-2 / Mistral on UltraFeedback and HH-RLHF")
_REJ = "mean over training pairs of the change of a(y_l) = log pi(y_l|x)/|y_l|, lambda = 0 (SFT on y_w alone)"
_CHO = "mean over training pairs of the change of a(y_w) = log pi(y_w|x)/|y_w|, lambda = 1"

SPECS = (
    C.ClaimSpec(
        id="orpo-sft-raises-rejected",
        statement=("Supervised fine-tuning on the chosen responses alone raises the rejected responses' "
                   "log-likelihood too: with lambda = 0, the mean change of the length-averaged log-likelihood of "
                   "the rejected responses is > 0."),
        source=f"{ORPO_SRC}: Sec. 3 ('the log probabilities of the tokens in the rejected responses increase along "
               "with the chosen responses') and Fig. 3",
        paper_value="Fig. 3: the rejected responses' log-probabilities rise with the chosen ones during SFT (a plot; no "
                    "number in the text)",
        setting=_SETTING,
        check=C.Check(_REJ, ">", 0.0, "docs/thresholds.md#orpo-sft-raises-rejected: the paper's sign ('increase')"),
        control=("ORPO at lambda = 1 on the same pairs, budget and optimiser, the same metric: a run whose odds-ratio "
                 "term pushes the rejected responses down, which could still raise them (or not)."),
    ),
    C.ClaimSpec(
        id="orpo-large-lambda-lowers-chosen",
        statement=("With a large odds-ratio weight ORPO lowers the chosen responses' log-likelihood as well as the "
                   "rejected ones': with lambda = 1, the mean change of the length-averaged log-likelihood of the "
                   "chosen responses is < 0."),
        source=f"{ORPO_SRC}: App. E.1 (lambda = 1.0: 'the chosen responses diminish along with the rejected responses "
               "while enlarging the margin'; lambda = 0.1: the chosen responses' log-probabilities increase)",
        paper_value="App. E.1: at lambda = 1.0 the chosen log-probabilities fall; at lambda = 0.1 they rise (plots)",
        setting=_SETTING,
        check=C.Check(_CHO, "<", 0.0, "docs/thresholds.md#orpo-large-lambda-lowers-chosen: the paper's sign "
                                      "('diminish')"),
        control=("ORPO at lambda = 0.1 on the same pairs, budget and optimiser, the same metric: the paper says its "
                 "chosen responses rise, but a run that could fall as well."),
    ),
)


def _orpo_loss(pc, pr, rc, rr, nc, nr, h):
    """ORPO's per-pair loss at the row's ``lambda`` (:func:`alignjax.losses.orpo`; the reference is ignored)."""
    from alignjax import losses as L

    return L.orpo(pc, pr, rc, rr, beta=h["lambda"], chosen_lengths=nc, rejected_lengths=nr)


def orpo_stage(cfg, sft, pairs, progress=False) -> dict:
    """Stage ``orpo``: ORPO from ``pi_ref`` at each of :data:`LAMBDAS` (one engine sweep), the log-probs of the
    training pairs at step 0 and at the last step: ``{"chosen", "rejected": (lambdas, 2, n)}`` (summed
    log-probs), ``"chosen_len", "rejected_len": (n,)``, ``"lambdas"``."""
    from alignjax_experiments import ranking_accuracy as ra

    policy = ra._policy(cfg)
    ref_params = ra._unnamed(policy, sft["ref_params"])
    data = ra._pair_data(pairs["train"])
    num_steps, _ = ra._schedule(cfg)
    program = ra._offline_program(policy, batch_size=cfg["batch_size"], loss=_orpo_loss)
    lam = np.asarray(LAMBDAS, np.float32)
    keys = jax.random.split(ra._keys(cfg)["orpo"], len(lam))
    out = ra._run(program, {"lambda": lam, "learning_rate": np.full(len(lam), cfg["learning_rate"], np.float32),
                            "key": ra._key_data(keys)},
                  num_steps=num_steps, log_every=num_steps, shared=ra._offline_shared(policy, ref_params, data),
                  progress=progress)
    logps = ra._checkpoint_logps(cfg, {"orpo": out["params"]}, {"train": data})["orpo"]
    tr = pairs["train"]
    return {"chosen": logps["train_chosen"], "rejected": logps["train_rejected"], "lambdas": lam,
            "chosen_len": np.asarray(tr["chosen_len"]), "rejected_len": np.asarray(tr["rejected_len"])}


def _changes(st: dict) -> dict:
    """Per lambda and pair, the change of the length-averaged log-likelihood: ``{"chosen", "rejected": (lambdas, n)}``."""
    out = {}
    for side in ("chosen", "rejected"):
        a = np.asarray(st[side], np.float64) / np.asarray(st[f"{side}_len"], np.float64)
        out[side] = a[:, -1] - a[:, 0]
    return out


def orpo_claims(st: dict) -> list[dict]:
    """The two claims' records from the ``orpo`` stage (subject and control each a mean over pairs, bootstrapped)."""
    d = _changes(st)
    lam = np.asarray(st["lambdas"], np.float64)
    i0, i01, i1 = (int(np.flatnonzero(np.isclose(lam, x))[0]) for x in (0.0, 0.1, 1.0))
    table = {f"lambda={lam[i]:g}": {"chosen": round(float(d["chosen"][i].mean()), 5),
                                    "rejected": round(float(d["rejected"][i].mean()), 5),
                                    "margin": round(float((d["chosen"][i] - d["rejected"][i]).mean()), 5)}
             for i in range(len(lam))}
    measured = {"mean change of a = log pi/|y| (chosen, rejected, margin) per lambda": table}
    return [
        C.evaluate(SPECS[0], C.measure(d["rejected"][i0]), C.measure(d["rejected"][i1]), measured=measured,
                   note="a is the length-averaged log-likelihood (nats per token); step 0 is pi_ref"),
        C.evaluate(SPECS[1], C.measure(d["chosen"][i1]), C.measure(d["chosen"][i01]), measured=measured,
                   note="a is the length-averaged log-likelihood (nats per token); step 0 is pi_ref"),
    ]
