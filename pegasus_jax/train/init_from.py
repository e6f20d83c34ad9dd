"""Initialise a run's parameters from another run's checkpoint (e.g. stage 1 -> stage 2).

Parameters are matched by their path in the model tree, whatever stage (trainable or frozen) they
were in either run. A path present in both with different shapes is an error naming the tensor;
paths only in the new model keep their fresh initialisation and are reported as new; paths only in
the source are reported as unused and never read.

Only the matched parameters are read, through an Orbax partial restore, each straight into the new
run's sharding and dtype (every host reads only its shards): the source's optimizer moments (twice
the parameters' bytes) and its non-parameter variables ("rest") stay on disk. "rest" is not a
parameter: it belongs to the new run's configuration, not to what it learns from the old one.
"""
from __future__ import annotations

import jax
import orbax.checkpoint as ocp
from flax import traverse_util

from pegasus_jax.errors import UserError
from pegasus_jax.train import checkpoint

GROUPS = ("params", "frozen")


def _flat(tree) -> dict[tuple, object]:
    return traverse_util.flatten_dict(tree) if tree else {}


def _key(path: tuple) -> tuple[str, ...]:
    """Orbax stores dict keys as strings: compare paths by their names."""
    return tuple(map(str, path))


def state_path(workdir: str, step: int):
    return checkpoint.root(workdir) / "checkpoints" / str(step) / checkpoint.STATE


def _tree_metadata(reader: ocp.PyTreeCheckpointer, path) -> dict:
    meta = reader.metadata(path)
    return meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta.tree


def load_into(state: dict, source: str) -> tuple[dict, str]:
    """`state` with every parameter also in `source` (a workdir or a step folder) replaced by the
    source's value, in the sharding and dtype of the `state` leaf it replaces; and a one-line report.

    The replaced leaves of `state` are consumed (deleted once the shapes are checked, so the device
    never holds a fresh and a loaded copy of a tensor at once): use the returned state.
    """
    workdir, step = checkpoint.resolve_checkpoint(source)
    path = state_path(workdir, step)
    reader = ocp.PyTreeCheckpointer()  # a fresh reader: a CheckpointManager binds one handler per item
    saved = _tree_metadata(reader, path)
    source_params = {}  # name path -> (group, path as saved, array metadata)
    for group in GROUPS:
        for p, meta in _flat(saved.get(group)).items():
            source_params[_key(p)] = (group, p, meta)

    wanted: dict[str, dict] = {}  # the restore item, laid out as in the source checkpoint
    targets = []  # (target group, target path, source group, source path)
    new = 0
    for group in GROUPS:
        for p, value in _flat(state[group]).items():
            found = source_params.get(_key(p))
            if found is None:
                new += 1
                continue
            src_group, src_path, meta = found
            if tuple(meta.shape) != tuple(value.shape):
                raise UserError(f"config.train.init_from: tensor {'/'.join(_key(p))} has shape {tuple(meta.shape)} "
                                f"in {source}, expected {tuple(value.shape)}")
            wanted.setdefault(src_group, {})[src_path] = jax.ShapeDtypeStruct(value.shape, value.dtype,
                                                                                sharding=value.sharding)
            targets.append((group, p, src_group, src_path))
    unused = len(source_params) - len(targets)
    report = f"loaded {len(targets)} tensors from step {step}, {new} new, {unused} in the source unused"
    if not targets:
        return dict(state), report

    out = dict(state)
    flats = {group: _flat(state[group]) for group in GROUPS}
    for group, p, _, _ in targets:
        flats[group][p].delete()  # the fresh copy; its replacement arrives below
    item = {g: traverse_util.unflatten_dict(leaves) for g, leaves in wanted.items()}
    args = ocp.args.PyTreeRestore(item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                                  partial_restore=True)
    restored = {g: _flat(t) for g, t in reader.restore(path, args=args).items()}
    for group, p, src_group, src_path in targets:
        flats[group][p] = restored[src_group][src_path]
    for group in GROUPS:
        out[group] = traverse_util.unflatten_dict(flats[group]) if flats[group] else state[group]
    return out, report
