"""Media decoding of one record (the "pyav" decoder): frames, audio and segment arrays.

The segment plan comes from the duration; each segment gets `frames_per_segment` frames (sparse PyAV
sampling, or the record's pre-extracted JPEGs) and its first `segment_seconds` of 16 kHz audio, zero
padded (audio_mask False where there is none). Odd but usable inputs are kept with a note
("no_audio", "bad_audio", "one_frame"); unusable ones raise DecodeError with its kind.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.contract import dims
from data_pipelines.decode.video import DecodeError, decode_audio, decode_frame_jpegs, probe, sample_frames, segment_plan
from data_pipelines.records.format import VideoExample


@dataclasses.dataclass(frozen=True)
class MediaParams:
    max_segments: int
    frames_per_segment: int
    image_size: int
    segment_seconds: float
    sample_rate: int
    audio_samples: int
    max_pixels: int
    frame_resize: str = "area_crop"  # video.FRAME_RESIZES

    @classmethod
    def from_config(cls, config) -> "MediaParams":
        d = dims(config)
        return cls(max_segments=d["S"], frames_per_segment=d["F"], image_size=d["H"],
                   segment_seconds=float(config.model.align.segment_seconds), sample_rate=int(config.data.sample_rate),
                   audio_samples=d["A"], max_pixels=int(config.data.max_pixels),
                   frame_resize=config.model.vision.frame_resize)


def _segment_audio(source: bytes, segments, p: MediaParams, out: np.ndarray, mask: np.ndarray) -> list[str]:
    try:
        for i, seg in enumerate(segments):
            wave = decode_audio(source, p.sample_rate, seg.start, seg.start + p.segment_seconds)[: p.audio_samples]
            out[i, : len(wave)] = wave
            mask[i] = wave.size > 0
    except DecodeError:
        mask[:] = False
        return ["bad_audio"]
    return [] if mask[: len(segments)].any() else ["no_audio"]


def decode_media(ex: VideoExample, p: MediaParams) -> tuple[dict[str, np.ndarray], list[str]]:
    """Frames, audio and segment arrays of one example, and notes on what was odd but kept.

    Raises DecodeError (kind: empty, truncated, undecodable, no_video, too_large, no_frames).
    "segment_end" is included for the transcript; the batcher does not ship it.
    """
    S, F, size, A = p.max_segments, p.frames_per_segment, p.image_size, p.audio_samples
    notes: list[str] = []
    if ex.video is not None:
        info = probe(ex.video)
        if not info.has_video:
            raise DecodeError("no_video", "audio-only: no video stream")
        if info.width * info.height > p.max_pixels:  # before any frame is decoded
            raise DecodeError("too_large", f"{info.width}x{info.height} exceeds data.max_pixels={p.max_pixels}")
        duration = ex.duration or info.duration or (1.0 / info.fps if info.fps else p.segment_seconds)
        segments = segment_plan(duration, p.segment_seconds, F, S)
        times = [t for seg in segments for t in seg.timestamps]
        frames, decoded = sample_frames(ex.video, times, size, p.max_pixels, p.frame_resize)
        one_frame = decoded == 1 or info.num_frames == 1
        audio_source = ex.audio if ex.audio is not None else (ex.video if info.has_audio else None)
    elif ex.frames:
        fps = ex.fps or 1.0
        duration = ex.duration or len(ex.frames) / fps
        segments = segment_plan(duration, p.segment_seconds, F, S)
        times = [t for seg in segments for t in seg.timestamps]
        frames = decode_frame_jpegs(ex.frames, fps, times, size, p.frame_resize)
        one_frame = len(ex.frames) == 1
        audio_source = ex.audio
    else:
        raise DecodeError("empty", "record has neither video bytes nor frames")
    n = len(segments)
    out = {
        "frames": np.zeros((S, F, size, size, 3), np.uint8),
        "audio": np.zeros((S, A), np.float32),
        "segment_mask": np.arange(S) < n,
        "audio_mask": np.zeros(S, np.bool_),
        "segment_start": np.zeros(S, np.float32),
        "segment_end": np.zeros(S, np.float32),
    }
    out["frames"][:n] = frames.reshape(n, F, size, size, 3)
    out["segment_start"][:n] = [s.start for s in segments]
    out["segment_end"][:n] = [s.end for s in segments]
    if one_frame:
        notes.append("one_frame")
    if audio_source is None:
        notes.append("no_audio")
    else:
        notes += _segment_audio(audio_source, segments, p, out["audio"], out["audio_mask"])
    return out, notes
