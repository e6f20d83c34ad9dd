"""`folder_csv`: a directory of videos + captions.csv with columns video,caption (--input DIR or the CSV)."""
from __future__ import annotations

import os

from data_pipelines.sources.common import Skips, item, read_csv

ANNOTATIONS = "captions.csv"


def read_items(input_path: str, videos_dir: str | None = None) -> tuple[list[dict], Skips]:
    path = os.path.join(input_path, ANNOTATIONS) if os.path.isdir(input_path) else input_path
    rows = read_csv(path, ("video", "caption"))
    root = videos_dir or os.path.dirname(os.path.abspath(path))
    items, skips = [], Skips()
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        rel, caption = (row.get("video") or "").strip(), row.get("caption") or ""
        if not rel or not caption.strip():
            skips.add("bad_row", f"{path}:{n}: empty video or caption")
            continue
        items.append(item(os.path.splitext(rel)[0], os.path.join(root, rel), [caption.strip()],
                          metadata={"source": "folder_csv", "path": rel}))
    return items, skips
