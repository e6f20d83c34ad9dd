"""`activitynet`: ActivityNet Captions JSON {video_id: {"duration", "timestamps": [[s, e], ...],
"sentences": [...]}} -> timed `segments` (chapter targets) and the paragraph as the caption.
Videos are `{videos}/{video_id}` (+ extension), also tried without the "v_" prefix."""
from __future__ import annotations

import os

from data_pipelines.errors import UserError

from data_pipelines.sources.common import Skips, find_video, item, read_json


def read_items(input_path: str, videos_dir: str | None = None) -> tuple[list[dict], Skips]:
    data = read_json(input_path)
    if not isinstance(data, dict):
        raise UserError(f"--input {input_path}: expected a JSON object keyed by video id")
    root = videos_dir or os.path.dirname(os.path.abspath(input_path))
    items, skips = [], Skips()
    for vid, entry in data.items():
        try:
            stamps, sentences = entry["timestamps"], entry["sentences"]
            if len(stamps) != len(sentences):
                raise ValueError(f"{len(stamps)} timestamps for {len(sentences)} sentences")
            segments = [{"start": float(s), "end": float(e), "text": t.strip()} for (s, e), t in zip(stamps, sentences)]
        except (ValueError, KeyError, TypeError) as e:
            skips.add("bad_row", f"{input_path}[{vid}]: {type(e).__name__}: {e}")
            continue
        segments.sort(key=lambda s: (s["start"], s["end"]))
        short = vid[2:] if vid.startswith("v_") else vid
        path = find_video(root, vid) or find_video(root, short) or os.path.join(root, vid + ".mp4")
        paragraph = " ".join(s["text"] for s in segments)
        items.append(item(f"anet-{vid}", path, [paragraph], segments=segments,
                          metadata={"source": "activitynet", "declared_duration": float(entry.get("duration", 0.0))}))
    return items, skips
