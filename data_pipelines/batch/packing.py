"""Sequence packing (training): whole examples packed into fixed rows of decoder positions and segment slots.

A row (contract.PACKED_FIELDS) is one decoder sequence of T positions and G segment slots. Its examples
lie back to back, each laid out as the model lays out one example ([marker] [visual] [audio]
[transcript] per segment, then the text), with only the tokens that exist: no padding segments, no
missing audio, no unused transcript slots. `example_ids` (1, 2, ... in the row; 0 = padding) are the
attention's segment ids, `positions` restart at 0 in each example, and each segment slot records where
its tokens go (`segment_dest`), so the towers run on the G slots alone and the model scatters their
tokens into the sequence.

Placement is best fit over a bounded window (as Levanter / MaxText pack): the packer holds up to
`window` admitted examples, oldest first; each batch opens `rows` empty rows and places every held
example, oldest first, into the open row it fills most tightly (fewest positions left) among those with
room for both its tokens and its segments. Examples that fit nowhere stay for the next batch; the oldest
always lands in an empty row, so no example waits for ever, none is dropped or repeated.

Checkpointing replays instead of saving arrays: the state is the parent's state before the oldest held
example was read, how many elements were read since, and which of those were already emitted; restoring
re-reads them (without counting bad records a second time) and holds the rest again, so the next batch
is exactly the one an uninterrupted run would make.
"""
from __future__ import annotations

import dataclasses

import grain
import numpy as np

from data_pipelines.batch.bad_records import BadRecordLog
from data_pipelines.contract import pack_budget, packed_spec, segment_token_counts
from data_pipelines.errors import UserError

MEDIA_SLOT_FIELDS = ("frames", "audio", "audio_mask", "segment_start", "transcript", "transcript_mask")
TEXT_ROW_FIELDS = ("tokens", "targets", "loss_mask")


