"""Tiny autoregressive sequence policy: normalisation by exhaustive enumeration, EOS handling, SFT."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignjax.policies.sequence import EOS, response_mask, sequence_policy
from alignjax.sft import make_sft_train, sft_loss


def _all_responses(vocab, length):
    """Every distinct response: content then EOS then EOS padding, or L content tokens."""
    seqs = np.array(list(itertools.product(range(vocab), repeat=length)))
    m = np.asarray(response_mask(jnp.asarray(seqs)))
    canonical = np.all((seqs == EOS) | (m > 0), axis=1)
    return jnp.asarray(seqs[canonical]), jnp.asarray(m[canonical])


def test_response_mask_eos_rules():
    r = jnp.array([[3, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4], [1, 2, 0, 5]])
    np.testing.assert_array_equal(response_mask(r), [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]])


@pytest.mark.parametrize("vocab,length", [(3, 3), (4, 2)])
def test_probabilities_sum_to_one_over_all_sequences(vocab, length):
    ys, ms = _all_responses(vocab, length)
    # count: sum_{n<L} (V-1)^n + (V-1)^L distinct responses
    assert ys.shape[0] == sum((vocab - 1) ** n for n in range(length + 1))
    pol = sequence_policy(vocab, 2, length, dim=8, depth=1, heads=2)
    params = pol.init(jax.random.key(3))
    with jax.enable_x64(False):
        for prompt in ([1, 2], [2, 2]):
            logps, lengths = pol.sequence_logps(params, jnp.array(prompt), ys, ms)
            assert float(jnp.sum(jnp.exp(logps))) == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_array_equal(lengths, ms.sum(-1))


def test_padding_after_eos_is_ignored():
    pol = sequence_policy(5, 2, 4, dim=8, depth=1, heads=2)
    params = pol.init(jax.random.key(0))
    x = jnp.array([1, 2])
    a = jnp.array([3, 0, 0, 0])
    b = jnp.array([3, 0, 4, 2])   # same response, different junk after EOS
    la = pol.sequence_logps(params, x, a, response_mask(a))[0]
    lb = pol.sequence_logps(params, x, b, response_mask(b))[0]
    np.testing.assert_allclose(la, lb, rtol=1e-6)


def test_sampling_matches_model_probabilities():
    """Empirical frequencies of sampled responses match exp(sequence_logps) (V=3, L=2)."""
    pol = sequence_policy(3, 1, 2, dim=8, depth=1, heads=2)
    params = pol.init(jax.random.key(1))
    x = jnp.array([2])
    ys, ms = _all_responses(3, 2)
    probs = np.exp(np.asarray(pol.sequence_logps(params, x, ys, ms)[0]))
    n = 20000
    r, m = jax.jit(pol.sample)(params, jnp.broadcast_to(x, (n, 1)), jax.random.key(7))
    r = np.asarray(r)
    freq = np.array([np.mean(np.all(r == np.asarray(y), axis=1)) for y in ys])
    np.testing.assert_allclose(freq, probs, atol=0.015)
    np.testing.assert_array_equal(m, response_mask(jnp.asarray(r)))


def test_sample_is_deterministic_in_the_key_and_jit_matches():
    pol = sequence_policy(6, 2, 5, dim=8, depth=1, heads=2)
    params = pol.init(jax.random.key(0))
    x = jnp.array([[1, 2], [3, 4]])
    r1, _ = pol.sample(params, x, jax.random.key(5))
    r2, _ = jax.jit(pol.sample)(params, x, jax.random.key(5))
    np.testing.assert_array_equal(r1, r2)


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        sequence_policy(16, 4, 12, dim=30, heads=4)


def test_sft_reduces_loss_on_a_small_dataset():
    pol = sequence_policy(6, 2, 5, dim=8, depth=1, heads=2)
    params = pol.init(jax.random.key(0))
    key = jax.random.key(1)
    x = jax.random.randint(key, (32, 2), 1, 6)
    y = jnp.where(jnp.arange(5) < 3, x[:, :1], EOS)   # copy the first prompt token 3 times, then EOS
    m = response_mask(y)
    before = float(sft_loss(pol, params, x, y, m))
    train = jax.jit(make_sft_train(pol, optax.adam(3e-2), num_steps=80, batch_size=16))
    params, losses = train(params, x, y, m, jax.random.key(2))
    after = float(sft_loss(pol, params, x, y, m))
    assert losses.shape == (80,)
    # Derived bound: each response is the first prompt token x_1 three times then EOS, 4 scored
    # tokens. A model that ignores the prompt predicts y_1 = x_1 with a prompt-free distribution q,
    # whose NLL -mean log q(x_1) is >= the empirical entropy H of x_1 (Gibbs), and the 3 later
    # tokens cost >= 0: its per-token NLL is >= H / 4. Beating it proves the fitted model reads
    # the prompt (trained: ~1e-3; H / 4 ~ 0.39; initial ~2.5; trained on prompts shuffled
    # within each batch: ~0.41, rejected).
    freq = np.bincount(np.asarray(x[:, 0]), minlength=6) / x.shape[0]
    entropy = -np.sum(freq[freq > 0] * np.log(freq[freq > 0]))
    assert after < entropy / 4 < before
