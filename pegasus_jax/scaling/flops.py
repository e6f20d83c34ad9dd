"""Analytic FLOPs of the model: per training example and per step at the padded maximum shape (static:
AOT compile and the scaling tools), and of the real content of a batch (what MFU and tokens/s count).

Conventions:
- 1 multiply-accumulate = 2 FLOPs; only matmuls and convolutions are counted (norms, softmax,
  pooling and elementwise work are not).
- Training = 3 x forward (the backward pass costs twice the forward). Rematerialisation is not
  counted: this is model FLOPs (MFU), not hardware FLOPs.
- Encoder attention is bidirectional: the full T x T score matrix. Decoder attention is causal and
  counted as HALF of the full T x T square (only the lower triangle is useful work), for the score
  matmul and the probability-times-value matmul alike.
- The lm_head is counted at every decoder position (the model computes logits for the whole
  sequence and keeps the text positions).

Two ways to count, sharing the per-component formulas (`forward_macs_of_work`):
- Padded (`flops_per_example`, `flops_per_step`): every example has config.data.max_segments valid
  segments with audio and full transcripts plus config.data.max_text_len text tokens, i.e. every
  position the largest static shape computes, padding included.
- Real (`train_flops_of_work`): the content the train step measured in its batch (`work_of_batch`,
  returned by the step as metrics["work"]): padding segments, missing audio, unused transcript slots
  and text padding are masked out by the model, so they are not work. The static shapes still compute
  them; that waste is what the gap between "mfu" and "mfu_padded" shows.

A "work" dict (global sums over the examples of one step, or summed over several steps):
  examples           examples with at least one real decoder position
  segments           valid segments: each is F frames through the ViT and the temporal layers, one
                     timestamp marker
  audio_segments     valid segments with audio (through the audio encoder)
  visual_tokens      pooled visual tokens of the valid segments (segments x T'h'w' of the batch's S)
  audio_tokens       audio tokens of the audio segments (audio_segments x align.audio_tokens)
  transcript_tokens  valid transcript tokens of valid segments
  text_tokens        valid text tokens
  tokens             real decoder positions: segments (markers) + visual_tokens + audio_tokens +
                     transcript_tokens + text_tokens. This is the "tokens" of tokens/s and of the
                     scaling laws' D.
  tokens_sq          sum over examples of (that example's real decoder positions)^2 (causal attention)
"""
from __future__ import annotations

import math

from pegasus_jax.config import audio_positions, head_dim
from pegasus_jax.models.alignment import TIME_FEATURES, pool_shape, tokens_per_segment
from pegasus_jax.models.param_count import analytic_param_counts

WORK_KEYS = ("examples", "segments", "audio_segments", "visual_tokens", "audio_tokens", "transcript_tokens",
             "text_tokens", "tokens", "tokens_sq")


def _encoder_layers_macs(tokens: int, width: int, mlp: int, depth: int, sequences: int) -> int:
    """`depth` pre-norm layers over `sequences` independent sequences of `tokens` tokens, bidirectional."""
    projections = 4 * tokens * width * width
    attention = 2 * tokens * tokens * width
    mlp_macs = 2 * tokens * width * mlp
    return sequences * depth * (projections + attention + mlp_macs)


def decoder_sequence_length(config) -> int:
    """Decoder positions of one example at the padded maximum shape."""
    m, d = config.model, config.data
    pool = pool_shape(config.model, d.max_segments)
    audio = m.align.audio_tokens if m.audio.enabled else 0
    return d.max_segments * tokens_per_segment(pool, audio, config.model.transcript_tokens) + d.max_text_len


