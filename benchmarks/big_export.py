"""Export of a big checkpoint on one host: peak RSS of `pegasus-jax export` against the checkpoint's size.

    .venv/bin/python benchmarks/big_export.py --workdir /tmp/big-export [--dtype fp32|bf16] [--keep]

1. A child process initialises `configs/pegasus_1b.py` (1.38B parameters) with its AdamW state, straight
   into its shardings, and saves it as the trainer does (Orbax, step 0): parameters and both moments,
   about 16.5 GB.
2. `pegasus-jax export` runs in a fresh child; its peak RSS is its own ru_maxrss (os.wait4 on it alone).
3. `LlamaForCausalLM.from_pretrained(OUT/llm)` (the model once, in this process): its state dict must
   name exactly the tensors of the shards' index, and a few of them must equal the checkpoint's,
   read one at a time from the checkpoint (the exported dtype's rounding of them, bit for bit).

The bound: peak RSS <= BOUND_GIB while exporting. Prints one JSON object and a markdown table; the
workdir is deleted afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.harness import markdown_table  # noqa: E402  (sets JAX_PLATFORMS=cpu before JAX loads)

BOUND_GIB = 2.0
# (HF name, checkpoint path under the merged parameter tree, layer index or None, transposed)
COMPARED = (("model.embed_tokens.weight", ("decoder", "embed_tokens"), None, False),
            ("model.layers.0.self_attn.q_proj.weight", ("decoder", "layers", "layers", "q", "kernel"), 0, True),
            ("model.layers.15.mlp.down_proj.weight", ("decoder", "layers", "layers", "down", "kernel"), 15, True),
            ("model.norm.weight", ("decoder", "norm", "scale"), None, False))


def child(*args: str) -> tuple[float, resource.struct_rusage]:
    """A fresh child process: its wall seconds and its own rusage; its stderr is passed through."""
    start = time.time()
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit code {os.waitstatus_to_exitcode(status)}")
    return time.time() - start, usage


def save_checkpoint(workdir: str) -> None:
    """Phase 1 (in its own process): the 1B model and its AdamW state, saved as the trainer saves step 0.

    16.5 GB of state would not fit beside the other jobs of a 23 GiB host, so each initialised tensor
    is moved into a file-backed NumPy memmap (pages the kernel can write out and drop) as soon as it
    exists, and the Adam moments are filled in there with uniform random values of a trained run's scale
    (random, so they take their real size on disk instead of compressing away as zeros).
    """
    import jax
    import numpy as np
    from flax import nnx

    from data_pipelines.text.tokenizer import train
    from pegasus_jax.config import load_config
    from pegasus_jax.flax_settings import configure
    from pegasus_jax.models.pegasus import Pegasus
    from pegasus_jax.train import checkpoint
    from pegasus_jax.train.optimizer import make_optimizer
    from pegasus_jax.train.state import count_params, trainable_filter

    configure()
    config = load_config(os.path.join(ROOT, "configs", "pegasus_1b.py"))
    tokenizer = train([f"a clip of shape {i} moving left then right" for i in range(300)], 320,
                      os.path.join(workdir, "tok"))
    backing = os.path.join(workdir, "memmaps")
    os.makedirs(backing)
    rng = np.random.default_rng(0)

    def backed(shape, dtype, fill) -> np.ndarray:
        """A memmap of `shape`, filled 16M elements at a time by fill(start, n) (flat indices)."""
        out = np.lib.format.open_memmap(os.path.join(backing, f"{len(os.listdir(backing))}.npy"), mode="w+",
                                        dtype=dtype, shape=shape)
        flat = out.reshape(-1)
        for start in range(0, flat.size, 1 << 24):
            n = min(1 << 24, flat.size - start)
            flat[start:start + n] = fill(start, n)
        return out

    def moved(x: jax.Array) -> np.ndarray:
        host = np.asarray(x)
        out = backed(x.shape, host.dtype, lambda start, n: host.reshape(-1)[start:start + n])
        x.delete()
        return out

    def init():
        model = Pegasus(config.model, rngs=nnx.Rngs(config.seed))
        _, trainable, frozen, rest = nnx.split(model, trainable_filter(config.train.stage), nnx.Param, ...)
        return trainable.to_pure_dict(), frozen.to_pure_dict(), rest.to_pure_dict()

    params, frozen, rest = (jax.tree.map(moved, t) for t in jax.jit(init)())
    print(f"initialised {count_params(params) + count_params(frozen)} parameters", file=sys.stderr)
    # Adam's moments (and its step count, zero) in the optimizer's own tree structure.
    opt_state = jax.tree.map(
        lambda s: np.zeros(s.shape, s.dtype) if s.ndim == 0 else
        backed(s.shape, s.dtype, lambda start, n: rng.random(n, np.float32) * 1e-3),
        jax.eval_shape(make_optimizer(config.train).init, params))
    state = {"step": np.zeros((), np.int32), "params": params, "frozen": frozen, "rest": rest, "opt_state": opt_state,
             "nan_skips": np.zeros((), np.int32)}
    checkpoint.save_first_step(workdir, config, state, tokenizer)
    shutil.rmtree(backing)


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def check_llama(workdir: str, llm_dir: str, dtype: str) -> dict:
    """from_pretrained on the exported folder; names against the index, a few tensors against the checkpoint."""
    import ml_dtypes
    import numpy as np
    import torch
    import transformers

    from pegasus_jax.interop.checkpoint_tensors import lazy_params

    index = json.load(open(os.path.join(llm_dir, "model.safetensors.index.json")))
    model = transformers.LlamaForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)
    names = set(model.state_dict()) - ({"lm_head.weight"} if model.config.tie_word_embeddings else set())
    if names != set(index["weight_map"]):
        raise SystemExit(f"the index and the model disagree: {sorted(names ^ set(index['weight_map']))[:5]}")
    params, state = lazy_params(workdir, 0), model.state_dict()
    rounding = np.float32 if dtype == "fp32" else ml_dtypes.bfloat16
    for name, path, layer, transposed in COMPARED:
        leaf = params
        for key in path:
            leaf = leaf[key]
        want = np.asarray(leaf[layer] if layer is not None else leaf)
        want = (want.T if transposed else want).astype(rounding).astype(np.float32)
        if not np.array_equal(state[name].numpy(), want):
            raise SystemExit(f"{name}: the exported tensor differs from the checkpoint's")
    return {"from_pretrained_parameters": sum(p.numel() for p in model.parameters()),
            "tensors_compared": [c[0] for c in COMPARED]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="default: a temporary folder")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint and the export")
    parser.add_argument("--save-only", metavar="WORKDIR", help=argparse.SUPPRESS)  # phase 1, in the child
    args = parser.parse_args()
    if args.save_only:
        save_checkpoint(args.save_only)
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="big-export-")
    run, out = os.path.join(workdir, "run"), os.path.join(workdir, "export")
    os.makedirs(run, exist_ok=True)
    try:
        save_s, save_usage = child(os.path.abspath(__file__), "--save-only", run)
        ckpt = os.path.join(run, "checkpoints", "0")
        export_s, export_usage = child("-m", "pegasus_jax.cli.main", "export", "--checkpoint", run, "--out", out,
                                       "--dtype", args.dtype)
        result = {
            "config": "configs/pegasus_1b.py", "dtype": args.dtype,
            "checkpoint_bytes": folder_bytes(ckpt), "state_bytes": folder_bytes(os.path.join(ckpt, "state")),
            "export_bytes": {"llm": folder_bytes(os.path.join(out, "llm")), "full": folder_bytes(os.path.join(out, "full"))},
            "save_seconds": round(save_s, 1), "save_peak_rss_bytes": save_usage.ru_maxrss * 1024,
            "export_seconds": round(export_s, 1), "export_peak_rss_bytes": export_usage.ru_maxrss * 1024,
            "bound_gib": BOUND_GIB, **check_llama(run, os.path.join(out, "llm"), args.dtype),
            "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result["within_bound"] = result["export_peak_rss_bytes"] <= BOUND_GIB * 2 ** 30
    print(json.dumps(result, indent=2))
    gib = lambda b: f"{b / 2 ** 30:.2f} GiB"
    print(markdown_table(
        ["checkpoint (state)", "export dtype", "export llm + full", "export time", "export peak RSS", "bound", "save peak RSS"],
        [[f"{gib(result['checkpoint_bytes'])} ({gib(result['state_bytes'])})", args.dtype,
          f"{gib(result['export_bytes']['llm'])} + {gib(result['export_bytes']['full'])}", f"{export_s:.0f} s",
          gib(result["export_peak_rss_bytes"]), f"<= {BOUND_GIB} GiB", gib(result["save_peak_rss_bytes"])]]))
    if not result["within_bound"]:
        raise SystemExit(f"export peak RSS {gib(result['export_peak_rss_bytes'])} is over {BOUND_GIB} GiB")


if __name__ == "__main__":
    main()
