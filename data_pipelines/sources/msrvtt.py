"""`msrvtt`: MSR-VTT annotation JSON {"videos": [{"video_id", "split", ...}], "sentences":
[{"video_id", "caption", "sen_id"?}]}; every caption of a video is kept (in sen_id order).
Videos are `{videos}/{video_id}.mp4`; --videos defaults to the JSON's folder."""
from __future__ import annotations

import collections
import os

from data_pipelines.errors import UserError

from data_pipelines.sources.common import Skips, find_video, item, read_json

VIDEO_FIELDS = ("split", "category", "url", "start time", "end time")


def read_items(input_path: str, videos_dir: str | None = None) -> tuple[list[dict], Skips]:
    data = read_json(input_path)
    if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
        raise UserError(f"--input {input_path}: expected an MSR-VTT JSON with 'videos' and 'sentences'")
    root = videos_dir or os.path.dirname(os.path.abspath(input_path))
    captions = collections.defaultdict(list)
    for s in data["sentences"]:
        captions[s.get("video_id")].append((s.get("sen_id", len(captions[s.get("video_id")])), s.get("caption", "")))
    items, skips = [], Skips()
    for video in data["videos"]:
        vid = video.get("video_id")
        texts = [c.strip() for _, c in sorted(captions.get(vid, []), key=lambda x: x[0]) if c and c.strip()]
        if not vid or not texts:
            skips.add("no_text" if vid else "bad_row", f"video {vid!r}: no captions" if vid else f"entry {video}")
            continue
        path = find_video(root, vid) or os.path.join(root, vid + ".mp4")
        metadata = {"source": "msrvtt", "video_id": vid, **{k.replace(" ", "_"): video[k] for k in VIDEO_FIELDS if k in video}}
        items.append(item(f"msrvtt-{vid}", path, texts, metadata=metadata))
    return items, skips
