"""Export of a big checkpoint on one host: peak RSS of `pegasus-jax export` against the checkpoint's size.

    .venv/bin/python benchmarks/big_export.py --workdir /tmp/big-export [--dtype fp32|bf16] [--keep]

1. A child process makes the train state of `configs/pegasus_1b.py` (1.38B parameters) with its AdamW
   moments (the trainer's tree, shapes and dtypes; random values, see `save_checkpoint`) and saves it as
   the trainer does (Orbax, step 0): about 16.5 GB.
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
    """Phase 1 (in its own process): a train state of the 1B model with its AdamW moments, saved as the
    trainer saves step 0.

    The state's tree, shapes and dtypes are the trainer's (`TrainSpec.abstract_state`); its 16.5 GB of
    values are uniform random numbers (what an export reads is the same whatever they are, and random
    bytes do not compress away on disk as fresh zero moments would). They are written straight into
    file-backed NumPy memmaps, pages the kernel can write out and drop: a real initialisation (12.5 GiB
    peak for the parameters alone under XLA) plus the moments would not fit beside the other jobs of
    this 23 GiB host.
    """
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    from data_pipelines.text.tokenizer import train
    from pegasus_jax import sharding
    from pegasus_jax.config import load_config
    from pegasus_jax.flax_settings import configure
    from pegasus_jax.train import checkpoint
    from pegasus_jax.train.state import TrainSpec, count_params

    configure()
    config = load_config(os.path.join(ROOT, "configs", "pegasus_1b.py"))
    tokenizer = train([f"a clip of shape {i} moving left then right" for i in range(300)], 320,
                      os.path.join(workdir, "tok"))
    backing = os.path.join(workdir, "memmaps")
    os.makedirs(backing)
    rng = np.random.default_rng(0)

    def backed(leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        """Random values in [-0.02, 0.02) of the leaf's shape and dtype (zero for scalars: step, counts)."""
        if leaf.ndim == 0:
            return np.zeros((), leaf.dtype)
        out = np.lib.format.open_memmap(os.path.join(backing, f"{len(os.listdir(backing))}.npy"), mode="w+",
                                        dtype=leaf.dtype, shape=leaf.shape)
        flat = out.reshape(-1)
        for start in range(0, flat.size, 1 << 24):
            n = min(1 << 24, flat.size - start)
            flat[start:start + n] = rng.random(n, np.float32) * 0.04 - 0.02
        return out

    spec = TrainSpec.create(config, sharding.make_mesh(config.mesh, jax.devices()[:1]))
    state = jax.tree.map(backed, spec.abstract_state())
    print(f"{count_params(state['params']) + count_params(state['frozen'])} parameters, "
          f"{count_params(state['opt_state'])} optimizer values", file=sys.stderr)
    # Orbax deep-copies host arrays before its asynchronous write, so that callers may change them
    # meanwhile; nothing touches these until the save is done, and a 16.5 GB copy would not fit.
    ocp.type_handlers.register_type_handler(np.ndarray, ocp.type_handlers.NumpyHandler(deepcopy_host_arrays=False),
                                            override=True)
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
    parser.add_argument("--checkpoint", help="export this run's step 0 (a workdir phase 1 made) instead of saving one")
    parser.add_argument("--save-only", metavar="WORKDIR", help=argparse.SUPPRESS)  # phase 1, in the child
    args = parser.parse_args()
    if args.save_only:
        save_checkpoint(args.save_only)
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="big-export-")
    run, out = args.checkpoint or os.path.join(workdir, "run"), os.path.join(workdir, "export")
    os.makedirs(run, exist_ok=True)
    try:
        save_s, save_usage = child(os.path.abspath(__file__), "--save-only", run) if not args.checkpoint else (0.0, None)
        ckpt = os.path.join(run, "checkpoints", "0")
        export_s, export_usage = child("-m", "pegasus_jax.cli.main", "export", "--checkpoint", run, "--out", out,
                                       "--dtype", args.dtype)
        result = {
            "config": "configs/pegasus_1b.py", "dtype": args.dtype,
            "checkpoint_bytes": folder_bytes(ckpt), "state_bytes": folder_bytes(os.path.join(ckpt, "state")),
            "export_bytes": {"llm": folder_bytes(os.path.join(out, "llm")), "full": folder_bytes(os.path.join(out, "full"))},
            "save_seconds": round(save_s, 1), "save_peak_rss_bytes": save_usage.ru_maxrss * 1024 if save_usage else None,
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
          gib(result["export_peak_rss_bytes"]), f"<= {BOUND_GIB} GiB",
          gib(result["save_peak_rss_bytes"]) if save_usage else "-"]]))
    if not result["within_bound"]:
        raise SystemExit(f"export peak RSS {gib(result['export_peak_rss_bytes'])} is over {BOUND_GIB} GiB")


if __name__ == "__main__":
    main()
