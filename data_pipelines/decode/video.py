"""Video and audio decoding with PyAV: probe, segment planning, sparse frame sampling, audio.

Frame sampling is sparse and seek-based so an hour-long video never has every frame decoded: for
each requested time the reader seeks to the keyframe at or before it and decodes forward to the
frame covering that time. When the next requested time lies ahead within one GOP (the largest
keyframe spacing seen so far, 2 s before any is seen), decoding simply continues instead of seeking,
because a seek would land on the same keyframe and decode the same frames again.

Frames are brought to size x size one of three ways (FRAME_RESIZES): "area_crop", the fast default
(libswscale's area filter straight from the decoded picture, shorter side to size, centre crop);
"clip", what `CLIPImageProcessor` does (RGB at full resolution, PIL bicubic with the shorter side to
size and the longer truncated as transformers does, centre crop); "siglip", what
`SiglipImageProcessor` does (PIL bicubic straight to size x size, no crop). The last two give a
pretrained tower the pixels it was trained on.

Failures raise DecodeError with a `kind` the pipeline counts (see KINDS).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

KINDS = ("empty", "truncated", "undecodable", "no_video", "too_large", "no_frames")
DEFAULT_GOP_SECONDS = 2.0
FRAME_RESIZES = ("area_crop", "clip", "siglip")
# A container signature at the start means the file was a real video that got cut short.
_CONTAINER_MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"OggS"), (0, b"FLV"), (4, b"moov"),
                    (4, b"mdat"), (4, b"free"), (4, b"wide"))
Media = bytes | str  # a whole file in memory, or its path


class DecodeError(Exception):
    """A video or audio that cannot be decoded; `kind` is one of KINDS."""

    def __init__(self, kind: str, message: str):
        assert kind in KINDS, kind
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass
class VideoInfo:
    duration: float  # seconds (0.0 when the container does not say)
    fps: float
    width: int
    height: int
    has_video: bool
    has_audio: bool
    num_frames: int = 0  # from the header; 0 when unknown


@dataclass
class Segment:
    start: float
    end: float
    timestamps: list[float]  # frame times inside [start, end)


def _looks_like_container(data: bytes) -> bool:
    return any(data[off:off + len(magic)] == magic for off, magic in _CONTAINER_MAGIC)


def _open(source: Media):
    """A container over in-memory bytes, or over a file path that FFmpeg reads as it needs (an hour-long
    file is never held in memory whole)."""
    import av

    in_memory = isinstance(source, bytes)
    if in_memory:
        head = source[:16]
    else:
        with open(source, "rb") as f:
            head = f.read(16)
    if not head:
        raise DecodeError("empty", "zero bytes")
    try:
        return av.open(io.BytesIO(source) if in_memory else source, mode="r")
    except (av.error.FFmpegError, ValueError, OSError) as e:
        kind = "truncated" if _looks_like_container(head) else "undecodable"
        raise DecodeError(kind, f"cannot open container: {e}") from None


def _duration(container, stream) -> float:
    if stream is not None and stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base is microseconds
    return 0.0


def _info(container) -> VideoInfo:
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    fps = float(video.average_rate or video.guessed_rate or 0.0) if video is not None else 0.0
    duration = _duration(container, video if video is not None else audio)
    return VideoInfo(
        duration=duration,
        fps=fps,
        width=video.codec_context.width if video is not None else 0,
        height=video.codec_context.height if video is not None else 0,
        has_video=video is not None,
        has_audio=audio is not None,
        num_frames=int(video.frames or 0) if video is not None else 0,
    )


def probe(data: Media) -> VideoInfo:
    """Stream headers only (no decoding)."""
    container = _open(data)
    try:
        return _info(container)
    finally:
        container.close()


def segment_plan(duration: float, segment_seconds: float, frames_per_segment: int, max_segments: int) -> list[Segment]:
    """Where the model looks: up to `max_segments` segments with `frames_per_segment` frame times each.

    A video no longer than max_segments * segment_seconds is cut into consecutive segments of
    segment_seconds from t=0 (the last one may be shorter). A longer video is instead divided into
    max_segments equal windows covering the whole duration, each window one segment (so a segment
    then spans more than segment_seconds and its frames are spread thinner); audio consumers take
    the first segment_seconds of each segment. Frame times are the centres of F equal bins.
    """
    if duration <= 0 or max_segments < 1 or frames_per_segment < 1:
        return []
    if duration <= max_segments * segment_seconds:
        count = max(1, math.ceil(duration / segment_seconds - 1e-9))
        bounds = [(i * segment_seconds, min((i + 1) * segment_seconds, duration)) for i in range(count)]
    else:
        window = duration / max_segments
        bounds = [(i * window, (i + 1) * window) for i in range(max_segments)]
    segments = []
    for start, end in bounds:
        step = (end - start) / frames_per_segment
        segments.append(Segment(start, end, [start + (j + 0.5) * step for j in range(frames_per_segment)]))
    return segments


def _to_rgb_square(frame, size: int, resize: str = "area_crop") -> np.ndarray:
    """The frame as size x size RGB uint8, resized the `resize` way (FRAME_RESIZES)."""
    if resize != "area_crop":
        return _as_hf_processor(frame.to_ndarray(format="rgb24"), size, resize)
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    sw, sh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()
    top, left = (sh - size) // 2, (sw - size) // 2
    return rgb[top:top + size, left:left + size]


def _as_hf_processor(rgb: np.ndarray, size: int, resize: str) -> np.ndarray:
    """transformers' PIL image processors: bicubic resize of the uint8 image, then (CLIP) a centre crop."""
    from PIL import Image

    image = Image.fromarray(rgb)
    if resize == "siglip":
        return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC))
    w, h = image.size
    longer = int(size * max(w, h) / min(w, h))  # transformers' get_resize_output_image_size truncates
    sw, sh = (size, longer) if w <= h else (longer, size)
    resized = np.asarray(image.resize((sw, sh), Image.Resampling.BICUBIC))
    top, left = (sh - size) // 2, (sw - size) // 2
    return resized[top:top + size, left:left + size]


