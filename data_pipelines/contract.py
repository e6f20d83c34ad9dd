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
"""
from __future__ import annotations

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
