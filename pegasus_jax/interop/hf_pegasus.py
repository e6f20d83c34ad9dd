"""Our whole Pegasus model <-> the exported PyTorch `PegasusModel` (torch_pegasus/modeling_pegasus.py).

The towers keep their transformers names under a prefix (vision_tower., audio_encoder.,
language_model.) and reuse the per-part mappings; our own parts are named like torch modules:
temporal_position, temporal_layers.{i}.* (CLIP's encoder-layer layout), {vision,audio}_projector.
{norm,fc1,fc2}.* (no norm with align.projector_norm=False) and time_embed.*.
"""
from __future__ import annotations

import numpy as np

from pegasus_jax.interop.common import HF_ACTIVATIONS, take
from pegasus_jax.interop.hf_audio import audio_config_to_hf, audio_from_hf, audio_hf_items
from pegasus_jax.interop.hf_llama import llama_config_to_hf, llama_from_hf, llama_hf_items
from pegasus_jax.interop.hf_vision import (encoder_layer_items, encoder_layers_from_hf, vision_config_to_hf,
                                           vision_from_hf, vision_hf_items)
from pegasus_jax.models.alignment import PROJECTOR_NORM_EPS, TIME_FEATURES
from pegasus_jax.models.vision import PIXEL_STATS

VISION, AUDIO, LLM = "vision_tower.", "audio_encoder.", "language_model."
_PROJECTOR = {"norm": ("scale", "bias"), "fc1": ("kernel", "bias"), "fc2": ("kernel", "bias")}


def _projector_parts(m) -> dict:
    return _PROJECTOR if m.align.projector_norm else {k: v for k, v in _PROJECTOR.items() if k != "norm"}


def _module_items(params: dict, name: str, parts: tuple[str, str]):
    """A Dense ({kernel, bias}) or LayerNorm ({scale, bias}) as torch's weight and bias."""
    weight = np.asarray(params[parts[0]])
    yield name + ".weight", np.ascontiguousarray(weight.T if parts[0] == "kernel" else weight)
    yield name + ".bias", np.ascontiguousarray(np.asarray(params["bias"]))


def _module_from(get, name: str, parts: tuple[str, str]) -> dict:
    weight = get(name + ".weight")
    return {parts[0]: weight.T if parts[0] == "kernel" else weight, "bias": get(name + ".bias")}


def full_hf_items(params: dict, config):
    """(name, array) pairs of the exported PegasusModel, one at a time (leaves may be lazy)."""
    m = config.model
    video = params["video_encoder"]
    yield from vision_hf_items(video["frames"], m.vision, VISION)
    if m.vision.temporal_depth:
        yield "temporal_position", np.ascontiguousarray(np.asarray(video["temporal_position"]))
        yield from encoder_layer_items(video["temporal"], m.vision.temporal_depth, "temporal_layers.")
    projectors = ("vision_projector", "audio_projector") if m.audio.enabled else ("vision_projector",)
    for projector in projectors:
        for part, names in _projector_parts(m).items():
            yield from _module_items(params["alignment"][projector][part], f"{projector}.{part}", names)
    yield from _module_items(params["alignment"]["time_embed"], "time_embed", ("kernel", "bias"))
    if m.audio.enabled:
        yield from audio_hf_items(params["audio_encoder"], m.audio, AUDIO)
    yield from llama_hf_items(params["decoder"], m.decoder, LLM)


def _under(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def full_from_hf(state_dict: dict, config) -> dict:
    """An exported PegasusModel's state dict -> the nested parameter dict of our Pegasus."""
    m = config.model
    get = lambda name: take(state_dict, name)
    video = {"frames": vision_from_hf(_under(state_dict, VISION), m.vision)}
    if m.vision.temporal_depth:
        video["temporal_position"] = get("temporal_position")
        video["temporal"] = encoder_layers_from_hf(get, m.vision.temporal_depth, "temporal_layers.")
    projectors = ("vision_projector", "audio_projector") if m.audio.enabled else ("vision_projector",)
    alignment = {p: {part: _module_from(get, f"{p}.{part}", names) for part, names in _projector_parts(m).items()}
                 for p in projectors}
    alignment["time_embed"] = _module_from(get, "time_embed", ("kernel", "bias"))
    out = {"video_encoder": video, "alignment": alignment,
           "decoder": llama_from_hf(_under(state_dict, LLM), m.decoder)}
    if m.audio.enabled:
        out["audio_encoder"] = audio_from_hf(_under(state_dict, AUDIO), m.audio)
    return out


def full_config_to_hf(config, bos_id: int, eos_id: int) -> dict:
    """config.json of the exported whole model (PegasusConfig fields plus the custom-code pointers)."""
    m = config.model
    mean, std = PIXEL_STATS[m.vision.kind]
    return {
        "model_type": "pegasus_jax", "architectures": ["PegasusModel"],
        "auto_map": {"AutoConfig": "configuration_pegasus.PegasusConfig", "AutoModel": "modeling_pegasus.PegasusModel"},
        "vision": vision_config_to_hf(m.vision), "audio": audio_config_to_hf(m.audio) if m.audio.enabled else None,
        "llm": llama_config_to_hf(m.decoder, bos_id, eos_id),
        "temporal_depth": m.vision.temporal_depth, "max_frames": m.vision.max_frames,
        "image_mean": list(mean), "image_std": list(std),
        "pool": [m.align.pool_t, m.align.pool_h, m.align.pool_w], "audio_tokens": m.align.audio_tokens,
        "projector_hidden": m.align.projector_hidden, "visual_token_budget": m.align.visual_token_budget,
        "transcript_tokens": config.model.transcript_tokens, "time_features": TIME_FEATURES,
        "projector_norm_eps": PROJECTOR_NORM_EPS, "projector_norm": m.align.projector_norm,
        "projector_act": HF_ACTIVATIONS[m.align.projector_act], "whisper_window": m.audio.whisper_window,
        "pool_after_projector": m.align.pool_after_projector,
    }
