"""Ranking accuracy, its idealized value and the flip thresholds (Chen et al. 2024).

Reference: A. Chen, S. Malladi, L. H. Zhang, X. Chen, Q. Zhang, R. Ranganath, K. Cho,
"Preference Learning Algorithms Do Not Learn Preference Rankings", arXiv 2405.19534.

Notation (per pair ``(x, y_w, y_l)``; all functions are elementwise over a batch ``(...)``):

* ``m = log pi(y_w|x) - log pi(y_l|x)``: the model's log-likelihood ratio;
* ``c = log pi_ref(y_l|x) - log pi_ref(y_w|x)``: the pair's *difficulty* (Thm 4.1); ``c > 0``
  means the reference misranks the pair;
* ``h = m + c``: the DPO log-ratio margin (:func:`alignjax.losses.margin`);
* ``alpha``: the fraction of raters preferring ``y_w`` (soft label).

**Tie rule.** A pair counts as correctly ranked iff ``pi(y_w|x) > pi(y_l|x)`` *strictly*
(``m > 0``); a tie counts as wrong. This is the strict inequality of the paper's Cor. 3.3
(its Def. 2.1 uses ``>=``; the two differ only on exact ties, which have measure zero for
trained float models). Correspondingly the flip theorem is stated with a strict loss
inequality: ``R = 1  <=>  loss < threshold``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "UNANIMOUS_EPS", "ranking_correct", "ranking_accuracy", "clip_alpha", "idealized_log_ratio",
    "idealized_ranking_correct", "idealized_ranking_accuracy", "difficulty", "dpo_flip_threshold",
    "ipo_flip_threshold", "AUTHORS_TIE_BAND", "authors_code_idealized_ranking_correct",
]

UNANIMOUS_EPS = 1e-3
"""The paper's epsilon: a unanimous vote ``alpha = 1`` is replaced by ``1 - 0.001`` (and 0 by 0.001)."""


def _check(name, value, low, high=None, low_open=True):
    """ValueError for concrete values outside the valid range (tracers pass through)."""
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value)
    bad = (v <= low) if low_open else (v < low)
    if high is not None:
        bad = bad | (v > high)
    if np.any(bad) or np.any(np.isnan(v)):
        raise ValueError(f"{name} out of range: {v.ravel()[np.argmax(bad.ravel() | np.isnan(v).ravel())]!r}")


def _clipped_logit(alpha, eps):
    # log(a) - log(1 - a) with both a and 1 - a clipped to [eps, 1 - eps]; computing 1 - a
    # from alpha (not from the clipped a) keeps log(eps) exact in float32 for unanimous votes.
    alpha = jnp.asarray(alpha, jnp.result_type(float))
    return jnp.log(jnp.clip(alpha, eps, 1.0 - eps)) - jnp.log(jnp.clip(1.0 - alpha, eps, 1.0 - eps))


def _scores(logps, lengths):
    logps = jnp.asarray(logps)
    return logps if lengths is None else logps / jnp.asarray(lengths, logps.dtype)


def ranking_correct(chosen_logps: ArrayLike, rejected_logps: ArrayLike, *,
                    chosen_lengths: ArrayLike | None = None,
                    rejected_lengths: ArrayLike | None = None) -> jax.Array:
    """Per-pair ranking indicator ``1[s(y_w) > s(y_l)]`` as float, shape ``(...)``.

    ``s(y) = log pi(y|x)`` (summed token log-probs), or the length-normalised
    ``s(y) = log pi(y|x) / |y|`` (mean token log-prob, i.e. the log of the paper's
    ``pi(y|x)^(1/|y|)``) when both lengths are given. Ties count as 0 (see the module doc).

    Args:
      chosen_logps, rejected_logps: ``log pi(y_w|x)``, ``log pi(y_l|x)``, shape ``(...)``.
      chosen_lengths, rejected_lengths: token counts ``|y_w|``, ``|y_l|`` (> 0), broadcastable
        to ``(...)``; give both or neither.
    """
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("give both chosen_lengths and rejected_lengths, or neither")
    sw = _scores(chosen_logps, chosen_lengths)
    sl = _scores(rejected_logps, rejected_lengths)
    return (sw > sl).astype(jnp.result_type(float))


