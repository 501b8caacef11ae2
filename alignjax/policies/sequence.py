"""A tiny autoregressive token-level policy (causal transformer, Flax NNX) for sequence experiments.

Token layout. Token ``0`` is end-of-sequence (EOS); ``1 .. V-1`` are content tokens; the input
embedding has one extra id ``V`` used as beginning-of-sequence (BOS), which the model never
emits. A prompt is ``P`` content tokens; a response is ``L`` token slots::

    input  = [BOS, x_1 .. x_P, y_1 .. y_{L-1}]          (length P + L)
    logits at input positions P .. P+L-1 predict y_1 .. y_L

A response ends at its first EOS (the EOS is scored and counted in its length); slots after
it are padding. A response with no EOS is truncated at ``L`` tokens (a complete sequence of
length ``L``). With these rules the probabilities of all distinct responses sum to one:
``sum_{n<L} P(c_1..c_n EOS) + sum P(c_1..c_L) = 1`` (checked by exhaustive enumeration in
``tests/test_sequence_policy.py``).

Sampling (:func:`generate`, ``policy.sample``) decodes with a key-value cache: one forward over
the ``P + 1`` positions ``[BOS, x]`` that also keeps every block's keys and values, then one
position per token against the cache (fixed ``P + L`` slots per block, later slots masked), so a
response costs ``O(P + L)`` position-forwards instead of the ``O(L (P + L))`` of rerunning the
full forward per token (still available as ``sequence_policy(..., kv_cache=False)``).

Parameters are the NNX ``State`` of the module (a pytree): the factory splits the module once
and the returned pure functions merge it inside plain ``jax`` transforms (``jit``, ``vmap``,
``grad``), which is much cheaper per call than ``nnx.jit`` for a model this small.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["EOS", "TinyTransformer", "SequencePolicy", "sequence_policy", "response_mask", "generate"]

EOS = 0
"""The end-of-sequence token id (also used as padding after the end)."""


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, visible: jax.Array, *, heads_first: bool = False) -> jax.Array:
    """Masked multi-head attention ``(..., t, H, dh)`` from queries ``(..., t, H, dh)`` and keys,
    values ``(..., s, H, dh)`` (``(..., H, s, dh)`` if ``heads_first``); ``visible`` broadcasts to
    ``(..., H, t, s)``.

    ``out_q = sum_k a_qk v_k``, ``a_qk = softmax_k(q . k_k / sqrt(dh))`` over the visible keys
    (an invisible key's score is ``-1e30``, so its weight is exactly 0).
    """
    dh = q.shape[-1]
    kv = "...hkd" if heads_first else "...khd"
    scores = jnp.einsum(f"...qhd,{kv}->...hqk", q, k) / jnp.sqrt(jnp.float32(dh))
    scores = jnp.where(jnp.broadcast_to(visible, scores.shape), scores, jnp.float32(-1e30))
    att = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum(f"...hqk,{kv}->...qhd", att, v)


class _Block(nnx.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a GELU MLP.

    ``h' = h + W_o attn(LN_1(h))``, ``out = h' + W_down gelu(W_up LN_2(h'))``. :meth:`__call__`
    is the causal forward over ``t`` positions (training, teacher forcing); :meth:`prefill` is the
    same forward also returning the keys and values; :meth:`decode` runs one new position
    against a key-value cache (same math: position ``p`` attends to positions ``0..p``).
    """

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.up = nnx.Linear(dim, 2 * dim, rngs=rngs)
        self.down = nnx.Linear(2 * dim, dim, rngs=rngs)

    def _qkv(self, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Per-head queries, keys, values ``(..., t, H, dh)`` of ``W_qkv LN_1(h)``."""
        *batch, t, d = h.shape
        qkv = self.qkv(self.norm1(h)).reshape(*batch, t, 3, self.heads, d // self.heads)
        return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]

    def _residual(self, h: jax.Array, out: jax.Array) -> jax.Array:
        """``h' = h + W_o out`` (heads merged), then ``h' + W_down gelu(W_up LN_2(h'))``."""
        h = h + self.proj(out.reshape(h.shape))
        return h + self.down(jax.nn.gelu(self.up(self.norm2(h))))

    def prefill(self, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Causal forward over ``h (..., t, d)``: ``(out (..., t, d), k, v (..., t, H, dh))``;
        position ``q`` attends to keys ``k <= q``."""
        t = h.shape[-2]
        q, k, v = self._qkv(h)
        return self._residual(h, _attend(q, k, v, jnp.tril(jnp.ones((t, t), bool)))), k, v

    def __call__(self, h: jax.Array) -> jax.Array:
        """The causal forward ``(..., t, d) -> (..., t, d)`` (:meth:`prefill` without the cache)."""
        return self.prefill(h)[0]

    def decode(self, h: jax.Array, pos: jax.Array, k_cache: jax.Array,
               v_cache: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One position ``pos`` of the causal forward against a cache: ``(out, k_cache, v_cache)``.

        ``h (..., 1, d)`` is the block input at ``pos``; the caches ``(..., H, S, dh)`` hold the
        keys and values of positions ``< pos``. This position's key and value are written at
        slot ``pos`` and it attends to slots ``s <= pos`` (later slots are masked), which is row
        ``pos`` of :meth:`prefill` on the first ``pos + 1`` positions.
        """
        q, k, v = self._qkv(h)
        k_cache = jax.lax.dynamic_update_slice_in_dim(k_cache, jnp.swapaxes(k, -2, -3), pos, axis=-2)
        v_cache = jax.lax.dynamic_update_slice_in_dim(v_cache, jnp.swapaxes(v, -2, -3), pos, axis=-2)
        visible = (jnp.arange(k_cache.shape[-2]) <= pos)[None, :]            # (1 query, S keys)
        out = _attend(q, k_cache, v_cache, visible, heads_first=True)
        return self._residual(h, out), k_cache, v_cache


class TinyTransformer(nnx.Module):
    """Causal transformer ``tokens (..., T) -> next-token logits (..., T, V)``.

    Input ids are in ``[0, V]`` (``V`` = BOS); outputs are over ``V`` ids (EOS + content).
    Learned positional embeddings for ``max_positions`` positions:
    ``h_0[p] = E[token_p] + pos[p]``, ``h_i = block_i(h_{i-1})``, ``logits = W LN(h_depth) + b``.
    :meth:`prefill` and :meth:`decode` compute the same logits incrementally with a key-value
    cache of ``max_positions`` slots per block.
    """

    def __init__(self, vocab_size: int, max_positions: int, *, dim: int, depth: int, heads: int,
                 rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab_size + 1, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_positions, dim)))
        self.blocks = nnx.List([_Block(dim, heads, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, vocab_size, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Next-token logits ``(..., T, V)`` of ``tokens (..., T)``, ``T <= max_positions``
        (position ``p`` sees tokens ``0..p``)."""
        return self._forward(tokens)[0]

    def _forward(self, tokens: jax.Array) -> tuple[jax.Array, list]:
        """Logits ``(..., T, V)`` and every block's keys and values ``(..., T, H, dh)``."""
        t = tokens.shape[-1]
        h = self.embed(tokens)
        h = h + jnp.broadcast_to(self.pos[...][:t], h.shape)
        kv = []
        for block in self.blocks:
            h, k, v = block.prefill(h)
            kv.append((k, v))
        return self.head(self.norm(h)), kv

    def prefill(self, tokens: jax.Array) -> tuple[jax.Array, tuple]:
        """:meth:`__call__` that also returns the cache: ``(logits (..., T, V), cache)``.

        ``cache`` holds per block ``(K, V)``, each ``(..., H, max_positions, dh)``: the keys
        and values of positions ``0..T-1`` in slots ``0..T-1``, zeros in the later slots (heads
        before slots, so that a decoding step's attention reads the cache without transposing it).
        """
        logits, kv = self._forward(tokens)
        slots = self.pos[...].shape[0]
        pad = lambda a: jnp.pad(jnp.swapaxes(a, -2, -3), [(0, 0)] * (a.ndim - 2) + [(0, slots - a.shape[-3]), (0, 0)])
        return logits, tuple((pad(k), pad(v)) for k, v in kv)

    def decode(self, token: jax.Array, pos: jax.Array, cache: tuple) -> tuple[jax.Array, tuple]:
        """Logits ``(..., V)`` at position ``pos`` for the token ``(...)`` placed there, given the
        ``cache`` of positions ``< pos`` (from :meth:`prefill` or earlier :meth:`decode` calls);
        returns the cache with position ``pos`` written. Equals ``__call__(tokens)[..., pos, :]``
        for the tokens of positions ``0..pos`` up to float rounding (the attention sums run in
        another order)."""
        h = self.embed(token[..., None])                                   # (..., 1, d)
        h = h + jnp.broadcast_to(jax.lax.dynamic_slice_in_dim(self.pos[...], pos, 1), h.shape)
        new = []
        for block, (k, v) in zip(self.blocks, cache):
            h, k, v = block.decode(h, pos, k, v)
            new.append((k, v))
        return self.head(self.norm(h))[..., 0, :], tuple(new)


def _draw(key: jax.Array, logits: jax.Array, temperature, done: jax.Array) -> jax.Array:
    """One token per row: ``y ~ softmax(logits / temperature)`` (Gumbel-max with ``key``), or EOS
    where the row has ``done`` (ended at an earlier EOS)."""
    tok = jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)
    return jnp.where(done, EOS, tok)


def _generate_cached(model, start, keys, temperature):
    """Cached decoding: one :meth:`TinyTransformer.prefill` over ``start = [BOS, x]`` (positions
    ``0..P``), then one :meth:`TinyTransformer.decode` per token ``y_j`` at position ``P + j``
    (``j = 1..L-1``) inside ``lax.scan``; ``y_L`` is never an input."""
    p = start.shape[-1] - 1
    logits, cache = model.prefill(start)
    first = logits[..., -1, :]
    tok = _draw(keys[0], first, temperature, jnp.zeros(start.shape[:-1], bool))

    def body(carry, inp):
        cache, tok, done = carry
        j, k = inp
        lg, cache = model.decode(tok, p + j, cache)
        new = _draw(k, lg, temperature, done)
        return (cache, new, done | (new == EOS)), (new, lg)

    steps = (jnp.arange(1, keys.shape[0]), keys[1:])
    _, (toks, lgs) = jax.lax.scan(body, (cache, tok, tok == EOS), steps)
    return (jnp.concatenate([tok[None], toks]), jnp.concatenate([first[None], lgs]))


def _generate_uncached(model, start, keys, temperature):
    """The reference sampler: for every token, the full causal forward over the whole
    ``(P + L)``-slot buffer ``[BOS, x, y_1 .. y_{L-1}]`` (unwritten slots 0; the causal mask
    hides them), read at position ``P + j - 1`` to draw ``y_j``, then ``y_j`` written into slot
    ``P + j`` (for ``j < L``)."""
    p, n = start.shape[-1] - 1, keys.shape[0]
    buf = jnp.concatenate([start, jnp.zeros((*start.shape[:-1], n - 1), jnp.int32)], axis=-1)

    def body(carry, inp):
        buf, done = carry
        j, k = inp
        lg = jax.lax.dynamic_index_in_dim(model(buf), p + j, axis=-2, keepdims=False)
        tok = _draw(k, lg, temperature, done)
        pos = jnp.minimum(p + 1 + j, buf.shape[-1] - 1)
        new = jax.lax.dynamic_update_index_in_dim(buf, tok[..., None], pos, axis=-1)
        buf = jnp.where(j < n - 1, new, buf)
        return (buf, done | (tok == EOS)), (tok, lg)

    _, (toks, lgs) = jax.lax.scan(body, (buf, jnp.zeros(start.shape[:-1], bool)), (jnp.arange(n), keys))
    return toks, lgs


def generate(model: TinyTransformer, prompts: jax.Array, key: jax.Array, temperature=1.0, *,
             kv_cache: bool = True) -> tuple[jax.Array, jax.Array]:
    """Sample responses autoregressively: ``(responses (..., L), step_logits (..., L, V))``.

    With ``L = max_positions - P`` slots, ``keys = split(key, L)`` and input
    ``[BOS, x, y_1 .. y_{j-1}]``: ``y_j ~ softmax(f(BOS, x, y_<j) / temperature)`` drawn with
    ``keys[j-1]`` (``jax.random.categorical``); after the first EOS every slot is EOS.
    ``step_logits[..., j-1, :] = f(BOS, x, y_<j)`` are the raw logits of slot ``j`` (before the
    temperature), equal to the teacher-forced ``policy.logits`` of the returned responses.

    ``kv_cache=True`` decodes with a key-value cache (one prefill of the ``P + 1`` prompt
    positions, then one position per token: ``O(P + L)`` position-forwards per response);
    ``kv_cache=False`` is the reference sampler that reruns the full forward over all ``P + L``
    slots for every token (``O(L (P + L))``). Both draw the same tokens for the same key up to
    float rounding: the same keys and Gumbel noise, on logits that differ by a few ulps (the
    cache sums attention in another order; median ~1e-7, at most a few 1e-6), so a token differs
    only where that rounding decides a near-tie of two perturbed logits: about once per million
    tokens (one of the ~820,000 response slots of a ranking-accuracy quick run; none in the
    tests). Jittable and ``vmap``-able; ``prompts (..., P)`` may carry batch axes.
    """
    prompts = jnp.asarray(prompts, jnp.int32)
    bos = model.head.out_features
    num = model.pos[...].shape[0] - prompts.shape[-1]
    start = jnp.concatenate([jnp.full((*prompts.shape[:-1], 1), bos, jnp.int32), prompts], axis=-1)
    run = _generate_cached if kv_cache else _generate_uncached
    toks, lgs = run(model, start, jax.random.split(key, num), temperature)
    return jnp.moveaxis(toks, 0, -1), jnp.moveaxis(lgs, 0, -2)


class SequencePolicy(NamedTuple):
    """A token-level policy: pure functions over a parameter pytree.

    Attributes:
      init: ``init(key) -> params``.
      logits: ``logits(params, prompts (..., P), responses (..., L)) -> (..., L, V)`` raw
        next-token logits at the ``L`` response slots (teacher forcing).
      sequence_logps: ``sequence_logps(params, prompts, responses, mask) -> (logps, lengths)``,
        both ``(...)``: ``log pi(y|x) = sum_j mask_j log pi(y_j | x, y_<j)`` and ``sum_j mask_j``.
      token_logps: ``token_logps(params, prompts, responses) -> (..., L)`` per-slot log-probs.
      sample: ``sample(params, prompts, key, temperature=1.0) -> (responses, mask)``: the
        responses of :func:`generate` (key-value cached unless the policy was built with
        ``kv_cache=False``) and their :func:`response_mask`.
      vocab_size, prompt_len, max_len: ``V``, ``P``, ``L``.
      module: ``module(params) -> TinyTransformer`` (``nnx.merge``), for :func:`generate` or the
        model's methods directly.
    """

    init: Callable[[jax.Array], Any]
    logits: Callable[..., jax.Array]
    sequence_logps: Callable[..., tuple[jax.Array, jax.Array]]
    token_logps: Callable[..., jax.Array]
    sample: Callable[..., tuple[jax.Array, jax.Array]]
    vocab_size: int
    prompt_len: int
    max_len: int
    module: Callable[[Any], TinyTransformer] | None = None


def response_mask(responses: jax.Array) -> jax.Array:
    """Float mask ``(..., L)``: 1 up to and including the first EOS, 0 after; all 1 if no EOS."""
    is_eos = (responses == EOS).astype(jnp.int32)
    eos_before = jnp.cumsum(is_eos, axis=-1) - is_eos   # EOS strictly before slot j
    return (eos_before == 0).astype(jnp.float32)


def sequence_policy(vocab_size: int = 16, prompt_len: int = 4, max_len: int = 12, *, dim: int = 32,
                    depth: int = 2, heads: int = 2, kv_cache: bool = True) -> SequencePolicy:
    """Build a :class:`SequencePolicy` around a :class:`TinyTransformer`.

    ``pi(y|x) = prod_{j<=n} softmax(f_theta([BOS, x, y_<j]))[y_j]`` where ``n`` is the index of
    the first EOS (or ``L``). Sizes are static; ``params`` is an NNX ``State`` pytree.

    Args:
      vocab_size: ``V`` output tokens (EOS = 0 and ``V - 1`` content tokens).
      prompt_len: ``P`` prompt tokens.
      max_len: ``L`` response slots.
      dim, depth, heads: width, number of blocks and attention heads.
      kv_cache: ``sample`` decodes with a key-value cache (default); ``False`` gives the
        reference sampler that reruns the whole forward per token (the same tokens for the same
        key up to rounding-decided near-ties, see :func:`generate`; about ``P + L`` times
        the work; for tests and benchmarks).
    """
    if vocab_size < 2 or prompt_len < 1 or max_len < 1 or dim % heads:
        raise ValueError(f"bad sequence policy sizes: V={vocab_size}, P={prompt_len}, L={max_len}, "
                         f"dim={dim}, heads={heads}")
    bos = vocab_size
    npos = prompt_len + max_len

    def build(key):
        return TinyTransformer(vocab_size, npos, dim=dim, depth=depth, heads=heads, rngs=nnx.Rngs(params=key))

    graphdef, _ = nnx.split(build(jax.random.key(0)))

    def init(key: jax.Array):
        return nnx.state(build(key), nnx.Param)

    def _forward(params, tokens):
        return nnx.merge(graphdef, params)(tokens)

    def _inputs(prompts, responses):
        prompts = jnp.asarray(prompts)
        responses = jnp.asarray(responses)
        batch = jnp.broadcast_shapes(prompts.shape[:-1], responses.shape[:-1])
        b = jnp.full((*batch, 1), bos, jnp.int32)
        return jnp.concatenate([b, jnp.broadcast_to(prompts, (*batch, prompt_len)).astype(jnp.int32),
                                jnp.broadcast_to(responses, (*batch, max_len))[..., :-1].astype(jnp.int32)],
                               axis=-1)

    def logits(params, prompts, responses):
        return _forward(params, _inputs(prompts, responses))[..., prompt_len:, :]

    def token_logps(params, prompts, responses):
        logp = jax.nn.log_softmax(logits(params, prompts, responses), axis=-1)
        return jnp.take_along_axis(logp, jnp.asarray(responses, jnp.int32)[..., None], axis=-1)[..., 0]

    def sequence_logps(params, prompts, responses, mask):
        mask = jnp.asarray(mask, jnp.float32)
        return jnp.sum(token_logps(params, prompts, responses) * mask, axis=-1), jnp.sum(mask, axis=-1)

    def module(params) -> TinyTransformer:
        return nnx.merge(graphdef, params)

    def sample(params, prompts, key, temperature=1.0):
        responses, _ = generate(module(params), prompts, key, temperature, kv_cache=kv_cache)
        return responses, response_mask(responses)

    return SequencePolicy(init, logits, sequence_logps, token_logps, sample, vocab_size, prompt_len, max_len, module)
