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


def test_fluency_reward_hand_computed_and_zero_mean_under_the_language():
    w = jnp.array([[0.0, 1.0, -2.0, 0.5]])
    phi = jnp.arange(16.0).reshape(4, 4) / 10.0
    raters = lg.Raters(w, jnp.float32(0.0), jnp.float32(0.0), phi)
    x, y = jnp.array([2, 3]), jnp.array([1, 2, 0, 0])
    # bigrams (3 -> 1), (1 -> 2), (2 -> EOS): phi[3,1] + phi[1,2] + phi[2,0] = 1.3 + 0.6 + 0.8
    np.testing.assert_allclose(lg.rewards(raters, x, y, response_mask(y)), [1.0 - 2.0 + 1.3 + 0.6 + 0.8], rtol=1e-6)
    lang = lg.make_language(jax.random.key(1), vocab_size=6, prompt_len=2, max_len=5)
    table = np.asarray(lg.fluency_table(lang, 0.5), np.float64)
    p = np.asarray(jax.nn.softmax(lang.transition_logits, axis=-1), np.float64)
    np.testing.assert_allclose((p[:, 1:] * table[:, 1:]).sum(-1) + p[:, 0] * 0.5 * (np.log(p[:, 0]) - (p * np.log(p)).sum(-1)),
                               0.0, atol=1e-5)   # zero mean under the language (EOS column zeroed afterwards)
    assert np.all(table[:, 0] == 0.0)


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


# ---------------------------------------------------------------- the Markov language's law
# From make_language/sample_language: at response position j, after token a (the prompt's last
# token for j = 0), the next token is softmax(T[a] + e_j 1[EOS]) with e_0 = -inf, e_j = bias + slope j,
# and T[:, EOS] = 0. Hence, with Z_a = sum_{b != EOS} exp(T[a, b]):
#   content transitions  q(b | a) = exp(T[a, b]) / Z_a, the same at every position;
#   EOS hazard           h_j(a) = exp(T[a, EOS] + e_j) / (exp(T[a, EOS] + e_j) + Z_a), h_0 = 0.
# A response ends at its first EOS (counted in its length) or after L tokens, so
# |y| = j + 1 if the first EOS is at position j, and |y| = L if there is none: 2 <= |y| <= L.

def _np_law(lang):
    """float64 ``q (V, V)`` (content transitions, EOS column 0), ``h (L, V)`` (hazards)."""
    T = np.asarray(lang.transition_logits, np.float64)
    content = np.exp(T) * (np.arange(T.shape[1]) != EOS)
    Z = content.sum(1)
    e = np.array([-np.inf] + [float(lang.eos_bias) + float(lang.eos_slope) * j for j in range(1, lang.max_len)])
    eos = np.exp(T[None, :, EOS] + e[:, None])
    return content / Z[:, None], eos / (eos + Z[None, :])


def _np_length_law(lang, start):
    """``P(|y| = n)``, n = 0..L, after prompt last token ``start``: forward recursion over (position, prev)."""
    q, h = _np_law(lang)
    alive = np.eye(q.shape[0])[start]          # P(no EOS yet, prev token = a)
    law = np.zeros(lang.max_len + 1)
    for j in range(lang.max_len):
        law[j + 1] += alive @ h[j]
        alive = (alive * (1 - h[j])) @ q
    law[lang.max_len] += alive.sum()           # no EOS in L slots: truncated at length L
    return law


def _language(**kw):
    return lg.make_language(jax.random.key(0), vocab_size=6, prompt_len=3, max_len=6, temperature=1.0,
                            eos_slope=0.5, **kw)


NUM_SEQ = 20000


def _content_bigrams(x, y, m):
    """Counts ``N[a, b]`` of content token ``b`` following ``a`` (``a`` = prompt's last token at j = 0)."""
    x, y, m = np.asarray(x), np.asarray(y), np.asarray(m)
    prev = np.concatenate([x[:, -1:], y[:, :-1]], axis=1)
    use = (m > 0) & (y != EOS)
    assert np.all(prev[use] != EOS)
    V = int(max(x.max(), y.max())) + 1
    return np.bincount(prev[use] * V + y[use], minlength=V * V).reshape(V, V)


