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
the linear model extrapolates through the features.

Optimisers (shared with :mod:`alignjax.rlhf`, :mod:`alignjax.hypo` and
:mod:`alignjax.dynamics.sampled`) are optax transformations from :func:`make_optimizer` whose
learning rate is a *traced* hyperparameter: :func:`with_hparams` copies
``hparams["learning_rate"]`` (an array leaf of the hyperparameter mapping) into the optimiser
state before every update, so one compile serves every learning rate and a sweep ``vmap``s over
it::

    tx = make_optimizer("adam")
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, with_hparams(opt_state, hparams), params)
    params = optax.apply_updates(params, updates)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from alignjax.data.bandits import Pairs

__all__ = [
    "RewardModel", "tabular_reward", "linear_reward", "bt_loss", "OPTIMIZERS", "ADAM_EPS",
    "make_optimizer", "with_hparams", "RewardFitState", "RewardFitter", "reward_fitter", "fit_reward",
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


OPTIMIZERS = ("adam", "sgd")

ADAM_EPS = 1e-6
"""Adam's ``eps`` (added to ``sqrt(v_hat)``, outside the root), not optax's default ``1e-8``:
the gradient of a tabular policy's logits outside the data is zero in exact arithmetic but
carries float32 rounding residue of order ``1e-9``, which Adam's normalisation would turn into
steps of size ``learning_rate``."""


def make_optimizer(optimizer: str | optax.GradientTransformation | None = "adam"
                   ) -> optax.GradientTransformationExtraArgs:
    """An optax optimiser whose learning rate is a traced hyperparameter of its state.

    With gradient ``g_t`` at step ``t = 1, 2, ...`` (``theta`` the parameters, ``lr`` the
    learning rate, all operations elementwise):

    * ``"sgd"`` (:func:`optax.sgd`): ``theta <- theta - lr * g_t``;
    * ``"adam"`` (:func:`optax.adam` with ``eps =`` :data:`ADAM_EPS`, ``b1 = 0.9``,
      ``b2 = 0.999``, ``eps_root = 0``)::

          m_t = b1 m_{t-1} + (1 - b1) g_t,         v_t = b2 v_{t-1} + (1 - b2) g_t^2   (m_0 = v_0 = 0)
          m_hat = m_t / (1 - b1^t),                v_hat = v_t / (1 - b2^t)            (bias correction)
          theta <- theta - lr * m_hat / (sqrt(v_hat) + eps)

    * a :class:`optax.GradientTransformation` ``D`` giving an update *direction* ``d_t`` (no
      step size, no sign; e.g. :func:`optax.scale_by_adam`): ``theta <- theta - lr * d_t``;
      ``None`` is SGD.

    All are ``optax.inject_hyperparams(lambda learning_rate: optax.chain(D,
    optax.scale_by_learning_rate(learning_rate)))`` (``optax.adam``/``optax.sgd`` are exactly
    such chains): the state holds ``hyperparams["learning_rate"]`` (an array of the parameters'
    dtype, 0 until set). Set it before every update with :func:`with_hparams`, then apply the
    (already negated) updates with :func:`optax.apply_updates`. The other constants (``b1``,
    ``b2``, ``eps``) stay static Python floats.

    Raises:
      ValueError: for an unknown name.
    """
    if isinstance(optimizer, str):
        if optimizer == "adam":
            def factory(learning_rate):
                return optax.adam(learning_rate, eps=ADAM_EPS)
        elif optimizer == "sgd":
            def factory(learning_rate):
                return optax.sgd(learning_rate)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    else:
        direction = optax.identity() if optimizer is None else optimizer

        def factory(learning_rate):
            return optax.chain(direction, optax.scale_by_learning_rate(learning_rate))

    return optax.inject_hyperparams(factory)(learning_rate=0.0)


def with_hparams(opt_state: Any, hparams: Mapping[str, ArrayLike]) -> Any:
    """A copy of ``opt_state`` (from :func:`make_optimizer`) with its hyperparameters from ``hparams``.

    Every entry of ``opt_state.hyperparams`` (here: ``learning_rate``) is replaced by
    ``hparams[name]`` cast to the stored dtype (the parameters'). Pure: ``hparams`` values may be
    traced (``jit``/``vmap`` over them; the state's leaf then carries their batch axis).

    Raises:
      KeyError: if ``hparams`` lacks one of the optimiser's hyperparameters.
    """
    new = {name: jnp.asarray(hparams[name], jnp.result_type(old)) for name, old in opt_state.hyperparams.items()}
    return opt_state._replace(hyperparams=new)


class RewardFitState(NamedTuple):
    """Reward-model parameters and optimiser state."""

    params: Any
    opt_state: Any


class RewardFitter(NamedTuple):
    """``init(params) -> state``; ``update(state, features, pairs, hparams) -> (state, loss)``."""

    init: Callable[[Any], RewardFitState]
    update: Callable[..., tuple[RewardFitState, jax.Array]]


def reward_fitter(model: RewardModel, optimizer: str = "adam") -> RewardFitter:
    """Full-batch maximum-likelihood steps on :func:`bt_loss` (an ``(init, update)`` pair).

    ``update(state, features, pairs, hparams)`` takes one step of :func:`make_optimizer`'s
    ``optimizer`` ("adam" or "sgd") on the gradient of ``bt_loss`` at ``state.params``, with
    learning rate ``hparams["learning_rate"]`` (an array, traced); it returns the new state and
    the loss before the step.
    """
    tx = make_optimizer(optimizer)

    def init(params):
        return RewardFitState(params, tx.init(params))

    def update(state, features, pairs, hparams):
        loss, g = jax.value_and_grad(lambda p: bt_loss(model.rewards(p, features), pairs))(state.params)
        updates, opt_state = tx.update(g, with_hparams(state.opt_state, hparams), state.params)
        return RewardFitState(optax.apply_updates(state.params, updates), opt_state), loss

    return RewardFitter(init, update)


def fit_reward(model: RewardModel, features: ArrayLike, pairs: Pairs, hparams: Mapping[str, ArrayLike],
               num_steps: int, key: jax.Array, optimizer: str = "adam") -> tuple[Any, jax.Array]:
    """Fit ``model`` by ``num_steps`` (static) full-batch steps from its zero init (``lax.scan``).

    Args:
      hparams: continuous hyperparameters, ``{"learning_rate": lr}`` (array leaves; traced, so
        ``vmap`` over them compiles once).
      optimizer: "adam" or "sgd" (see :func:`make_optimizer`).

    Returns:
      ``(params, losses)`` with ``losses`` of shape ``(num_steps,)`` (the loss before each step).
    """
    if not isinstance(hparams, Mapping):
        raise TypeError(f"hparams must be a mapping like {{'learning_rate': lr}}; got {type(hparams).__name__}")
    fitter = reward_fitter(model, optimizer)

    def body(state, _):
        return fitter.update(state, features, pairs, hparams)

    state, losses = jax.lax.scan(body, fitter.init(model.init(key)), None, length=num_steps)
    return state.params, losses
