"""Hugging Face `CLIPVisionModel` / `SiglipVisionModel` <-> our FrameEncoder.

SigLIP's attention-pooling head (`head.*`) has no counterpart here: it is ignored on import and not
written on export (load such an export with `vision_use_head=False`).
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from pegasus_jax.interop.common import params_of, stack_layers, take, unstack_layers

PREFIXES = ("vision_model.", "", "model.vision_model.", "vision_tower.vision_model.")
_LINEAR = {("attn", "q"): "self_attn.q_proj", ("attn", "k"): "self_attn.k_proj", ("attn", "v"): "self_attn.v_proj",
           ("attn", "o"): "self_attn.out_proj", ("mlp", "fc1"): "mlp.fc1", ("mlp", "fc2"): "mlp.fc2"}
_NORMS = {"ln1": "layer_norm1", "ln2": "layer_norm2"}


def _patch_to_ours(w: np.ndarray) -> np.ndarray:
    """torch conv weight (width, 3, p, p) -> our patch kernel (p*p*3, width), features (ph, pw, c)."""
    return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])


def _patch_to_hf(k: np.ndarray, patch: int) -> np.ndarray:
    return np.ascontiguousarray(k.reshape(patch, patch, 3, -1).transpose(3, 2, 0, 1))


def vision_from_hf(state_dict: dict, vcfg) -> dict:
    get = lambda name: take(state_dict, name, PREFIXES)
    layers = []
    for i in range(vcfg.depth):
        p = f"encoder.layers.{i}."
        layer = {"attn": {}, "mlp": {}}
        for (group, ours), theirs in _LINEAR.items():
            layer[group][ours] = {"kernel": get(p + theirs + ".weight").T, "bias": get(p + theirs + ".bias")}
        for ours, theirs in _NORMS.items():
            layer[ours] = {"scale": get(p + theirs + ".weight"), "bias": get(p + theirs + ".bias")}
        layers.append(layer)
    out = {
        "patch_embed": {"kernel": _patch_to_ours(get("embeddings.patch_embedding.weight"))},
        "position_embedding": get("embeddings.position_embedding.weight"),
        "layers": {"layers": stack_layers(layers)},
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
    if isinstance(params, nnx.Module):
        params = params_of(params)
    a = lambda x: np.ascontiguousarray(np.asarray(x))
    out = {
        prefix + "embeddings.patch_embedding.weight": _patch_to_hf(np.asarray(params["patch_embed"]["kernel"]),
                                                                   vcfg.patch_size),
        prefix + "embeddings.position_embedding.weight": a(params["position_embedding"]),
        prefix + "post_layernorm.weight": a(params["post_norm"]["scale"]),
        prefix + "post_layernorm.bias": a(params["post_norm"]["bias"]),
    }
    if vcfg.kind == "clip":
        out[prefix + "embeddings.class_embedding"] = a(params["class_embedding"])
        out[prefix + "pre_layrnorm.weight"] = a(params["pre_norm"]["scale"])
        out[prefix + "pre_layrnorm.bias"] = a(params["pre_norm"]["bias"])
    else:
        out[prefix + "embeddings.patch_embedding.bias"] = a(params["patch_embed"]["bias"])
    for i, layer in enumerate(unstack_layers(params["layers"]["layers"], vcfg.depth)):
        p = f"{prefix}encoder.layers.{i}."
        for (group, ours), theirs in _LINEAR.items():
            out[p + theirs + ".weight"] = a(np.asarray(layer[group][ours]["kernel"]).T)
            out[p + theirs + ".bias"] = a(layer[group][ours]["bias"])
        for ours, theirs in _NORMS.items():
            out[p + theirs + ".weight"] = a(layer[ours]["scale"])
            out[p + theirs + ".bias"] = a(layer[ours]["bias"])
    return out
