"""Hugging Face Whisper encoder <-> our AudioEncoder (the decoder half of Whisper is not used).

Accepts the state dict of a `WhisperEncoder` (no prefix), a `WhisperModel` ("encoder.") or a
`WhisperForConditionalGeneration` ("model.encoder."); only the encoder's tensors are read, and every
one of them must map onto our tree, so a checkpoint deeper than `acfg.depth` is an error rather than
silently truncated.
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import layer_items, params_of, stack_layers, take

PREFIXES = ("", "encoder.", "model.encoder.")
_LINEAR = {("attn", "q"): "self_attn.q_proj", ("attn", "k"): "self_attn.k_proj", ("attn", "v"): "self_attn.v_proj",
           ("attn", "o"): "self_attn.out_proj", ("mlp", "fc1"): "fc1", ("mlp", "fc2"): "fc2"}
_NORMS = {"ln1": "self_attn_layer_norm", "ln2": "final_layer_norm"}


def encoder_prefix(state_dict: dict) -> str:
    """The prefix under which the Whisper encoder's tensors sit in `state_dict`."""
    for prefix in PREFIXES:
        if prefix + "conv1.weight" in state_dict:
            return prefix
    raise UserError("no Whisper encoder in the Hugging Face weights: none of "
                    + ", ".join(p + "conv1.weight" for p in PREFIXES) + " is present")


def audio_from_hf(state_dict: dict, acfg) -> dict:
    """A Whisper state dict (name -> array) -> the nested parameter dict of our AudioEncoder."""
    prefix = encoder_prefix(state_dict)
    used = set()

    def get(name):
        used.add(prefix + name)
        return take(state_dict, name, (prefix,))

    layers = []
    for i in range(acfg.depth):
        p = f"layers.{i}."
        layer = {"attn": {}, "mlp": {}}
        for (group, ours), theirs in _LINEAR.items():
            layer[group][ours] = {"kernel": get(p + theirs + ".weight").T}
            if ours != "k":  # Whisper's key projection has no bias
                layer[group][ours]["bias"] = get(p + theirs + ".bias")
        for ours, theirs in _NORMS.items():
            layer[ours] = {"scale": get(p + theirs + ".weight"), "bias": get(p + theirs + ".bias")}
        layers.append(layer)
    # torch Conv1d weight (out, in, k) -> ours (k, in, out)
    conv = lambda name: {"kernel": get(name + ".weight").transpose(2, 1, 0), "bias": get(name + ".bias")}
    params = {"conv1": conv("conv1"), "conv2": conv("conv2"), "embed_positions": get("embed_positions.weight"),
              "layers": {"layers": stack_layers(layers)},
              "layer_norm": {"scale": get("layer_norm.weight"), "bias": get("layer_norm.bias")}}
    unused = sorted(k for k in state_dict if k.startswith(prefix) and k not in used)
    if unused:
        raise UserError(f"unexpected tensor {unused[0]} in the Hugging Face Whisper weights ({len(unused)} unused; "
                        f"config.model.audio.depth is {acfg.depth})")
    return params


def audio_to_hf(module: nnx.Module | dict, acfg, prefix: str = "") -> dict[str, np.ndarray]:
    """Our AudioEncoder (or its nested parameter dict) -> a `WhisperEncoder` state dict.

    `prefix` "encoder." gives a WhisperModel's names, "model.encoder." a WhisperForConditionalGeneration's.
    """
    return dict(audio_hf_items(params_of(module) if isinstance(module, nnx.Module) else module, acfg, prefix))


def audio_hf_items(params: dict, acfg, prefix: str = ""):
    """(HF name, array) pairs of `audio_to_hf`, one at a time (leaves may be lazy, as llama_hf_items)."""
    a = lambda x: np.ascontiguousarray(np.asarray(x))
    yield prefix + "embed_positions.weight", a(params["embed_positions"])
    yield prefix + "layer_norm.weight", a(params["layer_norm"]["scale"])
    yield prefix + "layer_norm.bias", a(params["layer_norm"]["bias"])
    for name in ("conv1", "conv2"):
        yield f"{prefix}{name}.weight", a(np.asarray(params[name]["kernel"]).transpose(2, 1, 0))
        yield f"{prefix}{name}.bias", a(params[name]["bias"])
    names = _LINEAR | {(ours,): theirs for ours, theirs in _NORMS.items()}
    yield from layer_items(params["layers"]["layers"], acfg.depth, prefix + "layers.", names)


def audio_config_to_hf(acfg) -> dict:
    """WhisperConfig fields of our audio encoder (a one-layer decoder: only the encoder is used)."""
    return {"model_type": "whisper", "num_mel_bins": acfg.num_mel_bins, "d_model": acfg.width,
            "encoder_layers": acfg.depth, "encoder_attention_heads": acfg.num_heads, "encoder_ffn_dim": acfg.mlp_dim,
            "max_source_positions": acfg.max_source_positions, "activation_function": "gelu",
            "decoder_layers": 1, "decoder_attention_heads": acfg.num_heads, "decoder_ffn_dim": acfg.mlp_dim}


def audio_config_from_hf(hf: dict) -> dict[str, object]:
    """A Whisper config.json -> overrides of config.model.audio."""
    if hf.get("model_type") != "whisper":
        raise UserError(f"--audio: config.json describes {hf.get('model_type') or hf.get('architectures')}, "
                        "not a Whisper model")
    return {"enabled": True, "num_mel_bins": hf["num_mel_bins"], "width": hf["d_model"],
            "depth": hf["encoder_layers"], "num_heads": hf["encoder_attention_heads"],
            "mlp_dim": hf["encoder_ffn_dim"], "max_source_positions": hf["max_source_positions"]}
