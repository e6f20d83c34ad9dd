"""The per-shard conversion step: items -> one ArrayRecord file. Local workers and Beam both run it.

Videos are stored as their original container bytes; the header is probed (no decoding) to fill
fps and duration. A missing or empty video file skips the row (counted); an unreadable header keeps
the row with fps = duration = 0 and is counted as "unprobed" (training's bad-input path decides).
"""
from __future__ import annotations

import os

from data_pipelines.sources.common import Skips


def to_example(it: dict, data: bytes, skips: Skips):
    from data_pipelines.records.format import VideoExample
    from data_pipelines.decode.video import DecodeError, probe

    fps = duration = 0.0
    try:
        info = probe(data)
        fps, duration = info.fps, info.duration
    except DecodeError as e:
        skips.add("unprobed", f"{it['id']}: {e}")
    return VideoExample(id=it["id"], video=data, fps=fps, duration=duration, captions=it["captions"],
                        turns=it["turns"], transcript=it["transcript"], segments=it["segments"], metadata=it["metadata"])


def _records(items: list[dict], skips: Skips, written: list[int]):
    from data_pipelines.records.format import serialize

    for it in items:
        path = it["video_path"]
        if not os.path.isfile(path):
            skips.add("missing_video", f"{it['id']}: {path}")
            continue
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            skips.add("empty_video", f"{it['id']}: {path}")
            continue
        written[0] += 1
        yield serialize(to_example(it, data, skips))


def convert_shard(items: list[dict], out_path: str) -> dict:
    """Write `items` to `out_path`; returns {"path", "written", "skipped": Skips.as_dict()}.

    "unprobed" rows are written and also listed under skipped (as a warning tally), so
    written + skipped counts other than "unprobed" equals len(items).
    """
    from data_pipelines.records.shards import write_records

    skips, written = Skips(), [0]
    write_records(_records(items, skips, written), out_path)
    return {"path": out_path, "written": written[0], "skipped": skips.as_dict()}


def convert_shard_task(task: tuple) -> dict:
    """(items, out_path) packed as one argument for Pool.map and beam.Map."""
    items, out_path = task
    return convert_shard(items, out_path)
