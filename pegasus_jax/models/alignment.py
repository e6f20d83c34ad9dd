"""Video-language alignment: parameter-free adaptive pooling, MLP projectors, segment markers.

Vision follows PLLaVA's adaptive structure pooling: each segment's (T, g, g) feature grid is
average-pooled to (T', h', w') with PyTorch AdaptiveAvgPool bins. Pooling space is cheap and pooling
time hurts (PLLaVA), so when the token budget is tight `pool_shape` shrinks h', w' first.
By default we pool before the projector (PLLaVA pools after): the projector then runs on T'h'w' tokens
instead of T*g*g, which is what makes hour-long inputs affordable; `align.pool_after_projector` projects
every grid token first, as PLLaVA does (the same number of decoder tokens, a different function: the
projector is non-linear).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data_pipelines.contract import pool_shape, tokens_per_segment  # noqa: F401 (the layout rules, re-exported)
from pegasus_jax.models.layers import Dense, LayerNorm, activation
from pegasus_jax.sharding import EMBED, MLP

TIME_FEATURES = 64  # sinusoidal features of a segment's start time (seconds)
PROJECTOR_NORM_EPS = 1e-5


@functools.lru_cache(maxsize=None)
def adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) averaging matrix with AdaptiveAvgPool bins [floor(i*n/m), ceil((i+1)*n/m))."""
    mat = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        mat[i, start:end] = 1.0 / (end - start)
    return mat


def adaptive_avg_pool(x: jax.Array, out_shape: tuple[int, ...], axes: tuple[int, ...]) -> jax.Array:
    """Adaptive average pooling of `x` along `axes` to `out_shape` (one size per axis)."""
    for axis, n_out in zip(axes, out_shape):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        mat = jnp.asarray(adaptive_pool_matrix(n_in, n_out), x.dtype)
        x = jnp.moveaxis(jnp.tensordot(mat, x, axes=[[1], [axis]]), 0, axis)
    return x


def time_features(seconds: jax.Array) -> jax.Array:
    """Sinusoidal features of times in seconds, periods from 1 s to ~3 h. (...,) -> (..., TIME_FEATURES)."""
    half = TIME_FEATURES // 2
    periods = jnp.exp(jnp.linspace(jnp.log(1.0), jnp.log(10000.0), half))
    angles = seconds[..., None].astype(jnp.float32) * (2 * jnp.pi / periods)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Projector(nnx.Module):
    """LayerNorm, then a two-layer MLP (GELU by default) mapping an encoder's width into the decoder's.

    The norm is LLaVA's mlp2x_gelu plus an input LayerNorm (as Qwen2-VL's merger): CLIP's
    last_hidden_state is an un-normalised residual stream, and a tower trained from scratch grows it
    (RMS 1 -> 24 in the demo) until the GELU units saturate, the visual tokens go constant and the
    gradient into the tower vanishes (~1e-6 against ~1e-2 for audio). Without the norm
    (`align.projector_norm=False`) it is exactly LLaVA's projector (linear_1, act, linear_2), which
    import-hf --vlm loads.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, norm: bool, act: str, dtype, param_dtype,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm = LayerNorm(in_dim, PROJECTOR_NORM_EPS, **kw) if norm else None
        self.fc1 = Dense(in_dim, hidden, (EMBED, MLP), **kw)
        self.fc2 = Dense(hidden, out_dim, (MLP, EMBED), **kw)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.norm is not None:
            x = self.norm(x)
        return self.fc2(activation(self.act)(self.fc1(x)))


class Alignment(nnx.Module):
    """Maps encoder outputs to decoder-space tokens: pooled vision, pooled audio, segment markers."""

    def __init__(self, m, *, dtype, param_dtype, rngs: nnx.Rngs):
        width = m.decoder.width
        hidden = m.align.projector_hidden or width
        kw = dict(norm=m.align.projector_norm, act=m.align.projector_act, dtype=dtype, param_dtype=param_dtype,
                  rngs=rngs)
        self.vision_projector = Projector(m.vision.width, hidden, width, **kw)
        self.audio_projector = Projector(m.audio.width, hidden, width, **kw) if m.audio.enabled else None
        self.time_embed = Dense(TIME_FEATURES, width, (None, EMBED), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.audio_tokens = m.align.audio_tokens
        self.pool_after_projector = m.align.pool_after_projector

    def vision(self, grid: jax.Array, pool: tuple[int, int, int]) -> jax.Array:
        """(N, T, g, g, Wv) -> (N, T'h'w', W_dec)."""
        if self.pool_after_projector:
            pooled = adaptive_avg_pool(self.vision_projector(grid), pool, axes=(1, 2, 3))
            return pooled.reshape(pooled.shape[0], -1, pooled.shape[-1])
        pooled = adaptive_avg_pool(grid, pool, axes=(1, 2, 3))
        return self.vision_projector(pooled.reshape(pooled.shape[0], -1, pooled.shape[-1]))

    def audio(self, features: jax.Array) -> jax.Array:
        """(N, P, Wa) -> (N, audio_tokens, W_dec)."""
        return self.audio_projector(adaptive_avg_pool(features, (self.audio_tokens,), axes=(1,)))

    def marker(self, seconds: jax.Array) -> jax.Array:
        """Segment start times (...,) -> timestamp marker embeddings (..., W_dec)."""
        return self.time_embed(time_features(seconds))
