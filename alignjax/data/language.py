"""A synthetic token language, noisy raters and preference pairs, all generated from a seed.

Used by the ranking-accuracy suite (Chen et al. 2024, arXiv 2405.19534) to play out the
LLM pipeline at toy scale: SFT a reference on the language, sample response pairs, have
``k`` raters vote on each pair, train DPO & co., and score win rates under a known
ground-truth preference model.

* **Language** (:func:`make_language`): prompts are ``P`` content tokens; a response is a
  first-order Markov chain over the ``V`` tokens (EOS = 0), started from the prompt's last
  token, with an end-of-sequence hazard that grows with the position (lengths vary,
  2 <= |y| <= L, since EOS is forbidden as the first token).
* **Raters** (:func:`make_raters`): a hidden sequence reward
  ``r(x, y) = sum_{j<|y|} [w(y_j) + u * 1(y_j in x) + phi(y_{j-1}, y_j)] + lam * |y|`` (token
  features, a prompt-copy feature, an optional fluency term and a length term;
  ``y_{-1}`` is the prompt's last token); rater ``i`` uses its own token weights
  ``w_i = w + sigma * eps_i`` and votes ``y > y'`` with probability
  ``sigmoid(r_i(x, y) - r_i(x, y'))`` (Bradley–Terry per rater).
* **Ground truth** (:func:`preference_prob`): ``P(y > y' | x) = mean_i sigmoid(r_i(y) - r_i(y'))``,
  the expected vote of a random rater; the vote fraction ``alpha`` is its unbiased estimate.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from alignjax.policies.sequence import EOS, response_mask

__all__ = ["Language", "Raters", "PreferencePairs", "make_language", "sample_prompts", "sample_language",
           "make_raters", "fluency_table", "rewards", "preference_prob", "rater_votes", "make_pairs"]


class Language(NamedTuple):
    """The hidden language. ``transition_logits[a, b]``: logit of next token ``b`` after ``a``."""

    transition_logits: jax.Array   # (V, V)
    eos_bias: jax.Array            # () EOS logit offset at position 0 of the hazard
    eos_slope: jax.Array           # () EOS logit increase per position
    prompt_len: int
    max_len: int

    @property
    def vocab_size(self) -> int:
        return self.transition_logits.shape[-1]


class Raters(NamedTuple):
    """Hidden reward and ``k`` noisy raters (see module doc)."""

    rater_weights: jax.Array   # (k, V) token weights w_i (EOS weight 0)
    copy_bonus: jax.Array      # () u
    length_coef: jax.Array     # () lam
    fluency: jax.Array | None = None   # (V, V) bigram reward phi(a, b), shared by the raters; None = 0


class PreferencePairs(NamedTuple):
    """Pairs ``(x, y_w, y_l)`` with the raters' votes; ``y_w`` is the majority choice."""

    prompts: jax.Array         # (n, P)
    chosen: jax.Array          # (n, L)
    chosen_mask: jax.Array     # (n, L)
    rejected: jax.Array        # (n, L)
    rejected_mask: jax.Array   # (n, L)
    alpha: jax.Array           # (n,) fraction of raters preferring y_w (>= 1/2)
    p_true: jax.Array          # (n,) ground-truth P(y_w > y_l | x)


def make_language(key: jax.Array, *, vocab_size: int = 16, prompt_len: int = 4, max_len: int = 12,
                  temperature: float = 1.5, eos_bias: float = 0.0, eos_slope: float = 0.7) -> Language:
    """A random Markov language: ``transition_logits = temperature * N(0, 1)`` (EOS column 0).

    The EOS logit at response position ``j`` is ``eos_bias + eos_slope * j`` (``-inf`` at j = 0).
    """
    if vocab_size < 3 or max_len < 2:
        raise ValueError(f"language needs vocab_size >= 3 and max_len >= 2, got {vocab_size}, {max_len}")
    t = temperature * jax.random.normal(key, (vocab_size, vocab_size))
    t = t.at[:, EOS].set(0.0)
    return Language(t, jnp.float32(eos_bias), jnp.float32(eos_slope), prompt_len, max_len)


def sample_prompts(key: jax.Array, num: int, prompt_len: int, vocab_size: int) -> jax.Array:
    """``num`` prompts of uniform content tokens, shape ``(num, P)``."""
    return jax.random.randint(key, (num, prompt_len), 1, vocab_size, jnp.int32)


