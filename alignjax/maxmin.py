"""MaxMin-RLHF: a mixture of Bradley–Terry rewards over annotator groups, and the max-min policy.

Chakraborty et al. 2024 ("MaxMin-RLHF: Alignment with Diverse Human Preferences", arXiv
2402.08925, ICML 2024). Annotators ``h = 0..H-1`` belong to ``U`` latent groups; group ``u``
labels pairs by Bradley–Terry with its own reward ``r_u``. The method has two stages:

1. **Reward mixture by EM** (the paper's Sec. 4, learning rewards with expectation
   maximisation), :func:`fit_mixture`. With ``l_{h,u} = sum_{m: a_m = h} n_m log
   sigmoid(r_u(x_m, y_w,m) - r_u(x_m, y_l,m))`` the log-likelihood of annotator ``h``'s labels
   under group ``u`` (``n_m`` the pair's count, see :func:`pair_counts`):

   * E-step: ``gamma_{h,u} = p_u exp(l_{h,u}) / sum_v p_v exp(l_{h,v})`` (``hard=True``: the
     one-hot of ``argmax_u``, the paper's hard cluster assignment);
   * M-step: ``p_u = mean_h gamma_{h,u}``; the rewards take ``m_steps`` optimiser steps on the
     responsibility-weighted BT loss ``-sum_u sum_m gamma_{a_m,u} n_m log sigmoid(r_u(y_w) -
     r_u(y_l)) / sum_m n_m`` (a generalised EM step: the tabular M-step has no closed form).

2. **Max-min policy** (the paper's Sec. 4, the Egalitarian objective)::

       pi_MM = argmax_pi min_u F_u(pi),   F_u(pi) = E_x [E_{y~pi} r_u(x,y) - beta KL(pi(.|x) || pi_ref(.|x))].

   On tabular policies it has an exact form (ours, by minimax duality): ``F_u`` is concave in
   ``pi``, ``sum_u w_u F_u`` is linear in ``w`` on the simplex, so (Sion)
   ``max_pi min_w sum_u w_u F_u(pi) = min_w max_pi sum_u w_u F_u(pi) = min_w g(w)`` with the
   convex dual

       g(w) = E_x beta log sum_y pi_ref(y|x) exp(sum_u w_u r_u(x,y) / beta),

   whose inner maximiser is ``pi_w ∝ pi_ref exp(r_w / beta)``, ``r_w = sum_u w_u r_u``; the
   strictly concave objective makes the best response unique, so ``pi_MM = pi_{w*}`` with
   ``w* = argmin_{w in simplex} g(w)`` (:func:`maxmin_weights`), and the max-min value is
   ``g(w*) = min_u F_u(pi_MM)`` (every group with ``w*_u > 0`` is tight). The weight ``w`` is
   shared by all prompts because the paper's min is over groups of the prompt-averaged
   objective; a per-prompt max-min is the case of one prompt.

   The paper's own policy stage (its Algorithm: at each iteration pick the worst-off group
   ``u_min = argmin_u F_u(pi_t)`` and take a PPO step on ``r_{u_min}``) is the trainer
   :func:`maxmin_rlhf` (registered as ``"maxmin-rlhf"``): a policy-gradient step on the
   currently worst group.

**Reward offsets.** BT identifies each ``r_u`` only up to a per-prompt constant, and the
max-min objective depends on it (a constant added to ``r_u`` adds to ``F_u``). We fix it by
:func:`center_rewards`, ``E_{pi_ref} r_u(x, .) = 0``: the reference is worth 0 to every group,
so ``min_u F_u(pi_MM) >= min_u F_u(pi_ref) = 0`` (the max-min policy leaves no group worse off
than the reference). The paper does not say how it fixes the offsets (not re-checked).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from alignjax.data.bandits import Pairs
from alignjax.domains import Domain
from alignjax.metrics.coverage import reverse_kl
from alignjax.registry import TRAINERS
from alignjax.reward_model import RewardModel, make_optimizer, tabular_reward, with_hparams
from alignjax.rlhf import Problem, Trainer, TrainState, _check_options, kl_regularized_surrogate

__all__ = [
    "AnnotatedPairs", "pair_counts", "annotator_loglik", "e_step", "mixture_loss", "MixtureState", "MixtureEM", "mixture_em", "fit_mixture", "center_rewards",
    "group_objectives", "maxmin_dual", "maxmin_weights", "maxmin_policy", "maxmin_rlhf",
]


class AnnotatedPairs(NamedTuple):
    """:class:`~alignjax.data.bandits.Pairs` plus who labelled each pair.

    Same first four fields (so every consumer of ``Pairs`` that reads them by name accepts it);
    ``annotator``: ``(M,)`` int annotator id in ``[0, H)``. A problem whose ``pairs`` lack
    annotator ids cannot be used by :func:`maxmin_rlhf` (registry meta ``needs: ["annotator"]``).
    """

    x: jax.Array
    y_w: jax.Array
    y_l: jax.Array
    weight: jax.Array
    annotator: jax.Array


def pair_counts(pairs: Pairs) -> jax.Array:
    """``n_m = weight_m * M_+``, ``M_+`` the number of rows with positive weight.

    Each labelled pair counts as one observation when the weights are uniform (as
    :func:`alignjax.data.bandits.sample_pairs` makes them); zero-weight rows (ties) count 0.
    """
    w = jnp.asarray(pairs.weight)
    return w * jnp.sum(w > 0)


def _margins(rewards: jax.Array, pairs: Pairs) -> jax.Array:
    """``(U, M)`` margins ``r_u(x, y_w) - r_u(x, y_l)`` of every group's reward table ``(U, X, N)``."""
    return rewards[:, pairs.x, pairs.y_w] - rewards[:, pairs.x, pairs.y_l]


