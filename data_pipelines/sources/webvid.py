"""`webvid`: the WebVid CSV (videoid, name, page_dir, duration, contentUrl); videos already downloaded
to `{videos}/{page_dir}/{videoid}.mp4` or `{videos}/{videoid}.mp4` (--videos, default the CSV's folder)."""
from __future__ import annotations

import os

from data_pipelines.sources.common import Skips, find_video, item, read_csv

COLUMNS = ("videoid", "name", "page_dir")


def read_items(input_path: str, videos_dir: str | None = None) -> tuple[list[dict], Skips]:
    rows = read_csv(input_path, COLUMNS)
    root = videos_dir or os.path.dirname(os.path.abspath(input_path))
    items, skips = [], Skips()
    for n, row in enumerate(rows, start=2):
        vid, caption, page = row["videoid"].strip(), (row["name"] or "").strip(), (row["page_dir"] or "").strip()
        if not vid or not caption:
            skips.add("bad_row", f"{input_path}:{n}: empty videoid or name")
            continue
        path = find_video(os.path.join(root, page), vid) or find_video(root, vid) or os.path.join(root, page, vid + ".mp4")
        metadata = {"source": "webvid", "videoid": vid, "page_dir": page, "url": row.get("contentUrl", "")}
        if row.get("duration"):
            metadata["declared_duration"] = row["duration"]
        items.append(item(f"webvid-{vid}", path, [caption], metadata=metadata))
    return items, skips
