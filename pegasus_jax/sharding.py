"""Sharding: where every array lives, on the (data, fsdp, context, tensor) mesh by its logical axis names.

Logical axis names are the constants below, in one scheme: activation axes start with `act_`,
parameter axes have no prefix. Parameters carry logical names in their `out_sharding` metadata (e.g.
(EMBED, MLP)); activations are constrained with `constrain(x, ACT_BATCH_LENGTH_EMBED)`. The config's
`mesh.axis_rules` maps each logical name to mesh axes (DEFAULT_AXIS_RULES). The same code runs on
one CPU device, 8 simulated devices, several processes and a pod: only the mesh changes.

Context parallelism (`mesh.context`): the decoder's sequence axis (act_length) is split over the
`context` axis, so one example's tokens live on several chips. Attention gathers the whole keys and
values (act_kv_length, replicated) and each chip attends with its own block of queries: the
all-gather form of MaxText's two strategies, chosen over ring attention because with grouped-query
attention K and V are a small fraction of the activations (8 of 32 heads in pegasus_7b, 8 of 64 in
pegasus_80b), because every attention backend (XLA, blockwise, splash, cuDNN) then runs unchanged on a
query block against whole keys with the same position-based causal mask, and because the backward
pass is GSPMD's (a reduce-scatter of dK, dV) rather than a hand-written ring of permutes with its own
online-softmax bookkeeping. The encoders see independent segments, not one long sequence, so there
the context axis splits segments (act_encoder_batch) instead of tokens.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from typing import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pegasus_jax.errors import ConfigError

# Order = nesting on the physical torus (create_device_mesh): tensor innermost (its collectives run in
# every matmul), context next (an all-gather of K/V per layer), then fsdp and data.
MESH_AXES = ("data", "fsdp", "context", "tensor")

# Activation axes.
ACT_BATCH = "act_batch"
ACT_LENGTH = "act_length"
ACT_KV_LENGTH = "act_kv_length"  # keys/values as attention reads them: whole, gathered over `context`
ACT_ENCODER_BATCH = "act_encoder_batch"  # the encoders' independent sequences: frames, segments, patches
ACT_EMBED = "act_embed"
ACT_HEADS = "act_heads"
ACT_MLP = "act_mlp"
ACT_VOCAB = "act_vocab"
# Parameter axes.
LAYERS = "layers"
EMBED = "embed"
MLP = "mlp"
HEADS = "heads"
KV_HEADS = "kv_heads"
VOCAB = "vocab"
NORM = "norm"
CONV = "conv"
POSITIONS = "positions"
LORA_RANK = "lora_rank"

# The activation layouts the models use, named once.
ACT_BATCH_LENGTH_EMBED = (ACT_BATCH, ACT_LENGTH, ACT_EMBED)
ACT_BATCH_LENGTH_MLP = (ACT_BATCH, ACT_LENGTH, ACT_MLP)
ACT_BATCH_LENGTH_HEADS = (ACT_BATCH, ACT_LENGTH, ACT_HEADS, None)  # (B, L, heads, head_dim)
ACT_BATCH_KV_LENGTH_HEADS = (ACT_BATCH, ACT_KV_LENGTH, ACT_HEADS, None)  # (B, S, kv_heads, head_dim)
ACT_ENCODER_LENGTH_EMBED = (ACT_ENCODER_BATCH, None, ACT_EMBED)  # (N, tokens, W) in the encoders
ACT_ENCODER_LENGTH_HEADS = (ACT_ENCODER_BATCH, None, ACT_HEADS, None)
ACT_ENCODER_LENGTH_MLP = (ACT_ENCODER_BATCH, None, ACT_MLP)
ACT_BATCH_LENGTH_VOCAB = (ACT_BATCH, ACT_LENGTH, ACT_VOCAB)
KV_CACHE = (LAYERS, ACT_BATCH, ACT_LENGTH, KV_HEADS, None)  # (depth, B, L, kv_heads, head_dim): batch over
# data and fsdp, kv heads over tensor, as the k/v projections that fill it

# Logical axis -> mesh axes: the default of config.mesh.axis_rules. The mesh axes are MESH_AXES. A mesh axis that does not divide a dimension is dropped for that array (logical_to_spec),
# so tiny test models shard on any mesh.
DEFAULT_AXIS_RULES = (
    (ACT_BATCH, ("data", "fsdp")),
    (ACT_LENGTH, "context"),
    (ACT_KV_LENGTH, None),
    (ACT_ENCODER_BATCH, ("data", "fsdp", "context")),
    (ACT_EMBED, None),
    (ACT_HEADS, "tensor"),
    (ACT_MLP, "tensor"),
    (ACT_VOCAB, "tensor"),
    (LAYERS, None),
    (EMBED, ("fsdp", "context")),  # context chips hold parameter shards too (FSDP over them, as MaxText)
    (MLP, "tensor"),
    (HEADS, "tensor"),
    (KV_HEADS, "tensor"),
    (VOCAB, "tensor"),
    (NORM, None),
    (CONV, None),
    (POSITIONS, None),
    (LORA_RANK, None),
)
# Names of older releases (configs and checkpoints written before the act_ scheme), read as the new ones.
LEGACY_AXIS_NAMES = {"batch": ACT_BATCH, "length": ACT_LENGTH}
# The axes that may also span slices, over the data-center network (DCN) between them: `dcn_data`
# and `dcn_fsdp` in the config. Tensor and context are not offered over DCN: their collectives run in
# every layer, on the critical path, and need the ICI bandwidth inside a slice.
DCN_AXES = ("data", "fsdp")

log = logging.getLogger(__name__)

_active: contextvars.ContextVar[tuple[Mesh, dict] | None] = contextvars.ContextVar("pegasus_mesh", default=None)


def _fill(sizes: dict[str, int], total: int, product: str, what: str) -> tuple[int, ...]:
    """Resolve axis sizes (at most one -1, which fills) so that their product is `total`."""
    values = list(sizes.values())
    known = math.prod(s for s in values if s != -1)
    if -1 in values:
        if total % known:
            raise ConfigError(f"config.mesh: axes {sizes} do not divide {what}")
        values[values.index(-1)] = total // known
    if math.prod(values) != total:
        raise ConfigError(f"config.mesh: {product} = {math.prod(values)} does not match {what}")
    return tuple(values)


def mesh_shapes(mesh_cfg, num_devices: int, num_slices: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ICI shape, DCN shape) over MESH_AXES: the axis sizes inside one slice and across slices.

    `mesh.data/fsdp/context/tensor` are per-slice sizes (-1 fills a slice's devices); `mesh.dcn_data` and
    `mesh.dcn_fsdp` split the slices (-1 fills them, so one slice gives 1).
    """
    if num_devices % num_slices:
        raise ConfigError(f"config.mesh: {num_devices} devices do not split evenly into {num_slices} slices")
    per_slice = num_devices // num_slices
    if num_slices == 1:
        what = f"the {per_slice} available devices"
    else:
        what = f"the {per_slice} devices of each of the {num_slices} slices"
    dcn = {f"dcn_{ax}": getattr(mesh_cfg, f"dcn_{ax}", -1 if ax == "data" else 1) for ax in DCN_AXES}
    dcn_shape = _fill(dcn, num_slices, "dcn_data*dcn_fsdp",
                      f"the {num_slices} slice{'s' if num_slices > 1 else ''} the devices form")
    ici = {ax: getattr(mesh_cfg, ax) for ax in MESH_AXES}
    dcn_sizes = dict(zip(DCN_AXES, dcn_shape))
    return _fill(ici, per_slice, "*".join(MESH_AXES), what), tuple(dcn_sizes.get(ax, 1) for ax in MESH_AXES)