@dataclasses.dataclass(frozen=True)
class PackSpec:
    tokens: int  # T: decoder positions per row
    segments: int  # G: segment slots per row
    visual: int  # visual tokens per segment
    audio: int  # audio tokens per segment with audio (0: audio off)
    transcript: int  # transcript slots per segment (0: transcripts off)
    rows: int  # rows per batch
    window: int  # examples held for placement

    @property
    def slot_tokens(self) -> int:
        return 1 + self.visual + self.audio + self.transcript

    @classmethod
    def from_config(cls, config, rows: int) -> "PackSpec":
        tokens, segments = pack_budget(config)
        visual, audio, transcript = segment_token_counts(config)
        d = config.data
        longest = d.max_segments * (1 + visual + audio + transcript) + d.max_text_len
        if tokens < longest:
            raise UserError(f"config.data.pack_tokens={tokens} cannot hold one example of up to {longest} decoder "
                            f"tokens (max_segments={d.max_segments}, max_text_len={d.max_text_len})")
        window = d.pack_window or 2 * rows * max(1, segments // d.max_segments)
        return cls(tokens, segments, visual, audio, transcript, rows, window)

    def size(self, example: dict) -> tuple[int, int]:
        """(decoder tokens, segments) of one example as the packer lays it out."""
        segs = np.flatnonzero(example["segment_mask"])
        tokens = len(segs) * (1 + self.visual) + int(example["_text_len"])
        if self.audio:
            tokens += self.audio * int(example["audio_mask"][segs].sum())
        if self.transcript:
            tokens += int(example["transcript_mask"][segs, : self.transcript].sum())
        return tokens, len(segs)


def place(sizes: list[tuple[int, int]], rows: int, tokens: int, segments: int) -> tuple[list[list[int]], list[int]]:
    """Best fit, in order: ([indices placed in each row], indices placed nowhere)."""
    free = [[tokens, segments] for _ in range(rows)]
    placed: list[list[int]] = [[] for _ in range(rows)]
    left = []
    for i, (t, s) in enumerate(sizes):
        fits = [r for r in range(rows) if free[r][0] >= t and free[r][1] >= s]
        if not fits:
            left.append(i)
            continue
        r = min(fits, key=lambda r: (free[r][0] - t, r))
        free[r][0] -= t
        free[r][1] -= s
        placed[r].append(i)
    return placed, left


def pack_row(examples: list[dict], spec: PackSpec, shapes: dict) -> dict[str, np.ndarray]:
    """One packed row (contract.PACKED_FIELDS) from examples that fit it."""
    tokens, segments = (sum(n) for n in zip(*map(spec.size, examples))) if examples else (0, 0)
    if tokens > spec.tokens or segments > spec.segments:
        raise ValueError(f"examples of {tokens} tokens / {segments} segments overflow a row of {spec.tokens} / "
                         f"{spec.segments}")
    out = {k: np.zeros(shape, dtype) for k, (shape, dtype) in shapes.items()}
    out["segment_dest"][:] = spec.tokens
    slot = pos = 0
    for n, ex in enumerate(examples, start=1):
        start = pos
        for s in np.flatnonzero(ex["segment_mask"]):
            exists = np.ones(spec.slot_tokens, bool)
            offset = 1 + spec.visual
            exists[offset: offset + spec.audio] = bool(ex["audio_mask"][s])
            exists[offset + spec.audio:] = ex["transcript_mask"][s, : spec.transcript]
            count = int(exists.sum())
            out["segment_dest"][slot, exists] = pos + np.arange(count)
            out["segment_mask"][slot] = True
            for k in MEDIA_SLOT_FIELDS:
                out[k][slot] = ex[k][s]
            slot, pos = slot + 1, pos + count
        length = int(ex["_text_len"])
        for k in TEXT_ROW_FIELDS:
            out[k][pos: pos + length] = ex[k][:length]
        out["text_mask"][pos: pos + length] = True
        pos += length
        out["example_ids"][start:pos] = n
        out["positions"][start:pos] = np.arange(pos - start)
    return out


class PackingBatcher(grain.IterDataset):
    """Examples (or bad-record markers) -> packed batches of `spec.rows` rows."""

    def __init__(self, parent: grain.IterDataset, spec: PackSpec, shapes: dict, max_bad_ratio: float):
        super().__init__(parent)
        self.spec, self.shapes, self.max_bad_ratio = spec, shapes, max_bad_ratio

    @classmethod
    def from_config(cls, parent: grain.IterDataset, config, rows: int) -> "PackingBatcher":
        return cls(parent, PackSpec.from_config(config, rows), packed_spec(config), config.data.max_bad_ratio)

    def __iter__(self):
        return PackIterator(self._parent.__iter__(), self)

    def __str__(self) -> str:
        return f"PackingBatcher({self.spec})"


@dataclasses.dataclass
class _Held:
    offset: int  # elements read since the state's base before this one
    parent_state: dict  # the parent's state before this one was read
    example: dict
    size: tuple[int, int]


class PackIterator(grain.DatasetIterator):
    """Packed batches; `last_ids` names the examples of the last batch, row by row."""

    def __init__(self, parent: grain.DatasetIterator, ds: PackingBatcher):
        super().__init__(parent)
        self.spec, self.shapes = ds.spec, ds.shapes
        self.bad_log = BadRecordLog(ds.max_bad_ratio)
        self.last_ids: list[str] = []
        self._reset(self._parent.get_state(), read=0, emitted=())
        self._replay = 0

    def _reset(self, base: dict, read: int, emitted) -> None:
        self._base, self._read, self._emitted = base, read, set(emitted)
        self._held: list[_Held] = []
        self._exhausted = False

    def _fill(self) -> None:
        while len(self._held) < self.spec.window and not self._exhausted:
            state = self._parent.get_state()
            try:
                element = next(self._parent)
            except StopIteration:
                self._exhausted = True
                break
            offset, self._read = self._read, self._read + 1
            if offset in self._emitted:
                continue
            if offset < self._replay:  # read before the checkpoint: admitted (and counted) then
                good = "_bad" not in element
            else:
                good = self.bad_log.admit(element)
            if not good:
                continue
            self._held.append(_Held(offset, state, element, self.spec.size(element)))

    def __next__(self) -> dict[str, np.ndarray]:
        self._fill()
        if not self._held:
            raise StopIteration
        placed, _ = place([h.size for h in self._held], self.spec.rows, self.spec.tokens, self.spec.segments)
        rows = [[self._held[i] for i in row] for row in placed]
        batch = [pack_row([h.example for h in row], self.spec, self.shapes) for row in rows]
        self.last_ids = [h.example["_id"] for row in rows for h in row]
        taken = {i for row in placed for i in row}
        self._emitted |= {self._held[i].offset for i in taken}
        self._held = [h for i, h in enumerate(self._held) if i not in taken]
        self._rebase()
        return {k: np.stack([row[k] for row in batch]) for k in self.shapes}

    def _rebase(self) -> None:
        """Move the base to the oldest held example (or the present): offsets shift, older emitted ones go."""
        if self._held:
            shift, self._base = self._held[0].offset, self._held[0].parent_state
        else:
            shift, self._base = self._read, self._parent.get_state()
        for h in self._held:
            h.offset -= shift
        self._read -= shift
        self._replay = max(0, self._replay - shift)
        self._emitted = {o - shift for o in self._emitted if o >= shift}

    def get_state(self) -> dict:
        return {"parent": self._base, "read": self._read, "emitted": sorted(self._emitted),
                "bad_records": self.bad_log.get_state()}

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self._reset(state["parent"], read=0, emitted=state["emitted"])
        self._replay = int(state["read"])
        self.bad_log.set_state(state["bad_records"])

    def stats(self) -> dict:
        return self.bad_log.stats()
