"""The mesh and the one table that maps logical axis names onto it.

Parameters carry logical names in their `out_sharding` metadata (e.g. ('embed', 'mlp')); activations
are constrained with `constrain(x, ('batch', 'length', 'act_embed'))`. The config's
`mesh.axis_rules` maps each logical name to mesh axes. The same code runs on one CPU device,
8 simulated devices, several processes and a pod: only the mesh changes.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pegasus_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

_active: contextvars.ContextVar[tuple[Mesh, dict] | None] = contextvars.ContextVar("pegasus_mesh", default=None)


def mesh_shape(mesh_cfg, num_devices: int) -> tuple[int, ...]:
    """Resolve the config's axis sizes (-1 fills) against the device count."""
    sizes = [getattr(mesh_cfg, ax) for ax in MESH_AXES]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ConfigError(f"config.mesh: axes {dict(zip(MESH_AXES, sizes))} do not divide {num_devices} devices")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ConfigError(
            f"config.mesh: data*fsdp*tensor = {math.prod(sizes)} does not match the {num_devices} available devices")
    return tuple(sizes)


def make_mesh(mesh_cfg, devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(mesh_cfg, len(devices))
    try:
        from jax.experimental import mesh_utils
        arr = mesh_utils.create_device_mesh(shape, devices=devices)
    except (ValueError, NotImplementedError, AssertionError):
        arr = np.asarray(devices).reshape(shape)
    return Mesh(arr, MESH_AXES)


def rules_dict(axis_rules) -> dict[str, tuple[str, ...]]:
    out = {}
    for name, target in axis_rules:
        if target is None:
            out[name] = ()
        elif isinstance(target, str):
            out[name] = (target,)
        else:
            out[name] = tuple(target)
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


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    active = _active.get()
    if active is None:
        return x
    mesh, rules = active
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, x.shape, mesh, rules)))


def batch_sharding(mesh: Mesh, axis_rules, ndim: int) -> NamedSharding:
    """Sharding of a batch-major input array: batch over the rule for 'batch', the rest replicated."""
    rules = rules_dict(axis_rules)
    return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1), None, mesh, rules))
