"""The record format: one video example per record, the dataclass and its msgpack serialization.

Record format, version 1 (full description: docs/record_format.md). A record is one msgpack map:

    "v"          int      FORMAT_VERSION (1); other versions raise RecordError
    "id"         str      unique example id
    "video"      bin|nil  the original container bytes (mp4, webm, ...), never re-encoded
    "frames"     [bin]|nil  pre-extracted JPEG frames at `fps` (alternative to "video")
    "fps"        float    frames per second of "video" (or of "frames")
    "duration"   float    seconds
    "audio"      bin|nil  optional separate audio container; when nil, audio comes from "video"
    "captions"   [text]
    "turns"      [{"role": "user"|"assistant", "text": text}]
    "transcript" [{"start": float, "end": float, "text": text}]   timed speech
    "segments"   [{"start": float, "end": float, "text": text}]   timed captions (chapters)
    "metadata"   map      source, split, attributes, ... (msgpack-native values only)

`text` is a msgpack str (UTF-8) or, when the source text was not valid UTF-8, a msgpack bin holding
the raw bytes. Deserialization keeps such text as `bytes` in the dataclass so the pipeline can count
and skip it; `invalid_text_fields(ex)` names them. Unknown map keys are ignored (additions within a
version are optional fields); anything else malformed raises RecordError.

Reading and writing shards of these records: records/shards.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import msgpack

from data_pipelines.records.tf_example import TFExampleError, is_tf_example, unwrap_record

FORMAT_VERSION = 1
TIMED_TEXT_FIELDS = ("transcript", "segments")

Text = str | bytes  # bytes only when the source text is not valid UTF-8


class RecordError(ValueError):
    """A record that cannot be deserialized: corrupt bytes, wrong shape, or an unknown version."""


@dataclass
class VideoExample:
    id: str
    video: bytes | None = None
    frames: list[bytes] | None = None
    fps: float = 0.0
    duration: float = 0.0
    audio: bytes | None = None
    captions: list[Text] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)
    transcript: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


def _pack_text(text: Text) -> Text:
    """str stays str when it is valid UTF-8; otherwise raw bytes (msgpack bin).

    Strings decoded with errors="surrogateescape" (how converters read unknown files) carry invalid
    bytes as lone surrogates; they turn back into those exact bytes here.
    """
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            return text
    if not isinstance(text, str):
        raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _unpack_text(value, where: str) -> Text:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise RecordError(f"{where}: expected text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:  # a foreign writer put invalid UTF-8 in a msgpack str
        return value.encode("utf-8", "surrogateescape")


def _pack_turns(turns: list[dict]) -> list[dict]:
    return [{**t, "text": _pack_text(t["text"])} for t in turns]


def _pack_timed(items: list[dict]) -> list[dict]:
    return [{**s, "start": float(s["start"]), "end": float(s["end"]), "text": _pack_text(s["text"])} for s in items]


def serialize(ex: VideoExample) -> bytes:
    """The record bytes of one example (see the module docstring for the layout)."""
    if not isinstance(ex.id, str) or not ex.id:
        raise ValueError(f"example id must be a non-empty str, got {ex.id!r}")
    record = {
        "v": FORMAT_VERSION,
        "id": ex.id,
        "video": None if ex.video is None else bytes(ex.video),
        "frames": None if ex.frames is None else [bytes(f) for f in ex.frames],
        "fps": float(ex.fps),
        "duration": float(ex.duration),
        "audio": None if ex.audio is None else bytes(ex.audio),
        "captions": [_pack_text(c) for c in ex.captions],
        "turns": _pack_turns(ex.turns),
        "transcript": _pack_timed(ex.transcript),
        "segments": _pack_timed(ex.segments),
        "metadata": dict(ex.metadata),
    }
    return msgpack.packb(record, use_bin_type=True)


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise RecordError(message)


def _bytes_or_none(value, name: str) -> bytes | None:
    _expect(value is None or isinstance(value, bytes), f"{name}: expected bytes or nil")
    return value


def _list(value, name: str) -> list:
    _expect(isinstance(value, list), f"{name}: expected a list, got {type(value).__name__}")
    return value


def _turns(value) -> list[dict]:
    turns = []
    for i, t in enumerate(_list(value, "turns")):
        _expect(isinstance(t, dict) and "role" in t and "text" in t, f"turns[{i}]: expected {{role, text}}")
        turns.append({**t, "text": _unpack_text(t["text"], f"turns[{i}].text")})
    return turns


def _timed(value, name: str) -> list[dict]:
    items = []
    for i, s in enumerate(_list(value, name)):
        _expect(isinstance(s, dict) and {"start", "end", "text"} <= s.keys(), f"{name}[{i}]: expected {{start, end, text}}")
        _expect(all(isinstance(s[k], (int, float)) for k in ("start", "end")), f"{name}[{i}]: start/end not numbers")
        items.append({**s, "start": float(s["start"]), "end": float(s["end"]),
                      "text": _unpack_text(s["text"], f"{name}[{i}].text")})
    return items


def deserialize(data: bytes) -> VideoExample:
    """Parse record bytes; RecordError on corrupt bytes, a malformed record or an unknown version.

    Also accepts a tf.train.Example whose "record" feature holds our bytes (the TFDS builders' output).
    """
    if not data:
        raise RecordError("empty record")
    if is_tf_example(data):
        try:
            data = unwrap_record(data)
        except TFExampleError as e:
            raise RecordError(str(e)) from None
    try:
        record = msgpack.unpackb(data, raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types for corrupt input
        raise RecordError(f"corrupt record: {type(e).__name__}: {e}") from None
    _expect(isinstance(record, dict), "corrupt record: not a msgpack map")
    version = record.get("v")
    _expect(version == FORMAT_VERSION, f"unknown record format version {version!r} (this reader knows {FORMAT_VERSION})")
    _expect(isinstance(record.get("id"), str) and record["id"], "id: expected a non-empty str")
    frames = record.get("frames")
    if frames is not None:
        _expect(all(isinstance(f, bytes) for f in _list(frames, "frames")), "frames: expected a list of bytes")
    metadata = record.get("metadata", {})
    _expect(isinstance(metadata, dict), "metadata: expected a map")
    try:
        fps, duration = float(record.get("fps", 0.0)), float(record.get("duration", 0.0))
    except (TypeError, ValueError):
        raise RecordError("fps/duration: expected numbers") from None
    return VideoExample(
        id=record["id"],
        video=_bytes_or_none(record.get("video"), "video"),
        frames=frames,
        fps=fps,
        duration=duration,
        audio=_bytes_or_none(record.get("audio"), "audio"),
        captions=[_unpack_text(c, f"captions[{i}]") for i, c in enumerate(_list(record.get("captions", []), "captions"))],
        turns=_turns(record.get("turns", [])),
        transcript=_timed(record.get("transcript", []), "transcript"),
        segments=_timed(record.get("segments", []), "segments"),
        metadata=metadata,
    )


def invalid_text_fields(ex: VideoExample) -> list[str]:
    """Names of text fields that hold non-UTF-8 bytes, e.g. ["captions[1]", "turns[0].text"]."""
    bad = [f"captions[{i}]" for i, c in enumerate(ex.captions) if isinstance(c, bytes)]
    bad += [f"turns[{i}].text" for i, t in enumerate(ex.turns) if isinstance(t["text"], bytes)]
    for name in TIMED_TEXT_FIELDS:
        bad += [f"{name}[{i}].text" for i, s in enumerate(getattr(ex, name)) if isinstance(s["text"], bytes)]
    return bad