def ranking_accuracy(chosen_logps: ArrayLike, rejected_logps: ArrayLike, *,
                     chosen_lengths: ArrayLike | None = None,
                     rejected_lengths: ArrayLike | None = None) -> jax.Array:
    """Ranking accuracy ``R = mean_pairs 1[pi(y_w|x) > pi(y_l|x)]`` (Chen et al. 2024, Def. 2.1).

    With lengths, the length-normalised ``R~ = mean 1[pi(y_w|x)^(1/|y_w|) > pi(y_l|x)^(1/|y_l|)]``.
    The mean is over the last axis (pairs); leading axes (e.g. a vmapped sweep) are kept, so
    inputs ``(..., num_pairs)`` give ``(...)``. Ties count as incorrect.

    Example::

        >>> float(ranking_accuracy(jnp.array([-1., -3.]), jnp.array([-2., -2.])))
        0.5
    """
    return jnp.mean(ranking_correct(chosen_logps, rejected_logps, chosen_lengths=chosen_lengths,
                                    rejected_lengths=rejected_lengths), axis=-1)


def clip_alpha(alpha: ArrayLike, eps: float = UNANIMOUS_EPS) -> jax.Array:
    """``alpha`` clipped to ``[eps, 1 - eps]`` (the paper's treatment of unanimous votes)."""
    return jnp.clip(jnp.asarray(alpha, jnp.result_type(float)), eps, 1.0 - eps)


def idealized_log_ratio(reference_chosen_logps: ArrayLike, reference_rejected_logps: ArrayLike,
                        alpha: ArrayLike, beta: ArrayLike, *, eps: float = UNANIMOUS_EPS) -> jax.Array:
    """Log-ratio of the DPO/RLHF optimum (Chen et al. 2024, Thm 3.1).

    ``log pi*(y_w|x)/pi*(y_l|x) = log pi_ref(y_w|x)/pi_ref(y_l|x) + logit(alpha)/beta``, with
    ``alpha`` clipped by :func:`clip_alpha`. This is the minimiser of the soft-label
    population DPO loss ``alpha l(w,l) + (1-alpha) l(l,w)`` (where ``sigmoid(beta h) = alpha``)
    and of the KL-regularised RLHF objective under the Bradley–Terry reward implied by
    ``alpha``. Elementwise, shapes broadcast to ``(...)``.
    """
    _check("beta", beta, 0.0)
    _check("alpha", alpha, 0.0, 1.0, low_open=False)
    logit = _clipped_logit(alpha, eps)
    return (jnp.asarray(reference_chosen_logps) - jnp.asarray(reference_rejected_logps)) + logit / beta


def idealized_ranking_correct(reference_chosen_logps: ArrayLike, reference_rejected_logps: ArrayLike,
                              alpha: ArrayLike, beta: ArrayLike, *,
                              chosen_lengths: ArrayLike | None = None,
                              rejected_lengths: ArrayLike | None = None,
                              eps: float = UNANIMOUS_EPS) -> jax.Array:
    """Per-pair idealized indicator ``1[log pi_ref(y_w)/pi_ref(y_l) + logit(alpha)/beta > 0]``.

    Length-normalised variant (lengths given): the reference term uses mean token log-probs,
    ``1[log pi_ref(y_w)/|y_w| - log pi_ref(y_l)/|y_l| + logit(alpha)/beta > 0]``. The optimum
    fixes only the ratio ``pi*(y_w)/pi*(y_l)``, not each probability, so ``R~*`` is not
    determined by Thm 3.1; this is the convention of the authors' released code (the full
    ``(alpha/(1-alpha))^(1/beta)`` factor times the ratio of reference perplexities).
    """
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("give both chosen_lengths and rejected_lengths, or neither")
    _check("beta", beta, 0.0)
    _check("alpha", alpha, 0.0, 1.0, low_open=False)
    logit = _clipped_logit(alpha, eps)
    ref = _scores(reference_chosen_logps, chosen_lengths) - _scores(reference_rejected_logps, rejected_lengths)
    return (ref + logit / beta > 0).astype(jnp.result_type(float))


