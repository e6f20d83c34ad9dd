"""The batch contract between the data pipeline and the model.

One example, after decoding and tokenisation, is a dict of NumPy arrays with static shapes;
batches stack these along a leading batch axis. S = config.data.max_segments,
F = config.model.align.frames_per_segment, H = W = config.model.vision.image_size,
A = samples of audio per segment (segment_seconds * sample_rate), R = config.model.transcript_tokens,
L = a text length bucket (config.data.length_buckets, the last one = config.data.max_text_len).

The model lays each example out as, per valid segment in time order,
  [segment marker (timestamp)] [visual tokens] [audio tokens] [transcript tokens]
followed by the text tokens (prompt, then answer). Loss is taken on `targets` where `loss_mask` is 1,
which the chat template sets on assistant turns only.

Packed batches (data.packing, training): each row is one decoder sequence of T = data.pack_tokens
positions holding several whole examples back to back, and G = data.pack_segments segment slots holding
their segments (only those that exist: the towers never see padding segments). PACKED_FIELDS below;
batch/packing.py builds them, Pegasus.packed_sequence reads them.
"""
from __future__ import annotations

import math

import numpy as np

FIELDS = {
    # name: (shape in terms of the symbols above, dtype)
    "frames": (("S", "F", "H", "W", 3), np.uint8),  # RGB frames sampled per segment
    "audio": (("S", "A"), np.float32),  # 16 kHz mono waveform per segment, zeros where absent
    "segment_mask": (("S",), np.bool_),  # segment exists (videos shorter than S segments are padded)
    "audio_mask": (("S",), np.bool_),  # segment has an audio track
    "segment_start": (("S",), np.float32),  # segment start time in seconds (timestamp marker)
    "transcript": (("S", "R"), np.int32),  # speech tokens spoken during the segment
    "transcript_mask": (("S", "R"), np.bool_),
    "tokens": (("L",), np.int32),  # text input tokens: prompt then answer
    "targets": (("L",), np.int32),  # tokens shifted left by one (next-token targets)
    "loss_mask": (("L",), np.float32),  # 1 on answer (assistant) targets only
    "text_mask": (("L",), np.bool_),  # valid (non-padding) text tokens
}


# A packed row. G, T as above; K = slot_tokens(config): the decoder tokens one segment slot can emit,
# in the model's order [marker] [visual] [audio] [transcript].
PACKED_FIELDS = {
    "frames": (("G", "F", "H", "W", 3), np.uint8),
    "audio": (("G", "A"), np.float32),
    "segment_mask": (("G",), np.bool_),  # the slot holds a segment
    "audio_mask": (("G",), np.bool_),
    "segment_start": (("G",), np.float32),
    "transcript": (("G", "R"), np.int32),
    "transcript_mask": (("G", "R"), np.bool_),
    "segment_dest": (("G", "K"), np.int32),  # decoder position of each slot token; T where the token does not exist
    "tokens": (("T",), np.int32),  # text tokens at their decoder positions (0 elsewhere)
    "targets": (("T",), np.int32),
    "loss_mask": (("T",), np.float32),
    "text_mask": (("T",), np.bool_),
    "example_ids": (("T",), np.int32),  # 1, 2, ... per example in the row (attention segment ids); 0 = padding
    "positions": (("T",), np.int32),  # RoPE positions, restarting at 0 in each example
}


def tokens_per_segment(pool: tuple[int, int, int], audio_tokens: int, transcript_tokens: int) -> int:
    return 1 + math.prod(pool) + audio_tokens + transcript_tokens


def pool_shape(m, num_segments: int) -> tuple[int, int, int]:
    """(T', h', w') for `num_segments` segments within `align.visual_token_budget`.

    The configured target is used when it fits; otherwise space is pooled harder first (down to 1x1),
    then time. Raises ValueError when even (1, 1, 1) does not fit.
    """
    al = m.align
    audio = al.audio_tokens if m.audio.enabled else 0
    transcript = m.transcript_tokens
    t, h, w = al.pool_t, al.pool_h, al.pool_w
    budget = al.visual_token_budget

    def fits(t_, h_, w_):
        return num_segments * tokens_per_segment((t_, h_, w_), audio, transcript) <= budget

    while not fits(t, h, w) and (h > 1 or w > 1):
        h, w = max(1, h - 1), max(1, w - 1)
    while not fits(t, h, w) and t > 1:
        t -= 1
    if not fits(t, h, w):
        raise ValueError(f"{num_segments} segments do not fit align.visual_token_budget={budget} even at 1 token each")
    return t, h, w


def dims(config, text_len: int | None = None) -> dict[str, int]:
    m, d = config.model, config.data
    return {
        "S": d.max_segments,
        "F": m.align.frames_per_segment,
        "H": m.vision.image_size,
        "W": m.vision.image_size,
        "A": int(round(m.align.segment_seconds * d.sample_rate)),
        "R": max(config.model.transcript_tokens, 1),
        "L": text_len or d.max_text_len,
    }


def example_spec(config, text_len: int | None = None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of one example's arrays."""
    sizes = dims(config, text_len)
    return {name: (tuple(sizes.get(s, s) for s in shape), dtype) for name, (shape, dtype) in FIELDS.items()}


def zeros_batch(config, batch_size: int, text_len: int | None = None) -> dict[str, np.ndarray]:
    """An all-padding batch (shapes for tracing, AOT compile, and FLOP counting)."""
    return {k: np.zeros((batch_size,) + shape, dtype) for k, (shape, dtype) in example_spec(config, text_len).items()}


def segment_token_counts(config) -> tuple[int, int, int]:
    """Decoder tokens per segment: (visual T'h'w' at data.max_segments' pooling, audio tokens when audio is
    on, transcript slots); a segment slot emits 1 marker + these (K = slot_tokens)."""
    m = config.model
    return (math.prod(pool_shape(m, config.data.max_segments)), m.align.audio_tokens if m.audio.enabled else 0,
            m.transcript_tokens)


def slot_tokens(config) -> int:
    return 1 + sum(segment_token_counts(config))


def pack_budget(config) -> tuple[int, int]:
    """(T decoder positions, G segment slots) per packed row: data.pack_tokens / data.pack_segments, where 0
    means one longest example (max_segments full segments and max_text_len text tokens)."""
    d = config.data
    tokens = d.pack_tokens or d.max_segments * slot_tokens(config) + d.max_text_len
    return int(tokens), int(d.pack_segments or d.max_segments)


def packed_spec(config) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of one packed row's arrays."""
    tokens, segments = pack_budget(config)
    sizes = {**dims(config), "G": segments, "T": tokens, "K": slot_tokens(config)}
    return {name: (tuple(sizes.get(s, s) for s in shape), dtype) for name, (shape, dtype) in PACKED_FIELDS.items()}


def zeros_packed_batch(config, rows: int) -> dict[str, np.ndarray]:
    """An all-padding packed batch (shapes for tracing and AOT compile)."""
    return {k: np.zeros((rows,) + shape, dtype) for k, (shape, dtype) in packed_spec(config).items()}
