"""Training a tokenizer on a corpus of records: on every text a model trained on them will read."""
from __future__ import annotations

from typing import Iterable

from data_pipelines.errors import UserError
from data_pipelines.records.format import invalid_text_fields
from data_pipelines.records.shards import read_all
from data_pipelines.text.prompts import conversations, task_conversations
from data_pipelines.text.tokenizer import train


def record_texts(pattern) -> Iterable[str]:
    """Every text a model trained on these records will read: the rendered training conversations of
    every corpus kind (the API tasks' prompts and JSON answers included) and the transcripts."""
    for ex in read_all(pattern):
        if invalid_text_fields(ex):
            continue
        for conversation in conversations(ex) + task_conversations(ex):
            for turn in conversation:
                yield turn["text"]
        for item in ex.transcript:
            yield item["text"]


def train_tokenizer_for_config(records_glob: str, vocab_size: int, model_path: str) -> str:
    """Train on the records' texts and write `model_path` (must end in .model)."""
    if not model_path.endswith(".model"):
        raise UserError(f"tokenizer path {model_path}: must end in .model")
    return train(record_texts(records_glob), vocab_size, model_path[: -len(".model")])
