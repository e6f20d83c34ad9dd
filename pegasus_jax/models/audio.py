"""Audio encoder, weight-compatible with the Hugging Face Whisper encoder.

conv1 (k3, pad 1) + GELU, conv2 (k3, stride 2, pad 1) + GELU, + position embedding, pre-norm
layers (k projection without bias), final LayerNorm. Unlike HF, which insists on exactly 30 s
(2 * max_source_positions mel frames), any length up to that is accepted and the first positions
are used: a segment of audio is encoded on its own. With `audio.whisper_window` (set when Whisper
weights are imported) a segment is instead zero-padded to the whole window first, as
`WhisperFeatureExtractor` pads and pretrained Whisper always saw, and the positions covering the
segment's own samples are kept.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pegasus_jax.errors import UserError
from pegasus_jax.models.layers import LayerNorm, LayerStack, PreNormEncoderLayer, activation, param
from pegasus_jax.models.log_mel import HOP, log_mel_spectrogram
from pegasus_jax.models.posemb import sincos_table
from pegasus_jax.sharding import ACT_ENCODER_LENGTH_EMBED, CONV, EMBED, POSITIONS, constrain


class Conv1d(nnx.Module):
    """Time-major 1-D convolution: (B, T, C_in) -> (B, T', C_out); kernel (k, C_in, C_out)."""

    def __init__(self, in_dim: int, out_dim: int, *, stride: int, dtype, param_dtype, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = param(rngs, init, (3, in_dim, out_dim), (CONV, None, EMBED), param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (out_dim,), (EMBED,), param_dtype)
        self.stride = stride
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                                         window_strides=(self.stride,), padding=[(1, 1)],
                                         dimension_numbers=("NWC", "WIO", "NWC"))
        return y + self.bias[...].astype(self.dtype)


class AudioEncoder(nnx.Module):
    def __init__(self, acfg, *, dtype, param_dtype, scan: bool, remat: str, attention: str = "auto",
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        w = acfg.width
        self.num_mel_bins = acfg.num_mel_bins
        self.max_frames = 2 * acfg.max_source_positions
        self.whisper_window = acfg.whisper_window
        self.conv1 = Conv1d(acfg.num_mel_bins, w, stride=1, rngs=rngs, **kw)
        self.conv2 = Conv1d(w, w, stride=2, rngs=rngs, **kw)
        table = sincos_table(np.arange(acfg.max_source_positions), w)  # Whisper's fixed table, kept learnable
        self.embed_positions = nnx.Param(jnp.asarray(table, param_dtype), out_sharding=(POSITIONS, EMBED))
        self.layers = LayerStack(
            lambda r: PreNormEncoderLayer(w, acfg.num_heads, acfg.mlp_dim, acfg.layer_norm_eps, "gelu",
                                          k_bias=False, attention=attention, rngs=r, **kw),
            acfg.depth, scan=scan, remat=remat, rngs=rngs)
        self.layer_norm = LayerNorm(w, acfg.layer_norm_eps, rngs=rngs, **kw)

    def __call__(self, mel: jax.Array) -> jax.Array:
        """(B, frames, num_mel_bins) -> (B, ceil(frames / 2), width); frames <= 2 * max_source_positions."""
        if mel.shape[1] > self.max_frames:  # shapes are static under jit, so this check costs nothing
            raise UserError(f"audio of {mel.shape[1]} mel frames is longer than the encoder's {self.max_frames} "
                            f"(config.model.audio.max_source_positions = {self.max_frames // 2})")
        gelu = activation("gelu")
        x = gelu(self.conv2(gelu(self.conv1(mel))))
        x = x + self.embed_positions[...][: x.shape[1]].astype(x.dtype)
        x = self.layers(constrain(x, ACT_ENCODER_LENGTH_EMBED))
        return self.layer_norm(x)

    def encode_waveform(self, waveform: jax.Array) -> jax.Array:
        """(B, samples) 16 kHz mono -> (B, positions, width); positions = ceil(samples // 160 / 2)."""
        if not self.whisper_window:
            return self(log_mel_spectrogram(waveform, self.num_mel_bins))
        positions = -(-(waveform.shape[-1] // HOP) // 2)
        return self.encode_window(waveform)[:, :positions]

    def encode_window(self, waveform: jax.Array) -> jax.Array:
        """(B, samples <= the window) zero-padded to Whisper's whole window (30 s for 1500 positions), as
        `WhisperFeatureExtractor` pads -> (B, max_source_positions, width)."""
        window = self.max_frames * HOP
        if waveform.shape[-1] > window:
            raise UserError(f"audio of {waveform.shape[-1]} samples is longer than Whisper's window of {window}")
        padded = jnp.pad(waveform, [(0, 0)] * (waveform.ndim - 1) + [(0, window - waveform.shape[-1])])
        return self(log_mel_spectrogram(padded, self.num_mel_bins))
