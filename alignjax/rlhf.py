"""Online RLHF on a learned Bradley–Terry reward, and the trainer interface of the coverage study.

Song et al. 2024 ("The Importance of Online Data", arXiv 2406.01462) compare offline
contrastive methods (DPO), online RLHF and their hybrid HyPO on the same offline pairs. Every
method here is a :class:`Trainer`, an ``(init, update)`` pair over one :class:`Problem`::

    trainer = TRAINERS.get("rlhf")(policy, reward_model=linear_reward(d), mode="sampled")
    state = trainer.init(params, problem, hparams, key)
    state, metrics = trainer.update(state, problem, hparams, key)

with continuous hyperparameters (``beta``, ``learning_rate``, ``lam``, ``reward_learning_rate``)
as array leaves of ``hparams``, so a sweep ``vmap``s over them (and over problems and keys).

RLHF (this module): ``init`` fits ``r_hat`` by maximum likelihood (:mod:`alignjax.reward_model`);
each ``update`` ascends ``J(pi) = E_x [E_{y~pi}[r_hat(x,y)] - beta KL(pi(.|x) || pi_ref(.|x))]``:

* ``mode="exact"``: the gradient of ``J`` computed from the full ``(X, N)`` policy table;
* ``mode="sampled"``: ``k`` on-policy samples per prompt and REINFORCE with a leave-one-out
  baseline (RLOO): with per-sample score ``s_i = r_hat(y_i) - beta log pi(y_i)/pi_ref(y_i)``
  (no gradient through ``s``) and ``A_i = s_i - mean_{j != i} s_j``,
  ``g = E_x (1/k) sum_i A_i grad log pi(y_i|x)``, an unbiased estimate of ``grad J`` (the
  ``-beta E[grad log pi]`` term of the exact gradient has mean 0).
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
from alignjax.policies.base import Policy, sample_from_logps
from alignjax.registry import TRAINERS
from alignjax.reward_model import RewardModel, fit_reward, make_optimizer, with_hparams

__all__ = [
    "Problem", "TrainState", "Trainer", "TRAINERS", "loo_advantages", "reinforce_loo_surrogate",
    "on_policy_samples", "rlhf_objective", "kl_regularized_surrogate", "rlhf", "run_trainer", "check_hparams",
]

"""Coverage-study trainers: ``factory(policy, **options) -> Trainer``.

