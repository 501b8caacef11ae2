"""Synthetic language, raters and preference pairs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.data import language as lg
from alignjax.policies.sequence import EOS, response_mask


def test_language_lengths_vary_and_respect_eos_rules():
    lang = lg.make_language(jax.random.key(0), vocab_size=10, prompt_len=3, max_len=8)
    x = lg.sample_prompts(jax.random.key(1), 500, 3, 10)
    assert int(x.min()) >= 1 and int(x.max()) <= 9
    y, m = lg.sample_language(lang, x, jax.random.key(2))
    lengths = np.asarray(m.sum(-1))
    assert lengths.min() >= 1 and lengths.max() <= 8 and len(np.unique(lengths)) >= 4
    assert bool(jnp.all(y[:, 0] != EOS))                       # no empty responses
    np.testing.assert_array_equal(m, response_mask(y))
    assert bool(jnp.all(jnp.where(m > 0, True, y == EOS)))    # EOS padding after the end


def test_rewards_hand_computed():
    w = jnp.array([[0.0, 1.0, -2.0, 0.5]])        # one rater, V = 4
    raters = lg.Raters(w, jnp.float32(0.25), jnp.float32(-0.1))
    x = jnp.array([2, 3])
    y = jnp.array([1, 2, 0, 0])                   # tokens 1, 2, EOS -> |y| = 3
    r = lg.rewards(raters, x, y, response_mask(y))
    # w: 1 - 2 + 0 ; copy bonus for token 2 (in prompt): 0.25 ; length -0.1 * 3
    np.testing.assert_allclose(r, [1.0 - 2.0 + 0.25 - 0.3], rtol=1e-6)


def _two_samples(num_prompts):
    """Raters, prompts and two independent responses per prompt from one small language."""
    raters = lg.make_raters(jax.random.key(0), 8, num_raters=5)
    lang = lg.make_language(jax.random.key(1), vocab_size=8, prompt_len=3, max_len=6)
    x = lg.sample_prompts(jax.random.key(2), num_prompts, 3, 8)
    y1, m1 = lg.sample_language(lang, x, jax.random.key(3))
    y2, m2 = lg.sample_language(lang, x, jax.random.key(4))
    return raters, x, y1, m1, y2, m2


def test_preference_prob_is_antisymmetric_and_votes_estimate_it():
    raters, x, y1, m1, y2, m2 = _two_samples(64)
    p12 = lg.preference_prob(raters, x, y1, m1, y2, m2)
    p21 = lg.preference_prob(raters, x, y2, m2, y1, m1)
    np.testing.assert_allclose(p12 + p21, 1.0, atol=1e-6)
    votes = jax.vmap(lambda k: lg.rater_votes(raters, k, x, y1, m1, y2, m2))(jax.random.split(jax.random.key(5), 400))
    np.testing.assert_allclose(votes.mean(axis=(0, 2)), p12, atol=0.05)


def test_make_pairs_orders_by_majority():
    raters, x, y1, m1, y2, m2 = _two_samples(200)
    pairs = lg.make_pairs(raters, jax.random.key(5), x, y1, m1, y2, m2)
    a = np.asarray(pairs.alpha)
    assert set(np.round(a * 5).astype(int)) <= {3, 4, 5}       # 5 raters: majority of 3, 4 or 5
    votes = lg.rater_votes(raters, jax.random.key(5), x, y1, m1, y2, m2)
    first = np.asarray(votes.mean(-1)) >= 0.5
    np.testing.assert_array_equal(np.asarray(pairs.chosen), np.where(first[:, None], y1, y2))
    np.testing.assert_allclose(pairs.p_true,
                               lg.preference_prob(raters, x, pairs.chosen, pairs.chosen_mask,
                                                  pairs.rejected, pairs.rejected_mask), atol=1e-6)


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        lg.make_language(jax.random.key(0), vocab_size=2)
    with pytest.raises(ValueError):
        lg.make_raters(jax.random.key(0), 8, num_raters=0)
