"""Safetensors shards written as tensors arrive, each at most `max_shard_bytes` (one larger tensor
gets a shard of its own), with the Hugging Face index `model.safetensors.index.json`.

Memory is one tensor, whatever the shard size: each tensor's bytes go to the open shard's data file on
local disk as it arrives, converted to the export dtype block by block. A safetensors file starts with
a header (names, shapes, byte offsets) that is known only once its shard is full, so the finished shard
is that header followed by a streamed copy of the data file. Folders are epath paths (gs://... too).
Files are named model-00001-of-0000N.safetensors once N is known (at `close`).
"""
from __future__ import annotations

import json
import shutil
import struct
import tempfile

import ml_dtypes
import numpy as np
from etils import epath

DTYPES = {"fp32": np.float32, "bf16": ml_dtypes.bfloat16}
INDEX = "model.safetensors.index.json"
BLOCK_BYTES = 16 << 20  # dtype conversion and copies go this many bytes at a time
_SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(ml_dtypes.bfloat16): "BF16", np.dtype(np.float16): "F16",
                       np.dtype(np.float64): "F64", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32",
                       np.dtype(np.int16): "I16", np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8",
                       np.dtype(np.bool_): "BOOL"}


def _is_float(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating) or dtype == ml_dtypes.bfloat16


class ShardWriter:
    def __init__(self, folder, max_shard_bytes: int, dtype: str | None = None):
        self.folder = epath.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_shard_bytes = max_shard_bytes
        self.dtype = np.dtype(DTYPES[dtype]) if dtype else None
        self.data = None  # the open shard's data file (local, temporary)
        self.entries: dict[str, dict] = {}  # the open shard's header
        self.data_bytes = 0
        self.shards: list[list[str]] = []
        self.total_bytes = 0

    def add(self, name: str, array) -> int:
        """Append one tensor; returns the bytes it takes in the shard."""
        array = np.asarray(array)
        out_dtype = self.dtype if self.dtype is not None and _is_float(array.dtype) else array.dtype
        nbytes = array.size * out_dtype.itemsize
        if self.entries and self.data_bytes + nbytes > self.max_shard_bytes:
            self._flush()
        if self.data is None:
            self.data = tempfile.TemporaryFile()
        flat = np.ascontiguousarray(array).reshape(-1)
        step = max(1, BLOCK_BYTES // max(out_dtype.itemsize, array.dtype.itemsize))
        for start in range(0, flat.size, step):
            self.data.write(flat[start:start + step].astype(out_dtype, copy=False).view(np.uint8))
        self.entries[name] = {"dtype": _SAFETENSORS_DTYPES[out_dtype], "shape": list(array.shape),
                              "data_offsets": [self.data_bytes, self.data_bytes + nbytes]}
        self.data_bytes += nbytes
        self.total_bytes += nbytes
        return nbytes

    def _flush(self) -> None:
        header = json.dumps({"__metadata__": {"format": "pt"}, **self.entries}, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        self.data.seek(0)
        with self._path(len(self.shards), None).open("wb") as f:
            f.write(struct.pack("<Q", len(header)) + header)
            shutil.copyfileobj(self.data, f, BLOCK_BYTES)
        self.data.close()
        self.shards.append(list(self.entries))
        self.data, self.entries, self.data_bytes = None, {}, 0

    def _path(self, i: int, total: int | None) -> epath.Path:
        name = f"model-{i + 1:05d}-of-{total:05d}.safetensors" if total else f"model-{i + 1:05d}.partial.safetensors"
        return self.folder / name

    def close(self, metadata: dict | None = None) -> int:
        """Finish the last shard, name the shards and write the index. Returns the number of tensors."""
        if self.entries:
            self._flush()
        total = len(self.shards)
        weight_map = {}
        for i, names in enumerate(self.shards):
            self._path(i, None).rename(self._path(i, total))
            weight_map.update({name: self._path(i, total).name for name in names})
        index = {"metadata": {"total_size": self.total_bytes, **(metadata or {})}, "weight_map": weight_map}
        (self.folder / INDEX).write_text(json.dumps(index, indent=2))
        return len(weight_map)
