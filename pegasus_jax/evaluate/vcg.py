"""The `vcg` benchmark (QEFVC, Video-ChatGPT's quantitative protocol): a judge grades answers 0-5 on
correctness, detail orientation and contextual understanding (generic questions), temporal
understanding (temporal questions) and consistency (two phrasings of one question). A score is the
judge's number truncated to an integer, as Video-ChatGPT's scripts take it.

Input: Video-ChatGPT's Benchmarking_QA folder, holding any of generic_qa.json, temporal_qa.json
([{"video_name", "Q", "A"}]) and consistency_qa.json ([{"video_name", "Q1", "Q2", "A"}]). Videos
are found under --videos (default: the folder) by name, with or without extension.
Item ids: "<file stem>/<index>"; generation ids add "/q1", "/q2" for the consistency pair.
Aggregate: mean score per criterion over the items the judge graded (failed ones are excluded and
counted), "average" = mean of the five criterion means, "qefvc" = mean of the first three.
Pegasus-1's QEFVC grades free descriptions against the reference summary instead: the `qefvc`
benchmark (evaluate/qefvc.py), which asks these same three criterion prompts.
"""
from __future__ import annotations

import dataclasses
import os

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.data_files import read_json, require, resolve_video
from pegasus_jax.evaluate.judge_answers import parse_integer_score
from pegasus_jax.evaluate.judge_session import JudgeSession
from pegasus_jax.evaluate.predictions import Prompt
from pegasus_jax.evaluate.vcg_prompts import CRITERIA, consistency_messages, single_answer_messages

_CRITERIA_OF_KIND = {"generic_qa": ("correctness", "detail", "context"), "temporal_qa": ("temporal",),
                     "consistency_qa": ("consistency",)}


@dataclasses.dataclass
class VcgItem:
    id: str
    kind: str  # generic_qa | temporal_qa | consistency_qa
    video: str
    question: str
    answer: str
    question2: str | None = None


def load_vcg_items(path: str, videos: str | None = None) -> list[VcgItem]:
    if not os.path.isdir(path):
        raise UserError(f"{path}: expected Video-ChatGPT's QA folder (generic_qa.json, temporal_qa.json, consistency_qa.json)")
    root = videos or path
    items = []
    for kind in _CRITERIA_OF_KIND:
        file = os.path.join(path, f"{kind}.json")
        if not os.path.exists(file):
            continue
        rows = read_json(file)
        if not isinstance(rows, list):
            raise UserError(f"{file}: expected a JSON list")
        for n, row in enumerate(rows):
            where = f"{file}[{n}]"
            row = row if isinstance(row, dict) else {}
            video = resolve_video(require(row, "video_name", where), root, where)
            if kind == "consistency_qa":
                items.append(VcgItem(f"{kind}/{n}", kind, video, require(row, "Q1", where), require(row, "A", where),
                                     require(row, "Q2", where)))
            else:
                items.append(VcgItem(f"{kind}/{n}", kind, video, require(row, "Q", where), require(row, "A", where)))
    if not items:
        raise UserError(f"{path}: none of generic_qa.json, temporal_qa.json, consistency_qa.json has questions")
    return items


def vcg_prompts(items: list[VcgItem]) -> list[Prompt]:
    prompts = []
    for item in items:
        if item.kind == "consistency_qa":
            prompts += [Prompt(f"{item.id}/q1", item.video, item.question), Prompt(f"{item.id}/q2", item.video, item.question2)]
        else:
            prompts.append(Prompt(item.id, item.video, item.question))
    return prompts


def _questions(item: VcgItem, predictions: dict[str, str]) -> list[tuple[str, list[dict]]]:
    if item.kind == "consistency_qa":
        return [("consistency", consistency_messages(item.question, item.question2, item.answer,
                                                     predictions[f"{item.id}/q1"], predictions[f"{item.id}/q2"]))]
    return [(c, single_answer_messages(c, item.question, item.answer, predictions[item.id]))
            for c in _CRITERIA_OF_KIND[item.kind]]


def run_vcg(items: list[VcgItem], predict, session: JudgeSession) -> tuple[dict, list[dict]]:
    predictions = predict(vcg_prompts(items))
    jobs = [(item, criterion, messages) for item in items for criterion, messages in _questions(item, predictions)]
    answers = session.map(lambda job: session.ask(job[2], parse_integer_score), jobs)
    rows = {item.id: {"id": item.id, "kind": item.kind, "question": item.question, "answer": item.answer,
                      "scores": {}, "errors": {}} for item in items}
    for item, criterion, answer in ((j[0], j[1], a) for j, a in zip(jobs, answers)):
        if answer.ok:
            rows[item.id]["scores"][criterion] = answer.value
        else:
            rows[item.id]["errors"][criterion] = answer.error
    for item in items:
        row = rows[item.id]
        if item.kind == "consistency_qa":
            row.update(question2=item.question2, prediction=predictions[f"{item.id}/q1"],
                       prediction2=predictions[f"{item.id}/q2"])
        else:
            row["prediction"] = predictions[item.id]
    return aggregate_vcg(list(rows.values())), list(rows.values())


def aggregate_vcg(rows: list[dict]) -> dict:
    criteria = {}
    for criterion in CRITERIA:
        scores = [r["scores"][criterion] for r in rows if criterion in r["scores"]]
        failed = sum(criterion in r["errors"] for r in rows)
        if scores or failed:
            criteria[criterion] = {"mean": sum(scores) / len(scores) if scores else None,
                                   "scored": len(scores), "failed": failed}
    means = {c: v["mean"] for c, v in criteria.items() if v["mean"] is not None}
    first_three = [means[c] for c in CRITERIA[:3] if c in means]
    return {"criteria": criteria,
            "average": sum(means.values()) / len(means) if means else None,
            "qefvc": sum(first_three) / len(first_three) if first_three else None,
            "failed": sum(v["failed"] for v in criteria.values()), "items": len(rows)}