def idealized_ranking_accuracy(reference_chosen_logps: ArrayLike, reference_rejected_logps: ArrayLike,
                               alpha: ArrayLike, beta: ArrayLike, *,
                               chosen_lengths: ArrayLike | None = None,
                               rejected_lengths: ArrayLike | None = None,
                               eps: float = UNANIMOUS_EPS) -> jax.Array:
    """Idealized ranking accuracy ``R*`` (Chen et al. 2024, Cor. 3.3).

    ``R* = mean_pairs 1[pi_ref(y_w|x)/pi_ref(y_l|x) * (alpha/(1-alpha))^(1/beta) > 1]``,
    computed in log space, with unanimous votes clipped to ``alpha = 1 - eps`` (eps = 0.001).
    It is the ranking accuracy of a policy that attains the DPO/RLHF optimum exactly.

    Args:
      reference_chosen_logps, reference_rejected_logps: ``log pi_ref(y_w|x)``,
        ``log pi_ref(y_l|x)``, shape ``(..., num_pairs)``.
      alpha: fraction of raters preferring ``y_w``, broadcastable to the same shape.
      beta: KL coefficient (> 0), e.g. shape ``(num_betas, 1)`` to sweep.
      chosen_lengths, rejected_lengths: optional token counts for ``R~*`` (see
        :func:`idealized_ranking_correct`).

    Returns:
      ``R*`` averaged over the last axis, shape ``(...)``.
    """
    return jnp.mean(idealized_ranking_correct(
        reference_chosen_logps, reference_rejected_logps, alpha, beta, chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths, eps=eps), axis=-1)


AUTHORS_TIE_BAND = 0.05
"""The authors' released code ranks a pair as a tie when its predicted probability ratio is within 5% of 1."""


def authors_code_idealized_ranking_correct(reference_chosen_logps: ArrayLike, reference_rejected_logps: ArrayLike,
                                           alpha: ArrayLike, beta: ArrayLike, *, chosen_lengths: ArrayLike,
                                           rejected_lengths: ArrayLike, normalized: bool,
                                           eps: float = UNANIMOUS_EPS) -> jax.Array:
    """Per-pair idealized indicator as the authors' released code computes it (not Eq. 3).

    The code of Chen et al. 2024 (repository ``angie-chen55/pref-learning-ranking-acc``,
    ``rlhf_minimizer_client.py``, ``_compute_likelihood_ratios_helper`` and
    ``_get_ranking_from_ratio``) predicts the ratio ``pi*(y_w)/pi*(y_l)`` as

        ``rho = (a_w / max(a_l, eps))^(1/beta) * f``,

    with vote fractions ``a_w = alpha``, ``a_l = 1 - alpha``, and reference factor ``f``:

    * ``normalized=True``: ``f = ppl(y_l)/ppl(y_w) = exp(log pi_ref(y_w)/|y_w| - log pi_ref(y_l)/|y_l|)``,
      the length-normalised likelihood ratio (the paper's ``R~*``);
    * ``normalized=False``: ``f = (|y_w| log ppl(y_w)) / (|y_l| log ppl(y_l)) = log pi_ref(y_w) / log pi_ref(y_l)``,
      a ratio of *log*-likelihoods, where Eq. 3 has the likelihood ratio
      ``exp(log pi_ref(y_w) - log pi_ref(y_l))``. Both log-likelihoods are negative, so ``f > 1``
      exactly when ``y_w`` is the *less* likely response, and ``f`` is close to 1 for long
      responses of similar length whatever their likelihood ratio.

    The pair counts as ranked correctly when the predicted ranking matches the votes':
    ``rho >= 1 + 0.05`` (``|rho - 1| < 0.05`` is a predicted tie; with ``alpha > 1/2`` the votes
    never tie). Computed in log space: ``log rho = (log a_w - log max(a_l, eps))/beta + log f``.
    Elementwise over ``(...)``; reference log-probs must be negative.
    """
    _check("beta", beta, 0.0)
    _check("alpha", alpha, 0.0, 1.0, low_open=False)
    rw, rl = jnp.asarray(reference_chosen_logps), jnp.asarray(reference_rejected_logps)
    a = jnp.asarray(alpha, rw.dtype)
    log_votes = jnp.log(a) - jnp.log(jnp.maximum(1.0 - a, eps))
    if normalized:
        log_f = rw / jnp.asarray(chosen_lengths, rw.dtype) - rl / jnp.asarray(rejected_lengths, rw.dtype)
    else:
        log_f = jnp.log(rw / rl)
    return (log_votes / beta + log_f >= jnp.log1p(AUTHORS_TIE_BAND)).astype(jnp.result_type(float))


