"""Llama-style decoder, weight-compatible with Hugging Face `LlamaForCausalLM`, `Qwen2ForCausalLM`
and `MistralForCausalLM` (config.model.decoder.family).

RMSNorm -> grouped-query attention with RoPE -> residual; RMSNorm -> SwiGLU -> residual; final
RMSNorm; lm_head (or the tied embedding). Qwen2 adds q/k/v biases; Mistral's sliding window hides
keys more than `sliding_window - 1` positions back. Attention is causal by *position*: the caller passes RoPE
positions that count valid tokens only, and a key is visible to a query when it is valid and its
position is not later. The same rule serves a full forward pass, a prefill into the KV cache and
one-token decode steps, so all three compute the same logits. A full pass states it as index
causality within segment ids (valid tokens share one id, each padding token has its own: for a valid
query, "valid and not later by position" is "same id and not later by index"), which every attention
backend takes; the KV-cache path passes the cache's validity and positions as an explicit mask.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pegasus_jax.config import head_dim, qkv_bias
from pegasus_jax.models.attention import attention, decode_backend
from pegasus_jax.models.layers import Dense, LayerStack, RMSNorm, param
from pegasus_jax.models.lora import projection
from pegasus_jax.models.rope import apply_rope, inverse_frequencies, rope_cos_sin
from pegasus_jax.sharding import (
    ACT_BATCH_KV_LENGTH_HEADS, ACT_BATCH_LENGTH_EMBED, ACT_BATCH_LENGTH_HEADS, ACT_BATCH_LENGTH_MLP,
    ACT_BATCH_LENGTH_VOCAB, EMBED, HEADS, KV_CACHE, KV_HEADS, MLP, VOCAB, constrain,
)


def valid_positions(mask: jax.Array) -> jax.Array:
    """RoPE positions that count valid tokens only (padding repeats its predecessor's position)."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


class DecoderLayer(nnx.Module):
    def __init__(self, dcfg, lora_cfg, *, dtype, param_dtype, attention: str = "auto", rngs: nnx.Rngs):
        w, h, kv, hd = dcfg.width, dcfg.num_heads, dcfg.num_kv_heads, head_dim(dcfg)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attn_norm = RMSNorm(w, dcfg.rms_norm_eps, **kw)
        bias = qkv_bias(dcfg)
        self.q = projection(w, h * hd, (EMBED, HEADS), "q", lora_cfg, use_bias=bias, **kw)
        self.k = projection(w, kv * hd, (EMBED, KV_HEADS), "k", lora_cfg, use_bias=bias, **kw)
        self.v = projection(w, kv * hd, (EMBED, KV_HEADS), "v", lora_cfg, use_bias=bias, **kw)
        self.o = projection(h * hd, w, (HEADS, EMBED), "o", lora_cfg, **kw)
        self.mlp_norm = RMSNorm(w, dcfg.rms_norm_eps, **kw)
        self.gate = projection(w, dcfg.mlp_dim, (EMBED, MLP), "gate", lora_cfg, **kw)
        self.up = projection(w, dcfg.mlp_dim, (EMBED, MLP), "up", lora_cfg, **kw)
        self.down = projection(dcfg.mlp_dim, w, (MLP, EMBED), "down", lora_cfg, **kw)
        self.shape = (h, kv, hd)
        self.backend = attention

    def __call__(self, x, cos, sin, segment_ids, mask, write_index=None, per_layer=None):
        """`segment_ids` (B, T) for a full pass (with `mask` (B, 1, T, T) a sliding window, or None); with a
        cache (`per_layer`), `mask` (B, 1, T, max_len)."""
        b, t, _ = x.shape
        h, kv, hd = self.shape
        y = self.attn_norm(x)
        q = apply_rope(self.q(y).reshape(b, t, h, hd), cos, sin)
        k = apply_rope(self.k(y).reshape(b, t, kv, hd), cos, sin)
        v = self.v(y).reshape(b, t, kv, hd)
        q = constrain(q, ACT_BATCH_LENGTH_HEADS)
        if per_layer is None:
            # Context parallelism: the queries stay split along the sequence, the keys and values are gathered
            # whole (act_kv_length), so each chip attends its query block to every key (sharding.py says why).
            keys = constrain(k, ACT_BATCH_KV_LENGTH_HEADS)
            values = constrain(v, ACT_BATCH_KV_LENGTH_HEADS)
            # `mask`, if any, is a sliding window: only the mask backends take one
            backend = self.backend if mask is None else decode_backend(self.backend)
            out = attention(q, keys, values, causal=True, segment_ids=segment_ids, mask=mask, backend=backend)
        else:  # attend over this layer's cache with the chunk written in; only the chunk goes back out
            k = k.astype(per_layer["k"].dtype)
            v = v.astype(per_layer["v"].dtype)
            keys = jax.lax.dynamic_update_slice(per_layer["k"], k, (0, write_index, 0, 0))
            values = jax.lax.dynamic_update_slice(per_layer["v"], v, (0, write_index, 0, 0))
            out = attention(q, keys.astype(q.dtype), values.astype(q.dtype), causal=False, mask=mask,
                            backend=decode_backend(self.backend))
        x = x + self.o(out.reshape(b, t, h * hd))
        y = self.mlp_norm(x)
        hidden = constrain(jax.nn.silu(self.gate(y)) * self.up(y), ACT_BATCH_LENGTH_MLP)
        x = constrain(x + self.down(hidden), ACT_BATCH_LENGTH_EMBED)
        return x if per_layer is None else (x, {"k": k, "v": v})


class Decoder(nnx.Module):
    def __init__(self, dcfg, lora_cfg, *, dtype, param_dtype, scan: bool, remat: str, attention: str = "auto",
                 rngs: nnx.Rngs):
        self.cfg = dcfg
        self.dtype = dtype
        self.embed_tokens = param(rngs, nnx.initializers.normal(0.02), (dcfg.vocab_size, dcfg.width),
                                  (VOCAB, EMBED), param_dtype)
        self.layers = LayerStack(
            lambda r: DecoderLayer(dcfg, lora_cfg, dtype=dtype, param_dtype=param_dtype, attention=attention, rngs=r),
            dcfg.depth, scan=scan, remat=remat, rngs=rngs)
        self.norm = RMSNorm(dcfg.width, dcfg.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.lm_head = None if dcfg.tie_embeddings else Dense(
            dcfg.width, dcfg.vocab_size, (EMBED, VOCAB), use_bias=False, dtype=dtype, param_dtype=param_dtype,
            rngs=rngs)

    def embed(self, tokens: jax.Array) -> jax.Array:
        return jnp.take(self.embed_tokens[...], tokens, axis=0).astype(self.dtype)

    def init_cache(self, batch: int, max_len: int, dtype=None) -> dict:
        """An empty KV cache: k, v (depth, B, max_len, kv_heads, head_dim); per entry a valid flag and
        its RoPE position (B, max_len); the next write index (scalar int32, shared by all rows).

        Each call writes its T tokens at the index and advances it by T; the caller keeps
        index + T <= max_len (a write past the end is clamped by XLA and would overwrite the tail).
        """
        kv, hd = self.cfg.num_kv_heads, head_dim(self.cfg)
        shape = (self.cfg.depth, batch, max_len, kv, hd)
        dtype = dtype or self.dtype
        return {"k": constrain(jnp.zeros(shape, dtype), KV_CACHE), "v": constrain(jnp.zeros(shape, dtype), KV_CACHE),
                "valid": jnp.zeros((batch, max_len), bool), "pos": jnp.zeros((batch, max_len), jnp.int32),
                "index": jnp.zeros((), jnp.int32)}

    def __call__(self, x: jax.Array, positions: jax.Array, attention_mask: jax.Array, cache: dict | None = None):
        """x (B, T, W) embeddings, positions (B, T), attention_mask (B, T) valid tokens.

        Without a cache: causal attention among the valid tokens. With one: the T tokens are written at
        the cache's index (prefill: T = prompt length; decode: T = 1) and attend to every valid cached
        entry at a position not later than theirs. Returns (logits (B, T, vocab) float32, updated cache
        or None).
        """
        hidden, new_cache = self.hidden_states(x, positions, attention_mask, cache)
        return self.logits(hidden), new_cache

    def hidden_states(self, x: jax.Array, positions: jax.Array, attention_mask: jax.Array, cache: dict | None = None,
                      segment_ids: jax.Array | None = None):
        """The layer stack's output before the final norm, and the updated cache (as __call__).

        `segment_ids` (B, T), full pass only: tokens attend within equal ids (packed examples). By
        default the valid tokens form one segment and each padding token one of its own, so a padding
        position's output depends on nothing but its own input.
        """
        x = constrain(x.astype(self.dtype), ACT_BATCH_LENGTH_EMBED)
        cos, sin = rope_cos_sin(positions, inverse_frequencies(self.cfg))
        if cache is None:
            if segment_ids is None:  # the valid tokens: segment 0; each padding token: a segment of its own
                segment_ids = jnp.where(attention_mask, 0, -1 - jnp.arange(x.shape[1], dtype=jnp.int32))
            window = None
            if self.cfg.sliding_window:  # by position, so packed examples (positions restart) keep their own
                window = positions[:, None, None, :] > positions[:, None, :, None] - self.cfg.sliding_window
            return self.layers(x, cos, sin, segment_ids, window), None
        idx = cache["index"]
        key_valid = jax.lax.dynamic_update_slice(cache["valid"], attention_mask, (0, idx))
        key_pos = jax.lax.dynamic_update_slice(cache["pos"], positions.astype(jnp.int32), (0, idx))
        mask = key_valid[:, None, None, :] & (key_pos[:, None, None, :] <= positions[:, None, :, None])
        if self.cfg.sliding_window:
            mask &= key_pos[:, None, None, :] > positions[:, None, :, None] - self.cfg.sliding_window
        x, chunk = self.layers(x, cos, sin, None, mask, idx, per_layer={"k": cache["k"], "v": cache["v"]})
        # One write of every layer's new keys/values into the stacked cache: in place when the
        # caller donates the cache, instead of the scan re-emitting the whole cache each step.
        write = lambda full, new: constrain(jax.lax.dynamic_update_slice(full, new, (0, 0, idx, 0, 0)), KV_CACHE)
        return x, {"k": write(cache["k"], chunk["k"]), "v": write(cache["v"], chunk["v"]),
                   "valid": key_valid, "pos": key_pos, "index": idx + x.shape[1]}

    def output_weights(self) -> jax.Array:
        """The (width, vocab) output projection in the compute dtype: lm_head's kernel or the tied embedding."""
        w = self.embed_tokens[...].T if self.lm_head is None else self.lm_head.kernel[...]
        return w.astype(self.dtype)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Final norm and output projection: (B, T, W) hidden states -> (B, T, vocab) float32."""
        logits = jnp.dot(self.norm(hidden), self.output_weights())
        return constrain(logits.astype(jnp.float32), ACT_BATCH_LENGTH_VOCAB)