def unit_forward_macs(config) -> dict[str, int]:
    """Forward multiply-accumulates per unit of work: the per-component formulas both counts share.

      image                 one frame through the patch embedding and the ViT layers
      segment_temporal      one segment through the temporal layers (every grid location over F frames)
      marker                one segment's timestamp marker (time features -> decoder width)
      audio_segment         one segment's audio through the conv stem and the audio encoder layers
      visual_token          one visual token through the vision projector (a pooled token, or with
                            align.pool_after_projector each grid token of each frame: `projected_visual_tokens`)
      audio_token           one audio token through the audio projector
      decoder_token         one decoder position through every decoder layer's projections and MLP
      lm_head_token         one decoder position through the lm_head
      decoder_attention_sq  one unit of (an example's decoder length)^2 through every layer's causal
                            attention (half of the score and value matmuls' T x T square)
    """
    m = config.model
    v, a, al, dec = m.vision, m.audio, m.align, m.decoder
    frames = al.frames_per_segment
    grid = (v.image_size // v.patch_size) ** 2
    vision_tokens = grid + (1 if v.kind == "clip" else 0)
    hidden = al.projector_hidden or dec.width
    out = {
        "image": grid * v.patch_size ** 2 * 3 * v.width
        + _encoder_layers_macs(vision_tokens, v.width, v.mlp_dim, v.depth, 1),
        "segment_temporal": _encoder_layers_macs(frames, v.width, v.mlp_dim, v.temporal_depth, grid),
        "marker": TIME_FEATURES * dec.width,
        "visual_token": v.width * hidden + hidden * dec.width,
    }
    if a.enabled:
        mel = int(round(al.segment_seconds * 100))
        positions = audio_positions(config)
        stem = mel * 3 * a.num_mel_bins * a.width + positions * 3 * a.width * a.width
        out["audio_segment"] = stem + _encoder_layers_macs(positions, a.width, a.mlp_dim, a.depth, 1)
        out["audio_token"] = a.width * hidden + hidden * dec.width
    else:
        out["audio_segment"] = out["audio_token"] = 0
    hd = head_dim(dec)
    q_dim, kv_dim = dec.num_heads * hd, dec.num_kv_heads * hd
    out["decoder_token"] = dec.depth * (dec.width * (2 * q_dim + 2 * kv_dim) + 3 * dec.width * dec.mlp_dim)
    # Causal: half of the 2 matmuls x T^2 x q_dim (scores and probabilities x values).
    out["decoder_attention_sq"] = dec.depth * q_dim
    out["lm_head_token"] = dec.width * dec.vocab_size
    return out


def forward_macs_of_work(config, work: dict) -> dict[str, int | float]:
    """Forward MACs by component ("vision", "temporal", "audio", "align", "decoder", "lm_head") of the
    content `work` describes (see the module docstring). Linear in work's values."""
    u = unit_forward_macs(config)
    frames = config.model.align.frames_per_segment
    return {
        "vision": work["segments"] * frames * u["image"],
        "temporal": work["segments"] * u["segment_temporal"],
        "audio": work["audio_segments"] * u["audio_segment"],
        "align": projected_visual_tokens(config, work) * u["visual_token"] + work["segments"] * u["marker"]
        + work["audio_tokens"] * u["audio_token"],
        "decoder": work["tokens"] * u["decoder_token"] + work["tokens_sq"] * u["decoder_attention_sq"],
        "lm_head": work["tokens"] * u["lm_head_token"],
    }


def projected_visual_tokens(config, work: dict):
    """Tokens through the vision projector: the pooled visual tokens, or with align.pool_after_projector
    (PLLaVA's order) every patch-grid token of every frame of the valid segments."""
    m = config.model
    if not m.align.pool_after_projector:
        return work["visual_tokens"]
    return work["segments"] * m.align.frames_per_segment * (m.vision.image_size // m.vision.patch_size) ** 2


def padded_work(config, examples: int = 1) -> dict[str, int]:
    """The work of `examples` examples at the padded maximum shape: all segments valid with audio and
    full transcripts, config.data.max_text_len text tokens."""
    m, d = config.model, config.data
    s = d.max_segments
    audio = m.audio.enabled
    t = decoder_sequence_length(config)
    per_example = {
        "examples": 1, "segments": s, "audio_segments": s if audio else 0,
        "visual_tokens": s * math.prod(pool_shape(config.model, s)),
        "audio_tokens": s * m.align.audio_tokens if audio else 0,
        "transcript_tokens": s * config.model.transcript_tokens, "text_tokens": d.max_text_len, "tokens": t, "tokens_sq": t * t,
    }
    return {k: examples * v for k, v in per_example.items()}


def forward_macs_per_example(config) -> dict[str, int]:
    """Forward MACs by component of one example at the padded maximum shape."""
    return forward_macs_of_work(config, padded_work(config))


def flops_per_example(config) -> dict[str, float]:
    """Forward FLOPs by component at the padded maximum shape, plus "total_forward" and "total_train"
    (= 3 x forward)."""
    flops = {k: 2.0 * v for k, v in forward_macs_per_example(config).items()}
    flops["total_forward"] = sum(flops.values())
    flops["total_train"] = 3.0 * flops["total_forward"]
    return flops


def train_flops_of_work(config, work: dict) -> float:
    """Training FLOPs (3 x forward, 2 FLOPs per MAC) of the real content `work` describes.

    Linear in work's values: the sum of `work` over several steps gives the sum of their FLOPs, so a
    caller may add the steps' work dicts up and call this once.
    """
    return 6.0 * sum(forward_macs_of_work(config, work).values())


def flops_per_step(config) -> float:
    """Training FLOPs of one optimizer step (the whole global batch) at the padded maximum shape."""
    return train_flops_of_work(config, padded_work(config, config.train.batch_size))


def real_decoder_tokens(work: dict) -> int:
    """The real decoder positions `work` counts (tokens/s, the scaling laws' D)."""
    return work["tokens"]


def work_of_batch(config, batch: dict) -> dict:
    """The work dict of one batch of the data contract (data_pipelines/contract.py), computed with jax.numpy
    (inside the jitted step: global sums over the whole batch). Counts are int32, "tokens_sq" float32.

    Mirrors how Pegasus.sequence lays an example out and what it masks: per valid segment one marker,
    T'h'w' visual tokens (pooling of the batch's S segments), align.audio_tokens audio tokens when the
    segment has audio (and audio is enabled), its valid transcript tokens (when model.transcript_tokens
    > 0); then the valid text tokens. A packed batch (contract.PACKED_FIELDS) counts the same over its
    segment slots (pooled for data.max_segments), and each of a row's examples as its own sequence.
    """
    import jax.numpy as jnp

    m, d = config.model, config.data
    i32 = jnp.int32
    seg = jnp.asarray(batch["segment_mask"]).astype(bool)  # (B, S), or (B, G) segment slots when packed
    packed = "example_ids" in batch
    segments = seg.sum(axis=1, dtype=i32)  # (B,)
    visual = segments * math.prod(pool_shape(config.model, d.max_segments if packed else seg.shape[1]))
    if m.audio.enabled:
        audio_segments = (seg & jnp.asarray(batch["audio_mask"]).astype(bool)).sum(axis=1, dtype=i32)
    else:
        audio_segments = jnp.zeros_like(segments)
    audio = audio_segments * (m.align.audio_tokens if m.audio.enabled else 0)
    if config.model.transcript_tokens > 0:
        transcript = (jnp.asarray(batch["transcript_mask"]).astype(bool) & seg[:, :, None]).sum(axis=(1, 2), dtype=i32)
    else:
        transcript = jnp.zeros_like(segments)
    text = jnp.asarray(batch["text_mask"]).astype(bool).sum(axis=1, dtype=i32)
    tokens = segments + visual + audio + transcript + text  # (B,)
    if packed:  # attention is per example: the sum of each example's length squared
        import jax

        ids = jnp.asarray(batch["example_ids"])
        b, t = ids.shape
        per_row = ids + jnp.arange(b)[:, None] * (t + 1)  # example n of row r -> r * (T + 1) + n
        length = jax.ops.segment_sum(jnp.ones(b * t, jnp.float32), per_row.reshape(-1), num_segments=b * (t + 1))
        length = length.reshape(b, t + 1)[:, 1:]  # id 0 (padding) is not an example
        examples = ids.max(axis=1).sum(dtype=i32)
    else:
        length, examples = tokens.astype(jnp.float32), (tokens > 0).sum(dtype=i32)
    return {
        "examples": examples,
        "segments": segments.sum(dtype=i32),
        "audio_segments": audio_segments.sum(dtype=i32),
        "visual_tokens": visual.sum(dtype=i32),
        "audio_tokens": audio.sum(dtype=i32),
        "transcript_tokens": transcript.sum(dtype=i32),
        "text_tokens": text.sum(dtype=i32),
        "tokens": tokens.sum(dtype=i32),
        "tokens_sq": (length * length).sum(dtype=jnp.float32),
    }


def param_counts(config) -> dict[str, int]:
    """Parameters by component (models/param_count.py). The scaling-law N is "non_embedding": every
    parameter (encoders, alignment, decoder layers) except the decoder's token embedding and lm_head,
    as in Kaplan et al. (2020); "embedding" holds those two."""
    return analytic_param_counts(config)