def annotator_loglik(rewards: ArrayLike, pairs: Pairs, num_annotators: int) -> jax.Array:
    """``l_{h,u} = sum_{m: a_m = h} n_m log sigmoid(r_u(x_m, y_w,m) - r_u(x_m, y_l,m))``, shape ``(H, U)``.

    Args:
      rewards: ``(U, X, N)`` one reward table per group.
      pairs: :class:`AnnotatedPairs` (``annotator`` ``(M,)`` ints in ``[0, H)``).
      num_annotators: ``H`` (static).
    """
    if getattr(pairs, "annotator", None) is None:
        raise ValueError("MaxMin-RLHF needs AnnotatedPairs (pairs with annotator ids: who labelled each pair)")
    ll = pair_counts(pairs)[None] * jax.nn.log_sigmoid(_margins(jnp.asarray(rewards), pairs))  # (U, M)
    return jax.ops.segment_sum(ll.T, pairs.annotator, num_segments=num_annotators)


def e_step(log_mix: ArrayLike, loglik: ArrayLike, hard: bool = False) -> jax.Array:
    """Log-responsibilities ``log gamma_{h,u} = log p_u + l_{h,u} - logsumexp_v(log p_v + l_{h,v})``, ``(H, U)``.

    ``hard=True`` (static) returns the log of the one-hot ``argmax_u`` (``0`` / ``-inf``): the
    hard cluster assignment.
    """
    z = jnp.asarray(log_mix)[None] + jnp.asarray(loglik)
    log_gamma = jax.nn.log_softmax(z, axis=-1)
    if hard:
        onehot = jax.nn.one_hot(jnp.argmax(z, axis=-1), z.shape[-1], dtype=bool)
        return jnp.where(onehot, 0.0, -jnp.inf).astype(log_gamma.dtype)
    return log_gamma


def mixture_loss(rewards: ArrayLike, pairs: Pairs, gamma: ArrayLike) -> jax.Array:
    """M-step loss ``-sum_u sum_m gamma_{a_m,u} n_m log sigmoid(r_u(y_w) - r_u(y_l)) / sum_m n_m`` (scalar).

    Args:
      rewards: ``(U, X, N)``; gamma: ``(H, U)`` responsibilities (probabilities).
    """
    n = pair_counts(pairs)
    g = jnp.asarray(gamma)[pairs.annotator].T  # (U, M)
    ll = jax.nn.log_sigmoid(_margins(jnp.asarray(rewards), pairs))
    return -jnp.sum(g * n[None] * ll) / jnp.maximum(jnp.sum(n), 1.0)


class MixtureState(NamedTuple):
    """EM state: reward-model parameters stacked over groups, log mixing weights ``(U,)``,
    log-responsibilities ``(H, U)``, the M-step optimiser state."""

    params: Any
    log_mix: jax.Array
    log_resp: jax.Array
    opt_state: Any


