"""Per-prompt losses of the sampled (loss-driven) preference-game algorithms.

Every algorithm is a :class:`GameLoss`: two pure functions of ONE prompt (the builder in
:mod:`alignjax.dynamics.sampled` vmaps them over a batch of prompts and differentiates them
with respect to the policy parameters through ``logp``):

* ``population(logp, g, hp)``: the exact expectation of the loss over pairs (weights from
  the stop-gradient policies in ``g``): deterministic.
* ``sampled(logp, g, hp, key, num_samples, bernoulli)``: the same loss on ``num_samples``
  sampled pairs. Its gradient is an unbiased estimate of the population gradient.

Inputs (:class:`GameInputs`, one prompt, ``N`` responses): ``P (N, N)`` preferences,
``logp_ref (N,)``, ``logp_now (N,)`` = the current policy (or EGPO's half-step policy),
``logp_anchor (N,)`` = the round's anchor ``pi_t`` (INPO, SPPO); both stop-gradient.

Observed preferences in sampled mode: with ``bernoulli=True`` the comparison of ``y`` with
``y'`` is a draw ``o ~ Bernoulli(P[y, y'])`` (what a rater returns); with ``bernoulli=False``
the probability ``P[y, y']`` itself is used (the EGPO authors' simulation). Every loss's
gradient is affine in ``o`` (with ``o``-free coefficients), so it stays unbiased either way;
Bernoulli feedback only adds variance.

Randomness: each sampled loss makes ONE ``jax.random.uniform`` draw of shape ``(rows, K)``
and turns it into responses by inverting the CDF (and into Bernoulli outcomes by
``u < P``): equivalent in law to ``jax.random.categorical``, and several times cheaper to
compile on CPU than one threefry call per variable inside vmapped scans.

Notation (docs/algorithms.md §0): ``Delta(y) = log pi(y) - log pi_ref(y)``,
``h(y, y') = Delta(y) - Delta(y')``, ``beta`` the KL coefficient, ``eta`` a mirror step.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from alignjax.domains import Domain
from alignjax.registry import GAME_LOSSES

__all__ = ["GameInputs", "GameLoss", "GAME_LOSSES", "online_ipo_1", "online_ipo_2", "nash_md_pg",
           "inpo", "sppo", "spo", "online_dpo", "xpo", "vpo", "mixture_logp", "dpo_pair_loss",
           "xpo_pair_losses", "spo_win_rates"]


class GameInputs(NamedTuple):
    """One prompt's game (all stop-gradient). Shapes: ``P (N, N)``, the rest ``(N,)``."""

    P: jax.Array
    logp_ref: jax.Array
    logp_now: jax.Array
    logp_anchor: jax.Array


class GameLoss(NamedTuple):
    """An algorithm's loss: ``population`` and ``sampled`` forms (see module docstring).

    Attributes:
      population: ``(logp (N,), GameInputs, hp) -> scalar``.
      sampled: ``(logp (N,), GameInputs, hp, key, num_samples, bernoulli) -> scalar``.
      hparams: names of the continuous hyperparameters the loss reads (besides
        ``learning_rate``, which the builder uses).
      min_samples: the smallest ``num_samples`` the sampled form accepts (SPO compares each
        sample with the others: 2).
    """

    population: Callable
    sampled: Callable
    hparams: tuple[str, ...]
    min_samples: int = 1


def _observe(P, y, yp, u, bernoulli: bool):
    """Observed outcome of ``y`` vs ``yp``: ``1[u < P[y, yp]]`` (a Bernoulli draw, ``u ~ U(0,1)``) or ``P[y, yp]``."""
    p = P[y, yp]
    if bernoulli:
        return (u < p).astype(p.dtype)
    return p


def _inverse_cdf(u, logp):
    """``y ~ softmax(logp)`` from uniforms ``u (K,)`` by inverting the CDF (``(K,)`` ints in ``[0, N)``)."""
    cdf = jnp.cumsum(jnp.exp(logp))[:-1]
    return jnp.sum(u[:, None] > cdf[None, :], axis=-1)


def _uniforms(key, rows, num_samples):
    """All the randomness of one loss in ONE draw (cheap to compile on CPU): ``(rows, K)``."""
    return jax.random.uniform(key, (rows, num_samples))


