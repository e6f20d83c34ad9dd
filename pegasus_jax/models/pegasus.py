"""The composed Pegasus model: video encoder + audio encoder + alignment + decoder.

One example's decoder sequence (see data_pipelines/contract.py for the arrays):

    for each segment s in time order:  [marker(t_s)] [T'h'w' visual] [audio_tokens audio] [R transcript]
    then the text:                     [bos] <user> prompt <assistant> answer <eot> [pad ...]

Padding segments, missing audio, unused transcript slots and text padding are masked out of attention
and skipped by the RoPE positions (positions are the running count of valid tokens), so a short video
in a long-video batch computes exactly what it would alone. A packed training row (several examples
back to back, data_pipelines/batch/packing.py) computes the same for each of its examples.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pegasus_jax.models.alignment import Alignment, pool_shape
from pegasus_jax.models.audio import AudioEncoder
from pegasus_jax.models.decoder import Decoder, valid_positions
from pegasus_jax.models.layers import dtype_of
from pegasus_jax.models.text_loss import lm_loss
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
    def segment_tokens(self, batch: dict, pool: tuple[int, int, int]) -> tuple[jax.Array, jax.Array]:
        """Each segment's decoder tokens [marker, visual, audio, transcript] and whether each exists:
        (B, S, K, W_dec), (B, S, K) bool. The towers run on all B*S segments given."""
        frames = batch["frames"]
        b, s = frames.shape[:2]
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
        return x, jnp.concatenate(valid, axis=2)

    def prefix(self, batch: dict, pool: tuple[int, int, int] | None = None) -> tuple[jax.Array, jax.Array]:
        """Embeddings and validity of the per-segment tokens: (B, S*K, W_dec), (B, S*K) bool.

        `pool` overrides the (T', h', w') chosen for this batch's S; streaming inference encodes one
        segment at a time with the pooling of the whole video.
        """
        b, s = batch["frames"].shape[:2]
        x, mask = self.segment_tokens(batch, pool or pool_shape(self.config, s))
        return constrain(x.reshape(b, -1, self.decoder_width), ACT_BATCH_LENGTH_EMBED), mask.reshape(b, -1)

    def packed_sequence(self, batch: dict, pool: tuple[int, int, int]) -> jax.Array:
        """The decoder input of a packed batch (data_pipelines/contract.py PACKED_FIELDS): the towers run on
        the row's G segment slots only, and their tokens are scattered to the positions `segment_dest`
        names (slots and tokens that do not exist point past the end and are dropped) over the text."""
        tokens, _ = self.segment_tokens(batch, pool)  # which tokens exist is in segment_dest
        b, g, k, w = tokens.shape
        dest = batch["segment_dest"].reshape(b, g * k)
        text = self.decoder.embed(batch["tokens"]).astype(tokens.dtype)
        # per row (vmap: the batch is a scatter batching dimension, so the batch sharding carries through)
        scatter = jax.vmap(lambda row, at, values: row.at[at].set(values, mode="drop"))
        return constrain(scatter(text, dest, tokens.reshape(b, g * k, w)), ACT_BATCH_LENGTH_EMBED)

    @property
    def decoder_width(self) -> int:
        return self.config.decoder.width

    def sequence(self, batch: dict, pool: tuple[int, int, int] | None = None) -> tuple[jax.Array, jax.Array]:
        """The whole decoder input: prefix then text. Returns embeddings and the valid-token mask."""
        x, mask = self.prefix(batch, pool)
        text = self.decoder.embed(batch["tokens"])
        return jnp.concatenate([x, text.astype(x.dtype)], axis=1), jnp.concatenate([mask, batch["text_mask"]], axis=1)

    # -- forward and loss -----------------------------------------------------------------------
    def text_hidden(self, batch: dict, pool: tuple[int, int, int] | None = None) -> jax.Array:
        """The decoder's last hidden states (before its final norm) at the text positions: (B, L, W); for a
        packed batch (it has "example_ids") at all T positions, each example attending only to itself.
        `pool`: the pooling of one example's segments (pool_shape for data.max_segments); required when
        packed, where the slot count G says nothing about it."""
        if "example_ids" in batch:
            if pool is None:
                raise ValueError("a packed batch needs the pooling of its examples (pool_shape(model, max_segments))")
            ids = batch["example_ids"]
            hidden, _ = self.decoder.hidden_states(self.packed_sequence(batch, pool), batch["positions"], ids > 0,
                                                   segment_ids=ids)
            return hidden
        x, mask = self.sequence(batch, pool)
        hidden, _ = self.decoder.hidden_states(x, valid_positions(mask), mask)
        return hidden[:, -batch["tokens"].shape[1]:]

    def __call__(self, batch: dict, pool: tuple[int, int, int] | None = None) -> jax.Array:
        """Logits over the text positions: (B, L, vocab), float32 (a packed batch: all T positions)."""
        return self.decoder.logits(self.text_hidden(batch, pool))


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def cross_entropy_loss(logits: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    """Mean next-token cross-entropy over answer tokens (loss_mask) from full logits (scoring at
    inference, and the reference the chunked training loss is tested against); also the token count."""
    nll = token_nll(logits, batch["targets"])
    weights = batch["loss_mask"].astype(jnp.float32)
    tokens = weights.sum()
    loss = (nll * weights).sum() / jnp.maximum(tokens, 1.0)
    return loss, {"loss_tokens": tokens}


def example_losses(logits: jax.Array, batch: dict, max_examples: int) -> tuple[jax.Array, jax.Array]:
    """Per example of a packed batch: (summed nll, answer tokens), each (B, max_examples), example n of a
    row at index n - 1."""
    nll = token_nll(logits, batch["targets"])
    weights = batch["loss_mask"].astype(jnp.float32)
    onehot = batch["example_ids"][..., None] == jnp.arange(1, max_examples + 1)  # (B, T, E)
    return jnp.einsum("bt,bte->be", nll * weights, onehot), jnp.einsum("bt,bte->be", weights, onehot)


def loss_fn(model: Pegasus, batch: dict, pool: tuple[int, int, int] | None = None) -> tuple[jax.Array, dict]:
    """The training loss: cross_entropy_loss's value, with the norm and output projection on the answer
    tokens only and the cross-entropy in vocabulary chunks (models/text_loss.py). `pool`: as text_hidden."""
    return lm_loss(model.decoder, model.text_hidden(batch, pool), batch["targets"], batch["loss_mask"])
