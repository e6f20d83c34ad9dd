"""What the side-by-side benchmarks share: medians of timed calls after warm-up, this host's measured
matmul peaks, the transformers twin of our decoder, the machine description and the printed table."""
from __future__ import annotations

import os
import resource
import statistics
import time
from typing import Callable

# Before JAX is imported: a CPU benchmark must not probe for TPUs (libtpu is installed with the dev extras).
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def timed(fn: Callable[[], object], steps: int, warmup: int) -> dict:
    """Runs `fn` (which must block until its work is done) `warmup` times untimed, then `steps` times.
    Returns the median and every timed duration in seconds, and the cores this process kept busy
    over the timed calls (CPU seconds / wall seconds): below the core count when other jobs share them."""
    return timed_alternately({"": fn}, steps, warmup)[""]


def timed_alternately(fns: dict[str, Callable[[], object]], steps: int, warmup: int) -> dict[str, dict]:
    """`timed` for several callables at once, called in alternation (A B, B A, A B, ...) so that load
    from other jobs on a shared machine falls on each of them alike. Also gives each one's median CPU
    seconds per call (all threads of this process), which other jobs' load changes far less than
    wall time."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for i in range(steps):
        for name in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
            cpu_start, start = _cpu_seconds(), time.perf_counter()
            fns[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(_cpu_seconds() - cpu_start)
    return {name: {"median_s": statistics.median(wall[name]), "times_s": [round(t, 4) for t in wall[name]],
                   "cpu_s": statistics.median(cpu[name]), "cores_busy": round(sum(cpu[name]) / sum(wall[name]), 2)}
            for name in fns}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def matmul_peaks(n: int = 2048, repeats: int = 7) -> dict:
    """FLOP/s of an n x n x n matmul, fp32 and bf16, through XLA (jnp.dot, jitted) and through torch,
    after one warm-up call: the best and the median of `repeats`."""
    import jax
    import jax.numpy as jnp
    import torch

    out = {}
    flops = 2.0 * n ** 3
    for name, jdt, tdt in (("float32", jnp.float32, torch.float32), ("bfloat16", jnp.bfloat16, torch.bfloat16)):
        a = jnp.ones((n, n), jdt)
        dot = jax.jit(jnp.dot)
        xla = timed(lambda: dot(a, a).block_until_ready(), repeats, 1)
        t = torch.ones(n, n, dtype=tdt)
        eager = timed(lambda: torch.mm(t, t), repeats, 1)
        for lib, r in (("jax", xla), ("torch", eager)):
            out[f"{lib}_{name}"] = {"best": flops / min(r["times_s"]), "median": flops / r["median_s"]}
    return out


def hf_llama(decoder_params, dcfg, dtype=None):
    """A transformers LlamaForCausalLM with our decoder's weights, through the export mapping
    (interop/hf_llama.py), attention by torch SDPA."""
    import torch
    import transformers

    from pegasus_jax.interop.hf_llama import llama_config_to_hf, llama_to_hf

    hf_cfg = transformers.LlamaConfig(**llama_config_to_hf(dcfg), attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(hf_cfg)
    # copies: the mapped arrays may be read-only views of the JAX parameters
    weights = {k: torch.tensor(v) for k, v in llama_to_hf(decoder_params, dcfg).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = ["lm_head.weight"] if dcfg.tie_embeddings else []
    if sorted(missing) != tied or unexpected:
        raise RuntimeError(f"weight mapping mismatch: missing {missing}, unexpected {unexpected}")
    return model.to(dtype) if dtype is not None else model


def machine(torch_threads: int) -> dict:
    import jax
    import torch
    import transformers

    return {"cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
            "jax": jax.__version__, "jax_devices": len(jax.devices()), "torch": torch.__version__,
            "transformers": transformers.__version__, "torch_threads": torch_threads,
            "jax_threads": f"XLA:CPU default intra-op pool ({os.cpu_count()} cores)"}


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
