"""Ahead-of-time compilation of the real train step for a TPU topology, from a CPU host (libtpu).

The state and batch are abstract (ShapeDtypeStructs with shardings over the topology's compile-only
devices), so nothing of the model is materialised; XLA's memory analysis of the compiled step gives
per-chip argument / output / temporary bytes, which decide whether the config fits the chip's HBM.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import time

import jax

from pegasus_jax import sharding
from pegasus_jax.errors import UserError

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class TpuFamily:
    name: str
    hbm_gib: float  # per chip
    peak_flops: float  # dense bf16 per chip
    cores_per_chip: int  # the N in "v5p-N" counts TensorCores on megacore chips
    dims: int  # 3D torus (v4, v5p) or 2D (v5e, v6e)
    chip_config: str


FAMILIES = {
    "v4": TpuFamily("v4", 32, 275e12, 2, 3, "megacore"),
    "v5p": TpuFamily("v5p", 95, 459e12, 2, 3, "megacore"),
    "v5e": TpuFamily("v5e", 16, 197e12, 1, 2, "default"),
    "v6e": TpuFamily("v6e", 32, 918e12, 1, 2, "default"),
}


def parse_topology(name: str) -> tuple[TpuFamily, int, tuple[int, ...]]:
    """'v5p-256' -> (family, chips=128, bounds=(4, 4, 8))."""
    m = re.fullmatch(r"(v4|v5p|v5e|v6e)-(\d+)", name)
    if not m:
        raise UserError(f"--topology: {name!r} is not a TPU slice name like v5p-256, v5e-64, v6e-256 or v4-32")
    family = FAMILIES[m.group(1)]
    cores = int(m.group(2))
    if cores % family.cores_per_chip:
        raise UserError(f"--topology: {name} is not a whole number of {family.name} chips")
    chips = cores // family.cores_per_chip
    if chips < 4 or chips & (chips - 1):
        raise UserError(f"--topology: {name} must have a power-of-two number of chips, at least 4")
    return family, chips, chip_bounds(chips, family.dims)


def chip_bounds(chips: int, dims: int) -> tuple[int, ...]:
    """Slice shape in chips: from one host's 2x2(x1), double the smallest axis (the last on ties).

    128 chips -> 4x4x8, 256 -> 4x8x8 (3D); 256 -> 16x16 (2D).
    """
    bounds = [2, 2, 1][:dims] if dims == 3 else [2, 2]
    while math.prod(bounds) < chips:
        smallest = min(bounds)
        i = max(j for j, b in enumerate(bounds) if b == smallest)
        bounds[i] *= 2
    return tuple(bounds)


def topology_devices(name: str, num_slices: int = 1):
    """(family, compile-only devices) of `num_slices` slices of topology `name`; with several slices
    each device carries its `slice_index`, as on a multi-slice job."""
    from jax.experimental import topologies

    family, chips, bounds = parse_topology(name)
    if not isinstance(num_slices, int) or num_slices < 1:
        raise UserError(f"--num-slices: must be an integer >= 1, got {num_slices!r}")
    host = (2, 2, 1)
    # On a CPU host libtpu probes for TPU metadata at start-up; name the target so it stays quiet.
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", name)
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    # libtpu holds /tmp/libtpu_lockfile for the life of a process that loaded it, to keep one user per
    # chip; compile-only devices touch no chip, and without this a second process compiling on the same
    # host (another compile, a test's subprocess) fails with "Internal error when accessing ... lockfile".
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        topo = topologies.get_topology_desc(
            topology_name=f"{family.name}:{'x'.join(map(str, bounds))}", platform="tpu",
            chip_config_name=family.chip_config, chips_per_host_bounds=host, num_slices=num_slices)
    except Exception as e:  # libtpu missing or topology rejected: a user-facing problem, not a crash
        what = name if num_slices == 1 else f"{num_slices} slices of {name}"
        raise UserError(f"--topology: cannot build {what} ({type(e).__name__}: {e}); is the `tpu` extra "
                        "(libtpu) installed?") from None
    return family, topo.devices


@dataclasses.dataclass
class CompileReport:
    topology: str
    chips: int
    argument_gib: float
    output_gib: float
    temp_gib: float
    total_gib: float
    hbm_gib: float
    flops_per_step: float
    step_time_s_at_mfu: float
    mfu_assumed: float
    compile_s: float
    params: int
    slices: int = 1  # chips counts all of them
    mesh: dict = dataclasses.field(default_factory=dict)  # global axis sizes (ICI x DCN)
    kernels: list = dataclasses.field(default_factory=list)  # Pallas kernels in the step (kernel_names)

    @property
    def target(self) -> str:
        """'v5p-256', or '2 x v5p-128' for two slices."""
        return self.topology if self.slices == 1 else f"{self.slices} x {self.topology}"

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.hbm_gib

    def lines(self) -> list[str]:
        return [
            f"topology: {self.topology} ({self.chips} chips, {self.hbm_gib:.0f} GiB HBM each)" if self.slices == 1
            else f"topology: {self.target} ({self.slices} slices, {self.chips} chips in all, "
                 f"{self.hbm_gib:.0f} GiB HBM each)",
            "mesh: " + " x ".join(f"{k} {v}" for k, v in self.mesh.items()),
            f"parameters: {self.params:,}",
            f"per-chip memory: arguments {self.argument_gib:.2f} GiB, outputs {self.output_gib:.2f} GiB, "
            f"temporaries {self.temp_gib:.2f} GiB, total {self.total_gib:.2f} GiB",
            f"fits: {'yes' if self.fits else 'no'}",
            f"analytic FLOPs per step: {self.flops_per_step:.3e}",
            f"expected step time at {self.mfu_assumed:.0%} MFU: {self.step_time_s_at_mfu:.3f} s",
            f"compile time: {self.compile_s:.1f} s",
            f"kernels: {', '.join(self.kernels) or 'none'}",
        ]


def compile_for_topology(config, topology: str, mfu: float = 0.5, num_slices: int = 1) -> CompileReport:
    """Compile the train step for `num_slices` slices of `topology` (the mesh from sharding.make_mesh:
    the config's ICI axes inside each slice, dcn_data x dcn_fsdp across slices)."""
    from data_pipelines.contract import zeros_batch, zeros_packed_batch
    from pegasus_jax.scaling.flops import flops_per_step
    from pegasus_jax.train.state import TrainSpec, count_params
    from pegasus_jax.train.step import make_train_step

    family, devices = topology_devices(topology, num_slices)
    where = topology if num_slices == 1 else f"{num_slices} x {topology}"
    mesh = sharding.make_mesh(config.mesh, devices)
    spec = TrainSpec.create(config, mesh)
    state = spec.abstract_state()
    rules = config.mesh.axis_rules
    zeros = zeros_packed_batch if config.data.packing else zeros_batch  # the shapes training feeds
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding.batch_sharding(mesh, rules, v.ndim))
             for k, v in zeros(config, config.train.batch_size).items()}
    dp = math.prod(mesh.shape[a] for a in sharding.rules_dict(rules)[sharding.ACT_BATCH])
    if config.train.batch_size % dp:
        raise UserError(f"config.train.batch_size: {config.train.batch_size} does not divide over the {dp} "
                        f"data-parallel shards of {where}")
    t0 = time.perf_counter()
    lowered = make_train_step(spec, batch).lower(state, batch)
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
        # Far over HBM, XLA refuses to compile and states the temporaries it would need instead.
        needed = re.search(r"HLO temporaries \(([\d.]+)([KMGT])\)", str(e))
        if "RESOURCE_EXHAUSTED" not in str(e) or needed is None:
            raise
        arg = per_device_bytes(state) + per_device_bytes(batch)
        temp = float(needed.group(1)) * 1024 ** "KMGT".index(needed.group(2)) * 1024
        out = alias = code = 0
        compiled = None
    else:
        mem = compiled.memory_analysis()
        arg, out, temp = mem.argument_size_in_bytes, mem.output_size_in_bytes, mem.temp_size_in_bytes
        alias = getattr(mem, "alias_size_in_bytes", 0)
        code = getattr(mem, "generated_code_size_in_bytes", 0)
    compile_s = time.perf_counter() - t0
    total = arg + out - alias + temp + code
    flops = flops_per_step(config)
    chips = len(devices)
    return CompileReport(
        topology=topology, chips=chips, argument_gib=arg / GIB, output_gib=out / GIB, temp_gib=temp / GIB,
        total_gib=total / GIB, hbm_gib=family.hbm_gib, flops_per_step=flops,
        step_time_s_at_mfu=flops / (chips * family.peak_flops * mfu), mfu_assumed=mfu, compile_s=compile_s,
        params=count_params(state["params"]) + count_params(state["frozen"]), slices=num_slices,
        mesh=dict(mesh.shape), kernels=kernel_names(lowered.as_text()))


