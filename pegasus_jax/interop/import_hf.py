"""Import local Hugging Face folders into a new checkpoint of our model (SPEC 7).

--vision (CLIP / SigLIP), --audio (Whisper) and --llm (a Llama with a SentencePiece tokenizer.model)
each fill their part; their config.json decides the part's shape (overriding --config), every other
part (temporal layers, projectors, markers, LoRA adapters) starts as the config initialises it.
--full reads a whole-model export (OUT/full) back, config and tokenizer included: import(export(x))
is x. The checkpoint is written in the trainer's layout at step 0, so generate / eval / export and
`train --config.train.init_from=CKPT` use it.
"""
from __future__ import annotations

import json
import os

import numpy as np
from flax import nnx, traverse_util

from pegasus_jax.errors import UserError


def read_config_json(folder: str, flag: str) -> dict:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{flag}: no config.json in {folder}")
    with open(path) as f:
        return json.load(f)


def read_safetensors(folder: str, flag: str) -> dict[str, np.ndarray]:
    """Every tensor of a folder's model.safetensors or sharded model-*.safetensors (with the index)."""
    from safetensors.numpy import load_file

    from pegasus_jax.interop.safetensors_shards import INDEX

    index = os.path.join(folder, INDEX)
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(folder, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise UserError(f"{flag}: no model.safetensors or {INDEX} in {folder}")
    tensors = {}
    for name in files:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise UserError(f"{flag}: shard {name} listed in the index is missing from {folder}")
        tensors.update(load_file(path))
    return tensors


def _mapped(flag: str, folder: str, mapping) -> dict:
    """A folder's tensors through a part's mapping; its errors (a missing or extra tensor) name the folder."""
    tensors = read_safetensors(folder, flag)
    try:
        return mapping(tensors)
    except UserError as e:
        raise UserError(f"{flag} {folder}: {e}") from None


def _count(nested: dict) -> int:
    return len(traverse_util.flatten_dict(nested))


def _config_for(args_config: str | None, overrides: dict, vision, audio, llm, full):
    from pegasus_jax.config import apply_overrides, load_config, validate
    from pegasus_jax.infer.checkpoint_loader import config_from_metadata
    from pegasus_jax.interop.export import PROVENANCE
    from pegasus_jax.interop.hf_audio import audio_config_from_hf
    from pegasus_jax.interop.hf_llama import llama_config_from_hf
    from pegasus_jax.interop.hf_vision import vision_config_from_hf

    if full:
        path = os.path.join(full, PROVENANCE)
        if not os.path.isfile(path):
            raise UserError(f"--full: {full} is not a pegasus-jax export (no {PROVENANCE})")
        with open(path) as f:
            config = config_from_metadata({"config": json.load(f)["config"]})
        return validate(apply_overrides(config, overrides))
    if not args_config:
        raise UserError("--config is required (unless --full)")
    config = load_config(args_config, overrides)
    m = config.model
    if vision:
        m.vision.update(vision_config_from_hf(read_config_json(vision, "--vision")))
    if audio:
        m.audio.update(audio_config_from_hf(read_config_json(audio, "--audio")))
    if llm:
        m.decoder.update(llama_config_from_hf(read_config_json(llm, "--llm")))
    return validate(config)


def import_hf(out: str, *, config_path: str | None = None, overrides: dict | None = None, vision: str | None = None,
              audio: str | None = None, llm: str | None = None, full: str | None = None) -> str:
    """Write the checkpoint OUT/checkpoints/0; returns a report of what was loaded and what is new."""
    from data_pipelines.text.tokenizer import Tokenizer
    from pegasus_jax.interop.common import load_params, pretrained_params
    from pegasus_jax.interop.hf_audio import audio_from_hf
    from pegasus_jax.interop.hf_llama import llama_from_hf
    from pegasus_jax.interop.hf_pegasus import full_from_hf
    from pegasus_jax.interop.hf_vision import vision_from_hf
    from pegasus_jax.models.pegasus import Pegasus

    if full and (vision or audio or llm):
        raise UserError("--full reads a whole model: do not combine it with --vision/--audio/--llm")
    if not (full or vision or audio or llm):
        raise UserError("nothing to import: give --vision, --audio, --llm or --full")
    if os.path.exists(os.path.join(out, "checkpoints")):
        raise UserError(f"--out: {out} already holds checkpoints")
    config = _config_for(config_path, overrides or {}, vision, audio, llm, full)
    if audio and not config.model.audio.enabled:
        raise UserError("--audio: config.model.audio.enabled is False")
    tokenizer_source = full or llm
    tokenizer_path = None
    if tokenizer_source:
        tokenizer_path = os.path.join(tokenizer_source, "tokenizer.model")
        flag = "--full" if full else "--llm"
        if not os.path.isfile(tokenizer_path):
            raise UserError(f"{flag}: {tokenizer_source} has no tokenizer.model (a SentencePiece tokenizer is needed)")
        Tokenizer.load(tokenizer_path).check_fits(config.model.decoder.vocab_size)
    else:
        tokenizer_path = config.data.tokenizer  # may be None: the checkpoint then has no tokenizer

    model = Pegasus(config.model, rngs=nnx.Rngs(config.seed))
    m = config.model
    parts = []  # (module, nested params, where)
    if full:
        nested = _mapped("--full", full, lambda sd: full_from_hf(sd, config))
        parts += [(model.video_encoder, nested["video_encoder"], f"--full {full}: "),
                  (model.alignment, nested["alignment"], f"--full {full}: "),
                  (model.decoder, nested["decoder"], f"--full {full}: ")]
        if m.audio.enabled:
            parts.append((model.audio_encoder, nested["audio_encoder"], f"--full {full}: "))
    if vision:
        parts.append((model.video_encoder.frames, _mapped("--vision", vision, lambda sd: vision_from_hf(sd, m.vision)),
                      f"--vision {vision}: "))
    if audio:
        parts.append((model.audio_encoder, _mapped("--audio", audio, lambda sd: audio_from_hf(sd, m.audio)),
                      f"--audio {audio}: "))
    if llm:
        parts.append((model.decoder, _mapped("--llm", llm, lambda sd: llama_from_hf(sd, m.decoder)), f"--llm {llm}: "))
    for module, nested, where in parts:
        load_params(module, nested, where)
    loaded = sum(_count(nested) for _, nested, _ in parts)
    total = len(traverse_util.flatten_dict(nnx.state(model, nnx.Param).to_pure_dict()))
    write_checkpoint(model, config, tokenizer_path, out)
    pretrained = len(traverse_util.flatten_dict(pretrained_params(model).to_pure_dict()))
    return (f"wrote {out} (step 0): loaded {loaded} tensors, {total - loaded} new "
            f"({total - pretrained} LoRA), tokenizer {'from ' + tokenizer_path if tokenizer_path else 'none'}")


def write_checkpoint(model, config, tokenizer_path: str | None, out: str) -> None:
    """`model` as step 0 of a run in OUT: the train state the trainer saves (fresh optimizer state)."""
    import jax.numpy as jnp

    from pegasus_jax.train import checkpoint
    from pegasus_jax.train.optimizer import make_optimizer
    from pegasus_jax.train.state import trainable_filter

    _, trainable, frozen, rest = nnx.split(model, trainable_filter(config.train.stage), nnx.Param, ...)
    params = trainable.to_pure_dict()
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "frozen": frozen.to_pure_dict(),
             "rest": rest.to_pure_dict(), "opt_state": make_optimizer(config.train).init(params),
             "nan_skips": jnp.zeros((), jnp.int32)}
    checkpoint.save_first_step(out, config, state, tokenizer_path)
