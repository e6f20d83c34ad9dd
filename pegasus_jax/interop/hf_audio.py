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
from pegasus_jax.interop.common import params_of, stack_layers, take, unstack_layers

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
    params = params_of(module) if isinstance(module, nnx.Module) else module
    a = lambda x: np.ascontiguousarray(np.asarray(x))
    out = {prefix + "embed_positions.weight": a(params["embed_positions"]),
           prefix + "layer_norm.weight": a(params["layer_norm"]["scale"]),
           prefix + "layer_norm.bias": a(params["layer_norm"]["bias"])}
    for name in ("conv1", "conv2"):
        out[f"{prefix}{name}.weight"] = a(np.asarray(params[name]["kernel"]).transpose(2, 1, 0))
        out[f"{prefix}{name}.bias"] = a(params[name]["bias"])
    for i, layer in enumerate(unstack_layers(params["layers"]["layers"], acfg.depth)):
        p = f"{prefix}layers.{i}."
        for (group, ours), theirs in _LINEAR.items():
            out[p + theirs + ".weight"] = a(np.asarray(layer[group][ours]["kernel"]).T)
            if ours != "k":
                out[p + theirs + ".bias"] = a(layer[group][ours]["bias"])
        for ours, theirs in _NORMS.items():
            out[p + theirs + ".weight"] = a(layer[ours]["scale"])
            out[p + theirs + ".bias"] = a(layer[ours]["bias"])
    return out
