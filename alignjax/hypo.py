"""HyPO and the offline contrastive trainers (DPO, IPO) of the coverage study.

HyPO (Song et al. 2024, "The Importance of Online Data", arXiv 2406.01462, Algorithm 1) adds
to DPO on the offline pairs a reverse-KL penalty estimated on the policy's own samples:

    L(theta) = sum_m w_m l_DPO(h_m; beta) + lam * E_x KL(pi_theta(.|x) || pi_ref(.|x)),

where ``h_m = log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)`` on pair ``m`` (weights
``w_m``, summing to 1) and ``E_x`` is uniform over the prompts. The KL term needs no labels
(only on-policy samples), which is what makes the method *hybrid*: one extra batch of
``k`` samples per prompt per step.

* ``kl="exact"``: ``KL`` from the full ``(X, N)`` policy table (tabular/small ``N``);
* ``kl="sampled"``: ``grad KL = E_{y~pi}[grad log pi(y) * log pi(y)/pi_ref(y)]``, estimated with
  ``k`` samples and a leave-one-out baseline (RLOO, as the paper's implementation);
* ``kl=None``: plain offline training (DPO, IPO: any loss of :data:`alignjax.registry.LOSSES`).

**Convention (ours; the paper's text could not be checked here):** ``lam`` is the KL term's whole
weight, *not* multiplied by ``beta``; the DPO loss is the project's ``-log sigmoid(beta h)``
(gradient of order ``beta``). Whether the paper's Algorithm 1 writes its KL weight as ``lam`` or
``lam * beta``, how many online samples it draws per prompt and which KL estimator it uses are
unverified: the coverage suite sweeps ``lam / beta`` so that the trade-off reads the same under
either convention. With ``lam = 0`` the update is exactly DPO's.

Trainers register in :data:`alignjax.rlhf.TRAINERS` ("dpo", "ipo": offline; "hypo": hybrid;
"rlhf" lives in :mod:`alignjax.rlhf`), so a study sweeps all of them through one interface.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from alignjax.domains import Domain
from alignjax.losses import dpo as _dpo_loss  # noqa: F401  (registers the losses)
from alignjax.metrics.coverage import reverse_kl
from alignjax.policies.base import Policy
from alignjax.registry import LOSSES
from alignjax.reward_model import make_optimizer, with_hparams
from alignjax.rlhf import (TRAINERS, Problem, Trainer, TrainState, _check_options, on_policy_samples,
                           reinforce_loo_surrogate)

__all__ = ["pair_loss", "kl_penalty", "hybrid", "dpo_trainer", "ipo_trainer", "hypo_trainer"]


def pair_loss(loss_name: str, table: jax.Array, log_pi_ref: jax.Array, pairs, beta, **extra) -> jax.Array:
    """Weighted offline loss ``sum_m w_m l(pi(y_w), pi(y_l), pi_ref(y_w), pi_ref(y_l); beta)``.

    Args:
      loss_name: a name in :data:`~alignjax.registry.LOSSES` ("dpo", "ipo", ...).
      table, log_pi_ref: ``(X, N)`` policy and reference log-probs.
      pairs: :class:`~alignjax.data.bandits.Pairs`.
    """
    loss = LOSSES.get(loss_name)
    lw, ll = table[pairs.x, pairs.y_w], table[pairs.x, pairs.y_l]
    rw, rl = log_pi_ref[pairs.x, pairs.y_w], log_pi_ref[pairs.x, pairs.y_l]
    return jnp.sum(pairs.weight * loss(lw, ll, rw, rl, beta=beta, **extra))


def kl_penalty(table: jax.Array, log_pi_ref: jax.Array, key: jax.Array | None, *, mode: str,
               num_samples: int) -> jax.Array:
    """A scalar whose gradient is (an estimate of) ``grad mean_x KL(pi(.|x) || pi_ref(.|x))``.

    ``mode="exact"`` returns the KL itself; ``mode="sampled"`` returns the RLOO surrogate with
    score ``log pi(y)/pi_ref(y)`` over ``k = num_samples`` samples per prompt (its value is not
    the KL; its gradient is an unbiased estimate of the KL's gradient).
    """
    if mode == "exact":
        return jnp.mean(reverse_kl(table, log_pi_ref))
    ys = on_policy_samples(table, key, num_samples)
    score = jnp.take_along_axis(table - log_pi_ref, ys.T, axis=-1).T
    return reinforce_loo_surrogate(table, ys, score)


def hybrid(policy: Policy, *, loss: str = "dpo", kl: str | None = "sampled", num_samples: int = 4,
           optimizer: str = "adam", loss_hparams: tuple[str, ...] = ()) -> Trainer:
    """Offline loss on the pairs plus (optionally) ``lam`` times an on-policy reverse KL.

    Hyperparameters: ``beta``, ``learning_rate``, ``lam`` (only read when ``kl`` is not None),
    and the loss's extra ones named in ``loss_hparams``. One step:
    ``theta <- theta - learning_rate * opt(grad[pair_loss + lam * kl_penalty])``, where ``opt`` is
    the identity (SGD) or Adam's ``m_hat/(sqrt(v_hat) + eps)`` (bias-corrected moments; see
    :func:`alignjax.reward_model.make_optimizer`), taken with optax and the learning rate read
    from ``hparams`` at every step (a traced array: ``vmap`` over it compiles once).
    """
    if kl is not None:
        _check_options(kl, num_samples)
    LOSSES.entry(loss)  # ValueError for an unknown loss, before any compute
    tx = make_optimizer(optimizer)

    def init(params, problem: Problem, hparams, key):
        del problem, hparams, key
        return TrainState(params, tx.init(params), None)

    def update(state: TrainState, problem: Problem, hparams, key):
        extra = {n: hparams[n] for n in loss_hparams}

        def objective(params):
            table = policy.log_probs(params, problem.prompts)
            off = pair_loss(loss, table, problem.log_pi_ref, problem.pairs, hparams["beta"], **extra)
            if kl is None:
                return off, off
            pen = kl_penalty(table, problem.log_pi_ref, key, mode=kl, num_samples=num_samples)
            return off + hparams["lam"] * pen, off

        (_, off), g = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(g, with_hparams(state.opt_state, hparams), state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state, None), {"loss": off}

    return Trainer(init, update)


def dpo_trainer(policy: Policy, *, optimizer: str = "adam", **_: Any) -> Trainer:
    """Offline DPO on the pairs (no online data)."""
    return hybrid(policy, loss="dpo", kl=None, optimizer=optimizer)


def ipo_trainer(policy: Policy, *, optimizer: str = "adam", **_: Any) -> Trainer:
    """Offline IPO on the pairs (no online data)."""
    return hybrid(policy, loss="ipo", kl=None, optimizer=optimizer)


def hypo_trainer(policy: Policy, *, mode: str = "sampled", num_samples: int = 4, optimizer: str = "adam",
                 **_: Any) -> Trainer:
    """HyPO: DPO on the pairs + ``lam`` * reverse KL on ``k`` on-policy samples (or exact)."""
    return hybrid(policy, loss="dpo", kl=mode, num_samples=num_samples, optimizer=optimizer)


# Declared domains (alignjax.domains), agreeing with alignjax.rlhf.check_hparams: beta and the
# learning rate > 0 (log scales; probed up to 100 and 10), the KL weight lam >= 0 (lam = 0 is DPO).
_BETA, _LR, _LAM = Domain.positive(0.1), Domain.positive(0.05, 10.0), Domain.nonnegative(0.1)
TRAINERS.register("dpo", dpo_trainer, hparams={"beta": _BETA, "learning_rate": _LR},
                  meta={"kind": "offline", "description": "DPO on the offline pairs"})
TRAINERS.register("ipo", ipo_trainer, hparams={"beta": _BETA, "learning_rate": _LR},
                  meta={"kind": "offline", "description": "IPO on the offline pairs"})
TRAINERS.register("hypo", hypo_trainer, hparams={"beta": _BETA, "learning_rate": _LR, "lam": _LAM},
                  meta={"kind": "hybrid", "description": "DPO + lam * on-policy reverse KL (Song et al. 2024)"})
