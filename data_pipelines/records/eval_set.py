"""An evaluation set from record shards (`pegasus-jax data export-eval`): the files the evaluators read.

    OUT/videos/<id>.<ext>   each record's video bytes, as stored (never re-encoded)
    OUT/captions.jsonl      {"video": "videos/<id>.<ext>", "captions": [...]}   caption, vidfactscore
    OUT/generic_qa.json     [{"video_name", "Q", "A"}] from the records' user/assistant turns   vcg
    OUT/mcq.jsonl           {"video", "question", "options", "answer", "task"} from the records'
                            metadata "mcq" (the built-in corpus writes one per attribute)   mcq
    OUT/eval_set.json       what was exported: counts, the source shards, the split

Paths inside the files are relative to OUT, so `eval --data OUT` needs no --videos. A file is written
only when at least one record has its kind of item.
"""
from __future__ import annotations

import json
import os
import re

from data_pipelines.errors import UserError
from data_pipelines.records.shards import list_shards, read_all

# Container signatures -> file extension (PyAV probes the content; the extension is for people).
_SIGNATURES = ((4, b"ftyp", ".mp4"), (0, b"\x1a\x45\xdf\xa3", ".mkv"), (0, b"RIFF", ".avi"), (0, b"OggS", ".ogv"))


def _extension(data: bytes) -> str:
    return next((ext for offset, magic, ext in _SIGNATURES if data[offset:offset + len(magic)] == magic), ".mp4")


def _texts(values) -> list[str]:
    """The valid UTF-8 texts (a record keeps undecodable text as bytes)."""
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def _qa_pairs(turns: list[dict]) -> list[tuple[str, str]]:
    pairs = []
    for question, answer in zip(turns, turns[1:]):
        if question.get("role") == "user" and answer.get("role") == "assistant":
            q, a = _texts([question.get("text")]), _texts([answer.get("text")])
            if q and a:
                pairs.append((q[0], a[0]))
    return pairs


def _mcq(metadata: dict, where: str) -> list[dict]:
    items = metadata.get("mcq") or []
    for item in items:
        options = item.get("options") if isinstance(item, dict) else None
        if not (isinstance(options, list) and len(options) >= 2 and item.get("answer") in options
                and isinstance(item.get("question"), str)):
            raise UserError(f"{where}: metadata 'mcq' items need a question, >= 2 options and an answer among them")
    return items


def export_eval_set(pattern: str, out_dir: str, split: str | None = None, limit: int | None = None) -> dict:
    """Write the evaluation files for the records of `pattern` (those whose metadata "split" is `split`,
    when given; the first `limit` of them, when given) into `out_dir`; returns eval_set.json's content."""
    shards = list_shards(pattern)  # a UserError naming the pattern when nothing matches
    videos_dir = os.path.join(out_dir, "videos")
    try:
        os.makedirs(videos_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out: cannot create {videos_dir} ({e.strerror})") from None
    captions, qa, mcq, videos, splits_seen = [], [], [], {}, set()
    skipped_no_video = 0
    for example in read_all(pattern):
        splits_seen.add(str(example.metadata.get("split")))
        if split is not None and example.metadata.get("split") != split:
            continue
        if limit is not None and len(videos) + skipped_no_video >= limit:
            break
        if not example.video:  # frames-only records have no file to hand an evaluator
            skipped_no_video += 1
            continue
        name = "videos/" + re.sub(r"[^A-Za-z0-9._-]", "_", example.id) + _extension(example.video)
        if name in videos.values():
            raise UserError(f"{pattern}: two records share the id {example.id!r}")
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(example.video)
        videos[example.id] = name
        if _texts(example.captions):
            captions.append({"video": name, "captions": _texts(example.captions)})
        qa.extend({"video_name": name, "Q": q, "A": a} for q, a in _qa_pairs(example.turns))
        mcq.extend({"video": name, "question": item["question"], "options": list(item["options"]),
                    "answer": item["answer"], "task": str(item.get("task", "default"))}
                   for item in _mcq(example.metadata, f"{pattern}: record {example.id}"))
    if not videos:
        seen = ", ".join(sorted(splits_seen)) or "none"
        raise UserError(f"{pattern}: no records with a video" + (f" in split {split!r} (splits: {seen})" if split else ""))
    files = {}
    if captions:
        files["captions"] = _write_jsonl(os.path.join(out_dir, "captions.jsonl"), captions)
    if qa:
        files["qa"] = os.path.join(out_dir, "generic_qa.json")
        with open(files["qa"], "w", encoding="utf-8") as f:
            json.dump(qa, f, ensure_ascii=False, indent=1)
    if mcq:
        files["mcq"] = _write_jsonl(os.path.join(out_dir, "mcq.jsonl"), mcq)
    summary = {"source": pattern, "shards": len(shards), "split": split, "videos": len(videos),
               "captioned": len(captions), "qa": len(qa), "mcq": len(mcq), "skipped_no_video": skipped_no_video,
               "files": files, "ids": videos}
    with open(os.path.join(out_dir, "eval_set.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1)
    return summary


def _write_jsonl(path: str, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