def mesh_shape(mesh_cfg, num_devices: int, num_slices: int = 1) -> tuple[int, ...]:
    """The global axis sizes (ICI size x DCN size per axis) for `num_devices` in `num_slices` slices."""
    ici, dcn = mesh_shapes(mesh_cfg, num_devices, num_slices)
    return tuple(i * d for i, d in zip(ici, dcn))


def device_slices(devices: Sequence[jax.Device]) -> list[list[jax.Device]]:
    """The devices grouped by `slice_index`, in slice order: the TPU slices of a multi-slice job. XLA
    also sets it on GPU and multi-process CPU devices, grouping processes by host (or NVLink domain),
    so processes on one machine share slice 0. Devices without it (one CPU process) form one slice."""
    groups: dict[int, list[jax.Device]] = {}
    for d in devices:
        groups.setdefault(getattr(d, "slice_index", 0), []).append(d)
    return [groups[k] for k in sorted(groups)]


def make_mesh(mesh_cfg, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The (data, fsdp, context, tensor) mesh, laid out on the physical topology.

    One slice: `mesh_utils.create_device_mesh`. Several: `create_hybrid_device_mesh`, which keeps
    every ICI group (each slice's data x fsdp x context x tensor block) inside one slice and puts only the DCN
    part of data/fsdp across slices. When the mesh cannot follow the topology this is a one-line
    ConfigError, unless `mesh.allow_split_physical_axes` is set: then JAX may split physical axes,
    and if even that fails the devices are reshaped in order, with a WARNING.
    """
    devices = list(devices if devices is not None else jax.devices())
    slices = device_slices(devices)
    sizes = {len(s) for s in slices}
    if len(sizes) > 1:
        raise ConfigError(f"config.mesh: the devices' {len(slices)} slices hold unequal device counts "
                          f"{[len(s) for s in slices]}")
    ici, dcn = mesh_shapes(mesh_cfg, len(devices), len(slices))
    shape = tuple(i * d for i, d in zip(ici, dcn))
    layout = f"ICI {ici} x DCN {dcn}" if len(slices) > 1 else f"{ici}"
    split = bool(getattr(mesh_cfg, "allow_split_physical_axes", False))
    try:
        arr = _topology_mesh(ici, dcn, devices, len(slices), allow_split=False)
    except (ValueError, NotImplementedError, AssertionError) as e:
        if not split:
            raise ConfigError(
                f"config.mesh: ({', '.join(MESH_AXES)}) = {layout} cannot follow the physical topology of "
                f"{_topology_name(slices)} ({_first_sentence(e)}); choose axis sizes that are products of "
                "whole torus axes, or set config.mesh.allow_split_physical_axes=True") from None
        try:
            arr = _topology_mesh(ici, dcn, devices, len(slices), allow_split=True)
            log.warning("config.mesh.allow_split_physical_axes: the mesh %s splits physical torus axes of %s "
                        "between mesh axes (less collective bandwidth on them)", layout, _topology_name(slices))
        except (ValueError, NotImplementedError, AssertionError) as e2:
            arr = _reshape(ici, dcn, slices)
            log.warning("config.mesh.allow_split_physical_axes: the mesh %s is a plain reshape of the device list: "
                        "its layout ignores the physical topology of %s (%s)", layout, _topology_name(slices),
                        _first_sentence(e2))
    assert arr.shape == shape, (arr.shape, shape)
    return Mesh(arr, MESH_AXES)


def _topology_mesh(ici, dcn, devices, num_slices: int, allow_split: bool) -> np.ndarray:
    from jax.experimental import mesh_utils

    if num_slices > 1:
        return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, allow_split_physical_axes=allow_split)
    return mesh_utils.create_device_mesh(ici, devices, allow_split_physical_axes=allow_split)


def _reshape(ici, dcn, slices) -> np.ndarray:
    """Each slice's devices reshaped in list order to the ICI shape, the slices tiled by the DCN shape
    (the same block layout as the hybrid builder, without the topology inside a slice)."""
    blocks = np.empty((len(slices), math.prod(ici)), dtype=object)
    for i, group in enumerate(slices):
        blocks[i, :] = group
    tiled = blocks.reshape(tuple(dcn) + tuple(ici))  # (dcn axes..., ici axes...)
    n = len(ici)
    order = [k for axis in range(n) for k in (axis, n + axis)]  # each axis: its DCN index outermost
    return tiled.transpose(order).reshape(tuple(i * d for i, d in zip(ici, dcn)))


def _topology_name(slices) -> str:
    """'2 slices of 4x4x4 TPU v5 devices' from the devices' coordinates, for error messages."""
    first = slices[0]
    coords = [getattr(d, "coords", None) for d in first]
    kind = f"{first[0].device_kind} devices"
    if all(c is not None for c in coords) and coords:
        dims = [max(c[i] for c in coords) - min(c[i] for c in coords) + 1 for i in range(len(coords[0]))]
        kind = f"{'x'.join(map(str, dims))} {kind}"
    return f"{len(slices)} slices of {kind}" if len(slices) > 1 else kind


def _first_sentence(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text.split(". ")[0].rstrip(".")[:300]


def upgrade_axis_rules(axis_rules) -> tuple:
    """The rules with older logical names (LEGACY_AXIS_NAMES) renamed; targets as tuples, not lists."""
    return tuple((LEGACY_AXIS_NAMES.get(name, name), tuple(t) if isinstance(t, list) else t) for name, t in axis_rules)


def rules_dict(axis_rules) -> dict[str, tuple[str, ...]]:
    out = {}
    for name, target in upgrade_axis_rules(axis_rules):
        if target is None:
            out[name] = ()
        elif isinstance(target, str):
            out[name] = (target,)
        else:
            out[name] = tuple(target)
    # Tables written before the encoders had their own batch name sharded them by act_batch: keep that.
    out.setdefault(ACT_ENCODER_BATCH, out.get(ACT_BATCH, ()))
    return out


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int] | None, mesh: Mesh, rules: dict) -> PartitionSpec:
    """PartitionSpec for logical names; mesh axes that do not divide a dimension (or repeat) are dropped."""
    used: set[str] = set()
    spec = []
    for i, name in enumerate(names):
        axes = [] if name is None else list(rules.get(name, ()))
        kept = []
        size = 1
        for ax in axes:
            if ax in used or ax not in mesh.shape:
                continue
            if shape is not None and shape[i] % (size * mesh.shape[ax]):
                continue
            kept.append(ax)
            size *= mesh.shape[ax]
        used.update(kept)
        spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*spec)


