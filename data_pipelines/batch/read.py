"""Reading record shards: which share of every epoch a process reads, shuffled, mapped to examples.

    ArrayRecordDataSource(shards)                                   MapDataset of record bytes
    -> ReadShard: global shuffle (seed + epoch, every epoch anew), this slot's disjoint slice,
       epochs repeated; elements (epoch, record index, bytes)
    -> map ExampleTransform (decode + tokenize; bad input becomes a marker, never an exception)

A `ReadSlot` says which share of the corpus a process reads and how many records a step takes. The
trainer derives it from the batch sharding (pegasus_jax/train/batch_layout.py): processes that feed
the same batch rows (model-parallel partners on different hosts) get the same slot and so read the
same records. Each epoch every slot gets len // slot count records (the same count everywhere, so
processes step in lockstep; the few left over differ per epoch). Within an epoch no record repeats.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import grain

from data_pipelines.decode.example import ExampleTransform
from data_pipelines.errors import UserError
from data_pipelines.records.shards import list_shards


@dataclasses.dataclass(frozen=True)
class ReadSlot:
    """Share `index` of `count` disjoint shares of every epoch, `batch_size` records per step."""

    index: int = 0
    count: int = 1
    batch_size: int | None = None  # None: the whole config.train.batch_size (one slot reads it all)

    def records_per_step(self, config) -> int:
        return config.train.batch_size if self.batch_size is None else self.batch_size


class ReadShard(grain.MapDataset):
    """Index i -> (epoch, record index, record bytes): epoch = i // per_epoch, then this slot's
    (i % per_epoch)-th record of that epoch's global permutation. `pad` (eval) rounds the per-slot
    count up and yields (0, -1, None) past the end."""

    def __init__(self, parent: grain.MapDataset, slot: ReadSlot, *, seed: int, shuffle: bool,
                 num_epochs: int | None, pad: bool = False):
        super().__init__(parent)
        self.n = len(parent)
        self.index, self.count, self.seed, self.shuffle = slot.index, slot.count, seed, shuffle
        self.per_epoch = math.ceil(self.n / slot.count) if pad else self.n // slot.count
        self.num_epochs = num_epochs

    def __len__(self) -> int:
        return sys.maxsize if self.num_epochs is None else self.per_epoch * self.num_epochs

    def __str__(self) -> str:
        return f"ReadShard({self.index}/{self.count}, per_epoch={self.per_epoch})"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, j = divmod(index, self.per_epoch)
        g = self.index + j * self.count
        if g >= self.n:
            return (0, -1, None)
        if self.shuffle:
            g = int(grain.experimental.index_shuffle(g, max_index=self.n - 1, seed=(self.seed + epoch) % 2**32,
                                                     rounds=4))
        return (epoch, g, self._parent[g])


def corpus_dataset(pattern: str, config, tokenizer, slot: ReadSlot, *, seed: int, shuffle: bool,
                   num_epochs: int | None, pad: bool = False, kind: str = "video", cache=None) -> grain.MapDataset:
    """One corpus: shards -> this slot's records (shuffled per epoch) -> examples or bad markers."""
    source = grain.sources.ArrayRecordDataSource(list_shards(pattern))
    if len(source) < slot.count:
        raise UserError(f"{pattern}: {len(source)} records cannot feed {slot.count} data-parallel groups")
    shard = ReadShard(grain.MapDataset.source(source), slot, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
                      pad=pad)
    return shard.map(ExampleTransform(config, tokenizer, kind, cache))