def test_sample_language_follows_its_transition_table_and_eos_hazard():
    lang = _language()
    x = lg.sample_prompts(jax.random.key(1), NUM_SEQ, 3, 6)
    y, m = lg.sample_language(lang, x, jax.random.key(2))
    q, _ = _np_law(lang)
    # 5 SE: counts are normal to a good approximation (every cell has expected count
    # N_a q (1 - q) >= 25, asserted, so the binomial skewness is <= 0.2) and P(|Z| > 5) = 5.7e-7 per
    # cell (25 bigram cells and 5 length cells together: false-alarm rate ~2e-5).
    N = _content_bigrams(x, y, m)[1:, 1:]      # from content a to content b (EOS never precedes a token)
    Na = N.sum(1, keepdims=True)
    qc = q[1:, 1:]
    var = qc * (1 - qc) / Na                  # given the N_a departures from a, multinomial(q(.|a))
    assert np.all(Na * qc * (1 - qc) >= 25)
    np.testing.assert_array_less(np.abs(N / Na - qc), 5 * np.sqrt(var))
    # length law: each prompt's own law (it depends on the prompt's last token); counts are a sum of
    # independent categoricals, Var(count_n) = sum_i p_in (1 - p_in)
    laws = np.stack([_np_length_law(lang, s) for s in range(6)])[np.asarray(x[:, -1])]   # (M, L+1)
    counts = np.bincount(np.asarray(m.sum(-1), int), minlength=lang.max_len + 1)
    assert counts[0] == counts[1] == 0 and laws[:, :2].max() == 0      # h_0 = 0: no response of length 1
    assert np.all(np.where(np.asarray(m) > 0, True, np.asarray(y) == EOS))  # EOS padding after the end
    expected, sd = laws.sum(0)[2:], np.sqrt((laws * (1 - laws)).sum(0))[2:]
    assert np.all(sd**2 >= 25)
    np.testing.assert_array_less(np.abs(counts[2:] - expected), 5 * sd)


def test_sample_language_length_is_the_discrete_hazard_law_when_the_hazard_is_token_free():
    # A circulant table (row a = row 1 shifted) makes Z_a the same for every a, so the hazard
    # h_j = sigmoid(T[., EOS] + bias + slope j - log Z) no longer depends on the token (the EOS column is
    # a constant c0 != 0 here: eos_bias is an offset ADDED to the table's EOS logit) and the length law is the
    # closed form  P(|y| = n) = h_{n-1} prod_{i=1}^{n-2} (1 - h_i)  (2 <= n < L),
    #              P(|y| = L) = prod_{i=1}^{L-2} (1 - h_i)         (EOS at position L-1, or none).
    V, L, bias, slope, c0 = 5, 7, -0.9, 0.6, 0.4
    row = np.array([0.3, -0.5, 1.0, 0.0])
    T = np.full((V, V), c0)
    for a in range(V):
        T[a, 1:] = np.roll(row, a)
    lang = lg.Language(jnp.asarray(T, jnp.float32), jnp.float32(bias), jnp.float32(slope), 2, L)
    logZ = np.log(np.exp(row).sum())
    h = 1 / (1 + np.exp(-(c0 + bias + slope * np.arange(L) - logZ)))
    law = np.zeros(L + 1)
    for n in range(2, L):
        law[n] = h[n - 1] * np.prod(1 - h[1:n - 1])
    law[L] = np.prod(1 - h[1:L - 1])
    np.testing.assert_allclose(law.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(_np_length_law(lang, 1), law, atol=1e-6)   # the recursion agrees (float32 T)
    x = lg.sample_prompts(jax.random.key(3), NUM_SEQ, 2, V)
    _, m = lg.sample_language(lang, x, jax.random.key(4))
    counts = np.bincount(np.asarray(m.sum(-1), int), minlength=L + 1)
    sd = np.sqrt(NUM_SEQ * law * (1 - law))
    assert counts[0] == counts[1] == 0 and np.all(sd[2:] ** 2 >= 25)
    np.testing.assert_array_less(np.abs(counts[2:] - NUM_SEQ * law[2:]), 5 * sd[2:])  # 5 SE, as above


def test_sample_language_jit_equals_nojit():
    lang = _language()
    x = lg.sample_prompts(jax.random.key(5), 64, 3, 6)
    k = jax.random.key(6)
    y, m = lg.sample_language(lang, x, k)
    yj, mj = jax.jit(lambda x, k: lg.sample_language(lang, x, k))(x, k)  # the Language's ints are static
    np.testing.assert_array_equal(y, yj)
    np.testing.assert_array_equal(m, mj)
    other, _ = lg.sample_language(lang, x, jax.random.key(7))
    assert not np.array_equal(y, other)