class MixtureEM(NamedTuple):
    """``init(key) -> MixtureState``; ``update(state, pairs, features, hparams) -> (state, loglik)``
    (one EM iteration; ``loglik`` the observed-data log-likelihood after its E-step)."""

    init: Callable[[jax.Array], MixtureState]
    update: Callable[..., tuple[MixtureState, jax.Array]]
    rewards: Callable[[Any, Any], jax.Array]


def mixture_em(num_annotators: int, num_groups: int, reward_model: RewardModel, *, m_steps: int = 10,
               hard: bool = False, optimizer: str = "adam") -> MixtureEM:
    """EM for a mixture of ``U`` Bradley–Terry rewards over annotators, as an ``(init, update)`` pair.

    ``init(key)``: responsibilities ``gamma_h = softmax(2 z_h)``, ``z_h ~ N(0, I_U)`` (random, to
    break the symmetry between groups), rewards at the model's zero init (one parameter set per
    group), ``p_u = 1/U``. ``update(state, pairs, features, hparams)``: an M-step (``p_u = mean_h
    gamma_{h,u}`` and ``m_steps`` (static) optimiser steps on :func:`mixture_loss`, learning rate
    ``hparams["reward_learning_rate"]``, traced) then an E-step (:func:`e_step`); it returns the
    observed-data log-likelihood ``sum_h logsumexp_u(log p_u + l_{h,u})``. ``rewards(params,
    features)`` is the ``(U, X, N)`` table.
    """
    tx = make_optimizer(optimizer)

    def table(params, features):
        return jax.vmap(reward_model.rewards, (0, None))(params, features)

    def init(key):
        k_model, k_resp = jax.random.split(key)
        params = jax.vmap(reward_model.init)(jax.random.split(k_model, num_groups))
        log_resp = jax.nn.log_softmax(2.0 * jax.random.normal(k_resp, (num_annotators, num_groups)), axis=-1)
        log_mix = jnp.full((num_groups,), -jnp.log(num_groups))
        return MixtureState(params, log_mix.astype(log_resp.dtype), log_resp, tx.init(params))

    def update(state: MixtureState, pairs, features, hparams):
        gamma = jnp.exp(state.log_resp)
        log_mix = jnp.log(jnp.mean(gamma, axis=0))
        lr = {"learning_rate": hparams["reward_learning_rate"]}

        def m_step(carry, _):
            p, o = carry
            g = jax.grad(lambda q: mixture_loss(table(q, features), pairs, gamma))(p)
            upd, o = tx.update(g, with_hparams(o, lr), p)
            return (optax.apply_updates(p, upd), o), None

        (p, o), _ = jax.lax.scan(m_step, (state.params, state.opt_state), None, length=m_steps)
        ll = annotator_loglik(table(p, features), pairs, num_annotators)
        total = jnp.sum(jax.nn.logsumexp(log_mix[None] + ll, axis=-1))
        return MixtureState(p, log_mix, e_step(log_mix, ll, hard), o), total

    return MixtureEM(init, update, table)


def fit_mixture(pairs, num_annotators: int, num_groups: int, hparams, num_em_steps: int, key: jax.Array, *,
                reward_model: RewardModel | None = None, features: ArrayLike | None = None, m_steps: int = 10,
                hard: bool = False, optimizer: str = "adam", num_prompts: int | None = None,
                num_responses: int | None = None) -> tuple[MixtureState, jax.Array]:
    """``num_em_steps`` (static) iterations of :func:`mixture_em` from its ``init(key)`` (``lax.scan``).

    Args:
      pairs: :class:`AnnotatedPairs`.
      num_annotators, num_groups: ``H``, ``U`` (static).
      hparams: mapping with ``reward_learning_rate`` (array leaf).
      reward_model: a :class:`~alignjax.reward_model.RewardModel` (default: tabular, which needs
        ``num_prompts`` and ``num_responses``).
      features: the reward model's input (ignored by the tabular model).

    Returns:
      ``(state, loglik)``: the final :class:`MixtureState` and the ``(num_em_steps,)`` observed-data
      log-likelihood after each iteration.
    """
    if reward_model is None:
        if num_prompts is None or num_responses is None:
            raise ValueError("fit_mixture: the default tabular reward needs num_prompts and num_responses")
        reward_model = tabular_reward(num_prompts, num_responses)
    em = mixture_em(num_annotators, num_groups, reward_model, m_steps=m_steps, hard=hard, optimizer=optimizer)
    return jax.lax.scan(lambda s, _: em.update(s, pairs, features, hparams), em.init(key), None,
                        length=num_em_steps)