def difficulty(reference_chosen_logps: ArrayLike, reference_rejected_logps: ArrayLike) -> jax.Array:
    """Pair difficulty ``c = log pi_ref(y_l|x) - log pi_ref(y_w|x)`` (Thm 4.1), shape ``(...)``."""
    return jnp.asarray(reference_rejected_logps) - jnp.asarray(reference_chosen_logps)


def dpo_flip_threshold(reference_chosen_logps: ArrayLike, reference_rejected_logps: ArrayLike,
                       beta: ArrayLike) -> jax.Array:
    """DPO loss below which a pair is ranked correctly (Chen et al. 2024, Thm 4.1).

    With ``c = log pi_ref(y_l)/pi_ref(y_w)`` the DPO loss is ``-log sigmoid(beta (m + c))``,
    strictly decreasing in ``m``, so ``m > 0  <=>  loss < -log sigmoid(beta c)``: the
    threshold is ``softplus(-beta c)``. For a pair the reference misranks badly (large
    ``c``), the loss must fall far below ``log 2`` (its value at the reference) before the
    pair flips. Elementwise, shape ``(...)``.
    """
    _check("beta", beta, 0.0)
    c = difficulty(reference_chosen_logps, reference_rejected_logps)
    return -jax.nn.log_sigmoid(beta * c)


def ipo_flip_threshold(reference_chosen_logps: ArrayLike, reference_rejected_logps: ArrayLike,
                       beta: ArrayLike) -> jax.Array:
    """IPO analogue of :func:`dpo_flip_threshold` (cf. Chen et al. 2024, App. A.5; derived here).

    IPO's loss is ``(h - t)^2`` with target ``t = 1/(2 beta)`` and ``h = m + c``. It is not
    monotone in ``m``, so the statement holds on the branch ``h <= t`` (the model has not
    overshot the target; training starts there, at ``h = 0 < t``): on that branch

        ``m > 0  <=>  c < t  and  (h - t)^2 < (t - c)^2``.

    The threshold is therefore ``(t - c)^2`` where ``c < t`` and ``0`` (unreachable) where
    ``c >= t``: a pair whose difficulty exceeds the IPO target can only be ranked correctly by
    overshooting the target, i.e. the IPO optimum (loss 0, ``h = t``) misranks it.
    Elementwise, shape ``(...)``.
    """
    _check("beta", beta, 0.0)
    c = difficulty(reference_chosen_logps, reference_rejected_logps)
    t = 1.0 / (2.0 * beta)
    return jnp.where(c < t, jnp.square(t - c), 0.0)
