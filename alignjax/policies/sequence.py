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

Parameters are the NNX ``State`` of the module (a pytree): the factory splits the module once
and the returned pure functions merge it inside plain ``jax`` transforms (``jit``, ``vmap``,
``grad``), which is much cheaper per call than ``nnx.jit`` for a model this small.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["EOS", "TinyTransformer", "SequencePolicy", "sequence_policy", "response_mask"]

EOS = 0
"""The end-of-sequence token id (also used as padding after the end)."""


class _Block(nnx.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a GELU MLP."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.up = nnx.Linear(dim, 2 * dim, rngs=rngs)
        self.down = nnx.Linear(2 * dim, dim, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        *batch, t, d = h.shape
        dh = d // self.heads
        qkv = self.qkv(self.norm1(h)).reshape(*batch, t, 3, self.heads, dh)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        scores = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(jnp.float32(dh))
        causal = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), scores.shape)
        scores = jnp.where(causal, scores, jnp.float32(-1e30))
        att = jax.nn.softmax(scores, axis=-1)
        out = jnp.einsum("...hqk,...khd->...qhd", att, v).reshape(*batch, t, d)
        h = h + self.proj(out)
        return h + self.down(jax.nn.gelu(self.up(self.norm2(h))))


class TinyTransformer(nnx.Module):
    """Causal transformer ``tokens (..., T) -> next-token logits (..., T, V)``.

    Input ids are in ``[0, V]`` (``V`` = BOS); outputs are over ``V`` ids (EOS + content).
    Learned positional embeddings for ``max_positions`` positions.
    """

    def __init__(self, vocab_size: int, max_positions: int, *, dim: int, depth: int, heads: int,
                 rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab_size + 1, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_positions, dim)))
        self.blocks = nnx.List([_Block(dim, heads, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, vocab_size, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        t = tokens.shape[-1]
        h = self.embed(tokens)
        h = h + jnp.broadcast_to(self.pos[...][:t], h.shape)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


class SequencePolicy(NamedTuple):
    """A token-level policy: pure functions over a parameter pytree.

    Attributes:
      init: ``init(key) -> params``.
      logits: ``logits(params, prompts (..., P), responses (..., L)) -> (..., L, V)`` raw
        next-token logits at the ``L`` response slots (teacher forcing).
      sequence_logps: ``sequence_logps(params, prompts, responses, mask) -> (logps, lengths)``,
        both ``(...)``: ``log pi(y|x) = sum_j mask_j log pi(y_j | x, y_<j)`` and ``sum_j mask_j``.
      token_logps: ``token_logps(params, prompts, responses) -> (..., L)`` per-slot log-probs.
      sample: ``sample(params, prompts, key, temperature=1.0) -> (responses, mask)``.
      vocab_size, prompt_len, max_len: ``V``, ``P``, ``L``.
    """

    init: Callable[[jax.Array], Any]
    logits: Callable[..., jax.Array]
    sequence_logps: Callable[..., tuple[jax.Array, jax.Array]]
    token_logps: Callable[..., jax.Array]
    sample: Callable[..., tuple[jax.Array, jax.Array]]
    vocab_size: int
    prompt_len: int
    max_len: int


def response_mask(responses: jax.Array) -> jax.Array:
    """Float mask ``(..., L)``: 1 up to and including the first EOS, 0 after; all 1 if no EOS."""
    is_eos = (responses == EOS).astype(jnp.int32)
    eos_before = jnp.cumsum(is_eos, axis=-1) - is_eos   # EOS strictly before slot j
    return (eos_before == 0).astype(jnp.float32)


def sequence_policy(vocab_size: int = 16, prompt_len: int = 4, max_len: int = 12, *, dim: int = 32,
                    depth: int = 2, heads: int = 2) -> SequencePolicy:
    """Build a :class:`SequencePolicy` around a :class:`TinyTransformer`.

    ``pi(y|x) = prod_{j<=n} softmax(f_theta([BOS, x, y_<j]))[y_j]`` where ``n`` is the index of
    the first EOS (or ``L``). Sizes are static; ``params`` is an NNX ``State`` pytree.

    Args:
      vocab_size: ``V`` output tokens (EOS = 0 and ``V - 1`` content tokens).
      prompt_len: ``P`` prompt tokens.
      max_len: ``L`` response slots.
      dim, depth, heads: width, number of blocks and attention heads.
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

    def sample(params, prompts, key, temperature=1.0):
        prompts = jnp.asarray(prompts, jnp.int32)
        batch = prompts.shape[:-1]
        buf = jnp.concatenate([jnp.full((*batch, 1), bos, jnp.int32), prompts,
                               jnp.zeros((*batch, max_len - 1), jnp.int32)], axis=-1)
        keys = jax.random.split(key, max_len)

        def body(carry, inp):
            buf, done = carry
            j, k = inp
            lg = _forward(params, buf)
            lg = jax.lax.dynamic_index_in_dim(lg, prompt_len + j, axis=-2, keepdims=False)
            tok = jax.random.categorical(k, lg / temperature, axis=-1).astype(jnp.int32)
            tok = jnp.where(done, EOS, tok)
            # write y_j into input slot P + 1 + j (the last token is never an input)
            pos = jnp.minimum(prompt_len + 1 + j, npos - 1)
            new = jax.lax.dynamic_update_index_in_dim(buf, tok[..., None], pos, axis=-1)
            buf = jnp.where(j < max_len - 1, new, buf)
            return (buf, done | (tok == EOS)), tok

        (_, _), toks = jax.lax.scan(body, (buf, jnp.zeros(batch, bool)), (jnp.arange(max_len), keys))
        responses = jnp.moveaxis(toks, 0, -1)
        return responses, response_mask(responses)

    return SequencePolicy(init, logits, sequence_logps, token_logps, sample, vocab_size, prompt_len, max_len)
