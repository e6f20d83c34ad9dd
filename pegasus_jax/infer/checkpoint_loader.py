"""Load a trained model for inference from `--checkpoint` (a workdir or one step's folder).

The checkpoint is self-contained: its metadata item holds the resolved config and the tokenizer, so
nothing else from the training run is needed.
"""
from __future__ import annotations

import base64
import copy
import os
import tempfile

import jax
import ml_collections

from pegasus_jax import sharding
from pegasus_jax.config import base_config, validate
from pegasus_jax.errors import UserError
from pegasus_jax.train import checkpoint


def _backfill(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict) -> None:
    """Fields newer than the checkpoint (mesh.dcn_*, train.stop_check_every, ...) take their defaults."""
    for field, default in defaults.items():
        if field not in config:
            config[field] = default
        elif isinstance(default, ml_collections.ConfigDict) and isinstance(config[field], ml_collections.ConfigDict):
            _backfill(config[field], default)


def _upgrade(config: dict) -> dict:
    """Fields an older release kept elsewhere: data.transcript_tokens is model.transcript_tokens now."""
    data, model = config.get("data", {}), config.get("model", {})
    if "transcript_tokens" in data:
        model.setdefault("transcript_tokens", data.pop("transcript_tokens"))
    return config


def config_from_metadata(meta: dict) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(_upgrade(copy.deepcopy(meta["config"])))
    _backfill(config, base_config())
    # older logical axis names (batch, length) read as today's (act_batch, act_length)
    config.mesh.axis_rules = sharding.upgrade_axis_rules(config.mesh.axis_rules)
    return validate(config)


def tokenizer_file(meta: dict, directory: str) -> str:
    """Write the checkpoint's tokenizer.model into `directory` and return its path."""
    tok = meta.get("tokenizer")
    if not tok:
        raise UserError("--checkpoint: this checkpoint has no tokenizer in its metadata")
    path = os.path.join(directory, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(base64.b64decode(tok["model_b64"]))
    return path


def load(path: str, devices=None):
    """(model, config, tokenizer, step) from a checkpoint, the model's parameters on `devices`."""
    from data_pipelines.text.tokenizer import Tokenizer
    from pegasus_jax.train.state import TrainSpec

    workdir, step = checkpoint.resolve_checkpoint(path)
    meta = checkpoint.read_metadata(workdir, step)
    config = config_from_metadata(meta)
    config.mesh.data, config.mesh.fsdp, config.mesh.context, config.mesh.tensor = -1, 1, 1, 1
    config.mesh.dcn_data, config.mesh.dcn_fsdp = -1, 1  # the inference devices, whatever slices trained it
    mesh = sharding.make_mesh(config.mesh, devices or jax.devices()[:1])
    spec = TrainSpec.create(config, mesh)
    state = checkpoint.restore_model(checkpoint.manager(workdir, None, read_only=True), step, spec.abstract_state())
    model = spec.model(state["params"], state["frozen"], state["rest"])
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = Tokenizer.load(tokenizer_file(meta, tmp))
    return model, config, tokenizer, step
