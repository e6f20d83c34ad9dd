"""One record -> one model example: NumPy arrays of exactly `contract.example_spec(config)` shapes.

Media: the configured decoder (decode/registry.py; "pyav" is decode/media.py), called in this process
or in an isolated helper (decode/isolation.py). Text: one of the record's training conversations
(`data_pipelines.text.prompts.conversations`), picked by a generator seeded with (seed, record
index, epoch), rendered with the chat template; the timed transcript gives each segment the tokens
of the speech overlapping it.

With data.cache_media_mb > 0 the decoded media of each record is kept (per process, up to that budget)
and reused in later epochs; the text is still picked anew each epoch.

`ExampleTransform` (the Grain map) never raises on bad input: it returns a marker
{"_bad": kind, "_id": id, "_why": message} that the batcher counts and drops (batch/bad_records.py).
A decoder's programming error is not bad input: it propagates (registry.DecoderBug) and stops the run.
Good examples carry "_id", "_notes" (kinds of oddities kept, e.g. "no_audio") and "_text_len".
"""
from __future__ import annotations

import numpy as np

from data_pipelines.contract import FIELDS, dims
from data_pipelines.decode.isolation import DecoderCall
from data_pipelines.decode.media import MediaParams
from data_pipelines.decode.registry import BadRecord
from data_pipelines.records.format import RecordError, deserialize, invalid_text_fields
from data_pipelines.text.chat import render_chat
from data_pipelines.text.prompts import conversations
from data_pipelines.text.tokenizer import Tokenizer

TEXT_FIELDS = ("tokens", "targets", "loss_mask", "text_mask")
MEDIA_FIELDS = ("frames", "audio", "segment_mask", "audio_mask", "segment_start")


def transcript_arrays(tok: Tokenizer, transcript: list[dict], media: dict, R: int) -> dict[str, np.ndarray]:
    """Per valid segment, the tokens of the speech items overlapping [start, end), cut to R."""
    S = media["segment_mask"].shape[0]
    ids, mask = np.zeros((S, R), np.int32), np.zeros((S, R), np.bool_)
    for i in np.flatnonzero(media["segment_mask"]):
        start, end = media["segment_start"][i], media["segment_end"][i]
        text = " ".join(t["text"] for t in transcript if t["start"] < end and t["end"] > start)
        row = tok.encode(text)[:R] if text else []
        ids[i, : len(row)], mask[i, : len(row)] = row, True
    return {"transcript": ids, "transcript_mask": mask}


def text_arrays(tok: Tokenizer, turns: list[dict], L: int) -> tuple[dict[str, np.ndarray], int]:
    """tokens/targets/loss_mask/text_mask padded to L, and the unpadded length."""
    ids, weights = render_chat(tok, turns, L)
    n = len(ids) - 1
    out = {"tokens": np.full(L, tok.pad_id, np.int32), "targets": np.full(L, tok.pad_id, np.int32),
           "loss_mask": np.zeros(L, np.float32), "text_mask": np.zeros(L, np.bool_)}
    out["tokens"][:n], out["targets"][:n] = ids[:-1], ids[1:]
    out["loss_mask"][:n], out["text_mask"][:n] = weights[1:], True
    return out, n


def empty_example(config) -> dict:
    """An all-padding example (fills out eval batches; every mask is False)."""
    spec = {k: (tuple(dims(config)[s] if isinstance(s, str) else s for s in shape), dtype)
            for k, (shape, dtype) in FIELDS.items()}
    return {**{k: np.zeros(shape, dtype) for k, (shape, dtype) in spec.items()}, "_id": "", "_pad": True,
            "_text_len": 0}


class MediaCache:
    """Decoded media by record index, up to a byte budget (first come, kept; nothing evicted): a small
    corpus read for many epochs decodes each record once. Decoding is deterministic in the record and the
    media parameters, so a hit returns what decoding again would. Bad records are not kept."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes, self.items = max_bytes, 0, {}

    def get(self, index: int):
        return self.items.get(index)

    def put(self, index: int, value: tuple[dict, list[str]]) -> None:
        size = sum(a.nbytes for a in value[0].values())
        if self.bytes + size <= self.max_bytes:
            for array in value[0].values():
                array.setflags(write=False)  # shared by every later epoch's example
            self.items[index] = value
            self.bytes += size


def media_cache(config) -> MediaCache:
    return MediaCache(int(config.data.cache_media_mb) << 20)


class ExampleTransform:
    """The Grain map: (epoch, record index, record bytes or None for padding) -> example or bad marker."""

    def __init__(self, config, tokenizer: Tokenizer, kind: str = "video", cache: MediaCache | None = None):
        self.tok, self.kind = tokenizer, kind
        self.media = MediaParams.from_config(config)
        self.text_len = int(config.data.max_text_len)
        self.transcript_len = dims(config)["R"]
        self.use_transcript = config.model.transcript_tokens > 0
        self.seed = int(config.data.shuffle_seed)
        self.decoder = DecoderCall(config.data.decoder, bool(config.data.isolate_decode),
                                 float(config.data.decode_timeout_s))
        self._empty = empty_example(config)
        self._cache = cache if cache is not None else media_cache(config)  # shared by corpora on the same records

    def __call__(self, item) -> dict:
        epoch, index, data = item
        if data is None:
            return self._empty
        try:
            ex = deserialize(data)
        except RecordError as e:
            return {"_bad": "corrupt_record", "_id": f"record#{index}", "_why": str(e)}
        bad_text = invalid_text_fields(ex)
        if bad_text:
            return {"_bad": "bad_text", "_id": ex.id, "_why": f"non-UTF-8 text in {', '.join(bad_text)}"}
        options = conversations(ex, self.kind)
        if not options:
            return {"_bad": "no_text", "_id": ex.id, "_why": f"no {self.kind} conversation in the record"}
        cached = self._cache.get(index)
        if cached is None:
            try:
                media, notes = self.decoder(data, ex, self.media)
            except BadRecord as e:
                return {"_bad": e.kind, "_id": ex.id, "_why": e.message}
            self._cache.put(index, (media, notes))
        else:
            media, notes = cached
        pick = np.random.default_rng([self.seed, index, epoch]).integers(len(options))
        text, text_len = text_arrays(self.tok, options[pick], self.text_len)
        transcript = ex.transcript if self.use_transcript else []
        out = {k: media[k] for k in MEDIA_FIELDS}
        out.update(transcript_arrays(self.tok, transcript, media, self.transcript_len), **text)
        out.update({"_id": ex.id, "_notes": notes, "_text_len": text_len})
        return out
