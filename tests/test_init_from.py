"""config.train.init_from reads only the source's parameters, straight into the new run's shardings and
dtypes (an Orbax partial restore): never its optimizer moments, never the whole state on a host."""
import json
import re
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from pegasus_jax import config as cfg
from pegasus_jax import sharding
from pegasus_jax.errors import UserError
from pegasus_jax.train import checkpoint
from pegasus_jax.train.init_from import load_into
from pegasus_jax.train.state import TrainSpec
from tests.conftest import ROOT, cpu_env

REPORT = re.compile(r"^loaded (\d+) tensors from step (\d+), (\d+) new, (\d+) in the source unused$")


def spec_for(config, devices: int) -> TrainSpec:
    return TrainSpec.create(config, sharding.make_mesh(config.mesh, jax.devices()[:devices]))


def save_source(config, workdir: str, step: int, seed: int = 0) -> dict:
    """A run's checkpoint as the trainer writes it (train state with AdamW moments, RNG, metadata),
    saved from one device; returns its parameters as NumPy, by path."""
    config.mesh.data = 1
    state = spec_for(config, 1).init_state(seed)
    mngr = checkpoint.manager(workdir, config.train)
    checkpoint.save(mngr, step, state, None, jax.random.key(0), checkpoint.metadata(config, None, step), force=True)
    mngr.wait_until_finished()
    mngr.close()
    return {"/".join(p): np.asarray(v) for g in ("params", "frozen") for p, v in flat(state[g]).items()}


def flat(tree) -> dict:
    return traverse_util.flatten_dict(tree) if tree else {}


def by_name(state) -> dict:
    return {"/".join(p): (g, v) for g in ("params", "frozen") for p, v in flat(state[g]).items()}


@pytest.fixture
def orbax_reads(monkeypatch):
    """Every tree a PyTreeCheckpointer restores during the test."""
    reads, original = [], ocp.PyTreeCheckpointer.restore

    def spy(self, *args, **kwargs):
        reads.append(original(self, *args, **kwargs))
        return reads[-1]

    monkeypatch.setattr(ocp.PyTreeCheckpointer, "restore", spy)
    return reads


def test_loads_onto_another_mesh_without_the_optimizer_state(tmp_path, orbax_reads):
    """Saved from 1 device in stage pretrain; loaded into a LoRA stage on fsdp=4 x tensor=2."""
    source = save_source(cfg.get("tiny"), str(tmp_path / "src"), step=7)
    config = cfg.get("tiny", train__stage="instruct_lora", model__lora__rank=4)
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 4, 2
    spec = spec_for(config, 8)
    state = spec.init_state(1)
    fresh = {k: np.asarray(v) for k, (_, v) in by_name(state).items()}
    fresh_opt = jax.tree.map(np.asarray, state["opt_state"])

    loaded, report = load_into(state, str(tmp_path / "src"))

    lora = {k for k in fresh if k not in source}
    assert lora and all("lora" in k for k in lora)
    assert REPORT.match(report).groups() == (str(len(source)), "7", str(len(lora)), "0"), report
    # Orbax read the matched parameters and nothing else: no optimizer state, no step, no "rest".
    assert len(orbax_reads) == 1 and set(orbax_reads[0]) == {"params"}
    read = {"/".join(p): v for p, v in flat(orbax_reads[0]["params"]).items()}
    assert read.keys() == source.keys()
    shardings = {"/".join(p): s for g in ("params", "frozen") for p, s in flat(spec.shardings()[g]).items()}
    out = by_name(loaded)
    assert out.keys() == fresh.keys()
    # In the new run most parameters are frozen (the adapters and the alignment model train): the groups
    # differ from the source's.
    trained = {k for k, (g, _) in out.items() if k in source and g == "params"}
    assert trained == {k for k in source if k.startswith("alignment/")} and len(trained) < len(source) / 2
    for name, (_, value) in out.items():
        assert value.sharding == shardings[name], name
        if name in lora:
            assert np.array_equal(np.asarray(value), fresh[name]), name
            continue
        assert value is read[name], name  # Orbax restored it in place: no device_put or copy afterwards
        assert value.dtype == source[name].dtype and np.array_equal(np.asarray(value), source[name]), name
    differ = [k for k in source if not np.array_equal(source[k], fresh[k])]
    assert len(differ) > 20  # random kernels (seeds 0 and 1): the load did replace the fresh values
    specs = {s.spec for s in shardings.values()}
    assert any("fsdp" in jax.tree.leaves(tuple(p)) for p in specs) and any("tensor" in jax.tree.leaves(tuple(p))
                                                                           for p in specs)
    assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), b), loaded["opt_state"], fresh_opt))


