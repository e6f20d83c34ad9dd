"""The composed Pegasus model: video encoder + audio encoder + alignment + decoder.

One example's decoder sequence (see data_pipelines/contract.py for the arrays):

    for each segment s in time order:  [marker(t_s)] [T'h'w' visual] [audio_tokens audio] [R transcript]
    then the text:                     [bos] <user> prompt <assistant> answer <eot> [pad ...]

Padding segments, missing audio, unused transcript slots and text padding are masked out of attention
and skipped by the RoPE positions (positions are the running count of valid tokens), so a short video
in a long-video batch computes exactly what it would alone.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pegasus_jax.models.alignment import Alignment, pool_shape
from pegasus_jax.models.audio import AudioEncoder
from pegasus_jax.models.decoder import Decoder, valid_positions
from pegasus_jax.models.layers import dtype_of
from pegasus_jax.models.video_encoder import VideoEncoder
from pegasus_jax.models.vision import normalize_pixels
from pegasus_jax.sharding import ACT_BATCH_LENGTH_EMBED, ACT_ENCODER_BATCH, constrain


class Pegasus(nnx.Module):
    def __init__(self, m, *, rngs: nnx.Rngs):
        """`m`: the model section of the config (config.model); the model reads nothing else."""
        kw = dict(dtype=dtype_of(m.dtype), param_dtype=dtype_of(m.param_dtype), scan=m.scan_layers,
                  remat=m.remat_policy, attention=m.attention, rngs=rngs)
        self.config = m
        self.video_encoder = VideoEncoder(m.vision, **kw)
        self.audio_encoder = AudioEncoder(m.audio, **kw) if m.audio.enabled else None
        self.alignment = Alignment(m, dtype=kw["dtype"], param_dtype=kw["param_dtype"], rngs=rngs)
        self.decoder = Decoder(m.decoder, m.lora, **kw)

    # -- the multimodal prefix ------------------------------------------------------------------
    def prefix(self, batch: dict, pool: tuple[int, int, int] | None = None) -> tuple[jax.Array, jax.Array]:
        """Embeddings and validity of the per-segment tokens: (B, S*K, W_dec), (B, S*K) bool.

        `pool` overrides the (T', h', w') chosen for this batch's S; streaming inference encodes one
        segment at a time with the pooling of the whole video.
        """
        frames = batch["frames"]
        b, s = frames.shape[:2]
        pool = pool or pool_shape(self.config, s)
        # Segments are encoded independently: with context parallelism each chip encodes its own segments
        # (act_encoder_batch spans the context axis), the ones whose tokens it holds in the decoder.
        frames = constrain(frames.reshape((b * s,) + frames.shape[2:]), (ACT_ENCODER_BATCH,))
        pixels = normalize_pixels(frames, self.config.vision.kind)
        grid = self.video_encoder(pixels)  # (B*S, F, g, g, Wv)
        visual = self.alignment.vision(grid, pool).reshape(b, s, -1, self.decoder_width)
        parts = [self.alignment.marker(batch["segment_start"])[:, :, None], visual]
        seg_valid = batch["segment_mask"][:, :, None]
        valid = [seg_valid, jnp.broadcast_to(seg_valid, visual.shape[:3])]
        if self.audio_encoder is not None:
            wave = constrain(batch["audio"].reshape(b * s, -1), (ACT_ENCODER_BATCH,))
            audio = self.alignment.audio(self.audio_encoder.encode_waveform(wave))
            audio = audio.reshape(b, s, -1, self.decoder_width)
            parts.append(audio)
            audio_valid = (batch["segment_mask"] & batch["audio_mask"])[:, :, None]
            valid.append(jnp.broadcast_to(audio_valid, audio.shape[:3]))
        if self.config.transcript_tokens > 0:
            parts.append(self.decoder.embed(batch["transcript"]))
            valid.append(batch["transcript_mask"] & seg_valid)
        x = jnp.concatenate([p.astype(visual.dtype) for p in parts], axis=2)
        mask = jnp.concatenate(valid, axis=2)
        x = x.reshape(b, -1, self.decoder_width)
        return constrain(x, ACT_BATCH_LENGTH_EMBED), mask.reshape(b, -1)

    @property
    def decoder_width(self) -> int:
        return self.config.decoder.width

    def sequence(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        """The whole decoder input: prefix then text. Returns embeddings and the valid-token mask."""
        x, mask = self.prefix(batch)
        text = self.decoder.embed(batch["tokens"])
        return jnp.concatenate([x, text.astype(x.dtype)], axis=1), jnp.concatenate([mask, batch["text_mask"]], axis=1)

    # -- forward and loss -----------------------------------------------------------------------
    def __call__(self, batch: dict) -> jax.Array:
        """Logits over the text positions: (B, L, vocab), float32."""
        x, mask = self.sequence(batch)
        positions = valid_positions(mask)
        logits, _ = self.decoder(x, positions, mask)
        return logits[:, -batch["tokens"].shape[1]:]


def cross_entropy_loss(logits: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    """Mean next-token cross-entropy over answer tokens (loss_mask); also returns the token count."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
    weights = batch["loss_mask"].astype(jnp.float32)
    tokens = weights.sum()
    loss = (nll * weights).sum() / jnp.maximum(tokens, 1.0)
    return loss, {"loss_tokens": tokens}


def loss_fn(model: Pegasus, batch: dict) -> tuple[jax.Array, dict]:
    return cross_entropy_loss(model(batch), batch)
