"""A whole Hugging Face `LlavaNextVideoForConditionalGeneration` (the layout PLLaVA checkpoints follow)
-> our vision tower, vision projector and decoder, in one import.

What maps exactly: the CLIP tower up to `vision_feature_layer` (the layers after it never reach the
LLM, so the tower is imported that deep), the class token dropped ("default" select strategy), the
2-D average pooling (`spatial_pool_stride`) as our adaptive pooling of the patch grid to
grid / stride, and the projector linear_1, act, linear_2 as ours without its input LayerNorm
(`align.projector_norm=False`, `align.projector_act`). LLaVA-NeXT-Video pools no time: set
`align.pool_t` to `align.frames_per_segment` for its token layout. The temporal layers, the audio
path and the segment markers are ours alone and start as the config initialises them.
Refused with one line: other towers (SigLIP's hidden states skip its post-LayerNorm, which ours
applies), several feature layers, max/conv pooling, a bias-free projector, a grid the stride does
not divide.
"""
from __future__ import annotations

from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import HF_ACTIVATIONS, take
from pegasus_jax.interop.hf_llama import llama_config_from_hf, llama_from_hf
from pegasus_jax.interop.hf_vision import vision_config_from_hf, vision_from_hf

FLAG = "--vlm"
# transformers' in-memory names -> the saved (and hub) names, which this mapping reads
_SAVED_NAMES = {"model.language_model.": "language_model.model.", "lm_head.": "language_model.lm_head.",
                "model.vision_tower.": "vision_tower.", "model.multi_modal_projector.": "multi_modal_projector."}
_OUR_ACTIVATIONS = {theirs: ours for ours, theirs in HF_ACTIVATIONS.items()} | {"gelu_new": "gelu_tanh"}


def saved_names(state_dict: dict) -> dict:
    out = {}
    for name, value in state_dict.items():
        for theirs, saved in _SAVED_NAMES.items():
            if name.startswith(theirs):
                name = saved + name[len(theirs):]
                break
        out[name] = value
    return out


def _feature_depth(hf: dict, depth: int) -> int:
    """Layers of the tower whose output LLaVA takes: hidden_states[layer] is the output after `layer` layers."""
    layer = hf.get("vision_feature_layer", -2)
    if not isinstance(layer, int):
        raise UserError(f"{FLAG}: vision_feature_layer {layer!r} (several layers) is not supported (one layer only)")
    used = layer if layer >= 0 else depth + 1 + layer
    if not 1 <= used <= depth:
        raise UserError(f"{FLAG}: vision_feature_layer {layer} is outside the tower's {depth} layers")
    return used


def llava_config_from_hf(hf: dict) -> dict[str, dict]:
    """LLaVA-NeXT-Video config.json -> overrides of config.model's vision, align and decoder sections."""
    if hf.get("model_type") != "llava_next_video":
        raise UserError(f"{FLAG}: config.json describes {hf.get('model_type') or hf.get('architectures')}, "
                        "not a LlavaNextVideoForConditionalGeneration")
    vision_hf = hf.get("vision_config") or {}
    vision = vision_config_from_hf(vision_hf, FLAG)
    if vision["kind"] != "clip":
        raise UserError(f"{FLAG}: a {vision['kind']} vision tower is not supported (CLIP only: LLaVA takes "
                        "SigLIP's hidden states without the post-LayerNorm ours applies)")
    if hf.get("vision_feature_select_strategy", "default") != "default":
        raise UserError(f"{FLAG}: vision_feature_select_strategy {hf['vision_feature_select_strategy']!r} is not "
                        "supported ('default': the class token dropped)")
    if hf.get("spatial_pool_mode", "average") != "average":
        raise UserError(f"{FLAG}: spatial_pool_mode {hf['spatial_pool_mode']!r} is not supported ('average' only)")
    if not hf.get("multimodal_projector_bias", True):
        raise UserError(f"{FLAG}: a projector without biases is not supported")
    act = hf.get("projector_hidden_act", "gelu")
    if act not in _OUR_ACTIVATIONS:
        raise UserError(f"{FLAG}: projector_hidden_act {act!r} is not supported ({', '.join(_OUR_ACTIVATIONS)})")
    grid = vision["image_size"] // vision["patch_size"]
    stride = hf.get("spatial_pool_stride", 2)
    if grid % stride:
        raise UserError(f"{FLAG}: spatial_pool_stride {stride} does not divide the {grid}x{grid} patch grid")
    vision["depth"] = _feature_depth(hf, vision["depth"])
    decoder = llama_config_from_hf(hf.get("text_config") or {})
    return {"vision": vision, "decoder": decoder,
            "align": {"projector_norm": False, "projector_act": _OUR_ACTIVATIONS[act], "projector_hidden": 0,
                      "pool_h": grid // stride, "pool_w": grid // stride}}


def llava_from_hf(state_dict: dict, m) -> dict:
    """The VLM's state dict -> {"frames", "vision_projector", "decoder"}: nested parameters of those parts."""
    state_dict = saved_names(state_dict)
    tower = {k[len("vision_tower."):]: v for k, v in state_dict.items() if k.startswith("vision_tower.")}
    get = lambda name: take(state_dict, "multi_modal_projector." + name)
    projector = {fc: {"kernel": get(f"{linear}.weight").T, "bias": get(f"{linear}.bias")}
                 for fc, linear in (("fc1", "linear_1"), ("fc2", "linear_2"))}
    return {"frames": vision_from_hf(tower, m.vision), "vision_projector": projector,
            "decoder": llama_from_hf(state_dict, m.decoder)}
