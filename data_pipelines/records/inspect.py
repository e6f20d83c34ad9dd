"""`data inspect`: what a set of shards holds and which records fail, by kind.

Every record is deserialized (counts, durations, sources, non-UTF-8 text); up to `check` records
are also decoded (4 frames spread over the video, and all of its audio) so broken videos show up
by DecodeError kind before training meets them.
"""
from __future__ import annotations

import collections

SAMPLE_FRAMES = 4
FRAME_SIZE = 64
MAX_LISTED = 20


def _decode(ex) -> tuple[int, float]:
    """(frames decoded at SAMPLE_FRAMES uniform times, audio seconds); raises DecodeError."""
    from data_pipelines.decode.video import decode_audio, decode_frame_jpegs, probe, sample_frames

    if ex.frames is not None:
        duration = ex.duration or len(ex.frames) / max(ex.fps, 1e-6)
        times = [(i + 0.5) * duration / SAMPLE_FRAMES for i in range(SAMPLE_FRAMES)]
        frames = len(decode_frame_jpegs(ex.frames, ex.fps, times, FRAME_SIZE))
    else:
        duration = ex.duration or probe(ex.video or b"").duration
        times = [(i + 0.5) * duration / SAMPLE_FRAMES for i in range(SAMPLE_FRAMES)]
        frames = len(sample_frames(ex.video or b"", times, FRAME_SIZE)[0])
    audio_source = ex.audio if ex.audio is not None else ex.video
    audio = decode_audio(audio_source, 16000) if audio_source else []
    return frames, len(audio) / 16000


def inspect(pattern: str, show: int = 3, check: int = 200) -> dict:
    """Summary dict of the shards matching `pattern`; check=0 decodes every record."""
    from data_pipelines.records.format import RecordError, deserialize, invalid_text_fields
    from data_pipelines.records.shards import iter_raw
    from data_pipelines.decode.video import DecodeError

    shards, sources, splits = collections.Counter(), collections.Counter(), collections.Counter()
    failures, failed = collections.Counter(), []
    records = total_duration = checked = with_audio_field = with_turns = with_segments = with_transcript = 0
    examples = []
    for path, index, data in iter_raw(pattern):
        records += 1
        shards[path] += 1
        try:
            ex = deserialize(data)
        except RecordError as e:
            failures["record"] += 1
            if len(failed) < MAX_LISTED:
                failed.append({"where": f"{path}[{index}]", "kind": "record", "error": str(e)})
            continue
        total_duration += ex.duration
        sources[str(ex.metadata.get("source", "?"))] += 1
        splits[str(ex.metadata.get("split", "?"))] += 1
        with_audio_field += ex.audio is not None
        with_turns += bool(ex.turns)
        with_segments += bool(ex.segments)
        with_transcript += bool(ex.transcript)
        bad_text = invalid_text_fields(ex)
        if bad_text:
            failures["non_utf8_text"] += 1
            if len(failed) < MAX_LISTED:
                failed.append({"where": f"{path}[{index}]", "id": ex.id, "kind": "non_utf8_text", "error": ", ".join(bad_text)})
        if check and checked >= check and len(examples) >= show:
            continue
        checked += 1
        try:
            frames, audio_seconds = _decode(ex)
        except DecodeError as e:
            failures[e.kind] += 1
            if len(failed) < MAX_LISTED:
                failed.append({"where": f"{path}[{index}]", "id": ex.id, "kind": e.kind, "error": str(e)})
            continue
        if len(examples) < show:
            caption = ex.captions[0] if ex.captions else (ex.turns[0]["text"] if ex.turns else "")
            examples.append({"id": ex.id, "caption": caption if isinstance(caption, str) else repr(caption),
                             "duration": round(ex.duration, 3), "frames_decoded": frames,
                             "audio_seconds": round(audio_seconds, 3), "turns": len(ex.turns),
                             "segments": len(ex.segments)})
    good = records - failures["record"]
    return {
        "pattern": str(pattern), "shards": len(shards), "records": records,
        "total_duration_s": round(total_duration, 3), "mean_duration_s": round(total_duration / good, 3) if good else 0.0,
        "sources": dict(sources), "splits": dict(splits), "with_turns": with_turns, "with_segments": with_segments,
        "with_transcript": with_transcript, "with_separate_audio": with_audio_field, "decode_checked": checked,
        "failures": dict(failures), "failed": failed, "examples": examples,
    }


def format_report(report: dict) -> str:
    lines = [
        f"{report['pattern']}: {report['records']} records in {report['shards']} shard(s)",
        f"duration: total {report['total_duration_s']:.1f} s, mean {report['mean_duration_s']:.2f} s",
        f"sources: {report['sources']}  splits: {report['splits']}",
        f"with turns {report['with_turns']}, segments {report['with_segments']}, "
        f"transcript {report['with_transcript']}, separate audio {report['with_separate_audio']}",
        f"decode-checked {report['decode_checked']} record(s); failures by kind: {report['failures'] or 'none'}",
    ]
    for f in report["failed"]:
        lines.append(f"  FAILED {f['where']} {f.get('id', '')} [{f['kind']}] {f['error']}")
    for ex in report["examples"]:
        lines.append(f"  {ex['id']}: {ex['duration']} s, {ex['frames_decoded']} frames decoded, "
                     f"{ex['audio_seconds']} s audio, {ex['turns']} turns, {ex['segments']} segments: {ex['caption']!s}")
    return "\n".join(lines)
