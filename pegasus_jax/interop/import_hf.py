"""Import local Hugging Face folders into a new checkpoint of our model (SPEC 7).

--vision (CLIP / SigLIP), --audio (Whisper) and --llm (a Llama, Qwen2 or Mistral causal LM with its
tokenizer: a SentencePiece tokenizer.model or a tokenizer.json folder) each fill their part; --vlm fills
the vision tower, vision projector and LLM from one LLaVA-NeXT-Video folder (hf_llava.py). Their
config.json decides the parts' shapes (over --config, which defaults to the base config), every other
part (temporal layers, projectors, markers, LoRA adapters) starts as the config initialises it. The
LLM's vocabulary grows by the special tokens its tokenizer lacks (vocab_growth.py). An imported tower
brings its preprocessing: its HF image processor's resize and crop (model.vision.frame_resize) and, for
Whisper, the padded 30 s window (model.audio.whisper_window). --config.a.b=v flags win over all of these.
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


def _config_for(args_config: str | None, overrides: dict, vision, audio, llm, full, vlm, tokenizer):
    from pegasus_jax.config import apply_overrides, base_config, load_config, validate
    from pegasus_jax.infer.checkpoint_loader import config_from_metadata
    from pegasus_jax.interop.export import PROVENANCE
    from pegasus_jax.interop.hf_audio import audio_config_from_hf
    from pegasus_jax.interop.hf_llama import llama_config_from_hf
    from pegasus_jax.interop.hf_llava import llava_config_from_hf
    from pegasus_jax.interop.hf_vision import vision_config_from_hf
    from pegasus_jax.interop.vocab_growth import grown_vocab_size

    if full:
        path = os.path.join(full, PROVENANCE)
        if not os.path.isfile(path):
            raise UserError(f"--full: {full} is not a pegasus-jax export (no {PROVENANCE})")
        with open(path) as f:
            config = config_from_metadata({"config": json.load(f)["config"]})
        return validate(apply_overrides(config, overrides))
    config = load_config(args_config, overrides) if args_config else apply_overrides(base_config(), overrides)
    m = config.model
    if vlm:
        for section, fields in llava_config_from_hf(read_config_json(vlm, "--vlm")).items():
            m[section].update(fields)
    if vision:
        m.vision.update(vision_config_from_hf(read_config_json(vision, "--vision")))
    if vision or vlm:
        m.vision.frame_resize = m.vision.kind
    if audio:
        m.audio.update(audio_config_from_hf(read_config_json(audio, "--audio")), whisper_window=True)
    if llm:
        m.decoder.update(llama_config_from_hf(read_config_json(llm, "--llm")))
    if llm or vlm:
        m.decoder.vocab_size = grown_vocab_size(m.decoder.vocab_size, tokenizer, "--vlm" if vlm else "--llm")
    return validate(apply_overrides(config, overrides))


def import_hf(out: str, *, config_path: str | None = None, overrides: dict | None = None, vision: str | None = None,
              audio: str | None = None, llm: str | None = None, full: str | None = None, vlm: str | None = None) -> str:
    """Write the checkpoint OUT/checkpoints/0; returns a report of what was loaded and what is new."""
    from data_pipelines.text.tokenizer import load_tokenizer
    from pegasus_jax.interop.common import load_params, pretrained_params
    from pegasus_jax.interop.hf_audio import audio_from_hf
    from pegasus_jax.interop.hf_llama import llama_from_hf
    from pegasus_jax.interop.hf_llava import llava_from_hf
    from pegasus_jax.interop.hf_pegasus import full_from_hf
    from pegasus_jax.interop.hf_vision import vision_from_hf
    from pegasus_jax.interop.vocab_growth import grow_decoder_vocab
    from pegasus_jax.models.pegasus import Pegasus

    if full and (vision or audio or llm or vlm):
        raise UserError("--full reads a whole model: do not combine it with --vision/--audio/--llm/--vlm")
    if vlm and (vision or llm):
        raise UserError("--vlm brings its own vision tower and LLM: do not combine it with --vision/--llm")
    if not (full or vision or audio or llm or vlm):
        raise UserError("nothing to import: give --vision, --audio, --llm, --vlm or --full")
    if os.path.exists(os.path.join(out, "checkpoints")):
        raise UserError(f"--out: {out} already holds checkpoints")
    tokenizer = None
    tokenizer_source = full or llm or vlm
    if tokenizer_source:
        if not any(os.path.isfile(os.path.join(tokenizer_source, f)) for f in ("tokenizer.model", "tokenizer.json")):
            flag = "--full" if full else "--llm" if llm else "--vlm"
            raise UserError(f"{flag}: {tokenizer_source} has no tokenizer.model or tokenizer.json")
        tokenizer = load_tokenizer(tokenizer_source)
    config = _config_for(config_path, overrides or {}, vision, audio, llm, full, vlm, tokenizer)
    if audio and not config.model.audio.enabled:
        raise UserError("--audio: config.model.audio.enabled is False")
    if tokenizer:
        tokenizer.check_fits(config.model.decoder.vocab_size)
    elif config.data.tokenizer:  # may be None: the checkpoint then has no tokenizer
        tokenizer = load_tokenizer(config.data.tokenizer)

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
    grown = 0
    if llm:
        nested = _mapped("--llm", llm, lambda sd: llama_from_hf(sd, m.decoder))
        grown = grow_decoder_vocab(nested, m.decoder.vocab_size)
        parts.append((model.decoder, nested, f"--llm {llm}: "))
    if vlm:
        nested = _mapped("--vlm", vlm, lambda sd: llava_from_hf(sd, m))
        grown = grow_decoder_vocab(nested["decoder"], m.decoder.vocab_size)
        parts += [(model.video_encoder.frames, nested["frames"], f"--vlm {vlm}: "),
                  (model.alignment.vision_projector, nested["vision_projector"], f"--vlm {vlm}: "),
                  (model.decoder, nested["decoder"], f"--vlm {vlm}: ")]
    for module, nested, where in parts:
        load_params(module, nested, where)
    loaded = sum(_count(nested) for _, nested, _ in parts)
    total = len(traverse_util.flatten_dict(nnx.state(model, nnx.Param).to_pure_dict()))
    write_checkpoint(model, config, tokenizer, out)
    pretrained = len(traverse_util.flatten_dict(pretrained_params(model).to_pure_dict()))
    report = (f"wrote {out} (step 0): loaded {loaded} tensors, {total - loaded} new ({total - pretrained} LoRA), "
              f"tokenizer {'from ' + (tokenizer_source or config.data.tokenizer) if tokenizer else 'none'}")
    if llm or vlm:
        report += f"; vocabulary {m.decoder.vocab_size}: {grown} rows added at the mean of the existing rows"
        if grown:
            report += f" ({', '.join(tokenizer.appended[-grown:])})"
        if tokenizer.on_reserved:
            report += f"; {', '.join(tokenizer.on_reserved)} on the tokenizer's reserved tokens"
    return report


def write_checkpoint(model, config, tokenizer, out: str) -> None:
    """`model` as step 0 of a run in OUT: the train state the trainer saves (fresh optimizer state)."""
    import jax.numpy as jnp

    from pegasus_jax.train import checkpoint
    from pegasus_jax.train.optimizer import make_optimizer
    from pegasus_jax.train.state import trainable_filter

    _, trainable, frozen, rest = nnx.split(model, trainable_filter(config), nnx.Param, ...)
    params = trainable.to_pure_dict()
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "frozen": frozen.to_pure_dict(),
             "rest": rest.to_pure_dict(), "opt_state": make_optimizer(config.train).init(params),
             "nan_skips": jnp.zeros((), jnp.int32)}
    checkpoint.save_first_step(out, config, state, tokenizer)
