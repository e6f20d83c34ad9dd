"""Reference fusion, Pegasus-1's MSR-VTT protocol: a video's captions (MSR-VTT has 20) fused by the judge
into one reference description. `eval fuse-references` writes them once (cached like every judge answer);
`eval --references fused` then scores caption, vidfactscore or qefvc against that one reference instead of
the captions themselves, and vidfactscore fuses the same way (same question, same cache entry) when run on
the captions directly."""
from __future__ import annotations

import json
import os
from functools import partial

from pegasus_jax.evaluate.caption_data import load_caption_items
from pegasus_jax.evaluate.judge_answers import parse_text
from pegasus_jax.evaluate.judge_session import JudgeAnswer, JudgeSession
from pegasus_jax.evaluate.vidfactscore_prompts import fuse_messages


def ask_fused(session: JudgeSession, captions: list[str]) -> JudgeAnswer:
    """The judge's one-paragraph fusion of `captions`; a single caption is its own reference (no question)."""
    if len(captions) == 1:
        return JudgeAnswer(value=captions[0])
    return session.ask(fuse_messages(captions), partial(parse_text, key="paragraph"))


def write_fused_references(data: str, out_file: str, session: JudgeSession, videos: str | None = None) -> dict:
    """Read a caption set (caption_data's JSONL, e.g. the JSFusion file of `data convert --jsfusion-csv`),
    write `out_file`: one line {"video", "captions", "fused_reference"} per video. "video" is kept as written
    (so item ids, and --predictions files keyed by them, still match) when `out_file` sits in the data's
    folder or --videos names the root; otherwise it is rewritten relative to `out_file`'s folder. A video whose fusion failed after every retry keeps its captions and gets "fuse_error" instead,
    so a rerun (answers cached) asks only for the missing ones. Returns {"videos", "fused", "failed"}."""
    items = load_caption_items(data, videos)
    answers = session.map(lambda item: ask_fused(session, item.references), items)
    folder = os.path.dirname(os.path.abspath(out_file))
    data_file = os.path.join(data, "captions.jsonl") if os.path.isdir(data) else data
    keep_names = videos is not None or folder == os.path.dirname(os.path.abspath(data_file))
    os.makedirs(folder, exist_ok=True)
    failed = 0
    with open(out_file, "w", encoding="utf-8") as f:
        for item, answer in zip(items, answers):
            video = item.id if keep_names else os.path.relpath(os.path.abspath(item.video), folder)
            row = {"video": video, "captions": item.references}
            if answer.ok:
                row["fused_reference"] = answer.value
            else:
                row["fuse_error"] = answer.error
                failed += 1
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"videos": len(items), "fused": len(items) - failed, "failed": failed}
