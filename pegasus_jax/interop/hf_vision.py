"""Hugging Face `CLIPVisionModel` / `SiglipVisionModel` <-> our FrameEncoder.

SigLIP's attention-pooling head (`head.*`) has no counterpart here: it is ignored on import and not
written on export (load such an export with `vision_use_head=False`).
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import layer_items, params_of, stack_layers, take

PREFIXES = ("vision_model.", "", "model.vision_model.", "vision_tower.vision_model.")
_LINEAR = {("attn", "q"): "self_attn.q_proj", ("attn", "k"): "self_attn.k_proj", ("attn", "v"): "self_attn.v_proj",
           ("attn", "o"): "self_attn.out_proj", ("mlp", "fc1"): "mlp.fc1", ("mlp", "fc2"): "mlp.fc2"}
_NORMS = {"ln1": "layer_norm1", "ln2": "layer_norm2"}


def _patch_to_ours(w: np.ndarray) -> np.ndarray:
    """torch conv weight (width, 3, p, p) -> our patch kernel (p*p*3, width), features (ph, pw, c)."""
    return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])


def _patch_to_hf(k: np.ndarray, patch: int) -> np.ndarray:
    return np.ascontiguousarray(k.reshape(patch, patch, 3, -1).transpose(3, 2, 0, 1))


def encoder_layers_from_hf(get, depth: int, prefix: str) -> dict:
    """Stacked parameters of `depth` CLIP-layout encoder layers named `{prefix}{i}.self_attn.q_proj...`
    (also the layout of the exported temporal layers)."""
    layers = []
    for i in range(depth):
        p = f"{prefix}{i}."
        layer = {"attn": {}, "mlp": {}}
        for (group, ours), theirs in _LINEAR.items():
            layer[group][ours] = {"kernel": get(p + theirs + ".weight").T, "bias": get(p + theirs + ".bias")}
        for ours, theirs in _NORMS.items():
            layer[ours] = {"scale": get(p + theirs + ".weight"), "bias": get(p + theirs + ".bias")}
        layers.append(layer)
    return {"layers": stack_layers(layers)}


def encoder_layer_items(stacked: dict, depth: int, prefix: str):
    """The inverse of `encoder_layers_from_hf`, one (name, array) at a time."""
    names = _LINEAR | {(ours,): theirs for ours, theirs in _NORMS.items()}
    yield from layer_items(stacked["layers"], depth, prefix, names)


def vision_from_hf(state_dict: dict, vcfg) -> dict:
    get = lambda name: take(state_dict, name, PREFIXES)
    out = {
        "patch_embed": {"kernel": _patch_to_ours(get("embeddings.patch_embedding.weight"))},
        "position_embedding": get("embeddings.position_embedding.weight"),
        "layers": encoder_layers_from_hf(get, vcfg.depth, "encoder.layers."),
        "post_norm": {"scale": get("post_layernorm.weight"), "bias": get("post_layernorm.bias")},
    }
    if vcfg.kind == "clip":
        out["class_embedding"] = get("embeddings.class_embedding")
        out["pre_norm"] = {"scale": get("pre_layrnorm.weight"), "bias": get("pre_layrnorm.bias")}
    else:
        out["patch_embed"]["bias"] = get("embeddings.patch_embedding.bias")
    return out


def vision_to_hf(params: dict | nnx.Module, vcfg, prefix: str = "") -> dict[str, np.ndarray]:
    """A FrameEncoder (or its nested parameter dict) -> the state dict of `CLIPVisionModel` /
    `SiglipVisionModel` (transformers 5 names them without the `vision_model.` prefix; pass `prefix`
    for a composite model)."""
    return dict(vision_hf_items(params_of(params) if isinstance(params, nnx.Module) else params, vcfg, prefix))


def vision_hf_items(params: dict, vcfg, prefix: str = ""):
    """(HF name, array) pairs of `vision_to_hf`, one at a time (leaves may be lazy)."""
    a = lambda x: np.ascontiguousarray(np.asarray(x))
    yield prefix + "embeddings.patch_embedding.weight", _patch_to_hf(np.asarray(params["patch_embed"]["kernel"]),
                                                                     vcfg.patch_size)
    yield prefix + "embeddings.position_embedding.weight", a(params["position_embedding"])
    yield prefix + "post_layernorm.weight", a(params["post_norm"]["scale"])
    yield prefix + "post_layernorm.bias", a(params["post_norm"]["bias"])
    if vcfg.kind == "clip":
        yield prefix + "embeddings.class_embedding", a(params["class_embedding"])
        yield prefix + "pre_layrnorm.weight", a(params["pre_norm"]["scale"])
        yield prefix + "pre_layrnorm.bias", a(params["pre_norm"]["bias"])
    else:
        yield prefix + "embeddings.patch_embedding.bias", a(params["patch_embed"]["bias"])
    yield from encoder_layer_items(params["layers"], vcfg.depth, prefix + "encoder.layers.")


_TOWERS = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}


def vision_config_to_hf(vcfg) -> dict:
    """CLIPVisionConfig / SiglipVisionConfig fields of our frame encoder (SigLIP without its head)."""
    hf = {"model_type": _TOWERS[vcfg.kind], "hidden_size": vcfg.width, "intermediate_size": vcfg.mlp_dim,
          "num_hidden_layers": vcfg.depth, "num_attention_heads": vcfg.num_heads, "num_channels": 3,
          "image_size": vcfg.image_size, "patch_size": vcfg.patch_size, "layer_norm_eps": vcfg.layer_norm_eps,
          "hidden_act": "quick_gelu" if vcfg.kind == "clip" else "gelu_pytorch_tanh"}
    if vcfg.kind == "siglip":
        hf["vision_use_head"] = False
    return hf


def vision_config_from_hf(hf: dict, folder: str = "--vision") -> dict[str, object]:
    """A CLIP / SigLIP (vision) config.json -> overrides of config.model.vision."""
    kind = {"clip_vision_model": "clip", "clip": "clip", "siglip_vision_model": "siglip", "siglip": "siglip"}.get(
        hf.get("model_type"))
    if kind is None:
        raise UserError(f"{folder}: config.json describes {hf.get('model_type') or hf.get('architectures')}, "
                        "not a CLIP or SigLIP vision tower")
    v = hf.get("vision_config", hf) if hf.get("model_type") in ("clip", "siglip") else hf
    return {"kind": kind, "width": v["hidden_size"], "mlp_dim": v["intermediate_size"],
            "depth": v["num_hidden_layers"], "num_heads": v["num_attention_heads"], "image_size": v["image_size"],
            "patch_size": v["patch_size"], "layer_norm_eps": float(v.get("layer_norm_eps", 1e-5))}
