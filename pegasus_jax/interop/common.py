"""Shared pieces of the Hugging Face weight mappings.

Each mapping (hf_vision, hf_audio, hf_llama) turns a torch state dict (name -> numpy array) into the
nested dict of our parameter tree and back. Our dense kernels are (in, out), the transpose of
`nn.Linear.weight`; a stack of layers is one array with a leading layer axis.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from flax import nnx, traverse_util

from pegasus_jax.errors import UserError

# our activation names (models/layers.py) -> transformers' ACT2FN names
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "quick_gelu": "quick_gelu", "silu": "silu"}


def to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def take(state_dict: dict[str, Any], name: str, prefixes: tuple[str, ...] = ("",)) -> np.ndarray:
    """The tensor `name` under the first matching prefix; a missing tensor is a UserError naming it."""
    for prefix in prefixes:
        if prefix + name in state_dict:
            return to_numpy(state_dict[prefix + name])
    raise UserError(f"missing tensor {prefixes[0] + name} in the Hugging Face weights")


def stack_layers(per_layer: list[dict]) -> dict:
    """[{path: array}] per layer -> {path: stacked array with a leading layer axis}."""
    flat = [traverse_util.flatten_dict(d, sep="/") for d in per_layer]
    return traverse_util.unflatten_dict({k: np.stack([f[k] for f in flat]) for k in flat[0]}, sep="/")


def layer_items(stacked: dict, depth: int, prefix: str, names: dict[tuple, str]):
    """(torch name, array) for every layer of a stack, `{prefix}{i}.{names[module path]}.weight|bias`,
    kernels transposed. Tensor-major: each stacked tensor (possibly lazy, e.g. a TensorStore) is read
    once and released before the next, so a streaming export holds one checkpoint tensor at a time."""
    for path, value in traverse_util.flatten_dict(stacked).items():
        whole = np.asarray(value)
        theirs = names[path[:-1]] + (".bias" if path[-1] == "bias" else ".weight")
        for i in range(depth):
            yield f"{prefix}{i}.{theirs}", np.ascontiguousarray(whole[i].T if path[-1] == "kernel" else whole[i])
        del whole  # now, not when the next tensor's read replaces it: two stacked tensors never coexist


def pretrained_params(module: nnx.Module) -> nnx.State:
    """The parameters a pretrained checkpoint provides: all but LoRA adapters."""
    from pegasus_jax.models.lora import LoRAParam

    return nnx.state(module, nnx.All(nnx.Param, nnx.Not(LoRAParam)))


def load_params(module: nnx.Module, nested: dict, where: str = "") -> None:
    """Write `nested` into the module's pretrained parameters in place, checking every shape."""
    state = pretrained_params(module)
    ours = traverse_util.flatten_dict(state.to_pure_dict(), sep="/")
    theirs = traverse_util.flatten_dict(nested, sep="/")
    missing = sorted(set(ours) - set(theirs))
    if missing:
        raise UserError(f"{where}no weights for parameter {missing[0]} ({len(missing)} missing)")
    for name, value in theirs.items():
        if name not in ours:
            raise UserError(f"{where}unexpected tensor {name}")
        if tuple(ours[name].shape) != tuple(value.shape):
            raise UserError(f"{where}tensor {name} has shape {tuple(value.shape)}, expected {tuple(ours[name].shape)}")
        ours[name] = np.asarray(value, dtype=ours[name].dtype)
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(ours, sep="/"))
    nnx.update(module, state)


def params_of(module: nnx.Module) -> dict:
    """Nested dict of the module's pretrained parameters as numpy arrays."""
    import jax

    return jax.tree.map(np.asarray, pretrained_params(module).to_pure_dict())
