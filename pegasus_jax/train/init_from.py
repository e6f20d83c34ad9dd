"""Initialise a run's parameters from another run's checkpoint (e.g. stage 1 -> stage 2).

Parameters are matched by their path in the model tree, whatever stage (trainable or frozen) they
were in either run. A path present in both with different shapes is an error naming the tensor;
paths only in the new model keep their fresh initialisation and are reported as new.
"""
from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util

from pegasus_jax.errors import UserError
from pegasus_jax.train import checkpoint


def _flat(tree) -> dict[tuple, object]:
    return traverse_util.flatten_dict(tree) if tree else {}


def read_state_on_host(workdir: str, step: int) -> dict:
    """A checkpoint's train state as NumPy arrays, whatever mesh it was saved from."""
    path = checkpoint.root(workdir) / "checkpoints" / str(step) / checkpoint.STATE
    reader = ocp.PyTreeCheckpointer()
    meta = reader.metadata(path)
    tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return reader.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))


def load_into(spec, state: dict, source: str) -> tuple[dict, str]:
    workdir, step = checkpoint.resolve_checkpoint(source)
    restored = read_state_on_host(workdir, step)
    source_params = {**_flat(restored.get("frozen")), **_flat(restored.get("params"))}
    loaded, new = 0, 0
    out = dict(state)
    for group in ("params", "frozen"):
        flat = _flat(state[group])
        for path, value in flat.items():
            if path not in source_params:
                new += 1
                continue
            src = np.asarray(source_params[path])
            if src.shape != value.shape:
                raise UserError(f"config.train.init_from: tensor {'/'.join(map(str, path))} has shape {src.shape} in "
                                f"{source}, expected {value.shape}")
            flat[path] = jax.device_put(src.astype(value.dtype), value.sharding)
            loaded += 1
        out[group] = traverse_util.unflatten_dict(flat)
    unused = len(source_params) - loaded
    return out, f"loaded {loaded} tensors from step {step}, {new} new, {unused} in the source unused"
