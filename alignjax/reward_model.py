"""Bradley–Terry reward models fitted by maximum likelihood on offline pairs.

The first stage of online RLHF (Song et al. 2024, arXiv 2406.01462, §3): fit
``r_hat = argmin_r  sum_m w_m * -log sigmoid(r(x_m, y_w,m) - r(x_m, y_l,m))`` on the offline
pairs, then optimise a policy against ``r_hat`` (:mod:`alignjax.rlhf`). Two families share one
interface (like :class:`alignjax.policies.Policy`)::

    model = linear_reward(num_features=d)       # or tabular_reward(X, N)
    params = model.init(key)
    table = model.rewards(params, features)     # (X, N) rewards of every response

Both start at ``r_hat = 0``. A BT fit identifies rewards only up to a per-prompt constant (and
only on the responses the data compares): the tabular model leaves every unseen response at 0,
the linear model extrapolates through the features. Optimisers come from :func:`scaled_optimizer`,
whose learning rate is an array argument (sweepable under ``vmap``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from alignjax.data.bandits import Pairs

__all__ = [
    "RewardModel", "tabular_reward", "linear_reward", "bt_loss", "scaled_optimizer",
    "RewardFitState", "RewardFitter", "reward_fitter", "fit_reward",
]


class RewardModel(NamedTuple):
    """``init(key) -> params`` and ``rewards(params, features) -> (X, N)``."""

    init: Callable[[jax.Array], Any]
    rewards: Callable[[Any, jax.Array], jax.Array]


def tabular_reward(num_prompts: int, num_responses: int) -> RewardModel:
    """One free reward per ``(x, y)``: params ``(X, N)``, initialised to 0; ``features`` ignored."""

    def init(key):
        del key
        return jnp.zeros((num_prompts, num_responses))

    def rewards(params, features):
        del features
        return params

    return RewardModel(init, rewards)


def linear_reward(num_features: int) -> RewardModel:
    """Linear reward ``r(x, y) = <phi(x, y), w>``: params ``w`` of shape ``(d,)``, initialised to 0.

    ``features`` is ``phi`` of shape ``(X, N, d)``.
    """

    def init(key):
        del key
        return jnp.zeros((num_features,))

    def rewards(params, features):
        return jnp.asarray(features) @ params

    return RewardModel(init, rewards)


def bt_loss(reward_table: ArrayLike, pairs: Pairs) -> jax.Array:
    """Weighted Bradley–Terry negative log-likelihood ``sum_m w_m softplus(-(r[x,y_w] - r[x,y_l]))``.

    Args:
      reward_table: ``(X, N)`` rewards.
      pairs: :class:`~alignjax.data.bandits.Pairs` of length ``M`` (weights sum to 1).

    Returns:
      Scalar loss (``log 2`` at ``r = 0``).
    """
    r = jnp.asarray(reward_table)
    diff = r[pairs.x, pairs.y_w] - r[pairs.x, pairs.y_l]
    return jnp.sum(pairs.weight * -jax.nn.log_sigmoid(diff))


def scaled_optimizer(name: str) -> optax.GradientTransformation:
    """The update direction of optimiser ``name`` *without* its step size.

    ``"adam"``: :func:`optax.scale_by_adam` with ``eps = 1e-6`` (not optax's ``1e-8``: the
    gradient of a tabular policy's logits outside the data is zero in exact arithmetic but
    carries float32 rounding residue of order ``1e-9``, which Adam's normalisation would turn
    into steps of size ``learning_rate``); ``"sgd"``: the raw gradient. The caller applies
    ``params - learning_rate * direction`` so ``learning_rate`` stays an array argument.

    Raises:
      ValueError: for an unknown name.
    """
    if name == "adam":
        return optax.scale_by_adam(eps=1e-6)
    if name == "sgd":
        return optax.identity()
    raise ValueError(f"unknown optimizer {name!r}; known: adam, sgd")


def apply_step(params, direction, learning_rate):
    """``params - learning_rate * direction`` over a pytree (``learning_rate`` an array)."""
    return jax.tree.map(lambda p, d: p - learning_rate * d, params, direction)


class RewardFitState(NamedTuple):
    """Reward-model parameters and optimiser state."""

    params: Any
    opt_state: Any


class RewardFitter(NamedTuple):
    """``init(params) -> state``; ``update(state, features, pairs, learning_rate) -> (state, loss)``."""

    init: Callable[[Any], RewardFitState]
    update: Callable[..., tuple[RewardFitState, jax.Array]]


def reward_fitter(model: RewardModel, optimizer: str = "adam") -> RewardFitter:
    """Full-batch maximum-likelihood steps on :func:`bt_loss` (an ``(init, update)`` pair)."""
    tx = scaled_optimizer(optimizer)

    def init(params):
        return RewardFitState(params, tx.init(params))

    def update(state, features, pairs, learning_rate):
        loss, g = jax.value_and_grad(lambda p: bt_loss(model.rewards(p, features), pairs))(state.params)
        d, opt_state = tx.update(g, state.opt_state, state.params)
        return RewardFitState(apply_step(state.params, d, learning_rate), opt_state), loss

    return RewardFitter(init, update)


def fit_reward(model: RewardModel, features: ArrayLike, pairs: Pairs, learning_rate: ArrayLike,
               num_steps: int, key: jax.Array, optimizer: str = "adam") -> tuple[Any, jax.Array]:
    """Fit ``model`` by ``num_steps`` (static) full-batch steps from its zero init (``lax.scan``).

    Returns:
      ``(params, losses)`` with ``losses`` of shape ``(num_steps,)`` (the loss before each step).
    """
    fitter = reward_fitter(model, optimizer)

    def body(state, _):
        return fitter.update(state, features, pairs, learning_rate)

    state, losses = jax.lax.scan(body, fitter.init(model.init(key)), None, length=num_steps)
    return state.params, losses
