"""Tiny autoregressive sequence policy: normalisation by exhaustive enumeration, EOS handling, SFT."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignjax.policies.sequence import EOS, generate, response_mask, sequence_policy
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


# ----------------------------------------------------------------------------- key-value cache
def _policies(vocab, prompt_len, max_len, **sizes):
    """The cached policy, the reference (uncached) one, and perturbed parameters (init + 0.3 N(0, 1)
    on every leaf, so the logits are far from uniform and ties between tokens are rare)."""
    pol = sequence_policy(vocab, prompt_len, max_len, **sizes)
    ref = sequence_policy(vocab, prompt_len, max_len, kv_cache=False, **sizes)
    params = pol.init(jax.random.key(0))
    leaves, tdef = jax.tree.flatten(params)
    ks = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tdef, [a + 0.3 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, ks)])
    return pol, ref, params


# (V, P, L, dim, depth, heads, prompt batch shape, temperature)
CACHE_CASES = [
    (6, 2, 5, 8, 1, 2, (4,), 1.0),
    (16, 4, 24, 16, 2, 2, (3, 5), 1.5),     # two batch axes, a hotter sampler
    (5, 1, 7, 8, 2, 4, (6,), 0.5),          # prompt_len = 1, four heads, a colder sampler
    (5, 3, 1, 8, 1, 2, (4,), 1.0),          # max_len = 1: the prefill alone draws the response
    (4, 2, 6, 8, 1, 1, (), 1.0),            # one unbatched prompt, one head
]


@pytest.mark.parametrize("vocab,prompt_len,max_len,dim,depth,heads,batch,temp", CACHE_CASES)
def test_cached_sampler_draws_the_uncached_samplers_tokens(vocab, prompt_len, max_len, dim, depth, heads, batch,
                                                           temp):
    """``policy.sample`` (key-value cache) and the reference sampler that reruns the full forward per
    token return the same responses, token for token, for several keys (both jitted)."""
    pol, ref, params = _policies(vocab, prompt_len, max_len, dim=dim, depth=depth, heads=heads)
    x = jax.random.randint(jax.random.key(2), (*batch, prompt_len), 1, vocab)
    cached, uncached = jax.jit(pol.sample), jax.jit(ref.sample)
    for seed in range(4):
        key = jax.random.key(10 + seed)
        (r, m), (r_ref, m_ref) = cached(params, x, key, temp), uncached(params, x, key, temp)
        assert r.shape == (*batch, max_len) and r.dtype == jnp.int32
        np.testing.assert_array_equal(r, r_ref)
        np.testing.assert_array_equal(m, m_ref)
        np.testing.assert_array_equal(m, response_mask(r))
        after_eos = np.cumsum(np.asarray(r) == EOS, axis=-1) - (np.asarray(r) == EOS) > 0
        assert np.all(np.asarray(r)[after_eos] == EOS)           # every slot after the first EOS is EOS


@pytest.mark.parametrize("vocab,prompt_len,max_len,dim,depth,heads,batch,temp", CACHE_CASES)
def test_cached_step_logits_are_the_teacher_forced_logits(vocab, prompt_len, max_len, dim, depth, heads, batch,
                                                          temp):
    """The logits :func:`generate` draws slot ``j`` from (key-value cache) equal ``policy.logits`` of
    the sampled responses, ``f(BOS, x, y_<j)`` by one full forward: only ``y_<j`` enters slot ``j``,
    so the last token is never an input. Float32; the cache sums attention in another order."""
    pol, ref, params = _policies(vocab, prompt_len, max_len, dim=dim, depth=depth, heads=heads)
    x = jax.random.randint(jax.random.key(3), (*batch, prompt_len), 1, vocab)

    @jax.jit
    def run(params, x, key):
        r, step_logits = generate(pol.module(params), x, key, temp)
        r_ref, ref_logits = generate(pol.module(params), x, key, temp, kv_cache=False)
        return r, step_logits, r_ref, ref_logits, pol.logits(params, x, r)

    r, step_logits, r_ref, ref_logits, forced = run(params, x, jax.random.key(4))
    assert step_logits.shape == (*batch, max_len, vocab) and step_logits.dtype == jnp.float32
    np.testing.assert_array_equal(r, r_ref)
    np.testing.assert_allclose(step_logits, forced, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref_logits, forced, rtol=1e-5, atol=1e-5)


def test_cached_sampler_under_vmap_over_parameters_and_x64():
    """As the ranking suite's win rates: ``vmap(vmap(sample))`` over stacked NNX ``State`` parameters
    ``(runs, T, ...)`` with shared prompts and key equals the reference sampler per run; and with
    float64 parameters under x64 (the SFT tests' setting) the cache is float64 and the tokens agree."""
    pol, ref, params = _policies(7, 2, 9, dim=8, depth=2, heads=2)
    stacked = jax.tree.map(lambda a: jnp.stack([jnp.stack([a, 1.1 * a, 0.9 * a]), jnp.stack([-a, a, 0.5 * a])]),
                           params)
    x = jax.random.randint(jax.random.key(5), (6, 2), 1, 7)
    key = jax.random.key(6)
    over_runs = lambda sample: jax.jit(jax.vmap(jax.vmap(lambda p: sample(p, x, key)[0])))(stacked)
    got, want = over_runs(pol.sample), over_runs(ref.sample)
    assert got.shape == (2, 3, 6, 9)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[1, 2], jax.jit(pol.sample)(jax.tree.map(lambda a: a[1, 2], stacked), x, key)[0])
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        r, lg = jax.jit(lambda p: generate(pol.module(p), x, key))(p64)
        r_ref, _ = jax.jit(ref.sample)(p64, x, key)
        assert lg.dtype == jnp.float64
        np.testing.assert_array_equal(r, r_ref)
        np.testing.assert_allclose(lg, pol.logits(p64, x, r), rtol=1e-10, atol=1e-10)


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
