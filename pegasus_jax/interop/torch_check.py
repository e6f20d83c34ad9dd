"""Run an exported whole-model folder in PyTorch, in a process where JAX cannot be imported.

    python -m pegasus_jax.interop.torch_check FOLDER INPUTS.npz OUT.npz [FOLDER INPUTS.npz OUT.npz ...]

For each triple: load FOLDER with `AutoModel.from_pretrained(FOLDER, trust_remote_code=True)`, run
INPUTS (the arrays of data_pipelines/contract.py, batch-major) and write OUT.npz with "logits" (B, L, V).
When INPUTS also holds "greedy_steps" (one example only) the model continues its prompt greedily, one
whole-sequence forward per token, until end of text or that many tokens: "greedy_ids" in OUT.npz.
Prints one line per folder: the model class and dtype. Exits non-zero if JAX was imported anyway.

Only numpy, torch and transformers are used here, so the check is what a PyTorch user without JAX gets.
"""
from __future__ import annotations

import importlib.abc
import sys

BLOCKED = ("jax", "jaxlib", "flax", "orbax")


class _BlockJax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the export must load without JAX")


def _greedy(model, batch: dict, steps: int, stop_ids: set[int]):
    import torch

    if batch["tokens"].shape[0] != 1:
        raise ValueError("greedy_steps needs a batch of one example")
    tokens, mask = batch["tokens"], batch["text_mask"].bool()
    length = int(mask[0].sum())
    tokens, mask = tokens[:, :length], mask[:, :length]
    out = []
    for _ in range(steps):
        logits = model(**{**batch, "tokens": tokens, "text_mask": mask}).logits
        nxt = int(logits[0, -1].argmax())
        if nxt in stop_ids:
            break
        out.append(nxt)
        tokens = torch.cat([tokens, torch.tensor([[nxt]], dtype=tokens.dtype)], dim=1)
        mask = torch.cat([mask, torch.ones((1, 1), dtype=torch.bool)], dim=1)
    return out


def check(folder: str, inputs_path: str, out_path: str) -> str:
    import json
    import os

    import numpy as np
    import torch
    import transformers

    model = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with np.load(inputs_path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    steps = int(arrays.pop("greedy_steps", 0))
    batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
    result = {}
    with torch.no_grad():
        result["logits"] = model(**batch).logits.numpy()
        if steps:
            with open(os.path.join(folder, "generation_config.json")) as f:
                stop = json.load(f)["eos_token_id"]
            stop_ids = set(stop if isinstance(stop, list) else [stop])
            result["greedy_ids"] = np.asarray(_greedy(model, batch, steps, stop_ids), np.int64)
    np.savez(out_path, **result)
    return f"{type(model).__name__} {model.dtype}"


def main(argv: list[str]) -> int:
    if not argv or len(argv) % 3:
        print("usage: python -m pegasus_jax.interop.torch_check FOLDER INPUTS.npz OUT.npz [...]", file=sys.stderr)
        return 2
    sys.meta_path.insert(0, _BlockJax())
    for folder, inputs_path, out_path in zip(*[iter(argv)] * 3):
        print(check(folder, inputs_path, out_path), flush=True)
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
    if loaded:
        print(f"JAX was imported: {', '.join(loaded)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
