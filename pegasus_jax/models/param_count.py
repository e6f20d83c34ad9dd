"""Analytic parameter counts per component, from the config alone.

Used by the scaling-law tools (N), the FLOP accounting and `compile`; tests check every bundled
config against the real model (the 80B one through `nnx.eval_shape`, never materialised).
"""
from __future__ import annotations

from pegasus_jax.config import head_dim, qkv_bias
from pegasus_jax.models.alignment import TIME_FEATURES


def encoder_layer(width: int, mlp: int, k_bias: bool = True) -> int:
    """Pre-norm layer: 2 LayerNorms, q/k/v/o with biases (k optionally without), fc1/fc2 with biases."""
    return 2 * 2 * width + 4 * width * width + (4 if k_bias else 3) * width + 2 * width * mlp + mlp + width


def vision(v) -> int:
    grid = (v.image_size // v.patch_size) ** 2
    patch = v.patch_size ** 2 * 3 * v.width
    layers = v.depth * encoder_layer(v.width, v.mlp_dim)
    post_norm = 2 * v.width
    if v.kind == "clip":  # class token, positions incl. class token, pre-LayerNorm, bias-free patch conv
        return patch + v.width + (grid + 1) * v.width + 2 * v.width + layers + post_norm
    return patch + v.width + grid * v.width + layers + post_norm  # siglip: patch conv bias, no class token


def temporal(v) -> int:
    if v.temporal_depth == 0:
        return 0
    return v.max_frames * v.width + v.temporal_depth * encoder_layer(v.width, v.mlp_dim)


def audio(a) -> int:
    if not a.enabled:
        return 0
    stem = 3 * a.num_mel_bins * a.width + a.width + 3 * a.width * a.width + a.width
    return (stem + a.max_source_positions * a.width + a.depth * encoder_layer(a.width, a.mlp_dim, k_bias=False)
            + 2 * a.width)


def alignment(config) -> int:
    m = config.model
    width = m.decoder.width
    hidden = m.align.projector_hidden or width
    norm = 2 if m.align.projector_norm else 0
    projector = lambda d_in: norm * d_in + d_in * hidden + hidden + hidden * width + width  # norm + MLP
    total = projector(m.vision.width) + TIME_FEATURES * width + width
    if m.audio.enabled:
        total += projector(m.audio.width)
    return total


def decoder(d) -> dict[str, int]:
    hd = head_dim(d)
    attn = d.width * d.num_heads * hd * 2 + d.width * d.num_kv_heads * hd * 2
    if qkv_bias(d):
        attn += (d.num_heads + 2 * d.num_kv_heads) * hd
    layer = 2 * d.width + attn + 3 * d.width * d.mlp_dim
    embedding = d.vocab_size * d.width
    lm_head = 0 if d.tie_embeddings else d.width * d.vocab_size
    return {"embedding": embedding, "lm_head": lm_head, "layers": d.depth * layer + d.width}


def lora(config) -> int:
    lo, d = config.model.lora, config.model.decoder
    if lo.rank == 0:
        return 0
    hd = head_dim(d)
    shapes = {"q": (d.width, d.num_heads * hd), "k": (d.width, d.num_kv_heads * hd),
              "v": (d.width, d.num_kv_heads * hd), "o": (d.num_heads * hd, d.width),
              "gate": (d.width, d.mlp_dim), "up": (d.width, d.mlp_dim), "down": (d.mlp_dim, d.width)}
    return d.depth * sum(lo.rank * (shapes[t][0] + shapes[t][1]) for t in lo.targets)


def analytic_param_counts(config) -> dict[str, int]:
    """Counts per component; "non_embedding" excludes the decoder's token embedding and lm_head."""
    m = config.model
    dec = decoder(m.decoder)
    counts = {
        "vision": vision(m.vision),
        "temporal": temporal(m.vision),
        "audio": audio(m.audio),
        "align": alignment(config),
        "decoder": dec["layers"] + dec["embedding"] + dec["lm_head"],
        "lora": lora(config),
        "embedding": dec["embedding"] + dec["lm_head"],
    }
    counts["total"] = sum(counts[k] for k in ("vision", "temporal", "audio", "align", "decoder", "lora"))
    counts["non_embedding"] = counts["total"] - counts["embedding"]
    return counts