Options every factory accepts (ignoring those it does not use): ``mode`` ("exact" or
"sampled"), ``num_samples`` (``k``), ``optimizer`` ("adam" or "sgd", see
:func:`alignjax.reward_model.make_optimizer`), ``reward_model``
(:class:`~alignjax.reward_model.RewardModel`), ``reward_steps``. Entry ``hparams`` give the
defaults of the continuous hyperparameters; ``meta["kind"]`` is "offline", "online" or "hybrid".
Each ``update`` is one optax step ``updates, opt_state = tx.update(g, with_hparams(opt_state,
hparams), params)``, ``params <- optax.apply_updates(params, updates)``: the learning rate is
read from ``hparams["learning_rate"]`` at every step (traced; never baked into the compile).
"""


class Problem(NamedTuple):
    """One preference fine-tuning problem (a pytree; ``vmap`` over a stack of them).

    Attributes:
      prompts: the policy's input for all ``X`` prompts, so ``policy.log_probs(params, prompts)``
        is the ``(X, N)`` table (tabular: ``arange(X)``; log-linear: ``(phi, log_pi_ref)``).
      log_pi_ref: ``(X, N)`` reference log-probabilities.
      pairs: offline :class:`~alignjax.data.bandits.Pairs`.
      features: ``(X, N, d)`` reward-model input (ignored by the tabular reward model).
    """

    prompts: Any
    log_pi_ref: jax.Array
    pairs: Pairs
    features: jax.Array


class TrainState(NamedTuple):
    """Policy parameters, optimiser state, and the learned reward (RLHF; ``None`` otherwise)."""

    params: Any
    opt_state: Any
    reward_params: Any = None


class Trainer(NamedTuple):
    """``init(params, problem, hparams, key) -> TrainState``;
    ``update(state, problem, hparams, key) -> (TrainState, metrics)``."""

    init: Callable[..., TrainState]
    update: Callable[..., tuple[TrainState, dict]]


def loo_advantages(scores: ArrayLike) -> jax.Array:
    """Leave-one-out advantages over the sample axis 0: ``A_i = s_i - (sum_j s_j - s_i)/(k-1)``.

    Args:
      scores: ``(k, ...)`` with ``k >= 2``.
    """
    s = jnp.asarray(scores)
    k = s.shape[0]
    return s - (jnp.sum(s, axis=0, keepdims=True) - s) / (k - 1)


def on_policy_samples(logp_table: jax.Array, key: jax.Array, num_samples: int) -> jax.Array:
    """``k`` responses per prompt from the (stop-gradient) policy table ``(X, N)``: ``(k, X)`` ints."""
    return sample_from_logps(jax.lax.stop_gradient(logp_table), key, (num_samples,))


def reinforce_loo_surrogate(logp_table: jax.Array, samples: jax.Array, scores: jax.Array) -> jax.Array:
    """Surrogate whose gradient is the RLOO estimate of ``grad E_x E_{y~pi}[score]``.

    ``L = mean_x (1/k) sum_i sg(A_i) log pi(y_i|x)`` with :func:`loo_advantages` of ``scores``.

    Args:
      logp_table: ``(X, N)`` policy log-probs (differentiable).
      samples: ``(k, X)`` responses drawn from the policy.
      scores: ``(k, X)`` per-sample scores (gradients are stopped).
    """
    adv = jax.lax.stop_gradient(loo_advantages(scores))
    logp = jnp.take_along_axis(logp_table, samples.T, axis=-1).T  # (k, X)
    return jnp.mean(jnp.mean(adv * logp, axis=0))


def rlhf_objective(logp_table: ArrayLike, log_pi_ref: ArrayLike, reward_table: ArrayLike, beta: ArrayLike) -> jax.Array:
    """``J = mean_x [sum_y pi(y|x) r(x,y) - beta KL(pi(.|x) || pi_ref(.|x))]`` (scalar)."""
    lp = jnp.asarray(logp_table)
    return jnp.mean(jnp.sum(jnp.exp(lp) * reward_table, axis=-1) - beta * reverse_kl(lp, log_pi_ref))


def kl_regularized_surrogate(table: jax.Array, log_pi_ref: jax.Array, payoff: jax.Array, beta: ArrayLike, *,
                             mode: str, key: jax.Array | None = None, num_samples: int = 4) -> jax.Array:
    """A scalar whose gradient in the policy is ``grad J`` (``mode="exact"``) or its RLOO estimate.

    ``J = mean_x [sum_y pi(y|x) u(x,y) - beta KL(pi(.|x) || pi_ref(.|x))]`` for a payoff table
    ``u (X, N)`` that receives no gradient (a fitted reward, a group's reward, a self-play win rate).
    ``"exact"``: ``J`` itself (:func:`rlhf_objective`). ``"sampled"``: the RLOO surrogate over
    ``k = num_samples`` on-policy samples per prompt with score ``u(y) - beta log pi(y)/pi_ref(y)``
    (:func:`reinforce_loo_surrogate`; its value is not ``J``).
    """
    if mode == "exact":
        return rlhf_objective(table, log_pi_ref, payoff, beta)
    ys = on_policy_samples(table, key, num_samples)
    gather = lambda t: jnp.take_along_axis(t, ys.T, axis=-1).T  # noqa: E731
    scores = gather(payoff) - beta * (gather(table) - gather(log_pi_ref))
    return reinforce_loo_surrogate(table, ys, scores)


def check_hparams(hparams: dict, names: tuple[str, ...]) -> None:
    """``ValueError`` unless every named hyperparameter is present, finite and > 0 (``lam`` >= 0)."""
    import numpy as np

    for n in names:
        if n not in hparams:
            raise ValueError(f"missing hyperparameter {n!r}")
        a = np.asarray(hparams[n], dtype=np.float64)
        bad = ~np.isfinite(a) | ((a < 0) if n == "lam" else (a <= 0))
        if np.any(bad):
            raise ValueError(f"hyperparameter {n} must be {'>= 0' if n == 'lam' else '> 0'}; got {a[bad].ravel()[0]}")


def _check_options(mode: str, num_samples: int) -> None:
    if mode not in ("exact", "sampled"):
        raise ValueError(f"unknown mode {mode!r}; known: exact, sampled")
    if mode == "sampled" and num_samples < 2:
        raise ValueError(f"leave-one-out REINFORCE needs num_samples >= 2; got {num_samples}")


def rlhf(policy: Policy, *, reward_model: RewardModel | None = None, mode: str = "exact",
         num_samples: int = 4, optimizer: str = "adam", reward_steps: int = 500, **_: Any) -> Trainer:
    """Two-stage online RLHF: BT reward fit, then KL-regularised policy optimisation.

    Hyperparameters (array leaves of ``hparams``): ``beta`` (KL coefficient),
    ``learning_rate`` (policy step), ``reward_learning_rate`` (reward fit step). ``init`` runs
    ``reward_steps`` (static) full-batch maximum-likelihood steps from ``r_hat = 0`` (learning
    rate ``reward_learning_rate``); ``update`` takes one optimiser step on ``-J`` (see module
    docstring; exact or RLOO with ``k = num_samples``): SGD ``theta <- theta - lr g`` or Adam
    ``theta <- theta - lr m_hat/(sqrt(v_hat) + eps)`` (:func:`~alignjax.reward_model.make_optimizer`).

    Returns:
      A :class:`Trainer`; ``update``'s metrics hold ``loss`` (``-J`` under ``r_hat`` in exact
      mode, the negated RLOO surrogate in sampled mode).
    """
    if reward_model is None:
        raise ValueError("rlhf needs a reward_model (tabular_reward or linear_reward)")
    _check_options(mode, num_samples)
    tx = make_optimizer(optimizer)

    def init(params, problem: Problem, hparams, key):
        rparams, _ = fit_reward(reward_model, problem.features, problem.pairs,
                                {"learning_rate": hparams["reward_learning_rate"]}, reward_steps, key, optimizer)
        return TrainState(params, tx.init(params), rparams)

    def update(state: TrainState, problem: Problem, hparams, key):
        r_hat = reward_model.rewards(state.reward_params, problem.features)
        beta = hparams["beta"]

        def loss(params):
            table = policy.log_probs(params, problem.prompts)
            return -kl_regularized_surrogate(table, problem.log_pi_ref, r_hat, beta, mode=mode, key=key,
                                             num_samples=num_samples)

        value, g = jax.value_and_grad(loss)(state.params)
        updates, opt_state = tx.update(g, with_hparams(state.opt_state, hparams), state.params)
        new = TrainState(optax.apply_updates(state.params, updates), opt_state, state.reward_params)
        return new, {"loss": value}

    return Trainer(init, update)


# Declared domains (alignjax.domains), agreeing with check_hparams: every one > 0 (log scales).
TRAINERS.register("rlhf", rlhf, hparams={"beta": Domain.positive(0.1), "learning_rate": Domain.positive(0.05, 10.0),
                                         "reward_learning_rate": Domain.positive(0.1, 10.0)},
                  meta={"kind": "online", "fits": "bradley-terry",
                        "description": "BT reward MLE, then KL-regularised policy gradient"})


def run_trainer(trainer: Trainer, policy: Policy, params, problem: Problem, hparams: dict, key: jax.Array, *,
                num_steps: int, log_every: int, observe: Callable[[jax.Array], dict]) -> tuple[TrainState, dict]:
    """``init`` then ``num_steps`` updates through the engine's observe-scan; jittable and ``vmap``-able.

    The trainer becomes a :class:`~alignjax.experiment.Program` (state: the train state and a
    PRNG key split once per update) run by :func:`alignjax.sweep.run_program`, the same nested
    ``lax.scan`` every sweep uses.

    Args:
      observe: ``observe(logp_table (X, N)) -> {name: scalar}``, called at steps
        ``0, log_every, ..., num_steps`` (static ints; ``num_steps % log_every == 0``).

    Returns:
      ``(final_state, metrics)`` with each metric stacked to ``(num_steps // log_every + 1, ...)``.
    """
    from alignjax.experiment import Program
    from alignjax.sweep import run_program

    def init(hp, k):
        k_init, k_run = jax.random.split(k)
        return trainer.init(params, problem, hp, k_init), k_run

    def step(state, hp):
        s, k = state
        k, k_step = jax.random.split(k)
        return trainer.update(s, problem, hp, k_step)[0], k

    def look(state, hp):
        return observe(policy.log_probs(state[0].params, problem.prompts))

    (final, _), metrics = run_program(Program(init, step, look), hparams, key, num_steps=num_steps,
                                      log_every=log_every)
    return final, metrics