class _SparseReader:
    """Decodes only the frames needed to answer `frame_at(t)` for increasing t."""

    def __init__(self, container, stream):
        self.container, self.stream = container, stream
        self.decoded = 0
        self.cur = None  # last frame handed out or skipped over (time <= the last request)
        self.ahead = None  # decoded but not yet consumed
        self.frames = None
        self.last_key_time = None
        self.gop = 0.0  # largest keyframe spacing seen

    def _seek(self, t: float) -> None:
        tb = self.stream.time_base
        offset = int(math.floor(t / tb)) + (self.stream.start_time or 0)
        self.container.seek(max(offset, 0), backward=True, any_frame=False, stream=self.stream)
        self.frames = self.container.decode(self.stream)
        self.cur = self.ahead = None
        self.last_key_time = None

    def _next(self):
        if self.ahead is None:
            self.ahead = next(self.frames, None)
            if self.ahead is not None:
                self.decoded += 1
                if self.ahead.time is None:
                    raise DecodeError("undecodable", "frames carry no timestamps")
                if self.ahead.key_frame:
                    t = self.ahead.time
                    if self.last_key_time is not None:
                        self.gop = max(self.gop, t - self.last_key_time)
                    self.last_key_time = t
        return self.ahead

    def _must_seek(self, t: float) -> bool:
        if self.frames is None or self.cur is None:
            return True
        window = self.gop or DEFAULT_GOP_SECONDS
        return t < self.cur.time or t - self.cur.time > window

    def frame_at(self, t: float):
        if self._must_seek(t):
            self._seek(t)
        eps = 1e-6
        while True:
            nxt = self._next()
            if nxt is None or (self.cur is not None and nxt.time > t + eps):
                return self.cur
            self.cur, self.ahead = nxt, None


