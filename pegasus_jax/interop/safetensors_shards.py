"""Safetensors shards written as tensors arrive, each at most `max_shard_bytes` (one larger tensor
gets a shard of its own), with the Hugging Face index `model.safetensors.index.json`.

Only the current shard is held in memory, so writing a model costs one shard, not the model.
Files are named model-00001-of-0000N.safetensors once N is known (at `close`).
"""
from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

DTYPES = {"fp32": np.float32, "bf16": ml_dtypes.bfloat16}
INDEX = "model.safetensors.index.json"


class ShardWriter:
    def __init__(self, folder: str, max_shard_bytes: int, dtype: str | None = None):
        os.makedirs(folder, exist_ok=True)
        self.folder, self.max_shard_bytes = folder, max_shard_bytes
        self.dtype = DTYPES[dtype] if dtype else None
        self.pending: dict[str, np.ndarray] = {}
        self.pending_bytes = 0
        self.shards: list[list[str]] = []
        self.total_bytes = 0

    def add(self, name: str, array: np.ndarray) -> None:
        floating = np.issubdtype(array.dtype, np.floating) or array.dtype == ml_dtypes.bfloat16
        if self.dtype is not None and floating:
            array = array.astype(self.dtype)
        if self.pending and self.pending_bytes + array.nbytes > self.max_shard_bytes:
            self._flush()
        self.pending[name] = np.ascontiguousarray(array)
        self.pending_bytes += array.nbytes
        self.total_bytes += array.nbytes

    def _flush(self) -> None:
        save_file(self.pending, self._path(len(self.shards), None), metadata={"format": "pt"})
        self.shards.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def _path(self, i: int, total: int | None) -> str:
        name = f"model-{i + 1:05d}-of-{total:05d}.safetensors" if total else f"model-{i + 1:05d}.partial.safetensors"
        return os.path.join(self.folder, name)

    def close(self, metadata: dict | None = None) -> int:
        """Finish the last shard, name the shards and write the index. Returns the number of tensors."""
        if self.pending:
            self._flush()
        total = len(self.shards)
        weight_map = {}
        for i, names in enumerate(self.shards):
            os.replace(self._path(i, None), self._path(i, total))
            weight_map.update({name: os.path.basename(self._path(i, total)) for name in names})
        index = {"metadata": {"total_size": self.total_bytes, **(metadata or {})}, "weight_map": weight_map}
        with open(os.path.join(self.folder, INDEX), "w") as f:
            json.dump(index, f, indent=2)
        return len(weight_map)
