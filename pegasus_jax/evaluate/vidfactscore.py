"""The `vidfactscore` benchmark (as in Twelve Labs' public pegasus-1-eval): a judge splits the reference
and the prediction into atomic sentences; per video, precision = share of predicted atoms supported by
the reference atoms, recall = share of reference atoms found among the predicted atoms. P and R are
averaged over videos, F1 = 2PR/(P+R) on those means. An empty prediction (or one with no atoms) counts
P = R = 0. Several references (MSR-VTT's 20 captions) are first fused into one paragraph by the judge;
that, like every judge answer, is cached. Items whose judge questions fail are excluded and counted.
Input: the caption sets of caption_data (JSONL or a folder with captions.jsonl).
"""
from __future__ import annotations

from functools import partial

from pegasus_jax.evaluate.caption_data import CaptionItem
from pegasus_jax.evaluate.judge_answers import parse_string_list, parse_verdicts
from pegasus_jax.evaluate.judge_session import JudgeSession
from pegasus_jax.evaluate.predictions import Prompt
from pegasus_jax.evaluate.reference_fusion import ask_fused
from pegasus_jax.evaluate.vidfactscore_prompts import atomize_messages, precision_messages, recall_messages

DEFAULT_DESCRIPTION_PROMPT = "Describe this video in detail."


class _Failed(Exception):
    pass


def _ask(session: JudgeSession, messages: list[dict], parse, step: str):
    answer = session.ask(messages, parse)
    if not answer.ok:
        raise _Failed(f"{step}: {answer.error}")
    return answer.value


def score_item(session: JudgeSession, item: CaptionItem, prediction: str) -> dict:
    row = {"id": item.id, "prediction": prediction, "references": item.references}
    try:
        fused = ask_fused(session, item.references)
        if not fused.ok:
            raise _Failed(f"fuse: {fused.error}")
        reference = row["reference"] = fused.value
        reference_atoms = _ask(session, atomize_messages(reference), partial(parse_string_list, key="atoms"),
                               "atomize reference")
        if not reference_atoms:
            raise _Failed("atomize reference: the judge found no atomic sentence")
        row["reference_atoms"] = reference_atoms
        predicted_atoms = []
        if prediction.strip():
            predicted_atoms = _ask(session, atomize_messages(prediction), partial(parse_string_list, key="atoms"),
                                   "atomize prediction")
        row["predicted_atoms"] = predicted_atoms
        if not predicted_atoms:
            return {**row, "precision": 0.0, "recall": 0.0}
        supported = _ask(session, precision_messages(reference_atoms, predicted_atoms),
                         partial(parse_verdicts, key="supported", count=len(predicted_atoms)), "precision")
        found = _ask(session, recall_messages(reference_atoms, predicted_atoms),
                     partial(parse_verdicts, key="found", count=len(reference_atoms)), "recall")
    except _Failed as e:
        return {**row, "error": str(e)}
    return {**row, "supported": supported, "found": found,
            "precision": sum(supported) / len(supported), "recall": sum(found) / len(found)}


def aggregate_vidfactscore(rows: list[dict]) -> dict:
    scored = [r for r in rows if "error" not in r]
    precision = sum(r["precision"] for r in scored) / len(scored) if scored else None
    recall = sum(r["recall"] for r in scored) / len(scored) if scored else None
    if precision is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "scored": len(scored),
            "failed": len(rows) - len(scored), "items": len(rows)}


def run_vidfactscore(items: list[CaptionItem], predict, session: JudgeSession,
                     prompt: str = DEFAULT_DESCRIPTION_PROMPT) -> tuple[dict, list[dict]]:
    predictions = predict([Prompt(item.id, item.video, prompt) for item in items])
    rows = session.map(lambda item: score_item(session, item, predictions[item.id]), items)
    return aggregate_vidfactscore(rows), rows
