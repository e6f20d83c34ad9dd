"""Next-token choice from logits: greedy, temperature, top-k, top-p (nucleus), with an optional allow-mask."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 -> greedy
    top_k: int = 0  # 0 -> off
    top_p: float = 1.0  # 1 -> off
    max_new_tokens: int = 64
    seed: int = 0
    stop: tuple[str, ...] = ()


def sample(logits: jax.Array, key: jax.Array, params: SamplingParams, allowed: jax.Array | None = None) -> jax.Array:
    """logits (B, V) float32 -> token ids (B,). `allowed` (B, V) bool masks out disallowed tokens first."""
    neg = jnp.finfo(jnp.float32).min
    logits = logits.astype(jnp.float32)
    if allowed is not None:
        logits = jnp.where(allowed, logits, neg)
    if params.temperature <= 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / params.temperature
    if params.top_k > 0:
        kth = jax.lax.top_k(logits, params.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if params.top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least the best token)
        keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < params.top_p
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, neg)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