def test_source_only_tensors_are_unused_and_never_read_and_dtypes_follow_the_target(tmp_path, orbax_reads):
    """LoRA run -> plain bf16-parameter run: the adapters are counted unused and stay on disk."""
    source = save_source(cfg.get("tiny", train__stage="instruct_lora", model__lora__rank=4,  # adapters alone:
                                 model__lora__train_projector=False),  # every other tensor "frozen"
                         str(tmp_path / "src"), step=3)
    config = cfg.get("tiny", model__param_dtype="bfloat16")
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 2, 2
    spec = spec_for(config, 4)
    loaded, report = load_into(spec.init_state(1), str(tmp_path / "src"))
    adapters = {k for k in source if "lora" in k}
    assert adapters
    assert REPORT.match(report).groups() == (str(len(source) - len(adapters)), "3", "0", str(len(adapters))), report
    assert len(orbax_reads) == 1 and set(orbax_reads[0]) == {"frozen"}  # where the source kept them
    assert {"/".join(p) for p in flat(orbax_reads[0]["frozen"])} == source.keys() - adapters
    for name, (_, value) in by_name(loaded).items():
        assert value.dtype == np.dtype("bfloat16") and source[name].dtype == np.float32, name
        assert np.array_equal(np.asarray(value), source[name].astype(value.dtype)), name


def test_a_shape_mismatch_is_a_one_line_error_before_any_array_is_read(tmp_path, orbax_reads):
    save_source(cfg.get("tiny"), str(tmp_path / "src"), step=1)
    config = cfg.get("tiny", model__decoder__mlp_dim=96)
    spec = spec_for(config, 1)
    state = spec.init_state(1)
    with pytest.raises(UserError) as err:
        load_into(state, str(tmp_path / "src"))
    message = str(err.value)
    assert "\n" not in message
    assert re.fullmatch(r"config\.train\.init_from: tensor decoder/layers/layers/\w+/kernel has shape \(.*\) in "
                        r"\S+, expected \(.*\)", message), message
    assert "96" in message and "128" in message
    assert orbax_reads == []  # the shapes come from the checkpoint's metadata
    assert not any(x.is_deleted() for x in jax.tree.leaves(state))  # and the caller's state is untouched


# A fresh interpreter: its peak RSS during the load (VmHWM, reset just before it) minus its RSS before. Not
# ru_maxrss: after fork + exec that starts at the parent's RSS (Linux keeps the pre-exec peak in the
# signal struct, which /proc/self/clear_refs does not reset), and pytest's process is the parent.
MEASURE = r"""
import gc, json, sys
import jax
from pegasus_jax import config as cfg, sharding
from pegasus_jax.train.init_from import load_into
from pegasus_jax.train.state import TrainSpec
from pegasus_jax.flax_settings import configure
configure()

def status(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field + ":")).split()[1]) * 1024

config = cfg.get("tiny", **json.loads(sys.argv[1]))
spec = TrainSpec.create(config, sharding.make_mesh(config.mesh, jax.devices()[:1]))
state = jax.block_until_ready(spec.init_state(1))
gc.collect()
before = status("VmRSS")
try:  # Linux >= 4.0: VmHWM := VmRSS; without it the peak is this process's lifetime peak (overstated)
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
state, report = load_into(state, sys.argv[2])
jax.block_until_ready(state)
peak = status("VmHWM")
print(json.dumps({"before": before, "peak": peak, "growth": peak - before, "report": report}))
"""


def test_host_memory_of_a_load_is_about_the_parameters_not_the_optimizer_state(tmp_path):
    """~90M fp32 parameters (349 MiB) saved with their AdamW moments (698 MiB); the new run (stage align)
    loads every parameter. Measured with this test's script on a loaded 2-core CPU host (4 runs each):
    this code's peak growth 403-449 MiB (the loaded parameters and Orbax's in-flight read buffers, less
    the fresh copies it frees; 641-645 MiB if it kept them); the former code, which read the whole state
    as NumPy on the host and then device_put it, 1584-1632 MiB."""
    wide = dict(model__decoder__vocab_size=32000, model__decoder__width=1024, model__decoder__num_heads=8,
                model__decoder__num_kv_heads=4, model__decoder__mlp_dim=2816)
    source = save_source(cfg.get("tiny", **wide), str(tmp_path / "src"), step=5)
    params_bytes = sum(v.nbytes for v in source.values())
    moments_bytes = 2 * params_bytes  # AdamW: mu and nu, fp32 like the parameters
    assert params_bytes > 300e6
    run = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(dict(wide, train__stage="align")),
                          str(tmp_path / "src")], cwd=ROOT, env=cpu_env(1), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert REPORT.match(result["report"]).groups()[:3] == (str(len(source)), "5", "0"), result
    assert result["growth"] < params_bytes + moments_bytes / 2, (result, params_bytes, moments_bytes)
