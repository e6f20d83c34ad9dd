"""Captioned-video sets for `caption` and `vidfactscore`: a JSONL file, or a folder holding
`captions.jsonl` (the `data convert --format folder` layout). Each line is {"video": path relative to
the file's folder, "caption": text} or {"video", "captions": [text, ...]}; lines naming the same
video are pooled as several references (MSR-VTT has 20 per clip). Item id = the "video" field."""
from __future__ import annotations

import dataclasses
import os

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.data_files import read_jsonl, resolve_video


@dataclasses.dataclass
class CaptionItem:
    id: str
    video: str
    references: list[str]


def load_caption_items(path: str, videos: str | None = None) -> list[CaptionItem]:
    file = os.path.join(path, "captions.jsonl") if os.path.isdir(path) else path
    root = videos or os.path.dirname(os.path.abspath(file))
    items: dict[str, CaptionItem] = {}
    for number, row in enumerate(read_jsonl(file), 1):
        where = f"{file}:{number}"
        name = row.get("video")
        if not isinstance(name, str) or not name:
            raise UserError(f"{where}: field 'video' missing")
        captions = row["captions"] if "captions" in row else [row.get("caption")]
        if not isinstance(captions, list) or not all(isinstance(c, str) and c.strip() for c in captions) or not captions:
            raise UserError(f"{where}: needs 'caption' (text) or 'captions' (non-empty list of texts)")
        if name not in items:
            items[name] = CaptionItem(id=name, video=resolve_video(name, root, where), references=[])
        items[name].references.extend(captions)
    if not items:
        raise UserError(f"{file}: no items")
    return list(items.values())
