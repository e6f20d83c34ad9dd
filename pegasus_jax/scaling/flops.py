"""Analytic FLOPs of the model, per training example and per step: the one count MFU and the
scaling-law tools share.

Conventions:
- 1 multiply-accumulate = 2 FLOPs; only matmuls and convolutions are counted (norms, softmax,
  pooling and elementwise work are not).
- Training = 3 x forward (the backward pass costs twice the forward). Rematerialisation is not
  counted: this is model FLOPs (MFU), not hardware FLOPs.
- Encoder attention is bidirectional: the full T x T score matrix. Decoder attention is causal and
  counted as HALF of the full T x T square (only the lower triangle is useful work), for the score
  matmul and the probability-times-value matmul alike.
- Every decoder position is counted, padding included: the static shapes compute them.
"""
from __future__ import annotations

import math

from pegasus_jax.config import audio_positions, head_dim
from pegasus_jax.models.alignment import TIME_FEATURES, pool_shape, tokens_per_segment
from pegasus_jax.models.param_count import analytic_param_counts


def _encoder_layers_macs(tokens: int, width: int, mlp: int, depth: int, sequences: int) -> int:
    """`depth` pre-norm layers over `sequences` independent sequences of `tokens` tokens, bidirectional."""
    projections = 4 * tokens * width * width
    attention = 2 * tokens * tokens * width
    mlp_macs = 2 * tokens * width * mlp
    return sequences * depth * (projections + attention + mlp_macs)


def decoder_sequence_length(config) -> int:
    m, d = config.model, config.data
    pool = pool_shape(config, d.max_segments)
    audio = m.align.audio_tokens if m.audio.enabled else 0
    return d.max_segments * tokens_per_segment(pool, audio, d.transcript_tokens) + d.max_text_len


def forward_macs_per_example(config) -> dict[str, int]:
    m, d = config.model, config.data
    v, a, al, dec = m.vision, m.audio, m.align, m.decoder
    segments, frames = d.max_segments, al.frames_per_segment
    grid = (v.image_size // v.patch_size) ** 2
    images = segments * frames
    vision_tokens = grid + (1 if v.kind == "clip" else 0)
    out = {
        "vision": images * grid * v.patch_size ** 2 * 3 * v.width
        + _encoder_layers_macs(vision_tokens, v.width, v.mlp_dim, v.depth, images),
        "temporal": _encoder_layers_macs(frames, v.width, v.mlp_dim, v.temporal_depth, segments * grid),
    }
    if a.enabled:
        mel = int(round(al.segment_seconds * 100))
        positions = audio_positions(config)
        stem = mel * 3 * a.num_mel_bins * a.width + positions * 3 * a.width * a.width
        out["audio"] = segments * stem + _encoder_layers_macs(positions, a.width, a.mlp_dim, a.depth, segments)
    else:
        out["audio"] = 0
    hidden = al.projector_hidden or dec.width
    pooled = math.prod(pool_shape(config, segments))
    align = segments * pooled * (v.width * hidden + hidden * dec.width) + segments * TIME_FEATURES * dec.width
    if a.enabled:
        align += segments * al.audio_tokens * (a.width * hidden + hidden * dec.width)
    out["align"] = align
    t = decoder_sequence_length(config)
    hd = head_dim(dec)
    q_dim, kv_dim = dec.num_heads * hd, dec.num_kv_heads * hd
    per_layer = t * dec.width * (2 * q_dim + 2 * kv_dim) + 3 * t * dec.width * dec.mlp_dim
    causal_attention = 2 * t * t * q_dim // 2
    out["decoder"] = dec.depth * (per_layer + causal_attention)
    out["lm_head"] = t * dec.width * dec.vocab_size
    return out


def flops_per_example(config) -> dict[str, float]:
    """Forward FLOPs by component, plus "total_forward" and "total_train" (= 3 x forward)."""
    flops = {k: 2.0 * v for k, v in forward_macs_per_example(config).items()}
    flops["total_forward"] = sum(flops.values())
    flops["total_train"] = 3.0 * flops["total_forward"]
    return flops


def flops_per_step(config) -> float:
    """Training FLOPs of one optimizer step (the whole global batch)."""
    return config.train.batch_size * flops_per_example(config)["total_train"]


def param_counts(config) -> dict[str, int]:
    """Parameters by component (models/param_count.py). The scaling-law N is "non_embedding": every
    parameter (encoders, alignment, decoder layers) except the decoder's token embedding and lm_head,
    as in Kaplan et al. (2020); "embedding" holds those two."""
    return analytic_param_counts(config)
