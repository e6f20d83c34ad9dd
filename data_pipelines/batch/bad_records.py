"""The bad-record log: counts every record the batcher sees, skips and logs bad ones, aborts past the ratio.

Kinds of bad records (skipped, counted, logged with the id): the DecodeError kinds of decode/video.py
(empty, truncated, undecodable, no_video = audio-only, too_large, no_frames), corrupt_record,
bad_text (non-UTF-8), no_text (nothing to train on), timeout and crash (isolated decoding only),
decoder_error (a PyAV/FFmpeg error a decoder did not classify). Notes (kept, counted): no_audio
(video-only), bad_audio, one_frame. Bugs are not bad records (decode/registry.py): they stop the run.

Counting happens in ONE place, `BadRecordLog`, driven by the batcher in the main process after
Grain's worker processes, so counts are exact whatever the worker count; they are per JAX process
and are part of the iterator's checkpointed state. The log keeps the first FIRST_PER_KIND ids of
each kind and the last LAST_BAD ids; the abort message names both.
"""
from __future__ import annotations

import logging

from data_pipelines.errors import UserError

log = logging.getLogger("pegasus_jax.data")

RATIO_WARMUP = 16  # the guard looks at the ratio only after this many records, so one early bad one cannot abort
LAST_BAD = 5
FIRST_PER_KIND = 3


class BadRecordLog:
    """Counts every record the batcher sees; skips and logs bad ones; aborts past max_bad_ratio."""

    def __init__(self, max_ratio: float):
        self.max_ratio = max_ratio
        self.seen = 0
        self.bad: dict[str, int] = {}
        self.notes: dict[str, int] = {}
        self.last_bad: list[str] = []
        self.first_bad: dict[str, list[str]] = {}  # kind -> its first FIRST_PER_KIND ids

    def admit(self, element: dict) -> bool:
        """True for a good example (to batch), False for a bad one (skipped, counted, logged)."""
        self.seen += 1
        kind = element.get("_bad")
        if kind is None:
            for note in element.get("_notes", ()):
                self.notes[note] = self.notes.get(note, 0) + 1
                log.info("kept record %s with note %s", element["_id"], note)
            return True
        self.bad[kind] = self.bad.get(kind, 0) + 1
        self.last_bad = (self.last_bad + [f"{element['_id']} ({kind})"])[-LAST_BAD:]
        first = self.first_bad.setdefault(kind, [])
        if len(first) < FIRST_PER_KIND:
            first.append(element["_id"])
        log.warning("skipped bad record %s: %s", element["_id"], element.get("_why", kind))
        self._check_ratio()
        return False

    def _check_ratio(self) -> None:
        total = sum(self.bad.values())
        if self.seen >= RATIO_WARMUP and total > self.max_ratio * self.seen:
            raise UserError(f"{total} of {self.seen} records were bad ({total / self.seen:.2f} > "
                            f"config.data.max_bad_ratio={self.max_ratio}); first bad by kind: {self.first_by_kind()}; "
                            f"last bad: {', '.join(self.last_bad)}")

    def first_by_kind(self) -> str:
        """'kind: id, id; kind: id' (the first few ids of each kind, in the order the kinds appeared)."""
        return "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in self.first_bad.items())

    def stats(self) -> dict:
        return {"bad_records": dict(self.bad), "notes": dict(self.notes), "seen": self.seen,
                "bad_total": sum(self.bad.values()), "first_bad": {k: list(v) for k, v in self.first_bad.items()}}

    def get_state(self) -> dict:
        return {"seen": self.seen, "bad": dict(self.bad), "notes": dict(self.notes), "last_bad": list(self.last_bad),
                "first_bad": {k: list(v) for k, v in self.first_bad.items()}}

    def set_state(self, state: dict) -> None:
        self.seen = int(state["seen"])
        self.bad = {k: int(v) for k, v in state["bad"].items()}
        self.notes = {k: int(v) for k, v in state["notes"].items()}
        self.last_bad = list(state["last_bad"])
        self.first_bad = {k: list(v) for k, v in state.get("first_bad", {}).items()}  # absent in older checkpoints