def state_shardings(state: nnx.State, mesh: Mesh, axis_rules) -> nnx.State:
    """NamedSharding for every leaf of an nnx.State (params, optimizer moments), from its metadata."""
    rules = rules_dict(axis_rules)

    def one(var):
        value = var.get_value() if isinstance(var, nnx.Variable) else var
        names = var.get_metadata().get("out_sharding") if isinstance(var, nnx.Variable) else None
        shape = getattr(value, "shape", ())
        if not names or len(names) != len(shape):
            spec = PartitionSpec()
        else:
            spec = logical_to_spec(names, shape, mesh, rules)
        sharding = NamedSharding(mesh, spec)
        return var.replace(sharding) if isinstance(var, nnx.Variable) else sharding

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, axis_rules):
    """Within this context `constrain` pins activations to the mesh by the rules."""
    token = _active.set((mesh, rules_dict(axis_rules)))
    try:
        yield
    finally:
        _active.reset(token)


def active_mesh() -> tuple[Mesh, dict] | None:
    """(mesh, rules dict) of the enclosing `activation_sharding`, or None outside one."""
    return _active.get()


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    active = _active.get()
    if active is None:
        return x
    mesh, rules = active
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, x.shape, mesh, rules)))


def batch_sharding(mesh: Mesh, axis_rules, ndim: int) -> NamedSharding:
    """Sharding of a batch-major input array: batch over the rule for 'batch', the rest replicated."""
    rules = rules_dict(axis_rules)
    return NamedSharding(mesh, logical_to_spec((ACT_BATCH,) + (None,) * (ndim - 1), None, mesh, rules))
