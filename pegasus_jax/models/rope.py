"""Rotary position embedding, Hugging Face Llama convention (rotate_half over two halves of head_dim).

Plain RoPE and Llama 3.1's frequency scaling (`rope_type` "llama3": long wavelengths divided by
`rope_factor`, a smooth blend between the low- and high-frequency cut-offs), as transformers computes
them; other scalings (yarn, dynamic, ...) are refused on import.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pegasus_jax.config import head_dim


def inverse_frequencies(dcfg) -> np.ndarray:
    """(head_dim // 2,) float32 rotation frequencies of a decoder config, in transformers' float32 arithmetic."""
    dim = head_dim(dcfg)
    inv_freq = (1.0 / (np.float32(dcfg.rope_theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))))
    inv_freq = inv_freq.astype(np.float32)
    if dcfg.rope_type == "default":
        return inv_freq
    factor, low, high = (np.float32(x) for x in (dcfg.rope_factor, dcfg.rope_low_freq_factor,
                                                  dcfg.rope_high_freq_factor))
    old_len = np.float32(dcfg.rope_original_max_len)
    wavelen = np.float32(2 * np.pi) / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_cos_sin(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """positions (B, T) int, `inverse_frequencies(...)` -> cos, sin (B, T, head_dim) float32."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x (B, T, H, D); cos/sin (B, T, D)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    out = x.astype(jnp.float32) * cos[:, :, None] + rotated.astype(jnp.float32) * sin[:, :, None]
    return out.astype(x.dtype)