def _video_stream(container, max_pixels: int | None):
    if not container.streams.video:
        raise DecodeError("no_video", "no video stream")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if max_pixels is not None and w * h > max_pixels:
        raise DecodeError("too_large", f"{w}x{h} exceeds max_pixels={max_pixels}")
    return stream


def sample_frames(data: Media, timestamps, size: int, max_pixels: int | None = None,
                  resize: str = "area_crop") -> tuple[np.ndarray, int]:
    """RGB frames (N, size, size, 3) uint8 covering each time in `timestamps` (any order), resized the
    `resize` way (FRAME_RESIZES), and the number of frames actually decoded (for sparsity checks)."""
    import av

    container = _open(data)
    try:
        stream = _video_stream(container, max_pixels)
        reader = _SparseReader(container, stream)
        out = np.zeros((len(timestamps), size, size, 3), np.uint8)
        order = sorted(range(len(timestamps)), key=lambda i: timestamps[i])
        duration = _duration(container, stream)
        try:
            for i in order:
                frame = reader.frame_at(float(timestamps[i]))
                if frame is None:
                    if reader.decoded == 0:
                        raise DecodeError("no_frames", "no frame could be decoded")
                    raise DecodeError("truncated", f"no frame at t={timestamps[i]:.2f}s of {duration:.2f}s")
                out[i] = _to_rgb_square(frame, size, resize)
        except av.error.FFmpegError as e:
            raise DecodeError("truncated" if reader.decoded else "undecodable", f"decoding failed: {e}") from None
        return out, reader.decoded
    finally:
        container.close()


def decode_frame_jpegs(jpegs: list[bytes], fps: float, timestamps, size: int, resize: str = "area_crop") -> np.ndarray:
    """The pre-extracted-JPEG alternative: pick frame floor(t * fps) for each t and decode only those."""
    import av

    if not jpegs:
        raise DecodeError("no_frames", "empty frame list")
    codec = av.CodecContext.create("mjpeg", "r")
    out = np.zeros((len(timestamps), size, size, 3), np.uint8)
    for i, t in enumerate(timestamps):
        index = min(max(int(t * fps), 0), len(jpegs) - 1)
        try:
            frames = codec.decode(av.Packet(jpegs[index]))
        except av.error.FFmpegError as e:
            raise DecodeError("undecodable", f"JPEG frame {index}: {e}") from None
        if not frames:
            raise DecodeError("undecodable", f"JPEG frame {index} decoded to nothing")
        out[i] = _to_rgb_square(frames[0], size, resize)
    return out


def encode_jpeg(rgb: np.ndarray, quality: int = 3) -> bytes:
    """One RGB uint8 image as JPEG bytes (qscale: 2 best .. 31 worst)."""
    import av

    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = rgb.shape[1], rgb.shape[0]
    codec.pix_fmt = "yuvj420p"
    codec.time_base = 1
    codec.options = {"qmin": str(quality), "qmax": str(quality)}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuvj420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in codec.encode(frame) + codec.encode(None))


def decode_audio(data: Media, sample_rate: int = 16000, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Mono float32 samples at `sample_rate` from [start, end) seconds; empty when there is no audio."""
    import av

    container = _open(data)
    try:
        if not container.streams.audio:
            return np.zeros(0, np.float32)
        stream = container.streams.audio[0]
        if start > 0:
            container.seek(int(start / stream.time_base) + (stream.start_time or 0), backward=True, stream=stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks, first_time = [], None
        try:
            for frame in container.decode(stream):
                if frame.time is not None and end is not None and frame.time >= end:
                    break
                if first_time is None:
                    first_time = frame.time if frame.time is not None else 0.0
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.error.FFmpegError as e:
            if not chunks:
                raise DecodeError("undecodable", f"audio decoding failed: {e}") from None
        if not chunks:
            return np.zeros(0, np.float32)
        samples = np.concatenate(chunks).astype(np.float32, copy=False)
        skip = max(0, int(round((start - first_time) * sample_rate)))
        samples = samples[skip:]
        if end is not None:
            samples = samples[:max(0, int(round((end - start) * sample_rate)))]
        return samples
    finally:
        container.close()