def center_rewards(rewards: ArrayLike, log_pi_ref: ArrayLike) -> jax.Array:
    """``r_u(x, y) - E_{y'~pi_ref(.|x)} r_u(x, y')``: fixes BT's free per-prompt offset so that
    ``F_u(pi_ref) = 0`` for every group. ``rewards (..., X, N)``, ``log_pi_ref (X, N)``."""
    r = jnp.asarray(rewards)
    ref = jnp.broadcast_to(jnp.exp(jnp.asarray(log_pi_ref)), r.shape)
    return r - jnp.sum(ref * r, axis=-1, keepdims=True)


def group_objectives(logp: ArrayLike, log_pi_ref: ArrayLike, rewards: ArrayLike, beta: ArrayLike) -> jax.Array:
    """``F_u(pi) = mean_x [sum_y pi(y|x) r_u(x,y) - beta KL(pi(.|x) || pi_ref(.|x))]``, shape ``(U,)``.

    Args:
      logp, log_pi_ref: ``(X, N)``; rewards: ``(U, X, N)``; beta: scalar.
    """
    lp = jnp.asarray(logp)
    reward = jnp.mean(jnp.sum(jnp.exp(lp)[None] * jnp.asarray(rewards), axis=-1), axis=-1)
    return reward - beta * jnp.mean(reverse_kl(lp, log_pi_ref))


def _mixed(rewards, w):
    return jnp.einsum("u,uxn->xn", w, jnp.asarray(rewards))


def maxmin_dual(w: ArrayLike, log_pi_ref: ArrayLike, rewards: ArrayLike, beta: ArrayLike) -> jax.Array:
    """The convex dual ``g(w) = mean_x beta logsumexp_y(log pi_ref(y|x) + sum_u w_u r_u(x,y) / beta)`` (scalar).

    ``g(w) = max_pi sum_u w_u F_u(pi)`` for ``w`` on the simplex; its gradient is
    ``dg/dw_u = F_u(pi_w) + beta KL(pi_w || pi_ref) = E_x E_{pi_w} r_u``.
    """
    z = jnp.asarray(log_pi_ref) + _mixed(rewards, w) * (1.0 / beta)
    return beta * jnp.mean(jax.nn.logsumexp(z, axis=-1))


def maxmin_weights(log_pi_ref: ArrayLike, rewards: ArrayLike, beta: ArrayLike, num_steps: int = 2000) -> jax.Array:
    """``w* = argmin_{w in simplex} g(w)`` (:func:`maxmin_dual`) by entropic mirror descent, ``(U,)``.

    ``w_{t+1} ∝ w_t exp(-grad g(w_t) / L)`` from ``w_0 = 1/U`` for ``num_steps`` (static) steps
    (``lax.scan``). ``g`` is ``L``-smooth in the l1 norm with ``L = max_{u,x} (max_y r_u - min_y
    r_u)^2 / (4 beta)`` (its Hessian is ``E_x Cov_{pi_w}(r) / beta``), and the entropy is
    1-strongly convex in l1, so this is a descent method with ``g(w_T) - g(w*) <= L log(U) / T``.
    Returns the last iterate.
    """
    r = jnp.asarray(rewards)
    num_groups = r.shape[0]
    spread = jnp.max(jnp.max(r, axis=-1) - jnp.min(r, axis=-1))
    lip = jnp.maximum(spread * spread * (0.25 / beta), 1e-12)
    grad = jax.grad(maxmin_dual)

    def body(log_w, _):
        g = grad(jnp.exp(log_w), log_pi_ref, r, beta)
        return jax.nn.log_softmax(log_w - g * (1.0 / lip)), None

    log_w0 = jnp.full((num_groups,), -jnp.log(num_groups), dtype=r.dtype)
    log_w, _ = jax.lax.scan(body, log_w0, None, length=num_steps)
    return jnp.exp(log_w)


def maxmin_policy(log_pi_ref: ArrayLike, rewards: ArrayLike, beta: ArrayLike, num_steps: int = 2000) -> jax.Array:
    """``log pi_MM = log_softmax(log pi_ref + sum_u w*_u r_u / beta)``, ``(X, N)``, with ``w*`` from
    :func:`maxmin_weights`: the max-min policy ``argmax_pi min_u F_u(pi)`` (module docstring)."""
    w = maxmin_weights(log_pi_ref, rewards, beta, num_steps)
    return jax.nn.log_softmax(jnp.asarray(log_pi_ref) + _mixed(rewards, w) * (1.0 / beta), axis=-1)


