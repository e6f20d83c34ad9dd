"""Export a checkpoint to PyTorch folders that load without JAX (SPEC 7).

    OUT/llm   the decoder as a plain Hugging Face Llama, Qwen2 or Mistral (its decoder.family):
              config.json, generation_config.json, sharded safetensors + index, tokenizer
              (AutoModelForCausalLM / AutoTokenizer, no custom code)
    OUT/full  the whole model: the same files plus configuration_pegasus.py and modeling_pegasus.py
              (AutoModel.from_pretrained(OUT/full, trust_remote_code=True))

Streaming: parameters are read from the checkpoint one tensor at a time (never the optimizer state),
converted to `dtype` and appended to the shard files on disk as they arrive, so host memory stays at
about the largest tensor plus a few of its checkpoint chunks (the compressed bytes, the decoded chunk),
whatever the model's size. Checkpoints are written in chunks of at most `checkpoint.CHUNK_BYTES`
(one device's shard or less for an FSDP-sharded run, saved by one process or many). The source may be
any path epath and TensorStore read (gs://... included). A bar shows the bytes written. Each folder
records its source in pegasus_export.json (checkpoint, step, config, dtype, LoRA merge).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys

import numpy as np
from tqdm import tqdm

from pegasus_jax.errors import UserError
from pegasus_jax.infer.checkpoint_loader import config_from_metadata, tokenizer_from_metadata
from pegasus_jax.interop import checkpoint_tensors
from pegasus_jax.interop.hf_llama import llama_config_to_hf, llama_hf_items
from pegasus_jax.interop.hf_pegasus import full_config_to_hf, full_hf_items
from pegasus_jax.interop.hf_tokenizer import write_hf_tokenizer
from pegasus_jax.interop.safetensors_shards import DTYPES, ShardWriter
from pegasus_jax.train import checkpoint

TORCH_CODE = os.path.join(os.path.dirname(__file__), "torch_pegasus")
CODE_FILES = ("configuration_pegasus.py", "modeling_pegasus.py")
PROVENANCE = "pegasus_export.json"
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _map_large_buffers_separately() -> None:
    """glibc serves buffers under its adaptive mmap threshold (up to 32 MiB) from the heap, where the
    freed tensors of a streaming export fragment and stay resident; a fixed 1 MiB threshold maps each
    tensor on its own and returns it on free. Elsewhere (no glibc) this is a no-op."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


def _write_json(path: str, obj: dict) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def export(source: str, out: str, *, dtype: str = "fp32", merge_lora: bool = False, lora_alpha: float | None = None,
           max_shard_bytes: int = 2 << 30) -> dict:
    """Write OUT/llm and OUT/full from the checkpoint `source`; returns a summary."""
    _map_large_buffers_separately()
    workdir, step = checkpoint.resolve_checkpoint(source)
    meta = checkpoint.read_metadata(workdir, step)
    config = config_from_metadata(meta)
    params = checkpoint_tensors.lazy_params(workdir, step)
    alpha = config.model.lora.alpha if lora_alpha is None else lora_alpha
    if checkpoint_tensors.has_lora(params):
        if not merge_lora:
            raise UserError(f"--checkpoint: {source} has LoRA adapters; pass --merge-lora (and optionally "
                            "--lora-alpha) to fold them into the exported weights")
        params = checkpoint_tensors.merge_lora_lazily(params, alpha)
    elif merge_lora:
        raise UserError(f"--merge-lora: {source} has no LoRA adapters")
    provenance = {"source_checkpoint": str(checkpoint.root(workdir)), "step": step, "dtype": dtype,
                  "merged_lora_alpha": alpha if merge_lora else None, "config": meta["config"]}
    tok = tokenizer_from_metadata(meta)  # a UserError before anything is written
    llm_dir, full_dir = os.path.join(out, "llm"), os.path.join(out, "full")
    counts = {}
    elements = checkpoint_tensors.num_elements(params["decoder"]) + checkpoint_tensors.num_elements(params)
    bar = tqdm(total=elements * np.dtype(DTYPES[dtype]).itemsize, unit="B", unit_scale=True, unit_divisor=1024,
               desc="export", disable=not sys.stderr.isatty())
    for folder, items, hf_config in (
            (llm_dir, llama_hf_items(params["decoder"], config.model.decoder),
             llama_config_to_hf(config.model.decoder, tok.bos_id, tok.eos_id)),
            (full_dir, full_hf_items(params, config), full_config_to_hf(config, tok.bos_id, tok.eos_id))):
        writer = ShardWriter(folder, max_shard_bytes, dtype)
        for name, array in items:
            bar.update(writer.add(name, array))
        counts[os.path.basename(folder)] = writer.close({"source_step": str(step)})
        _write_json(os.path.join(folder, "config.json"),
                    {**hf_config, "torch_dtype": TORCH_DTYPES[dtype], "dtype": TORCH_DTYPES[dtype]})
        _write_json(os.path.join(folder, "generation_config.json"),
                    {"bos_token_id": tok.bos_id, "eos_token_id": [tok.eos_id, tok.eot_id],
                     "pad_token_id": tok.pad_id})
        _write_json(os.path.join(folder, PROVENANCE), provenance)
        write_hf_tokenizer(tok, folder)
    bar.close()
    for name in CODE_FILES:
        shutil.copyfile(os.path.join(TORCH_CODE, name), os.path.join(full_dir, name))
    return {"step": step, "llm": llm_dir, "full": full_dir, "tensors": counts}