def mixture_logp(logp, logp_ref, m):
    """``log pi_mix`` with ``pi_mix ∝ pi^(1-m) * pi_ref^m`` (Munos et al., arXiv 2312.00886)."""
    return jax.nn.log_softmax((1.0 - m) * logp + m * logp_ref)


# ---------------------------------------------------------------- online IPO 1 / EGPO
def _ipo1_population(logp, g, hp):
    """``mean_{y,y'} [h(y,y') - ((P@pi_s)[y] - (P@pi_s)[y'])/beta]^2`` over ALL ``N^2`` pairs.

    Uniform pair weights, opponent ``pi_s = exp(logp_now)``. With ``u = Delta - P@pi_s/beta``
    the loss is ``mean_{a,b} (u_a - u_b)^2``, whose gradient in ``u`` is ``(4/N)(u - mean u)``;
    on tabular logits (``d log_softmax`` kills constants) one SGD step of size ``lr`` is
    ``log pi' = log pi - (4 lr/N)(Delta - P@pi_s/beta) + c``: the exact OMD step with
    ``eta = 4 lr/(N beta)`` (Zhou et al. 2025, EGPO, docs/algorithms.md §4).
    """
    u = logp - g.logp_ref - g.P @ jnp.exp(g.logp_now) * (1.0 / hp["beta"])
    diff = u[:, None] - u[None, :]
    return jnp.mean(diff**2)


def _ipo1_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y, y' ~ Uniform(N)`` (the population weights), ``y'' ~ pi_s``; target ``(o(y,y'') - o(y',y''))/beta``."""
    n = logp.shape[-1]
    u = _uniforms(key, 5, num_samples)
    y = jnp.minimum((u[0] * n).astype(jnp.int32), n - 1)
    yp = jnp.minimum((u[1] * n).astype(jnp.int32), n - 1)
    ypp = _inverse_cdf(u[2], g.logp_now)
    delta = logp - g.logp_ref
    target = (_observe(g.P, y, ypp, u[3], bernoulli) - _observe(g.P, yp, ypp, u[4], bernoulli)) * (1.0 / hp["beta"])
    return jnp.mean((delta[y] - delta[yp] - target) ** 2)


online_ipo_1 = GameLoss(_ipo1_population, _ipo1_sampled, ("beta",))


# ---------------------------------------------------------------- online IPO 2 (Calandriello)
def _ipo2_population(logp, g, hp):
    """``sum_{y,y'} pi_t(y) pi_t(y') [h(y,y') - (P[y,y'] - 1/2)/beta]^2``, ``pi_t = exp(logp_now)``.

    IPO with soft labels on on-policy pairs (Calandriello et al. 2024, arXiv 2403.08635).
    """
    w = jnp.exp(g.logp_now)
    delta = logp - g.logp_ref
    r = delta[:, None] - delta[None, :] - (g.P - 0.5) * (1.0 / hp["beta"])
    return w @ (r**2) @ w


def _ipo2_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y, y' ~ pi_t``; loss ``[h(y,y') - (o(y,y') - 1/2)/beta]^2``."""
    u = _uniforms(key, 3, num_samples)
    y = _inverse_cdf(u[0], g.logp_now)
    yp = _inverse_cdf(u[1], g.logp_now)
    delta = logp - g.logp_ref
    o = _observe(g.P, y, yp, u[2], bernoulli)
    return jnp.mean((delta[y] - delta[yp] - (o - 0.5) * (1.0 / hp["beta"])) ** 2)


online_ipo_2 = GameLoss(_ipo2_population, _ipo2_sampled, ("beta",))


# ---------------------------------------------------------------- Nash-MD-PG (Munos et al.)
def _nmdpg_population(logp, g, hp):
    """Surrogate ``-sum_y pi(y) A(y) log pi(y)`` with ``A = P@pi_mix - 1/2 - beta*Delta_t`` (stop-grad).

    Its gradient is the policy gradient ``-E_{y~pi}[grad log pi(y) A(y)]`` of
    ``P(pi > pi_mix) - beta KL(pi||pi_ref)``; ``pi_mix ∝ pi^(1-m) pi_ref^m``, ``m = hp["mixture"]``
    (Munos et al. 2023, arXiv 2312.00886, Nash-MD-PG; ``m = 0`` is self-play).
    """
    pi = jnp.exp(g.logp_now)
    pi_mix = jnp.exp(mixture_logp(g.logp_now, g.logp_ref, hp["mixture"]))
    adv = g.P @ pi_mix - 0.5 - hp["beta"] * (g.logp_now - g.logp_ref)
    return -jnp.sum(pi * adv * logp)


