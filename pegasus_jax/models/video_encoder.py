"""Video encoder: the per-frame ViT plus factorised temporal layers across frames (ViViT / VideoPrism).

Each temporal layer attends over the frames at one spatial location. Its residual branches end in
zero-initialised projections and its learned temporal position embedding enters only inside those
branches, so at initialisation the video encoder equals the image model frame by frame: pretrained
image weights start it exactly where they were.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pegasus_jax.models import posemb
from pegasus_jax.models.layers import MLP, LayerNorm, LayerStack, SelfAttention, param
from pegasus_jax.models.vision import ACTIVATIONS, FrameEncoder
from pegasus_jax.sharding import ACT_EMBED, ACT_ENCODER_BATCH, ACT_ENCODER_LENGTH_EMBED, EMBED, POSITIONS, constrain


def interpolate_positions(table: jax.Array, length: int) -> jax.Array:
    """Linear interpolation of a (max_frames, width) table to `length` rows (identity at max_frames)."""
    n = table.shape[0]
    if length == n:
        return table
    where = jnp.linspace(0.0, n - 1.0, length) if length > 1 else jnp.zeros((1,))
    lo = jnp.floor(where).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, n - 1)
    frac = (where - lo)[:, None]
    return table[lo] * (1 - frac) + table[hi] * frac


class TemporalLayer(nnx.Module):
    """x + attn(ln1(x) + pos); x + mlp(ln2(x)); the output projections start at zero."""

    def __init__(self, vcfg, *, dtype, param_dtype, attention: str = "auto", rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        w = vcfg.width
        self.ln1 = LayerNorm(w, vcfg.layer_norm_eps, **kw)
        self.attn = SelfAttention(w, vcfg.num_heads, attention=attention, **kw)
        self.ln2 = LayerNorm(w, vcfg.layer_norm_eps, **kw)
        self.mlp = MLP(w, vcfg.mlp_dim, ACTIVATIONS[vcfg.kind], **kw)
        for dense in (self.attn.o, self.mlp.fc2):
            dense.kernel[...] = jnp.zeros_like(dense.kernel[...])
            dense.bias[...] = jnp.zeros_like(dense.bias[...])

    def __call__(self, x: jax.Array, pos: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln1(x) + pos.astype(x.dtype))
        x = x + self.mlp(self.ln2(x))
        return constrain(x, ACT_ENCODER_LENGTH_EMBED)


class VideoEncoder(nnx.Module):
    def __init__(self, vcfg, *, dtype, param_dtype, scan: bool, remat: str, attention: str = "auto",
                 rngs: nnx.Rngs):
        self.frames = FrameEncoder(vcfg, dtype=dtype, param_dtype=param_dtype, scan=scan, remat=remat,
                                   attention=attention, rngs=rngs)
        self.temporal_depth = vcfg.temporal_depth
        if vcfg.temporal_depth:
            table = posemb.sincos_table(np.arange(vcfg.max_frames), vcfg.width)
            self.temporal_position = param(rngs, posemb.initializer(table), table.shape, (POSITIONS, EMBED),
                                           param_dtype)
            self.temporal = LayerStack(
                lambda r: TemporalLayer(vcfg, dtype=dtype, param_dtype=param_dtype, attention=attention, rngs=r),
                vcfg.temporal_depth, scan=scan, remat=remat, rngs=rngs)

    def __call__(self, frames: jax.Array) -> jax.Array:
        """(B, T, H, W, 3) normalised pixels -> (B, T, g, g, width)."""
        b, t = frames.shape[:2]
        grid = self.frames.patch_grid(frames.reshape((b * t,) + frames.shape[2:]))
        g, w = grid.shape[1], grid.shape[-1]
        video = grid.reshape(b, t, g, g, w)
        if self.temporal_depth:
            # one sequence of t frames per (clip, spatial location); clip-major so the batch sharding holds
            x = video.reshape(b, t, g * g, w).transpose(0, 2, 1, 3).reshape(b * g * g, t, w)
            pos = interpolate_positions(self.temporal_position[...], t)[None]
            x = self.temporal(constrain(x, ACT_ENCODER_LENGTH_EMBED), pos)
            video = x.reshape(b, g * g, t, w).transpose(0, 2, 1, 3).reshape(b, t, g, g, w)
        return constrain(video, (ACT_ENCODER_BATCH, None, None, None, ACT_EMBED))
