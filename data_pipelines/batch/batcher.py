"""The batcher (main process): examples -> batches of the contract.

It admits each example through the bad-record log (batch/bad_records.py), stacks the slot's
batch_size good ones and pads their text to the smallest data.length_buckets entry that fits. Its
iterator's state (the Grain position and the bad-record counts) is what a checkpoint saves.
"""
from __future__ import annotations

import grain
import numpy as np

from data_pipelines.batch.bad_records import BadRecordLog
from data_pipelines.contract import FIELDS
from data_pipelines.decode.example import TEXT_FIELDS


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
