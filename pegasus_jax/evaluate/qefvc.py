"""The `qefvc` benchmark as Pegasus-1 reports it: the model describes each video, and the judge grades the
description against the reference summary (the human description) on Video-ChatGPT's first three
criteria, correctness of information, detail orientation and contextual understanding (0-5 each, the
prompts of `vcg_prompts`); QEFVC is the mean of the three criterion means.

This differs from the `vcg` benchmark, which grades answers to Video-ChatGPT's generated questions
(generic/temporal/consistency QA files) on all five criteria.

Inputs (--data), read by caption_data with one reference per video:
- Video-ChatGPT's VCG Video Descriptions release: a folder of `<video id>.txt` files, one human
  description each (500 ActivityNet test videos); videos are found under --videos by id, with or
  without extension (Test_Videos/);
- a caption set (JSONL, or a folder with captions.jsonl), e.g. MSR-VTT's JSFusion file with
  `--references fused` (the judge-fused reference).
Item id: the video id (txt stem) or the caption set's "video" field.
"""
from __future__ import annotations

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.caption_data import CaptionItem, load_caption_items
from pegasus_jax.evaluate.judge_session import JudgeSession
from pegasus_jax.evaluate.vcg import VcgItem, run_vcg


def load_description_items(path: str, videos: str | None = None, references: str = "all") -> list[CaptionItem]:
    """One reference summary per video (several captions must be fused first)."""
    items = load_caption_items(path, videos, references)
    for item in items:
        if len(item.references) != 1:
            raise UserError(f"{path}: video {item.id!r} has {len(item.references)} references; qefvc grades "
                            "against one summary: fuse them (`eval fuse-references`, then --references fused)")
    return items


def run_qefvc(items: list[CaptionItem], predict, session: JudgeSession, prompt: str) -> tuple[dict, list[dict]]:
    """Generate with `prompt`, grade each description with `prompt` as the question and the summary as the
    reference answer, exactly as `vcg` grades a generic question."""
    graded = [VcgItem(id=item.id, kind="generic_qa", video=item.video, question=prompt, answer=item.references[0])
              for item in items]
    aggregate, rows = run_vcg(graded, predict, session)
    aggregate.pop("average")  # equals qefvc here: only the three criteria are asked
    for row in rows:
        del row["kind"]
        row["reference"] = row.pop("answer")
    return aggregate, rows
