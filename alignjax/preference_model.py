"""The general preference model (GPM): preference embeddings that can represent cycles.

Zhang et al. 2024 ("Beyond Bradley-Terry Models: A General Preference Model for Language Model
Alignment", arXiv 2410.02197, ICML 2025). Each response gets an embedding ``v(x, y) in R^{2k}``
and the preference is

    s(y > y' | x) = <R v(x, y), v(x, y')>,      P(y > y' | x) = sigmoid(s(y > y' | x)),

with ``R`` block-diagonal, ``k`` blocks ``[[0, -1], [1, 0]]`` (:func:`skew_operator`; the
authors' code, ``general_preference/models/loss.py``, ``HighDimGeneralPreferenceLoss``, builds
``R[2i, 2i+1] = -1``, ``R[2i+1, 2i] = 1``). ``R`` is skew-symmetric, so ``s(y > y') = -s(y' > y)``
and ``P(y > y') + P(y' > y) = 1`` for any embeddings; a Bradley–Terry model is the special case
of one rank-one direction (``P = sigmoid(r(y) - r(y'))`` has a score that is a difference of
per-response numbers and so cannot be cyclic), while ``2k >= N`` makes the model fully expressive
for any skew-symmetric score matrix on ``N`` responses (the paper's expressiveness result).
Within a block, ``s = v_0 v'_1 - v_1 v'_0 = |v||v'| sin(angle(v') - angle(v))``: responses on a
circle beat the ones a quarter turn ahead, which is rock-paper-scissors.

Differences from the authors' code: they divide the score by a temperature ``tau`` (default
0.1 in the high-dimensional loss) and may scale each block by a prompt-dependent eigenvalue
(``prompt_head``); here ``tau = 1`` (a scale of the embeddings) and the blocks are fixed.

Fitting (:func:`fit_gpm`) is maximum likelihood on labelled pairs, ``min sum_m w_m
softplus(-s(y_w,m > y_l,m))``, from a small random start (``v = 0`` is a saddle: the score is
bilinear). The trainer ``"gpm-gpo"`` (:func:`gpo_trainer`; named apart from the GPO loss family of Tang et al. 2024) then optimises a policy against the
fitted preference by self-play, the paper's General Preference Optimization (GPO) in its
tabular exact form; see its docstring.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from alignjax.data.bandits import Pairs
from alignjax.domains import Domain
from alignjax.registry import TRAINERS
from alignjax.reward_model import make_optimizer, with_hparams
from alignjax.rlhf import Problem, Trainer, TrainState, _check_options, kl_regularized_surrogate

__all__ = [
    "skew_operator", "preference_score", "score_matrix", "preference_matrix", "PreferenceModel", "tabular_gpm",
    "linear_gpm", "gpm_loss", "fit_gpm", "expected_accuracy", "bayes_accuracy", "best_transitive_accuracy",
    "self_play_payoff", "gpo_trainer",
]


def skew_operator(dim: int) -> np.ndarray:
    """``R`` of shape ``(2k, 2k)``: ``k`` diagonal blocks ``[[0, -1], [1, 0]]`` (a quarter-turn rotation
    per block; ``R^T = -R``). ``dim = 2k`` must be even."""
    if dim % 2:
        raise ValueError(f"the preference embedding dimension must be even (2k); got {dim}")
    r = np.zeros((dim, dim))
    for i in range(0, dim, 2):
        r[i, i + 1], r[i + 1, i] = -1.0, 1.0
    return r


def preference_score(v_a: ArrayLike, v_b: ArrayLike) -> jax.Array:
    """``s(a > b) = <R v_a, v_b> = sum_i (v_a[2i] v_b[2i+1] - v_a[2i+1] v_b[2i])`` over the last axis.

    Computed without forming ``R``; exactly antisymmetric in floating point
    (``s(b > a) = -s(a > b)``: the two products swap and the difference changes sign).
    """
    a, b = jnp.asarray(v_a), jnp.asarray(v_b)
    return jnp.sum(a[..., 0::2] * b[..., 1::2] - a[..., 1::2] * b[..., 0::2], axis=-1)


def score_matrix(emb: ArrayLike) -> jax.Array:
    """``S[..., y, y'] = s(y > y')`` for embeddings ``(..., N, 2k)``: shape ``(..., N, N)``, ``S^T = -S``."""
    e = jnp.asarray(emb)
    return preference_score(e[..., :, None, :], e[..., None, :, :])


def _sigmoid_pair(s):
    """``sigmoid(s)`` computed so that ``f(s) + f(-s) = 1`` exactly: ``sigmoid(s)`` for ``s >= 0`` and
    ``1 - sigmoid(-s)`` otherwise (the subtraction from 1 of a number in [1/2, 1] is exact)."""
    pos = jax.nn.sigmoid(jnp.abs(s))
    return jnp.where(s >= 0, pos, 1.0 - pos)


def preference_matrix(emb: ArrayLike) -> jax.Array:
    """``P[..., y, y'] = sigmoid(<R v_y, v_y'>)``, shape ``(..., N, N)``; ``P + P^T = 1`` exactly, diagonal 1/2."""
    return _sigmoid_pair(score_matrix(emb))


class PreferenceModel(NamedTuple):
    """``init(key) -> params`` (unit scale; :func:`fit_gpm` rescales) and
    ``embeddings(params, features) -> (X, N, 2k)``."""

    init: Callable[[jax.Array], Any]
    embeddings: Callable[[Any, Any], jax.Array]


def tabular_gpm(num_prompts: int, num_responses: int, dim: int) -> PreferenceModel:
    """One free embedding ``v(x, y) in R^dim`` per (prompt, response); params ``(X, N, dim)``, init ``N(0, 1)``."""
    skew_operator(dim)  # checks dim

    def init(key):
        return jax.random.normal(key, (num_prompts, num_responses, dim))

    def embeddings(params, features):
        del features
        return params

    return PreferenceModel(init, embeddings)


def linear_gpm(num_features: int, dim: int) -> PreferenceModel:
    """Linear embeddings ``v(x, y) = phi(x, y) @ W``, ``W (d, dim)`` (init ``N(0, 1)``); ``features`` is ``phi (X, N, d)``."""
    skew_operator(dim)

    def init(key):
        return jax.random.normal(key, (num_features, dim))

    def embeddings(params, features):
        return jnp.asarray(features) @ params

    return PreferenceModel(init, embeddings)


def gpm_loss(emb: ArrayLike, pairs: Pairs) -> jax.Array:
    """Negative log-likelihood ``sum_m w_m softplus(-s(y_w,m > y_l,m | x_m))`` of the pairs (scalar;
    ``log 2`` at ``v = 0``). ``emb``: ``(X, N, 2k)``."""
    e = jnp.asarray(emb)
    s = preference_score(e[pairs.x, pairs.y_w], e[pairs.x, pairs.y_l])
    return jnp.sum(pairs.weight * jax.nn.softplus(-s))


def fit_gpm(model: PreferenceModel, features: Any, pairs: Pairs, hparams, num_steps: int, key: jax.Array,
            optimizer: str = "adam") -> tuple[Any, jax.Array]:
    """Maximum likelihood (:func:`gpm_loss`) by ``num_steps`` (static) full-batch optimiser steps (``lax.scan``).

    Start: ``hparams["embedding_init_scale"] * model.init(key)`` (small and random: ``v = 0`` is a
    saddle of the bilinear score). Learning rate ``hparams["reward_learning_rate"]`` (traced).

    Returns:
      ``(params, losses)``, ``losses (num_steps,)`` the loss before each step.
    """
    tx = make_optimizer(optimizer)
    params = jax.tree.map(lambda p: hparams["embedding_init_scale"] * p, model.init(key))
    lr = {"learning_rate": hparams["reward_learning_rate"]}

    def body(carry, _):
        p, o = carry
        loss, g = jax.value_and_grad(lambda q: gpm_loss(model.embeddings(q, features), pairs))(p)
        upd, o = tx.update(g, with_hparams(o, lr), p)
        return (optax.apply_updates(p, upd), o), loss

    (params, _), losses = jax.lax.scan(body, (params, tx.init(params)), None, length=num_steps)
    return params, losses


def expected_accuracy(p_model: ArrayLike, p_true: ArrayLike) -> jax.Array:
    """Expected accuracy on a fresh labelled pair, uniform over prompts and unordered pairs ``{y, y'}``:

    ``acc = mean_x mean_{y < y'} [P(y > y') c(y, y') + P(y' > y) c(y', y)] = mean_x sum_{y != y'}
    P(y > y') c(y, y') / (N (N - 1) / 2)``,
    ``c(y, y') = 1[P_model(y > y') > 1/2] + 1[P_model(y > y') = 1/2] / 2`` (a tie is a coin flip).
    Shapes ``(X, N, N)`` (or ``(N, N)``); scalar.
    """
    pm, pt = jnp.asarray(p_model), jnp.asarray(p_true)
    c = (pm > 0.5).astype(pt.dtype) + 0.5 * (pm == 0.5).astype(pt.dtype)
    n = pt.shape[-1]
    off = jnp.broadcast_to(1.0 - jnp.eye(n, dtype=pt.dtype), pt.shape)
    per = jnp.sum(off * pt * c, axis=(-1, -2)) * (2.0 / (n * (n - 1)))
    return jnp.mean(per)


def bayes_accuracy(p_true: ArrayLike) -> jax.Array:
    """The best expected accuracy of any predictor: ``mean_x mean_{y < y'} max(P(y > y'), P(y' > y))``."""
    pt = jnp.asarray(p_true)
    return expected_accuracy(pt, pt)


def best_transitive_accuracy(p_true: ArrayLike) -> float:
    """The best expected accuracy of any transitive predictor (a strict ranking per prompt; a
    Bradley–Terry model predicts by one), by enumerating the ``N!`` rankings (numpy; ``N <= 8``).

    Per prompt ``max_sigma sum_{y != y'} P(y > y') 1[sigma(y) < sigma(y')] / (N (N - 1) / 2)``, averaged
    over prompts.
    """
    pt = np.asarray(p_true, np.float64)
    pt = pt[None] if pt.ndim == 2 else pt
    n = pt.shape[-1]
    if n > 8:
        raise ValueError(f"best_transitive_accuracy enumerates N! rankings; N = {n} is too many")
    best = []
    for p in pt:
        top = 0.0
        for order in itertools.permutations(range(n)):
            rank = np.empty(n, int)
            rank[list(order)] = np.arange(n)
            top = max(top, float(np.sum(p * (rank[:, None] < rank[None, :]))))
        best.append(top / (n * (n - 1) / 2))
    return float(np.mean(best))


def self_play_payoff(p_model: jax.Array, logp: jax.Array, payoff: str = "prob") -> jax.Array:
    """The GPO payoff table ``(X, N)`` against the policy itself (gradients stopped):
    ``payoff="prob"``: ``P(y > pi) = sum_y' P(y > y') pi(y')``; ``"score"``: ``s(y > pi) =
    sum_y' s(y > y') pi(y')`` with ``s = logit P`` (the paper's preference score).
    """
    pi = jax.lax.stop_gradient(jnp.exp(logp))
    m = p_model if payoff == "prob" else jnp.log(p_model) - jnp.log1p(-p_model)
    return jnp.einsum("xab,xb->xa", m, pi)


def gpo_trainer(policy, *, dim: int = 4, gpm_steps: int = 500, payoff: str = "prob", mode: str = "exact",
                num_samples: int = 4, optimizer: str = "sgd", fit_optimizer: str = "adam", **_: Any) -> Trainer:
    """General Preference Optimization by self-play on a fitted GPM (a coverage-study trainer).

    ``init`` fits a tabular GPM of dimension ``dim = 2k`` (static) on the problem's pairs
    (:func:`fit_gpm`, ``gpm_steps`` steps, learning rate ``reward_learning_rate``, start scale
    ``embedding_init_scale``) and stores its preference matrix ``P_hat (X, N, N)``. Each
    ``update`` ascends the self-play objective

        G(pi) = E_x [E_{y~pi} u(y) - beta KL(pi || pi_ref)],   u(y) = P_hat(y > sg(pi))  (or the score),

    (:func:`self_play_payoff`; ``sg`` stops the gradient): the exact gradient (``mode="exact"``)
    or RLOO on ``k`` samples with score ``u(y) - beta log pi(y)/pi_ref(y)``. Its fixed points
    satisfy ``pi ∝ pi_ref exp(P_hat(. > pi) / beta)``: the regularised Nash equilibrium of the
    fitted game (:func:`alignjax.games.regularized_nash`). The paper's GPO writes the same
    self-play target with the preference score and an SPPO-style squared loss (not re-checked).
    Hyperparameters: ``beta``, ``learning_rate``, ``reward_learning_rate``,
    ``embedding_init_scale``.

    Defaults (both matter on a non-transitive game; measured on the atlas's cyclic tournament): the GPM
    is fitted with Adam (``fit_optimizer``; plain SGD leaves it far from the data's preferences in
    ``gpm_steps`` steps, max error 0.4) and the policy takes plain SGD steps with learning rate 1
    (``optimizer``): the self-play gradient then contracts to the regularised equilibrium of the fitted
    game, while Adam's normalised steps at learning rate 0.05 hover at a duality gap of 0.15-0.3.
    """
    _check_options(mode, num_samples)
    if payoff not in ("prob", "score"):
        raise ValueError(f"unknown payoff {payoff!r}; known: prob, score")
    tx = make_optimizer(optimizer)

    def init(params, problem: Problem, hparams, key):
        num_prompts, n = problem.log_pi_ref.shape
        model = tabular_gpm(num_prompts, n, dim)
        emb, _ = fit_gpm(model, problem.features, problem.pairs, hparams, gpm_steps, key, fit_optimizer)
        return TrainState(params, tx.init(params), {"preference": preference_matrix(model.embeddings(emb, None))})

    def update(state: TrainState, problem: Problem, hparams, key):
        p_hat, beta = state.reward_params["preference"], hparams["beta"]

        def loss(params):
            table = policy.log_probs(params, problem.prompts)
            u = self_play_payoff(p_hat, table, payoff)
            return -kl_regularized_surrogate(table, problem.log_pi_ref, u, beta, mode=mode, key=key,
                                             num_samples=num_samples)

        value, g = jax.value_and_grad(loss)(state.params)
        updates, opt_state = tx.update(g, with_hparams(state.opt_state, hparams), state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state, state.reward_params), {"loss": value}

    return Trainer(init, update)


TRAINERS.register(
    "gpm-gpo", gpo_trainer,
    # declared domains (alignjax.domains): each > 0 (embedding_init_scale = 0 starts at the saddle v = 0)
    hparams={"beta": Domain.positive(0.1), "learning_rate": Domain.positive(1.0, 10.0),
             "reward_learning_rate": Domain.positive(0.05, 10.0), "embedding_init_scale": Domain.positive(0.1, 10.0)},
    static={"dim": 4, "gpm_steps": 500, "payoff": "prob"},
    meta={"kind": "online", "needs": [], "fits": "general-preference",
          "description": "general preference (embedding) model fitted on the pairs, then self-play towards its "
                         "regularised Nash equilibrium (Zhang et al. 2024)"})