def kernel_names(program: str) -> list[str]:
    """The Pallas (Mosaic) kernels a lowered program calls: the `kernel_name` of its `tpu_custom_call`s,
    e.g. splash_mha_fwd_segmented_residuals for splash attention's forward pass."""
    calls = re.findall(r'stablehlo\.custom_call @tpu_custom_call\(.*', program)
    return sorted({name for call in calls for name in re.findall(r'kernel_name = "([^"]+)"', call)})


def per_device_bytes(tree) -> int:
    """Bytes one device holds of a tree of sharded ShapeDtypeStructs."""
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * jax.numpy.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(tree))


def find_topology(config, family_name: str, max_chips: int = 8192, mfu: float = 0.5,
                  skipped: list[str] | None = None) -> CompileReport | None:
    """Smallest slice of a family on which the config compiles and fits, doubling the chip count.

    Slices the config cannot run on (the batch does not divide the data axis, the mesh cannot follow
    the torus) are skipped; `skipped`, when given, collects why ('v6e-64: config.mesh: ...').
    """
    if family_name not in FAMILIES:
        raise UserError(f"--find-topology: unknown family {family_name!r}; one of {sorted(FAMILIES)}")
    family = FAMILIES[family_name]
    chips = 4
    while chips <= max_chips:
        name = f"{family.name}-{chips * family.cores_per_chip}"
        try:
            report = compile_for_topology(config, name, mfu)
        except UserError as e:
            report = None  # e.g. the batch does not divide this slice's data axis
            if skipped is not None:
                skipped.append(f"{name}: {e}")
        if report is not None and report.fits:
            return report
        chips *= 2
    return None
