"""Meshes on the physical topology: one slice (create_device_mesh) and several (create_hybrid_device_mesh,
ICI axes inside a slice, dcn_data/dcn_fsdp across slices), on compile-only TPU devices from libtpu
(`aot.topology_devices`, no TPU needed) and on the 8 simulated CPU devices."""
import logging
import types

import jax
import numpy as np
import pytest
from jax.experimental import mesh_utils

from pegasus_jax import config as cfg
from pegasus_jax import sharding
from pegasus_jax.errors import ConfigError
from pegasus_jax.train import aot


@pytest.fixture(scope="module")
def tpu_env():
    """topology_devices sets libtpu's TPU_* variables with setdefault: set them here so they are undone."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TPU_ACCELERATOR_TYPE", "v5p-128")
        mp.setenv("TPU_SKIP_MDS_QUERY", "1")
        mp.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
        yield


@pytest.fixture(scope="module")
def two_slices(tpu_env):
    """128 compile-only v5p chips: two v5p-128 slices of 4x4x4 chips."""
    family, devices = aot.topology_devices("v5p-128", num_slices=2)
    return devices


def mesh_cfg(**fields):
    c = cfg.get("tiny")
    for k, v in fields.items():
        setattr(c.mesh, k, v)
    return cfg.validate(c).mesh


def slice_of(mesh):
    return np.vectorize(lambda d: d.slice_index)(mesh.devices)


def is_torus_line(devices):
    """The devices differ in exactly one physical coordinate and cover all its values: one ring of the torus."""
    coords = np.array([d.coords for d in devices])
    varying = [i for i in range(coords.shape[1]) if len(set(coords[:, i])) > 1]
    return len(varying) == 1 and len(set(coords[:, varying[0]])) == len(devices)


def test_topology_devices_carry_slice_index(two_slices):
    assert len(two_slices) == 128
    per_slice = {s: sum(d.slice_index == s for d in two_slices) for s in {d.slice_index for d in two_slices}}
    assert per_slice == {0: 64, 1: 64}
    assert [len(s) for s in sharding.device_slices(two_slices)] == [64, 64]


@pytest.mark.parametrize("dcn_data", [2, -1])
def test_dcn_data_puts_each_slice_in_its_part_of_the_data_axis(two_slices, dcn_data):
    mesh = sharding.make_mesh(mesh_cfg(data=1, fsdp=-1, tensor=4, dcn_data=dcn_data), two_slices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 16, "context": 1, "tensor": 4}
    s = slice_of(mesh)
    assert (s[0] == 0).all() and (s[1] == 1).all()
    # Within a slice the ICI axes follow the torus: every tensor group is one ring of 4 chips.
    assert all(is_torus_line(mesh.devices[i, j, 0, :]) for i in range(2) for j in range(16))


def test_ici_data_and_dcn_data_stack(two_slices):
    mesh = sharding.make_mesh(mesh_cfg(data=4, fsdp=4, tensor=4, dcn_data=2), two_slices)
    assert dict(mesh.shape) == {"data": 8, "fsdp": 4, "context": 1, "tensor": 4}
    s = slice_of(mesh)
    for i in range(8):
        assert (s[i] == i // 4).all()  # the DCN index is the outer part of the data axis
    # every fsdp and every tensor group is one ring of its slice's torus
    assert all(is_torus_line(mesh.devices[i, :, 0, k]) for i in range(8) for k in range(4))
    assert all(is_torus_line(mesh.devices[i, j, 0, :]) for i in range(8) for j in range(4))


def test_dcn_fsdp_spans_slices_only_along_its_dcn_part(two_slices):
    mesh = sharding.make_mesh(mesh_cfg(data=1, fsdp=-1, tensor=4, dcn_data=1, dcn_fsdp=2), two_slices)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 32, "context": 1, "tensor": 4}
    s = slice_of(mesh)
    for j in range(32):
        assert (s[0, j] == j // 16).all()  # fsdp index j: slice j // 16, so each tensor group in one slice
    # The slowly varying (DCN) half of fsdp crosses slices; the ICI part of each half stays inside one.
    assert (s[0, :16] == 0).all() and (s[0, 16:] == 1).all()
    assert all(is_torus_line(mesh.devices[0, j, 0, :]) for j in range(32))


def test_mesh_that_cannot_follow_the_topology_is_a_one_line_error(two_slices):
    with pytest.raises(ConfigError) as err:
        sharding.make_mesh(mesh_cfg(data=1, fsdp=8, tensor=8, dcn_data=-1), two_slices)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("config.mesh:")
    assert "(1, 8, 1, 8)" in msg and "(2, 1, 1, 1)" in msg and "4x4x4" in msg
    assert "config.mesh.allow_split_physical_axes" in msg


def test_opt_in_splits_physical_axes_with_a_warning(two_slices, caplog):
    with caplog.at_level(logging.WARNING, logger="pegasus_jax.sharding"):
        mesh = sharding.make_mesh(mesh_cfg(data=1, fsdp=8, tensor=8, allow_split_physical_axes=True), two_slices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 8, "context": 1, "tensor": 8}
    s = slice_of(mesh)
    assert (s[0] == 0).all() and (s[1] == 1).all()  # still one slice per DCN index
    assert len(set(mesh.devices.ravel())) == 128
    assert any("splits physical torus axes" in r.getMessage() for r in caplog.records)


def test_opt_in_falls_back_to_a_reshape_with_a_warning(tpu_env, caplog):
    _, devices = aot.topology_devices("v5p-8")  # 2x2x1 chips
    by_coords = {tuple(d.coords): d for d in devices}
    diagonal = [by_coords[(0, 0, 0)], by_coords[(1, 1, 0)]]  # not a cuboid: no torus layout exists
    with pytest.raises(ConfigError) as err:
        sharding.make_mesh(mesh_cfg(data=-1, fsdp=1, tensor=1), diagonal)
    assert "\n" not in str(err.value) and "cannot follow the physical topology" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="pegasus_jax.sharding"):
        mesh = sharding.make_mesh(mesh_cfg(data=-1, allow_split_physical_axes=True), diagonal)
    assert list(mesh.devices.ravel()) == diagonal
    assert any("ignores the physical topology" in r.getMessage() for r in caplog.records)


def test_reshape_fallback_tiles_slices_like_the_hybrid_builder():
    fake = [types.SimpleNamespace(id=i, slice_index=i // 8, platform="cpu", device_kind="cpu") for i in range(16)]
    for ici, dcn in [((1, 2, 4), (2, 1, 1)), ((2, 2, 2), (1, 2, 1)), ((1, 8, 1), (2, 1, 1))]:
        ours = sharding._reshape(ici, dcn, sharding.device_slices(fake))
        jaxs = mesh_utils.create_hybrid_device_mesh(ici, dcn, fake)
        assert ours.shape == jaxs.shape and (np.vectorize(lambda d: d.id)(ours) ==
                                             np.vectorize(lambda d: d.id)(jaxs)).all(), (ici, dcn)


def test_dcn_sizes_must_match_the_slices(two_slices):
    with pytest.raises(ConfigError, match=r"^config\.mesh: dcn_data\*dcn_fsdp = 4 does not match the 2 slices"):
        sharding.make_mesh(mesh_cfg(dcn_data=4), two_slices)
    with pytest.raises(ConfigError, match=r"^config\.mesh: data\*fsdp\*context\*tensor = 32 does not match the 64 devices "
                                          r"of each of the 2 slices$"):
        sharding.make_mesh(mesh_cfg(data=1, fsdp=8, tensor=4), two_slices)


def test_cpu_devices_build_the_mesh_as_before():
    devices = jax.devices()
    assert len(devices) == 8 and not hasattr(devices[0], "slice_index")
    mesh = sharding.make_mesh(mesh_cfg(data=2, fsdp=2, tensor=2))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "context": 1, "tensor": 2}
    assert (mesh.devices == np.asarray(devices).reshape(2, 2, 1, 2)).all()  # list order, as before
    assert dict(sharding.make_mesh(mesh_cfg()).shape) == {"data": 8, "fsdp": 1, "context": 1, "tensor": 1}
    assert dict(sharding.make_mesh(mesh_cfg(fsdp=-1, data=1), devices[:4]).shape) == {"data": 1, "fsdp": 4,
                                                                                      "context": 1, "tensor": 1}
    with pytest.raises(ConfigError, match=r"^config\.mesh: dcn_data\*dcn_fsdp = 2 does not match the 1 slice "):
        sharding.make_mesh(mesh_cfg(dcn_data=2))
    with pytest.raises(ConfigError, match=r"^config\.mesh: data\*fsdp\*context\*tensor = 6 does not match the 8 available"):
        sharding.make_mesh(mesh_cfg(data=3, fsdp=2))


@pytest.mark.parametrize("fields, field", [
    ({"dcn_data": 0}, "config.mesh.dcn_data"),
    ({"dcn_fsdp": -2}, "config.mesh.dcn_fsdp"),
    ({"dcn_data": -1, "dcn_fsdp": -1}, "config.mesh"),
    ({"dcn_tensor": 2}, "config.mesh.dcn_tensor"),
])
def test_dcn_fields_are_validated(fields, field):
    c = cfg.get("tiny")
    for k, v in fields.items():
        c.mesh[k] = v
    with pytest.raises(ConfigError) as err:
        cfg.validate(c)
    assert str(err.value).startswith(field + ":") and "\n" not in str(err.value)


def test_every_parameter_names_axes_the_rules_know():
    """Each parameter's logical axis names are strings the rules table maps (a name shadowed by a class of the
    same name, e.g. the encoder's MLP, would silently leave that parameter unsharded)."""
    from flax import nnx

    from pegasus_jax import config as cfg
    from pegasus_jax.models.pegasus import Pegasus
    from pegasus_jax.sharding import DEFAULT_AXIS_RULES

    config = cfg.get("tiny", model__lora__rank=2)
    model = nnx.eval_shape(lambda: Pegasus(config.model, rngs=nnx.Rngs(0)))
    known = {name for name, _ in DEFAULT_AXIS_RULES}
    names = {name for _, var in nnx.iter_graph(model) if isinstance(var, nnx.Param)
             for name in var.get_metadata().get("out_sharding") or () if name is not None}
    unknown = {str(name) for name in names if not (isinstance(name, str) and name in known)}
    assert not unknown, unknown
    assert {"embed", "mlp", "heads", "vocab", "layers"} <= names
