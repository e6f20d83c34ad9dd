"""Load a trained model for inference from `--checkpoint` (a workdir or one step's folder).

The checkpoint is self-contained: its metadata item holds the resolved config and the tokenizer, so
nothing else from the training run is needed.

On a mesh (`mesh="fsdp=4,tensor=2"`, over this process's devices), every parameter is restored by an
Orbax partial restore straight into its sharding from the config's axis rules: each device reads only
its shards, nothing is gathered onto one device or host, and the optimizer state is never read.
`dtype="bf16"` casts parameters and compute to bfloat16 as they are read (half the memory).
"""
from __future__ import annotations

import base64
import copy

import jax
import ml_collections

from pegasus_jax import sharding
from pegasus_jax.config import base_config, validate
from pegasus_jax.errors import ConfigError, UserError
from pegasus_jax.train import checkpoint

DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": "float32", "float32": "float32"}


def _backfill(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict) -> None:
    """Fields newer than the checkpoint (mesh.dcn_*, train.stop_check_every, ...) take their defaults."""
    for field, default in defaults.items():
        if field not in config:
            config[field] = default
        elif isinstance(default, ml_collections.ConfigDict) and isinstance(config[field], ml_collections.ConfigDict):
            _backfill(config[field], default)


def _upgrade(config: dict) -> dict:
    """Fields an older release kept elsewhere or meant otherwise: data.transcript_tokens is
    model.transcript_tokens now; a checkpoint from before model.lora.train_projector froze the projector."""
    data, model = config.get("data", {}), config.get("model", {})
    if "transcript_tokens" in data:
        model.setdefault("transcript_tokens", data.pop("transcript_tokens"))
    if "lora" in model:  # the LoRA stage trained the adapters alone before lora.train_projector existed
        model["lora"].setdefault("train_projector", False)
    return config


def config_from_metadata(meta: dict) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(_upgrade(copy.deepcopy(meta["config"])))
    _backfill(config, base_config())
    # older logical axis names (batch, length) read as today's (act_batch, act_length)
    config.mesh.axis_rules = sharding.upgrade_axis_rules(config.mesh.axis_rules)
    return validate(config)


def tokenizer_from_metadata(meta: dict):
    """The checkpoint's tokenizer (checkpoints from before the HF back end hold a SentencePiece model)."""
    from data_pipelines.text.tokenizer import from_bytes

    tok = meta.get("tokenizer")
    if not tok:
        raise UserError("--checkpoint: this checkpoint has no tokenizer in its metadata")
    return from_bytes(base64.b64decode(tok["model_b64"]), tok.get("format", "sentencepiece"))


def parse_mesh(spec) -> dict[str, int]:
    """'fsdp=4,tensor=2' (or a dict) -> mesh axis sizes; axes not named are data=-1 (every device left
    over), fsdp=1, context=1, tensor=1."""
    if isinstance(spec, str):
        pairs = [part.split("=", 1) for part in spec.split(",") if part.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ConfigError(f"--mesh {spec!r}: expected AXIS=SIZE[,AXIS=SIZE...], e.g. fsdp=4,tensor=2")
        try:
            spec = {name.strip(): int(size) for name, size in pairs}
        except ValueError:
            raise ConfigError(f"--mesh {spec!r}: sizes must be integers") from None
    unknown = set(spec) - set(sharding.MESH_AXES)
    if unknown:
        raise ConfigError(f"--mesh: unknown axis {sorted(unknown)[0]!r} (axes: {', '.join(sharding.MESH_AXES)})")
    return {"data": -1, "fsdp": 1, "context": 1, "tensor": 1, **spec}


def load(path: str, devices=None, *, mesh=None, dtype: str | None = None):
    """(model, config, tokenizer, step) from a checkpoint.

    Without `mesh` the model is on one device (the first of `devices`, default this process's first).
    `mesh`: axis sizes ('fsdp=4,tensor=2' or a dict, see `parse_mesh`) over `devices` (default this
    process's devices, so each process of a multi-process job holds a whole replica). `dtype`: 'bf16'
    or 'fp32' for parameters and compute (default: the checkpoint's). `config.mesh` is the mesh used.
    """
    from pegasus_jax.train.state import TrainSpec

    workdir, step = checkpoint.resolve_checkpoint(path)
    meta = checkpoint.read_metadata(workdir, step)
    config = config_from_metadata(meta)
    config.mesh.update(parse_mesh(mesh if mesh is not None else {}))
    config.mesh.dcn_data, config.mesh.dcn_fsdp = -1, 1  # the inference devices, whatever slices trained it
    if dtype is not None:
        if dtype not in DTYPES:
            raise ConfigError(f"--dtype {dtype!r}: expected bf16 or fp32")
        config.model.dtype = config.model.param_dtype = DTYPES[dtype]
    validate(config)
    devices = devices or jax.local_devices()
    mesh = sharding.make_mesh(config.mesh, devices if mesh is not None else devices[:1])
    spec = TrainSpec.create(config, mesh)
    # Orbax casts each shard to the target's dtype as it reads it: a bf16 load never holds fp32 copies.
    state = checkpoint.restore_model(checkpoint.manager(workdir, None, read_only=True), step, spec.abstract_state())
    model = spec.model(state["params"], state["frozen"], state["rest"])
    return model, config, tokenizer_from_metadata(meta), step