def sample_language(lang: Language, prompts: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Responses of the hidden language for ``prompts (..., P)``: ``(responses, mask)``, ``(..., L)``."""
    prompts = jnp.asarray(prompts, jnp.int32)
    batch = prompts.shape[:-1]
    keys = jax.random.split(key, lang.max_len)

    def body(carry, inp):
        prev, done = carry
        j, k = inp
        lg = lang.transition_logits[prev]
        eos = jnp.where(j == 0, -jnp.inf, lang.eos_bias + lang.eos_slope * j)
        lg = lg.at[..., EOS].add(eos)
        tok = jax.random.categorical(k, lg, axis=-1).astype(jnp.int32)
        tok = jnp.where(done, EOS, tok)
        return (tok, done | (tok == EOS)), tok

    _, toks = jax.lax.scan(body, (prompts[..., -1], jnp.zeros(batch, bool)), (jnp.arange(lang.max_len), keys))
    responses = jnp.moveaxis(toks, 0, -1)
    return responses, response_mask(responses)


def make_raters(key: jax.Array, vocab_size: int, *, num_raters: int = 5, weight_scale: float = 0.7,
                rater_noise: float = 0.5, copy_bonus: float = 0.5, length_coef: float = -0.1) -> Raters:
    """``w ~ weight_scale * N(0,1)``, ``w_i = w + rater_noise * N(0,1)``, EOS weights 0."""
    if num_raters < 1:
        raise ValueError(f"num_raters must be >= 1, got {num_raters}")
    k1, k2 = jax.random.split(key)
    w = weight_scale * jax.random.normal(k1, (vocab_size,))
    wi = w[None, :] + rater_noise * jax.random.normal(k2, (num_raters, vocab_size))
    wi = wi.at[:, EOS].set(0.0)
    return Raters(wi, jnp.float32(copy_bonus), jnp.float32(length_coef))


def fluency_table(lang: Language, weight: float) -> jax.Array:
    """Bigram fluency reward ``phi(a, b) = weight * (log p(b | a) + H(a))`` of the hidden language.

    ``p(b | a) = softmax(transition_logits[a])[b]`` (without the EOS hazard) and ``H(a)`` its
    entropy, so ``E_{b ~ p(.|a)} phi(a, b) = 0``: text the language itself writes earns zero
    fluency on average, and a policy that drifts from the language (e.g. repeats the tokens
    the raters like, whatever the context) loses reward. Shape ``(V, V)``; the EOS column is 0.
    """
    logp = jax.nn.log_softmax(lang.transition_logits, axis=-1)
    entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1, keepdims=True)
    return (weight * (logp + entropy)).at[:, EOS].set(0.0)


def rewards(raters: Raters, prompts: jax.Array, responses: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-rater rewards ``r_i(x, y)``, shape ``(..., k)`` for inputs ``(..., P)``, ``(..., L)``."""
    responses = jnp.asarray(responses, jnp.int32)
    mask = jnp.asarray(mask, jnp.float32)
    tok_w = raters.rater_weights.T[responses]                                   # (..., L, k)
    in_prompt = jnp.any(responses[..., :, None] == jnp.asarray(prompts)[..., None, :], axis=-1)
    per_tok = tok_w + (raters.copy_bonus * in_prompt)[..., None]
    if raters.fluency is not None:
        prev = jnp.concatenate([jnp.asarray(prompts, jnp.int32)[..., -1:], responses[..., :-1]], axis=-1)
        per_tok = per_tok + raters.fluency[prev, responses][..., None]
    length = jnp.sum(mask, axis=-1)
    return jnp.sum(per_tok * mask[..., None], axis=-2) + (raters.length_coef * length)[..., None]


def preference_prob(raters: Raters, prompts, y1, m1, y2, m2) -> jax.Array:
    """Ground truth ``P(y1 > y2 | x) = mean_i sigmoid(r_i(x, y1) - r_i(x, y2))``, shape ``(...)``."""
    d = rewards(raters, prompts, y1, m1) - rewards(raters, prompts, y2, m2)
    return jnp.mean(jax.nn.sigmoid(d), axis=-1)


def rater_votes(raters: Raters, key: jax.Array, prompts, y1, m1, y2, m2) -> jax.Array:
    """Each rater's vote ``1[y1 > y2]`` drawn from its Bradley–Terry model, shape ``(..., k)``."""
    d = rewards(raters, prompts, y1, m1) - rewards(raters, prompts, y2, m2)
    return jax.random.bernoulli(key, jax.nn.sigmoid(d)).astype(jnp.float32)


def make_pairs(raters: Raters, key: jax.Array, prompts, y1, m1, y2, m2) -> PreferencePairs:
    """Rate pairs ``(y1, y2)`` and order them by majority vote.

    With an odd number of raters there are no tied votes; with an even number a tie is
    broken towards ``y1`` (then ``alpha = 1/2``).
    """
    votes = rater_votes(raters, key, prompts, y1, m1, y2, m2)
    frac = jnp.mean(votes, axis=-1)
    first = frac >= 0.5
    sel = lambda a, b: jnp.where(first[..., None], a, b)
    p = preference_prob(raters, prompts, y1, m1, y2, m2)
    return PreferencePairs(jnp.asarray(prompts, jnp.int32), sel(y1, y2), sel(m1, m2), sel(y2, y1), sel(m2, m1),
                           jnp.where(first, frac, 1.0 - frac), jnp.where(first, p, 1.0 - p))