def _nmdpg_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y ~ pi``, ``y' ~ pi_mix``; ``-mean[(o(y,y') - 1/2 - beta*Delta_t(y)) log pi(y)]``."""
    u = _uniforms(key, 3, num_samples)
    y = _inverse_cdf(u[0], g.logp_now)
    yp = _inverse_cdf(u[1], mixture_logp(g.logp_now, g.logp_ref, hp["mixture"]))
    adv = _observe(g.P, y, yp, u[2], bernoulli) - 0.5 - hp["beta"] * (g.logp_now[y] - g.logp_ref[y])
    return -jnp.mean(adv * logp[y])


nash_md_pg = GameLoss(_nmdpg_population, _nmdpg_sampled, ("beta", "mixture"))


# ---------------------------------------------------------------- INPO (Zhang et al.)
def _inpo_g(logp, g, hp, y, yp):
    """``g(y,y') = log pi(y)/pi(y') - eta*beta*log pi_ref(y)/pi_ref(y') - (1-eta*beta)*log pi_t(y)/pi_t(y')``."""
    eb = hp["eta"] * hp["beta"]
    f = logp - eb * g.logp_ref - (1.0 - eb) * g.logp_anchor
    return f[y] - f[yp]


def _inpo_population(logp, g, hp):
    """``sum_{y,y'} pi_t pi_t [P (g - eta/2)^2 + (1-P)(g + eta/2)^2]`` (winner drawn from P).

    Zhang et al. 2024 (arXiv 2407.00617), project convention (docs/algorithms.md §4). Since
    ``g`` is antisymmetric, the pair ordered as (loser, winner) gives ``(g(y,y') + eta/2)^2``.
    Its minimiser over all policies is the OMD step
    ``log pi = (1-eta beta) log pi_t + eta beta log pi_ref + eta P@pi_t + c``.
    """
    n = logp.shape[-1]
    idx = jnp.arange(n)
    gm = _inpo_g(logp, g, hp, idx[:, None], idx[None, :])
    w = jnp.exp(g.logp_anchor)
    half = 0.5 * hp["eta"]
    per_pair = g.P * (gm - half) ** 2 + (1.0 - g.P) * (gm + half) ** 2
    return w @ per_pair @ w


def _inpo_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y, y' ~ pi_t``; with outcome ``o`` the loss is ``o (g - eta/2)^2 + (1-o)(g + eta/2)^2``."""
    u = _uniforms(key, 3, num_samples)
    y = _inverse_cdf(u[0], g.logp_anchor)
    yp = _inverse_cdf(u[1], g.logp_anchor)
    o = _observe(g.P, y, yp, u[2], bernoulli)
    gm = _inpo_g(logp, g, hp, y, yp)
    half = 0.5 * hp["eta"]
    return jnp.mean(o * (gm - half) ** 2 + (1.0 - o) * (gm + half) ** 2)


inpo = GameLoss(_inpo_population, _inpo_sampled, ("beta", "eta"))


# ---------------------------------------------------------------- SPPO (Wu et al.)
def _sppo_population(logp, g, hp):
    """``2 sum_y pi_t(y) [log pi(y)/pi_t(y) - eta((P@pi_t)[y] - 1/2)]^2`` (a pair = 2 samples).

    Wu et al. 2024 (arXiv 2405.00675); no reference policy (``beta`` unused).
    """
    w = jnp.exp(g.logp_anchor)
    r = logp - g.logp_anchor - hp["eta"] * (g.P @ w - 0.5)
    return 2.0 * jnp.sum(w * r**2)


def _sppo_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y, y' ~ pi_t``, ``Phat(y > pi_t) = o(y,y')``; loss summed over the pair."""
    u = _uniforms(key, 3, num_samples)
    y = _inverse_cdf(u[0], g.logp_anchor)
    yp = _inverse_cdf(u[1], g.logp_anchor)
    o = _observe(g.P, y, yp, u[2], bernoulli)
    lr = logp - g.logp_anchor
    eta = hp["eta"]
    return jnp.mean((lr[y] - eta * (o - 0.5)) ** 2 + (lr[yp] - eta * (0.5 - o)) ** 2)


sppo = GameLoss(_sppo_population, _sppo_sampled, ("eta",))

# ---------------------------------------------------------------- SPO (Swamy et al.)
def spo_win_rates(P, y, u_pairs, bernoulli: bool):
    """Each sample's win rate against the OTHER samples of its group: ``rhat_i = mean_{j != i} o(y_i, y_j)``.

    ``y (K,)`` responses, ``u_pairs (K, K)`` uniforms. Every unordered pair ``i < j`` is judged
    once, ``o_ij = 1[u_ij < P[y_i, y_j]]`` and ``o_ji = 1 - o_ij`` (one rater's verdict), or
    ``o_ij = P[y_i, y_j]`` when ``bernoulli=False``. Given ``y_i`` the others are independent
    draws, so ``E[rhat_i | y_i] = P(y_i > pi) = (P @ pi)[y_i]`` (Swamy et al. 2024, Alg. 2).
    """
    k = y.shape[0]
    pyy = P[y[:, None], y[None, :]]
    if bernoulli:
        upper = (u_pairs < pyy).astype(pyy.dtype)
        above = jnp.triu(jnp.ones((k, k), bool), 1)
        o = jnp.where(above, upper, 1.0 - upper.T)
    else:
        o = pyy
    off = 1.0 - jnp.eye(k, dtype=pyy.dtype)
    return jnp.sum(o * off, axis=1) * (1.0 / (k - 1))


def _spo_population(logp, g, hp):
    """``-sum_y pi(y) (r(y) - 1/2) + (1/eta) KL(pi || pi_t)``, ``r = P @ pi_now`` (stop-grad).

    SPO (Swamy et al. 2024, arXiv 2401.04056): the reward of a response is its win
    probability against the current policy itself, ``r(y) = P(y > pi) = sum_y' P[y, y'] pi(y')``
    (Alg. 1; Alg. 2 estimates it by the win rate against the policy's other samples), and the
    policy takes a KL-regularised soft-policy-iteration step on it, with proximal weight
    ``1/eta`` to the round's anchor ``pi_t``. With ``pi_now = pi_t`` the minimiser over all
    policies is ``pi ∝ pi_t exp(eta P @ pi_t)``: the exact ``mwu`` step. At the current policy
    the gradient is the policy gradient ``-E_{y~pi}[grad log pi(y) (r(y) - 1/2 - log(pi/pi_t)(y)/eta)]``
    (the ``+1/eta`` of the KL's score has zero mean); with ``round_length = 1`` the proximal
    term vanishes there and one tabular SGD step is ``theta += lr pi * (P @ pi - 1/2)``.
    """
    pi = jnp.exp(logp)
    r = g.P @ jnp.exp(g.logp_now)
    return -jnp.sum(pi * (r - 0.5)) + jnp.sum(pi * (logp - g.logp_anchor)) * (1.0 / hp["eta"])


def _spo_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y_1..y_K ~ pi_now``; ``-mean_i [(rhat_i - 1/2 - log(pi_now/pi_t)(y_i)/eta) log pi(y_i)]``.

    ``rhat_i`` is the win rate of ``y_i`` against the other ``K - 1`` samples
    (:func:`spo_win_rates`), an unbiased estimate of ``P(y_i > pi_now)`` given ``y_i``.
    """
    u = _uniforms(key, 1 + num_samples, num_samples)
    y = _inverse_cdf(u[0], g.logp_now)
    rhat = spo_win_rates(g.P, y, u[1:], bernoulli)
    adv = rhat - 0.5 - (g.logp_now[y] - g.logp_anchor[y]) * (1.0 / hp["eta"])
    return -jnp.mean(adv * logp[y])


spo = GameLoss(_spo_population, _spo_sampled, ("eta",), min_samples=2)


# ---------------------------------------------------------------- online DPO / XPO / VPO
def dpo_pair_loss(h, o, beta):
    """DPO's loss on a pair with outcome ``o`` (1: the first response won): ``o l(beta h) + (1-o) l(-beta h)``.

    ``l(z) = -log sigmoid(z) = softplus(-z)`` (Rafailov et al. 2023), ``h = h(y, y')`` the
    log-ratio margin. With ``o`` a Bernoulli draw this is DPO on the pair ordered by the
    rater; with ``o = P[y, y']`` it is DPO with soft labels. Its derivative in ``h`` is
    ``beta (sigmoid(beta h) - o)``: affine in ``o``.
    """
    return o * jax.nn.softplus(-beta * h) + (1.0 - o) * jax.nn.softplus(beta * h)


def _dpo_population_on(logp, g, hp, w1, w2):
    """``sum_{y,y'} w1(y) w2(y') [P l(beta h) + (1 - P) l(-beta h)]``, ``h = h(y, y')``."""
    delta = logp - g.logp_ref
    return w1 @ dpo_pair_loss(delta[:, None] - delta[None, :], g.P, hp["beta"]) @ w2


def _online_dpo_population(logp, g, hp):
    """``sum_{y,y'} pi_now(y) pi_now(y') [P[y,y'] l(beta h(y,y')) + (1 - P[y,y']) l(-beta h(y,y'))]``.

    Online DPO (Guo et al. 2024, arXiv 2402.04792, Alg. 1): two responses sampled from the
    current policy (stop-gradient), labelled by the preference oracle, DPO loss on the pair.
    Its gradient in ``Delta = log pi - log pi_ref`` is ``2 beta pi_now * ((S - P) @ pi_now)``
    with ``S = sigmoid(beta h)``. For a Bradley–Terry ``P`` every minimiser over all policies
    has ``beta Delta = r + c``: the KL-regularised RLHF optimum (the ``bt-rlhf`` exact rule).
    """
    w = jnp.exp(g.logp_now)
    return _dpo_population_on(logp, g, hp, w, w)


def _online_dpo_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y, y' ~ pi_now``, ``o = o(y, y')``; ``mean[o l(beta h) + (1 - o) l(-beta h)]``."""
    u = _uniforms(key, 3, num_samples)
    y = _inverse_cdf(u[0], g.logp_now)
    yp = _inverse_cdf(u[1], g.logp_now)
    o = _observe(g.P, y, yp, u[2], bernoulli)
    delta = logp - g.logp_ref
    return jnp.mean(dpo_pair_loss(delta[y] - delta[yp], o, hp["beta"]))


online_dpo = GameLoss(_online_dpo_population, _online_dpo_sampled, ("beta",))


def xpo_pair_losses(logp, logp_ref, y, yt, o, beta, alpha):
    """XPO's per-pair losses: ``dpo_pair_loss(h(y, yt), o, beta) + alpha log pi(yt)``.

    ``y ~ pi_t`` (the policy), ``yt ~ pi_ref``, ``o = 1`` when ``y`` won. Xie et al. 2024
    (arXiv 2405.21046), Alg. 1, line 6: ``argmin_pi alpha sum_i log pi(yt_i) - sum log
    sigmoid(beta h(y+, y-))``, with the sampling policy of the second response ``pi_ref``.
    Shapes: ``logp, logp_ref (N,)``; ``y, yt, o (K,)``; returns ``(K,)``.
    """
    delta = logp - logp_ref
    return dpo_pair_loss(delta[y] - delta[yt], o, beta) + alpha * logp[yt]


def _xpo_population(logp, g, hp):
    """``sum_{y,yt} pi_now(y) pi_ref(yt) [P l(beta h(y,yt)) + (1-P) l(-beta h(y,yt))] + alpha sum_yt pi_ref(yt) log pi(yt)``.

    XPO (Xie et al. 2024, arXiv 2405.21046, Alg. 1): online DPO on the pair (a response of
    the current policy, a response of ``pi_ref``) plus the optimism (exploration) term
    ``alpha E_{yt~pi_ref}[log pi(yt)]``: minimising it lowers the probability of what
    ``pi_ref`` says. Its gradient in tabular logits is ``alpha (pi_ref - pi)``, so a gradient step
    raises the responses the policy already weighs above ``pi_ref`` and lowers the others (``pi =
    pi_ref`` is an unstable fixed point); mass reaches responses no pair has shown only where the
    DPO term leaves them unconstrained, as in Alg. 1's argmin over the accumulated data.
    Gradient in ``Delta``: ``beta [pi_now * ((S - P) @ pi_ref) + pi_ref * ((S - P) @ pi_now)] + alpha pi_ref``.
    """
    w, rho = jnp.exp(g.logp_now), jnp.exp(g.logp_ref)
    return _dpo_population_on(logp, g, hp, w, rho) + hp["alpha"] * jnp.sum(rho * logp)


def _xpo_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y ~ pi_now``, ``yt ~ pi_ref``, ``o = o(y, yt)``; ``mean xpo_pair_losses`` (one ``yt`` per pair, as TRL)."""
    u = _uniforms(key, 3, num_samples)
    y = _inverse_cdf(u[0], g.logp_now)
    yt = _inverse_cdf(u[1], g.logp_ref)
    o = _observe(g.P, y, yt, u[2], bernoulli)
    return jnp.mean(xpo_pair_losses(logp, g.logp_ref, y, yt, o, hp["beta"], hp["alpha"]))


xpo = GameLoss(_xpo_population, _xpo_sampled, ("beta", "alpha"))


def _vpo_population(logp, g, hp):
    """Online DPO's population loss ``+ alpha beta E_{y~pi_cal}[log pi(y) - log pi_ref(y)]``, ``pi_cal = pi_ref``.

    VPO (Cen et al. 2024, arXiv 2405.19320), online (optimistic) form: the reward MLE is
    regularised by ``-alpha J*(r)`` with the value ``J*(r) = max_pi E_pi r - beta KL(pi||pi_ref)
    = beta log E_{pi_ref} exp(r/beta)``. With ``r = beta log(pi/pi_ref) + c`` calibrated by
    ``E_{y~pi_cal} r(y) = 0``, ``J* = -beta E_{pi_cal}[log pi/pi_ref]``, so the loss gains
    ``+alpha beta E_{pi_cal}[log pi - log pi_ref]`` (pairs from the current policy). With
    ``pi_cal = pi_ref`` the bonus is XPO's with ``alpha_XPO = alpha beta``.
    Gradient in ``Delta``: ``2 beta pi_now * ((S - P) @ pi_now) + alpha beta pi_ref``.
    """
    rho = jnp.exp(g.logp_ref)
    return _online_dpo_population(logp, g, hp) + hp["alpha"] * hp["beta"] * jnp.sum(rho * (logp - g.logp_ref))


def _vpo_sampled(logp, g, hp, key, num_samples, bernoulli):
    """``y, y' ~ pi_now``, ``yc ~ pi_ref`` (fresh); ``mean[DPO(y, y'; o) + alpha beta (log pi - log pi_ref)(yc)]``."""
    u = _uniforms(key, 4, num_samples)
    y = _inverse_cdf(u[0], g.logp_now)
    yp = _inverse_cdf(u[1], g.logp_now)
    yc = _inverse_cdf(u[3], g.logp_ref)
    o = _observe(g.P, y, yp, u[2], bernoulli)
    delta = logp - g.logp_ref
    beta = hp["beta"]
    return jnp.mean(dpo_pair_loss(delta[y] - delta[yp], o, beta) + hp["alpha"] * beta * delta[yc])


vpo = GameLoss(_vpo_population, _vpo_sampled, ("beta", "alpha"))

# The registry of game losses (alignjax.registry.GAME_LOSSES), each with the declared domain of every
# hyperparameter it reads (``GameLoss.hparams``; ``learning_rate`` is the builder's): beta, eta and alpha
# > 0 (log scales, probed up to 100), mixture in [0, 1] (the geometric mixture pi^(1-m) pi_ref^m). The
# sampled dynamics (alignjax.dynamics.sampled) declare these same domains, and validate_hparams reads them.
_BETA, _ETA = Domain.positive(0.1), Domain.positive(1.0)
for _name, _loss, _hp in (
        ("online_ipo_1", online_ipo_1, {"beta": _BETA}),
        ("online_ipo_2", online_ipo_2, {"beta": _BETA}),
        ("nash_md_pg", nash_md_pg, {"beta": _BETA, "mixture": Domain(0.02, 0.0, 1.0)}),
        ("inpo", inpo, {"beta": _BETA, "eta": _ETA}),
        ("sppo", sppo, {"eta": _ETA}),
        ("spo", spo, {"eta": _ETA}),
        ("online_dpo", online_dpo, {"beta": _BETA}),
        ("xpo", xpo, {"beta": _BETA, "alpha": Domain.positive(0.01)}),
        ("vpo", vpo, {"beta": _BETA, "alpha": Domain.positive(0.1)})):
    GAME_LOSSES.register(_name, _loss, hparams=_hp)
