"""Captioned-video sets for `caption`, `vidfactscore` and `qefvc`: a JSONL file, or a folder holding
`captions.jsonl` (the `data convert --format folder` layout). Each line is {"video": path relative to
the file's folder, "caption": text} or {"video", "captions": [text, ...]}; lines naming the same
video are pooled as several references (MSR-VTT has 20 per clip). Item id = the "video" field.
A folder of `<video id>.txt` files instead (Video-ChatGPT's VCG Video Descriptions release,
Test_Human_Annotated_Captions/) gives one reference per video, its videos found by id under --videos.
With references="fused" (`eval --references fused`) each video's one reference is its line's
"fused_reference", written by `eval fuse-references`."""
from __future__ import annotations

import dataclasses
import glob
import os

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.data_files import read_jsonl, resolve_video


@dataclasses.dataclass
class CaptionItem:
    id: str
    video: str
    references: list[str]


REFERENCE_MODES = ("all", "fused")


CURLY_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def load_caption_items(path: str, videos: str | None = None, references: str = "all") -> list[CaptionItem]:
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "captions.jsonl")):
        texts = sorted(glob.glob(os.path.join(path, "*.txt")))
        if texts and references == "fused":
            raise UserError(f"{path}: description files hold one reference each; --references fused needs a "
                            "file written by `eval fuse-references`")
        if texts:
            return [_description_item(file, videos or path) for file in texts]
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
        if references == "fused":
            captions = [_fused_reference(row, name, name in items, where)]
        if name not in items:
            items[name] = CaptionItem(id=name, video=resolve_video(name, root, where), references=[])
        items[name].references.extend(captions)
    if not items:
        raise UserError(f"{file}: no items")
    return list(items.values())


def _description_item(file: str, root: str) -> CaptionItem:
    with open(file, encoding="utf-8-sig") as f:  # the release's files start with a byte-order mark
        text = " ".join(f.read().translate(CURLY_QUOTES).split())
    if not text:
        raise UserError(f"{file}: empty description")
    video_id = os.path.splitext(os.path.basename(file))[0]
    return CaptionItem(id=video_id, video=resolve_video(video_id, root, file), references=[text])


def _fused_reference(row: dict, name: str, seen: bool, where: str) -> str:
    fused = row.get("fused_reference")
    if not isinstance(fused, str) or not fused.strip():
        reason = f" (fusion failed: {row['fuse_error']})" if "fuse_error" in row else ""
        raise UserError(f"{where}: no 'fused_reference'{reason}; write them with `pegasus-jax eval fuse-references`")
    if seen:
        raise UserError(f"{where}: video {name!r} listed twice; a fused reference is one line per video")
    return fused.strip()
