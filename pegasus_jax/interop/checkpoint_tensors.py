"""A checkpoint's parameters as lazy arrays: nothing is read until a tensor (or one layer of a
stacked tensor) is converted with `np.asarray`.

The train state is an Orbax OCDBT store of zarr arrays named by their joined tree path
("frozen.decoder.embed_tokens"); each is opened with TensorStore without a cache, so an export
reads one tensor at a time and never the optimizer state. Trainable ("params") and frozen
parameters are merged into one tree, as the model sees them.
"""
from __future__ import annotations

import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from flax import traverse_util

from pegasus_jax.train import checkpoint

PARAM_GROUPS = ("params", "frozen")


def lazy_params(workdir: str, step: int) -> dict:
    """Nested dict of the model's parameters, each leaf an unread TensorStore array."""
    path = checkpoint.root(workdir) / "checkpoints" / str(step) / checkpoint.STATE
    meta = ocp.PyTreeCheckpointer().metadata(path)
    tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta.tree
    base = str(path) if "://" in str(path) else "file://" + str(path)
    context = ts.Context({"cache_pool": {"total_bytes_limit": 0}, "data_copy_concurrency": {"limit": 1}})
    flat = {}
    for group in PARAM_GROUPS:
        for keys in traverse_util.flatten_dict(tree.get(group) or {}):
            spec = {"driver": "zarr", "kvstore": {"driver": "ocdbt", "base": base, "path": ".".join((group,) + keys)}}
            flat[keys] = ts.open(spec, open=True, read=True, context=context).result()
    return traverse_util.unflatten_dict(flat)


class MergedLoRA:
    """kernel + A @ B * scale, computed when read; indexing selects layers of all three lazily."""

    def __init__(self, kernel, a, b, scale: float):
        self.kernel, self.a, self.b, self.scale = kernel, a, b, scale

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.kernel.shape)

    def __getitem__(self, index) -> "MergedLoRA":
        return MergedLoRA(self.kernel[index], self.a[index], self.b[index], self.scale)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        kernel = np.asarray(self.kernel)
        a, b = np.asarray(self.a, np.float32), np.asarray(self.b, np.float32)
        merged = (kernel.astype(np.float32) + np.matmul(a, b) * self.scale).astype(kernel.dtype)
        return merged if dtype is None else merged.astype(dtype)


def merge_lora_lazily(tree: dict, alpha: float) -> dict:
    """Replace every LoRA-adapted kernel by its lazy merge (scale alpha / rank, as models/lora.py) and
    drop the adapters."""
    flat = traverse_util.flatten_dict(tree)
    for keys in [k for k in flat if k[-1] == "lora_a"]:
        owner = keys[:-1]
        a, b = flat.pop(keys), flat.pop(owner + ("lora_b",))
        flat[owner + ("kernel",)] = MergedLoRA(flat[owner + ("kernel",)], a, b, alpha / a.shape[-1])
    return traverse_util.unflatten_dict(flat)


def num_elements(tree: dict) -> int:
    """Elements of every (lazy) tensor in the tree, from shapes alone: nothing is read."""
    return sum(int(np.prod(leaf.shape)) for leaf in traverse_util.flatten_dict(tree).values())


def has_lora(tree: dict) -> bool:
    return any(k[-1] == "lora_a" for k in traverse_util.flatten_dict(tree))
