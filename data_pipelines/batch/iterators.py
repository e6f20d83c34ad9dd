"""Grain pipelines from record shards to batches of the `data_pipelines/batch.py` contract.

    ArrayRecordDataSource(shards)                                   MapDataset of record bytes
    -> ReadShard: global shuffle (seed + epoch, every epoch anew), this slot's disjoint slice,
       epochs repeated; elements (epoch, record index, bytes)
    -> map ExampleTransform (decode + tokenize; bad input becomes a marker, never an exception)
       [data.mixture: one such dataset per corpus, combined by MapDataset.mix with the weights]
    -> to_iter_dataset (2 reader threads)  -> mp_prefetch (data.num_workers processes; 0 = in-process)
    -> BucketBatcher (main process): counts/skips bad records, batches the slot's batch_size examples,
       pads text to the smallest data.length_buckets entry that fits.

A `ReadSlot` says which share of the corpus a process reads and how many records a step takes. The
trainer derives it from the batch sharding (pegasus_jax/train/batch_layout.py): processes that feed
the same batch rows (model-parallel partners on different hosts) get the same slot and so read the
same records. Each epoch every slot gets len // slot count records (the same count everywhere, so
processes step in lockstep; the few left over differ per epoch). Within an epoch no record repeats.

Checkpointing: the returned iterator is a grain DatasetIterator whose JSON state holds the Grain
position (mixture included) and the bad-record counts. Save it as an Orbax item with
`grain.checkpoint.CheckpointSave(it)` / restore with `grain.checkpoint.CheckpointRestore(it)`
(handler: grain.checkpoint.CheckpointHandler, one JSON file per process); restoring continues at
the exact next example. `checkpoint_args_save/restore` return those args.

Eval iterators read data.path once, in order, and pad (per slot to equal counts, and the last
batch) with all-masked examples, so every record is scored once.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import grain
import numpy as np

from data_pipelines.bad_input import BadRecordLog
from data_pipelines.batch import FIELDS
from data_pipelines.example_transform import TEXT_FIELDS, ExampleTransform, empty_example
from pegasus_jax.errors import UserError

READ_THREADS = 2


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


class BucketBatcher(grain.IterDataset):
    def __init__(self, parent: grain.IterDataset, batch_size: int, buckets: tuple[int, ...], max_bad_ratio: float,
                 pad_example: dict | None = None):
        super().__init__(parent)
        self.batch_size, self.buckets, self.max_bad_ratio = batch_size, buckets, max_bad_ratio
        self.pad_example = pad_example

    def __iter__(self):
        return BatchIterator(self._parent.__iter__(), self)

    def __str__(self) -> str:
        return f"BucketBatcher(batch_size={self.batch_size}, buckets={self.buckets})"


class BatchIterator(grain.DatasetIterator):
    """Batches of the contract; `last_ids` names the examples of the last batch ("" for padding)."""

    def __init__(self, parent: grain.DatasetIterator, spec: BucketBatcher):
        super().__init__(parent)
        self.spec = spec
        self.bad_log = BadRecordLog(spec.max_bad_ratio)
        self.last_ids: list[str] = []

    def __next__(self) -> dict[str, np.ndarray]:
        examples = []
        while len(examples) < self.spec.batch_size:
            try:
                element = next(self._parent)
            except StopIteration:
                if examples and self.spec.pad_example is not None:
                    examples += [self.spec.pad_example] * (self.spec.batch_size - len(examples))
                    break
                raise
            if element.get("_pad") or self.bad_log.admit(element):
                examples.append(element)
        longest = max(e["_text_len"] for e in examples)
        width = next((b for b in self.spec.buckets if b >= longest), self.spec.buckets[-1])
        batch = {k: np.stack([e[k] for e in examples]) for k in FIELDS}
        for k in TEXT_FIELDS:
            batch[k] = batch[k][:, :width]
        self.last_ids = [e["_id"] for e in examples]
        return batch

    def get_state(self) -> dict:
        return {"parent": self._parent.get_state(), "bad_records": self.bad_log.get_state()}

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self.bad_log.set_state(state["bad_records"])

    def stats(self) -> dict:
        return self.bad_log.stats()


def corpus_dataset(pattern: str, config, tokenizer, slot: ReadSlot, *, seed: int, shuffle: bool,
                   num_epochs: int | None, pad: bool = False, kind: str = "video", cache=None) -> grain.MapDataset:
    """One corpus: shards -> this slot's records (shuffled per epoch) -> examples or bad markers."""
    from data_pipelines.records import list_shards

    source = grain.sources.ArrayRecordDataSource(list_shards(pattern))
    if len(source) < slot.count:
        raise UserError(f"{pattern}: {len(source)} records cannot feed {slot.count} data-parallel groups")
    shard = ReadShard(grain.MapDataset.source(source), slot, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
                      pad=pad)
    return shard.map(ExampleTransform(config, tokenizer, kind, cache))


def _mark_absl_flags_parsed() -> None:
    """Grain's worker start-up reads absl flags; outside absl.app.run nobody has parsed them, so take
    the defaults (a command line that did parse them is left alone)."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _batches(examples: grain.MapDataset, config, batch_size: int, pad_example: dict | None) -> BatchIterator:
    ds = examples.to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS, prefetch_buffer_size=2 * batch_size))
    if config.data.num_workers > 0:
        _mark_absl_flags_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.num_workers,
                                                         per_worker_buffer_size=batch_size))
    buckets = tuple(sorted(config.data.length_buckets))
    if not buckets or buckets[-1] != config.data.max_text_len:
        raise UserError(f"config.data.length_buckets={tuple(config.data.length_buckets)}: the largest must equal "
                        f"config.data.max_text_len={config.data.max_text_len}")
    return iter(BucketBatcher(ds, batch_size, buckets, config.data.max_bad_ratio, pad_example))


def make_train_iterator(config, tokenizer, slot: ReadSlot = ReadSlot()) -> BatchIterator:
    """Endless batches for one read slot: config.data.mixture when set, else config.data.path."""
    tokenizer.check_fits(config.model.decoder.vocab_size)
    if config.data.mixture:
        from data_pipelines.mixture import mixture_dataset

        examples = mixture_dataset(config, tokenizer, slot)
    else:
        if not config.data.path:
            raise UserError("config.data.path: no training records given")
        examples = corpus_dataset(config.data.path, config, tokenizer, slot, seed=config.data.shuffle_seed,
                                  shuffle=True, num_epochs=None)
    return _batches(examples, config, slot.records_per_step(config), None)


def make_eval_iterator(config, tokenizer, slot: ReadSlot = ReadSlot()) -> BatchIterator:
    """One ordered pass over config.data.path; padded so every record is scored exactly once."""
    tokenizer.check_fits(config.model.decoder.vocab_size)
    if not config.data.path:
        raise UserError("config.data.path: no evaluation records given")
    examples = corpus_dataset(config.data.path, config, tokenizer, slot, seed=0, shuffle=False, num_epochs=1,
                              pad=True)
    return _batches(examples, config, slot.records_per_step(config), empty_example(config))


def stats(iterator: BatchIterator) -> dict:
    """{"bad_records": {kind: n}, "notes": {kind: n}, "seen": n, "bad_total": n} for this process."""
    return iterator.stats()


def bad_record_count(iterator: BatchIterator) -> int:
    return iterator.stats()["bad_total"]


def checkpoint_args_save(iterator: BatchIterator):
    return grain.checkpoint.CheckpointSave(iterator)


def checkpoint_args_restore(iterator: BatchIterator):
    return grain.checkpoint.CheckpointRestore(iterator)
