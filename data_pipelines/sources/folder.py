"""`folder`: a directory of videos + captions.jsonl (the spec's fixed format).

One JSON object per line: {"video": path relative to DIR, "caption": text} plus optional
"conversations" ([{"from": "human"|"gpt", "value": text}]) and "transcript" ([{"start", "end", "text"}]);
also optional, for the API tasks' training examples (data_pipelines/text/prompts.py): "segments"
([{"start", "end", "text"}]: chapters and highlights) and "gist" ({"title", "topics", "hashtags"}).
Other keys are kept in metadata["fields"]. --input is DIR or the captions.jsonl inside it.
"""
from __future__ import annotations

import json
import os

from data_pipelines.sources.common import Skips, conversation_turns, item, read_text, require_file, timed

ANNOTATIONS = "captions.jsonl"
KNOWN_KEYS = ("video", "caption", "conversations", "transcript", "segments", "gist")


def read_items(input_path: str, videos_dir: str | None = None) -> tuple[list[dict], Skips]:
    jsonl = os.path.join(input_path, ANNOTATIONS) if os.path.isdir(input_path) else input_path
    root = videos_dir or os.path.dirname(os.path.abspath(require_file(jsonl)))
    items, skips = [], Skips()
    for n, line in enumerate(read_text(jsonl).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rel = row["video"]
            captions = [row["caption"]] if row.get("caption") else []
            turns = conversation_turns(row.get("conversations") or [])
            transcript = timed(row.get("transcript") or [])
            segments = timed(row.get("segments") or [])
            gist = row.get("gist")
            if gist is not None and not (isinstance(gist, dict) and {"title", "topics", "hashtags"} <= set(gist)):
                raise ValueError('"gist" must be an object with "title", "topics" and "hashtags"')
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            skips.add("bad_row", f"{jsonl}:{n}: {type(e).__name__}: {e}")
            continue
        if not captions and not turns:
            skips.add("no_text", f"{jsonl}:{n}: neither caption nor conversations")
            continue
        extra = {k: v for k, v in row.items() if k not in KNOWN_KEYS}
        items.append(item(os.path.splitext(rel)[0], os.path.join(root, rel), captions, turns, transcript, segments,
                          metadata={"source": "folder", "path": rel, **({"gist": gist} if gist else {}),
                                    **({"fields": extra} if extra else {})}))
    return items, skips
