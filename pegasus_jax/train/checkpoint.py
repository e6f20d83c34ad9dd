"""Orbax checkpoints of a run: train state, Grain iterator, RNG and JSON metadata, one folder per step.

Layout: WORKDIR/checkpoints/<step>/{state, data, rng, metadata}. Orbax writes each step into a
temporary folder and renames it only once every item is complete, so a save cut short by SIGKILL
leaves no `<step>` folder and `latest_step()` never sees it.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from pegasus_jax.errors import UserError

STATE, DATA, RNG, METADATA = "state", "data", "rng", "metadata"
# Largest stored chunk of an array: a reader that wants one tensor, or one layer of a stacked tensor
# (export), decodes chunks of this size instead of the whole array that one process saved.
CHUNK_BYTES = 64 << 20


class _DropReadOnlyNotice(logging.Filter):
    """Orbax warns "Given directory is read only" whenever a manager is made for reading, which is
    what was asked for; on the CLI it would bury a one-line error under three warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Given directory is read only")


logging.getLogger("absl").addFilter(_DropReadOnlyNotice())


def manager(workdir: str, train_cfg, *, read_only: bool = False) -> ocp.CheckpointManager:
    """The run's CheckpointManager; `train_cfg` (keep policy) may be None when only reading."""
    keep = train_cfg.keep_checkpoints if train_cfg is not None else None
    keep_period = train_cfg.keep_every if train_cfg is not None and train_cfg.keep_every > 0 else None
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, keep_period=keep_period, create=not read_only,
        enable_async_checkpointing=not read_only, read_only=read_only, save_interval_steps=0 if read_only else 1)
    return ocp.CheckpointManager(root(workdir) / "checkpoints", options=options)


def root(workdir: str) -> epath.Path:
    """Orbax wants absolute paths; cloud paths (gs://...) already are."""
    return epath.Path(workdir if "://" in str(workdir) else os.path.abspath(workdir))


def metadata(config, tokenizer, step: int) -> dict:
    """Config, tokenizer (its bytes inline, base64, and its back end) and code version: a checkpoint is
    self-contained. `tokenizer`: a Tokenizer, the path of one, or None."""
    from data_pipelines.text.tokenizer import load_tokenizer
    from pegasus_jax.version import __version__
    meta = {"config": config.to_dict(), "version": __version__, "step": step, "tokenizer": None}
    if tokenizer:
        is_path = isinstance(tokenizer, (str, os.PathLike))
        tok = load_tokenizer(tokenizer) if is_path else tokenizer
        blob = tok.to_bytes()
        meta["tokenizer"] = {"model_b64": base64.b64encode(blob).decode(), "sha256": hashlib.sha256(blob).hexdigest(),
                             "format": tok.format, "source": str(tokenizer) if is_path else "in memory"}
    return _jsonable(meta)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    return x


def save(mngr: ocp.CheckpointManager, step: int, state: dict, data_iterator, rng: jax.Array, meta: dict,
         *, force: bool = False) -> bool:
    items = {
        STATE: ocp.args.StandardSave(state, save_args=jax.tree.map(lambda _: ocp.SaveArgs(chunk_byte_size=CHUNK_BYTES),
                                                                   state)),
        RNG: ocp.args.JsonSave({"key": np.asarray(jax.random.key_data(rng)).tolist()}),
        METADATA: ocp.args.JsonSave(meta),
    }
    if data_iterator is not None:
        items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    return mngr.save(step, args=ocp.args.Composite(**items), force=force)


def save_first_step(workdir: str, config, state: dict, tokenizer) -> None:
    """`state` (a whole train state) as step 0 of a run in WORKDIR, with its metadata (`tokenizer`: a
    Tokenizer, the path of one, or None); returns once written."""
    mngr = manager(workdir, config.train)
    save(mngr, 0, state, None, jax.random.key(config.seed), metadata(config, tokenizer, 0), force=True)
    mngr.wait_until_finished()
    mngr.close()


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: dict, data_iterator) -> tuple[dict, jax.Array, dict]:
    items = {STATE: ocp.args.StandardRestore(abstract_state), METADATA: ocp.args.JsonRestore()}
    items[RNG] = ocp.args.JsonRestore()
    if data_iterator is not None:
        items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    rng = jax.random.wrap_key_data(np.asarray(restored[RNG]["key"], np.uint32))
    return restored[STATE], rng, restored[METADATA]


def restore_model(mngr: ocp.CheckpointManager, step: int, abstract_state: dict) -> dict:
    """Only the model's parts of the saved train state (params, frozen, rest), for inference: the
    optimizer moments, twice the parameters' bytes, stay on disk."""
    wanted = {k: abstract_state[k] for k in ("params", "frozen", "rest")}
    args = ocp.args.PyTreeRestore(item=wanted, restore_args=ocp.checkpoint_utils.construct_restore_args(wanted),
                                  partial_restore=True)
    return mngr.restore(step, args=ocp.args.Composite(**{STATE: args}))[STATE]


def resolve_checkpoint(path: str) -> tuple[str, int]:
    """`--checkpoint` accepts a training workdir (its latest complete step) or one step's folder.

    Returns (workdir, step).
    """
    p = epath.Path(path)
    if not p.exists():
        raise UserError(f"--checkpoint: {path} does not exist")
    if (p / METADATA).exists() and p.name.isdigit():
        return str(p.parent.parent), int(p.name)
    workdir = p.parent if p.name == "checkpoints" else p
    if not (workdir / "checkpoints").exists():
        raise UserError(f"--checkpoint: {path} is neither a training workdir nor a checkpoint step folder")
    step = manager(str(workdir), None, read_only=True).latest_step()
    if step is None:
        raise UserError(f"--checkpoint: {path} holds no complete checkpoint")
    return str(workdir), step


def read_metadata(workdir: str, step: int) -> dict[str, Any]:
    mngr = manager(workdir, None, read_only=True)
    return mngr.restore(step, args=ocp.args.Composite(**{METADATA: ocp.args.JsonRestore()}))[METADATA]
