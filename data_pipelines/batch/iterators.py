"""Train and eval iterators: Grain pipelines from record shards to batches of the `data_pipelines/contract.py` contract.

    corpus_dataset (batch/read.py): shards -> this slot's records, shuffled per epoch -> examples
       [data.mixture: one such dataset per corpus, combined by MapDataset.mix with the weights (batch/mixture.py)]
    -> to_iter_dataset (2 reader threads)  -> mp_prefetch (data.num_workers processes; 0 = in-process)
    -> BucketBatcher (batch/batcher.py, main process): counts/skips bad records, batches the slot's
       batch_size examples, pads text to the smallest data.length_buckets entry that fits;
       or, training with data.packing (the default), PackingBatcher (batch/packing.py, main process):
       counts/skips bad records, packs examples into the slot's batch_size rows of fixed shapes.

Checkpointing: the returned iterator is a grain DatasetIterator whose JSON state holds the Grain
position (mixture included) and the bad-record counts. Save it as an Orbax item with
`grain.checkpoint.CheckpointSave(it)` / restore with `grain.checkpoint.CheckpointRestore(it)`
(handler: grain.checkpoint.CheckpointHandler, one JSON file per process); restoring continues at
the exact next example. `checkpoint_args_save/restore` return those args.

Eval iterators never pack; they read data.path once, in order, and pad (per slot to equal counts, and the last
batch) with all-masked examples, so every record is scored once.
"""
from __future__ import annotations

import grain

from data_pipelines.batch.batcher import BatchIterator, BucketBatcher
from data_pipelines.batch.mixture import mixture_dataset
from data_pipelines.batch.packing import PackingBatcher, PackIterator
from data_pipelines.batch.read import ReadSlot, corpus_dataset
from data_pipelines.decode.example import empty_example
from data_pipelines.errors import UserError

__all__ = ["BatchIterator", "ReadSlot", "UserError", "make_train_iterator", "make_eval_iterator", "stats",
           "bad_record_count", "checkpoint_args_save", "checkpoint_args_restore"]
READ_THREADS = 2


def _mark_absl_flags_parsed() -> None:
    """Grain's worker start-up reads absl flags; outside absl.app.run nobody has parsed them, so take
    the defaults (a command line that did parse them is left alone)."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _examples(examples: grain.MapDataset, config, batch_size: int) -> grain.IterDataset:
    ds = examples.to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS, prefetch_buffer_size=2 * batch_size))
    if config.data.num_workers > 0:
        _mark_absl_flags_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.data.num_workers,
                                                         per_worker_buffer_size=batch_size))
    return ds


def _batches(examples: grain.MapDataset, config, batch_size: int, pad_example: dict | None) -> BatchIterator:
    ds = _examples(examples, config, batch_size)
    buckets = tuple(sorted(config.data.length_buckets))
    if not buckets or buckets[-1] != config.data.max_text_len:
        raise UserError(f"config.data.length_buckets={tuple(config.data.length_buckets)}: the largest must equal "
                        f"config.data.max_text_len={config.data.max_text_len}")
    return iter(BucketBatcher(ds, batch_size, buckets, config.data.max_bad_ratio, pad_example))


def make_train_iterator(config, tokenizer, slot: ReadSlot = ReadSlot()) -> BatchIterator | PackIterator:
    """Endless batches for one read slot: config.data.mixture when set, else config.data.path; packed
    (batch/packing.py) when config.data.packing is on."""
    tokenizer.check_fits(config.model.decoder.vocab_size)
    if config.data.mixture:
        examples = mixture_dataset(config, tokenizer, slot)
    else:
        if not config.data.path:
            raise UserError("config.data.path: no training records given")
        examples = corpus_dataset(config.data.path, config, tokenizer, slot, seed=config.data.shuffle_seed,
                                  shuffle=True, num_epochs=None)
    rows = slot.records_per_step(config)
    if config.data.packing:
        return iter(PackingBatcher.from_config(_examples(examples, config, rows), config, rows))
    return _batches(examples, config, rows, None)


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
