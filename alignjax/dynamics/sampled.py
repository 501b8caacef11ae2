"""Sampled, loss-driven preference-game dynamics on policy parameters.

One mechanism for every algorithm: a per-prompt loss (:mod:`alignjax.dynamics.sampled_losses`)
plus the shared builder :func:`make_dynamics`, which returns an optax-like ``(init, update)``
pair::

    dyn = sampled_egpo(policy, mode="sampled", num_samples=100)
    state = dyn.init(key)
    state, metrics = dyn.update(state, P, logp_ref, x, hparams, key)

``P (B, N, N)``, ``logp_ref (B, N)`` and the prompt inputs ``x`` (batch ``B``, whatever
``policy.log_probs`` takes: indices for tabular, features for log-linear / MLP) describe a
contextual game with one preference matrix per prompt. One update:

1. ``logp_now = stop_grad(log pi_theta(.|x))``; the anchor ``pi_t`` (INPO, SPPO) is the
   policy at the start of the current round of ``round_length`` updates (1: the current one).
2. EGPO only (``extragradient=True``): a half step ``theta_half = theta - lr * d(grad)`` with
   the optimizer (its state is NOT advanced), and ``logp_now <- stop_grad(log pi_half)``.
3. ``loss = mean_b loss_b(log pi_theta(.|x_b))`` (population or sampled form), gradient in
   ``theta`` at the current ``theta``; ``theta <- theta - learning_rate * d`` where
   ``d = optimizer(grad)`` (``optax.identity()`` = plain SGD; ``optax.scale_by_adam()`` = Adam,
   ``d = m_hat/(sqrt(v_hat) + eps)`` with bias-corrected moments ``m_hat = m_t/(1 - b1^t)``,
   ``v_hat = v_t/(1 - b2^t)``).

Each step is an optax update of ``optax.inject_hyperparams(lambda learning_rate:
optax.chain(optimizer, optax.scale_by_learning_rate(learning_rate)))``
(:func:`alignjax.reward_model.make_optimizer`) followed by :func:`optax.apply_updates`; the
optimizer state's ``hyperparams["learning_rate"]`` is overwritten from ``hparams`` before every
update (:func:`alignjax.reward_model.with_hparams`), so ``hparams["learning_rate"]`` is an
ordinary traced array leaf (vmappable, one compile for all values). ``hparams`` is a dict of
scalar arrays: ``learning_rate`` plus the loss's own (``beta``; ``eta`` for INPO/SPPO/SPO;
``mixture`` for Nash-MD-PG; ``alpha`` for XPO/VPO).

Step-size mapping (tested): for tabular logits and SGD, one population step of online IPO 1
equals the exact OMD step (:mod:`alignjax.dynamics.exact`) with ``eta = 4 lr/(N beta)``, and
EGPO's equals the exact extragradient step with the same ``eta`` (Zhou et al. 2025); SPO's
population loss at the start of a round is minimised exactly by the ``mwu`` step (tested).

References: EGPO, Zhou et al. 2025 (arXiv 2503.08942); online IPO, Calandriello et al. 2024
(arXiv 2403.08635); Nash-MD-PG, Munos et al. 2023 (arXiv 2312.00886); INPO, Zhang et al.
2024 (arXiv 2407.00617); SPPO, Wu et al. 2024 (arXiv 2405.00675); SPO, Swamy et al. 2024
(arXiv 2401.04056); online DPO, Guo et al. 2024 (arXiv 2402.04792); XPO, Xie et al. 2024
(arXiv 2405.21046); VPO, Cen et al. 2024 (arXiv 2405.19320).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from alignjax.domains import Domain, check_values
from alignjax.dynamics.sampled_losses import GAME_LOSSES, GameInputs, GameLoss
from alignjax.policies.base import Policy
from alignjax.registry import DYNAMICS
from alignjax.reward_model import make_optimizer, with_hparams

__all__ = ["SampledState", "SampledDynamics", "make_dynamics", "validate_hparams", "sampled_egpo",
           "sampled_online_ipo_1", "sampled_online_ipo_2", "sampled_nash_md_pg", "sampled_inpo",
           "sampled_sppo", "sampled_spo", "sampled_online_dpo", "sampled_xpo", "sampled_vpo", "MODES"]

MODES = ("population", "sampled")


class SampledState(NamedTuple):
    """State of a loss-driven dynamics (a pytree).

    Attributes:
      params: policy parameters ``theta``.
      opt_state: the optimizer's state.
      anchor: parameters of the round's anchor ``pi_t`` (INPO, SPPO).
      step: number of updates done (int32 scalar).
    """

    params: Any
    opt_state: Any
    anchor: Any
    step: jax.Array


class SampledDynamics(NamedTuple):
    """``init(key, params=None) -> state``; ``update(state, P, logp_ref, x, hparams, key) -> (state, metrics)``."""

    init: Callable[..., SampledState]
    update: Callable[..., tuple[SampledState, dict]]


LEARNING_RATE = Domain.positive(0.1, 10.0)
"""The declared domain of a sampled dynamic's ``learning_rate``: ``(0, inf)``, default 0.1, probed up to 10
(the IPO-1 family declares :data:`LEARNING_RATE_IPO1`)."""

LEARNING_RATE_IPO1 = Domain(0.1, 0.0, 0.5, lower_open=True, log=True, why=(
    "the squared (IPO-1) loss: on tabular logits one SGD step is the exact OMD step with eta = 4 lr/(N beta) "
    "(tested), stable for eta beta <= 1, i.e. lr <= N/4, and N >= 2"))
"""``learning_rate`` of ``sampled-online-ipo-1`` and ``sampled-egpo``: ``(0, 0.5]``. Their loss is a square, so
plain SGD on it is stable only for a step below its curvature: on tabular logits a step is the exact OMD (or
extragradient) step with ``eta = 4 lr/(N beta)``, whose stability condition ``eta beta <= 1`` reads
``lr <= N/4`` (at least ``1/2`` for every ``N >= 2``). Found by the domain probe: at ``lr = 10`` both
diverged within 21 updates (N = 4). For features other than tabular logits the bound is a guide, not a
theorem."""


def validate_hparams(loss: GameLoss | str, hparams: Mapping[str, Any]) -> None:
    """Raise a one-line ``ValueError`` unless ``hparams`` has the loss's keys with values in their domains.

    The domains are the game loss's declared ones (:data:`alignjax.registry.GAME_LOSSES`: ``beta``, ``eta``,
    ``alpha > 0``, ``mixture`` in ``[0, 1]``) and :data:`LEARNING_RATE` (``> 0``; :data:`LEARNING_RATE_IPO1`,
    ``(0, 0.5]``, for ``online_ipo_1``); every value must be
    finite. ``loss``: a registered name or a registered :class:`GameLoss`. Call it at the Python entry
    point, before compute.
    """
    entry = _entry(loss)
    for name in ("learning_rate", *entry.obj.hparams):
        if name not in hparams:
            raise ValueError(f"missing hyperparameter {name!r}; got {sorted(hparams)}")
    check_values(entry.name, {"learning_rate": _lr_domain(entry.name), **entry.domains}, entry.conditions, hparams)


def _entry(loss: GameLoss | str):
    """The :data:`GAME_LOSSES` entry of a name or of a registered :class:`GameLoss` (``ValueError`` if none)."""
    if isinstance(loss, str):
        return GAME_LOSSES.entry(loss)
    for e in GAME_LOSSES:
        if e.obj is loss:
            return e
    raise ValueError(f"a GameLoss must be registered in alignjax.registry.GAME_LOSSES (with its domains) to be "
                     f"validated; got an unregistered one reading {loss.hparams}")


def _loss(name: str) -> GameLoss:
    """The registered game loss ``name`` (``ValueError`` naming the known ones if unknown)."""
    return GAME_LOSSES.get(name)


def make_dynamics(loss: GameLoss | str, policy: Policy, *,
                  optimizer: optax.GradientTransformation | str | None = None,
                  mode: str = "population", num_samples: int = 100, bernoulli: bool = True,
                  extragradient: bool = False, round_length: int = 1) -> SampledDynamics:
    """Build the ``(init, update)`` pair of a loss-driven game dynamics (see module docstring).

    Args:
      loss: a :class:`GameLoss` or its name in ``GAME_LOSSES``.
      policy: any :class:`alignjax.policies.Policy` (tabular, log-linear, MLP).
      optimizer: an optax transformation giving the update DIRECTION (no learning rate, no
        sign): ``None``/``optax.identity()`` = SGD, ``optax.scale_by_adam()`` = Adam; or a name
        of :func:`alignjax.reward_model.make_optimizer` ("sgd", "adam" with ``eps = 1e-6``).
        It is chained with ``optax.scale_by_learning_rate(hparams["learning_rate"])``.
      mode: ``"population"`` (exact expectation over all pairs, deterministic) or
        ``"sampled"`` (``num_samples`` pairs per prompt per step).
      num_samples: pairs per prompt per step in sampled mode (static); for SPO, the size of
        the group of responses whose members are compared with each other (at least 2).
      bernoulli: sampled mode only; observe preferences as Bernoulli(P) draws (True) or as
        the probabilities ``P[y, y']`` (False, as in the EGPO authors' simulation).
      extragradient: take EGPO's half step first (the opponent becomes the half-step policy).
      round_length: the anchor ``pi_t`` is refreshed every ``round_length`` updates.

    Returns:
      :class:`SampledDynamics`. ``update`` returns metrics ``{"loss", "grad_norm"}``: the
      loss at the current parameters (against the opponent used for the step) and the
      global norm of its gradient.
    """
    gl = _loss(loss) if isinstance(loss, str) else loss
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if int(num_samples) < max(1, gl.min_samples):
        raise ValueError(f"num_samples must be >= {max(1, gl.min_samples)}; got {num_samples}")
    if int(round_length) < 1:
        raise ValueError(f"round_length must be >= 1; got {round_length}")
    tx = make_optimizer(optimizer)
    num_samples, round_length = int(num_samples), int(round_length)

    def init(key: jax.Array, params: Any = None) -> SampledState:
        params = policy.init(key) if params is None else params
        return SampledState(params, tx.init(params), params, jnp.zeros((), jnp.int32))

    def total_loss(params, P, logp_ref, x, logp_now, logp_anchor, hp, key):
        logp = policy.log_probs(params, x)  # (B, N)
        g = GameInputs(P, logp_ref, logp_now, logp_anchor)
        if mode == "population":
            per = jax.vmap(gl.population, in_axes=(0, 0, None))(logp, g, hp)
        else:
            keys = jax.random.split(key, logp.shape[0])
            per = jax.vmap(gl.sampled, in_axes=(0, 0, None, 0, None, None))(
                logp, g, hp, keys, num_samples, bernoulli)
        return jnp.mean(per)

    grad_fn = jax.value_and_grad(total_loss)

    def update(state: SampledState, P, logp_ref, x, hparams, key):
        P = jnp.asarray(P)
        logp_ref = jnp.asarray(logp_ref, P.dtype)
        hp = {k: jnp.asarray(v, P.dtype) for k, v in hparams.items()}
        k_half, k_main = jax.random.split(key)
        params = state.params
        opt_state = with_hparams(state.opt_state, hp)  # learning rate from hparams (traced)
        new_round = (state.step % round_length) == 0
        anchor = jax.tree.map(lambda a, p: jnp.where(new_round, p, a), state.anchor, params)
        logp_anchor = jax.lax.stop_gradient(policy.log_probs(anchor, x))
        logp_now = jax.lax.stop_gradient(policy.log_probs(params, x))
        if extragradient:
            _, g_half = grad_fn(params, P, logp_ref, x, logp_now, logp_anchor, hp, k_half)
            u_half, _ = tx.update(g_half, opt_state, params)  # the state is not advanced
            params_half = optax.apply_updates(params, u_half)
            logp_now = jax.lax.stop_gradient(policy.log_probs(params_half, x))
        loss, grads = grad_fn(params, P, logp_ref, x, logp_now, logp_anchor, hp, k_main)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return SampledState(params, opt_state, anchor, state.step + 1), metrics

    return SampledDynamics(init, update)


def _factory(loss_name: str, *, extragradient: bool = False, doc: str = ""):
    def factory(policy: Policy, **kwargs) -> SampledDynamics:
        return make_dynamics(loss_name, policy, extragradient=extragradient, **kwargs)

    factory.__doc__ = doc + "\n\nKeyword arguments as :func:`make_dynamics` (mode, num_samples, optimizer, ...)."
    return factory


sampled_egpo = _factory("online_ipo_1", extragradient=True, doc=(
    "EGPO (Zhou et al. 2025, arXiv 2503.08942): online IPO 1's loss with an extragradient half "
    "step; tabular SGD == exact extragradient with eta = 4 lr/(N beta)."))
sampled_online_ipo_1 = _factory("online_ipo_1", doc=(
    "Online IPO 1 (EGPO paper's OMD loss): "
    "mean_{y,y'}[h(y,y') - ((P@pi_s)[y]-(P@pi_s)[y'])/beta]^2, opponent pi_s = stop_grad(pi)."))
sampled_online_ipo_2 = _factory("online_ipo_2", doc=(
    "Online IPO 2 (Calandriello et al. 2024, arXiv 2403.08635): IPO on on-policy pairs with soft "
    "target (P[y,y'] - 1/2)/beta."))
sampled_nash_md_pg = _factory("nash_md_pg", doc=(
    "Nash-MD-PG (Munos et al., arXiv 2312.00886): grad log pi(y) (P[y,y'] - 1/2 - beta Delta(y)), "
    "y ~ pi, y' ~ pi_mix ∝ pi^(1-m) pi_ref^m."))
sampled_inpo = _factory("inpo", doc="INPO (Zhang et al., arXiv 2407.00617): see sampled_losses.inpo.")
sampled_sppo = _factory("sppo", doc="SPPO (Wu et al., arXiv 2405.00675): see sampled_losses.sppo.")
sampled_spo = _factory("spo", doc=(
    "SPO (Swamy et al. 2024, arXiv 2401.04056): each of K samples y_i ~ pi is rewarded by its win rate "
    "against the other K-1; policy-gradient step on -mean[(rhat_i - 1/2 - log(pi/pi_t)(y_i)/eta) log pi(y_i)]. "
    "Population loss -E_pi[P@pi_now - 1/2] + KL(pi||pi_t)/eta, minimised by the exact mwu step "
    "(see sampled_losses.spo). num_samples >= 2."))
sampled_online_dpo = _factory("online_dpo", doc=(
    "Online DPO (Guo et al. 2024, arXiv 2402.04792): y, y' ~ stop_grad(pi), labelled o ~ Bernoulli(P[y,y']), "
    "loss o l(beta h) + (1-o) l(-beta h), l(z) = -log sigmoid(z)."))
sampled_xpo = _factory("xpo", doc=(
    "XPO (Xie et al. 2024, arXiv 2405.21046, Alg. 1): DPO on (y ~ pi, yt ~ pi_ref) labelled by P, "
    "plus the optimism term alpha log pi(yt)."))
sampled_vpo = _factory("vpo", doc=(
    "VPO (Cen et al. 2024, arXiv 2405.19320), online: online DPO plus alpha beta E_{y~pi_ref}[log pi(y) - "
    "log pi_ref(y)] (value incentive, optimistic sign, pi_cal = pi_ref)."))

def _lr_domain(loss_name: str) -> Domain:
    """The ``learning_rate`` domain of the dynamics driven by game loss ``loss_name``."""
    return LEARNING_RATE_IPO1 if loss_name == "online_ipo_1" else LEARNING_RATE


def _meta(loss_name: str, extragradient: bool = False) -> dict:
    return {"kind": "sampled", "loss": loss_name, "extragradient": extragradient}


# Declared domains (alignjax.domains): the game loss's own (declared once, in GAME_LOSSES) and
# LEARNING_RATE; validate_hparams reads the same ones.
def _domains(loss_name: str) -> dict:
    d = {**GAME_LOSSES.entry(loss_name, plugins=False).domains, "learning_rate": _lr_domain(loss_name)}
    return {k: d[k] for k in sorted(d)}  # alphabetical, as they were declared before GAME_LOSSES had domains


DYNAMICS.register("sampled-egpo", sampled_egpo, hparams=_domains("online_ipo_1"), meta=_meta("online_ipo_1", True))
DYNAMICS.register("sampled-online-ipo-1", sampled_online_ipo_1, hparams=_domains("online_ipo_1"),
                  meta=_meta("online_ipo_1"))
DYNAMICS.register("sampled-online-ipo-2", sampled_online_ipo_2, hparams=_domains("online_ipo_2"),
                  meta=_meta("online_ipo_2"))
DYNAMICS.register("sampled-nash-md-pg", sampled_nash_md_pg, hparams=_domains("nash_md_pg"), meta=_meta("nash_md_pg"))
DYNAMICS.register("sampled-inpo", sampled_inpo, hparams=_domains("inpo"), meta=_meta("inpo"))
DYNAMICS.register("sampled-sppo", sampled_sppo, hparams=_domains("sppo"), meta=_meta("sppo"))
DYNAMICS.register("sampled-spo", sampled_spo, hparams=_domains("spo"), meta=dict(_meta("spo"), exact_form="mwu"))
DYNAMICS.register("sampled-online-dpo", sampled_online_dpo, hparams=_domains("online_dpo"), meta=_meta("online_dpo"))
DYNAMICS.register("sampled-xpo", sampled_xpo, hparams=_domains("xpo"), meta=_meta("xpo"))
DYNAMICS.register("sampled-vpo", sampled_vpo, hparams=_domains("vpo"), meta=_meta("vpo"))
