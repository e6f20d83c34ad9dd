"""Per-frame ViT, weight-compatible with Hugging Face `CLIPVisionModel` and `SiglipVisionModel`.

`FrameEncoder(pixels)` returns exactly HF's `last_hidden_state`: for CLIP the class token plus patch
tokens after the encoder (post_layernorm is kept as a parameter but, as in HF, applies only to the
pooled output); for SigLIP the patch tokens after post_layernorm (the attention-pooling head is not
part of this model). `patch_grid` gives the patch tokens as a (g, g) grid for the video encoder.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pegasus_jax.models import posemb
from pegasus_jax.models.layers import Dense, LayerNorm, LayerStack, PreNormEncoderLayer, param
from pegasus_jax.sharding import ACT_ENCODER_LENGTH_EMBED, CONV, EMBED, POSITIONS, constrain

PIXEL_STATS = {  # (mean, std) per RGB channel of the towers' preprocessing
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
ACTIVATIONS = {"clip": "quick_gelu", "siglip": "gelu_tanh"}


def normalize_pixels(frames: jax.Array, kind: str) -> jax.Array:
    """uint8 RGB (..., H, W, 3) -> the float input the tower was trained on."""
    mean, std = (np.asarray(s, np.float32) for s in PIXEL_STATS[kind])
    return (frames.astype(jnp.float32) / 255.0 - mean) / std


def patchify(pixels: jax.Array, patch: int) -> jax.Array:
    """(N, H, W, C) -> (N, g*g, patch*patch*C), patches in row-major order, features (ph, pw, c)."""
    n, h, w, c = pixels.shape
    x = pixels.reshape(n, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // patch) * (w // patch), patch * patch * c)


class FrameEncoder(nnx.Module):
    def __init__(self, vcfg, *, dtype, param_dtype, scan: bool, remat: str, attention: str = "auto",
                 rngs: nnx.Rngs):
        self.kind = vcfg.kind
        self.patch = vcfg.patch_size
        self.grid = vcfg.image_size // vcfg.patch_size
        width = vcfg.width
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        clip = vcfg.kind == "clip"
        self.patch_embed = Dense(self.patch ** 2 * 3, width, (CONV, EMBED), use_bias=not clip, rngs=rngs, **kw)
        init = nnx.initializers.normal(0.02)
        self.class_embedding = param(rngs, init, (width,), (EMBED,), param_dtype) if clip else None
        table = posemb.grid_table(self.grid, width)
        if clip:  # the class token's row
            table = np.concatenate([np.zeros((1, width), np.float32), table])
        self.position_embedding = param(rngs, posemb.initializer(table), table.shape, (POSITIONS, EMBED),
                                        param_dtype)
        self.pre_norm = LayerNorm(width, vcfg.layer_norm_eps, rngs=rngs, **kw) if clip else None
        self.layers = LayerStack(
            lambda r: PreNormEncoderLayer(width, vcfg.num_heads, vcfg.mlp_dim, vcfg.layer_norm_eps,
                                          ACTIVATIONS[vcfg.kind], attention=attention, rngs=r, **kw),
            vcfg.depth, scan=scan, remat=remat, rngs=rngs)
        self.post_norm = LayerNorm(width, vcfg.layer_norm_eps, rngs=rngs, **kw)
        self.dtype = dtype

    def __call__(self, pixels: jax.Array) -> jax.Array:
        """(N, H, W, 3) normalised pixels -> (N, tokens, width), HF's last_hidden_state."""
        x = self.patch_embed(patchify(pixels, self.patch))
        if self.class_embedding is not None:
            cls = jnp.broadcast_to(self.class_embedding[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
            x = jnp.concatenate([cls, x], axis=1)
        x = x + self.position_embedding[...].astype(x.dtype)
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        x = self.layers(constrain(x, ACT_ENCODER_LENGTH_EMBED))
        return x if self.kind == "clip" else self.post_norm(x)

    def patch_grid(self, pixels: jax.Array) -> jax.Array:
        """(N, H, W, 3) -> patch tokens (N, g, g, width) (CLIP's class token dropped)."""
        x = self(pixels)
        if self.kind == "clip":
            x = x[:, 1:]
        return x.reshape(x.shape[0], self.grid, self.grid, x.shape[-1])