def maxmin_rlhf(policy, *, num_annotators: int | None = None, num_groups: int = 2, em_steps: int = 100,
                m_steps: int = 10, hard: bool = False, reward_model: RewardModel | None = None, mode: str = "exact",
                num_samples: int = 4, optimizer: str = "adam", **_: Any) -> Trainer:
    """MaxMin-RLHF as a coverage-study :class:`~alignjax.rlhf.Trainer` (the paper's two stages).

    ``init`` fits the ``U = num_groups`` reward mixture by EM (:func:`fit_mixture`; ``em_steps``
    iterations of ``m_steps`` M-step steps, learning rate ``reward_learning_rate``) on the
    problem's pairs, which must be :class:`AnnotatedPairs` (ids in ``[0, num_annotators)``), and centres
    each reward under ``pi_ref`` (:func:`center_rewards`). Each ``update`` follows the paper's
    Algorithm: with ``u_min = argmin_u F_u(pi_theta)`` (:func:`group_objectives` under the fitted
    rewards), one optimiser step on ``-F_{u_min}``: its exact gradient (``mode="exact"``) or the
    RLOO estimate with score ``r_{u_min}(y) - beta log pi(y)/pi_ref(y)`` on ``k = num_samples``
    on-policy samples (``mode="sampled"``). Hyperparameters: ``beta``, ``learning_rate``,
    ``reward_learning_rate``. The tabular reward is the default (``reward_model=None``).

    Metrics of ``update``: ``loss = -min_u F_u`` (fitted rewards) and ``worst_group``.
    """
    if num_annotators is None:
        raise ValueError("maxmin-rlhf needs num_annotators (and pairs with annotator ids)")
    _check_options(mode, num_samples)
    tx = make_optimizer(optimizer)

    def init(params, problem: Problem, hparams, key):
        num_prompts, n = problem.log_pi_ref.shape
        state, _ = fit_mixture(problem.pairs, num_annotators, num_groups, hparams, em_steps, key,
                               reward_model=reward_model, features=problem.features, m_steps=m_steps, hard=hard,
                               optimizer=optimizer, num_prompts=num_prompts, num_responses=n)
        model = reward_model or tabular_reward(num_prompts, n)
        table = jax.vmap(model.rewards, (0, None))(state.params, problem.features)
        rewards = center_rewards(table, problem.log_pi_ref)
        return TrainState(params, tx.init(params), {"rewards": rewards, "log_mix": state.log_mix})

    def update(state: TrainState, problem: Problem, hparams, key):
        rewards, beta = state.reward_params["rewards"], hparams["beta"]

        def loss(params):
            table = policy.log_probs(params, problem.prompts)
            f = group_objectives(table, problem.log_pi_ref, rewards, beta)
            u = jnp.argmin(jax.lax.stop_gradient(f))
            if mode == "exact":
                return -f[u], (f, u)
            return -kl_regularized_surrogate(table, problem.log_pi_ref, rewards[u], beta, mode=mode, key=key,
                                             num_samples=num_samples), (f, u)

        (_, (f, u)), g = jax.value_and_grad(loss, has_aux=True)(state.params)
        updates, opt_state = tx.update(g, with_hparams(state.opt_state, hparams), state.params)
        new = TrainState(optax.apply_updates(state.params, updates), opt_state, state.reward_params)
        return new, {"loss": -jnp.min(f), "worst_group": u}

    return Trainer(init, update)


TRAINERS.register(
    "maxmin-rlhf", maxmin_rlhf,
    # declared domains (alignjax.domains): each > 0, as alignjax.rlhf.check_hparams requires
    hparams={"beta": Domain.positive(0.1), "learning_rate": Domain.positive(0.05, 10.0),
             "reward_learning_rate": Domain.positive(0.1, 10.0)},
    static={"num_groups": 2, "em_steps": 100, "m_steps": 10},
    meta={"kind": "online", "needs": ["annotator"],
          "description": "EM mixture of BT rewards over annotator groups, then policy steps on the worst-off "
                         "group (Chakraborty et al. 2024)"})
