"""The `openqa` benchmark: open-ended video QA (MSVD-QA, MSRVTT-QA, TGIF-QA, ActivityNet-QA) scored as
Video-ChatGPT does. The model answers each question freely; the judge compares the answer with the correct
one and replies with a Python-dict string {'pred': 'yes'|'no', 'score': 0-5}. Per dataset: accuracy = share
of 'yes' among the judged questions, score = mean of the integer scores (int() of the reply, as
Video-ChatGPT's script takes it). Questions the judge fails on are excluded and counted.

Inputs (--data), each question {video, question, answer}:
- a folder with test_q.json ([{"video_name", "question", "question_id"}]) and test_a.json
  ([{"question_id", "answer", ...}]), the layout of ActivityNet-QA and of the four *_Zero_Shot_QA
  folders Video-ChatGPT / Video-LLaVA distribute; the dataset is the folder's name;
- a folder of such folders and/or of *.json / *.jsonl files: one dataset each (the file's stem);
- a JSON list of {"video_name"|"video", "question"|"Q", "answer"|"A", "question_id"?} (dataset: the stem);
- a JSONL of {"video", "question", "answer", "dataset"?, "id"?}.
Videos: under --videos (default: the dataset's folder, then its videos/ subfolder), with or without
extension (.gif for TGIF), ActivityNet's also with the "v_" prefix its question files leave out.
Item id: "<dataset>/<question_id or 0-based index>".
"""
from __future__ import annotations

import dataclasses
import glob
import os

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.data_files import read_json, read_jsonl, resolve_video
from pegasus_jax.evaluate.judge_answers import parse_integer_score, parse_object
from pegasus_jax.evaluate.judge_session import JudgeSession
from pegasus_jax.evaluate.predictions import Prompt
from pegasus_jax.evaluate.vcg_prompts import qa_pair

# Our wording of Video-ChatGPT's zero-shot QA judge prompt; its fields and answer format are theirs.
SYSTEM = ("You are an evaluator of generated answers to questions about videos. Compare the predicted answer "
          "with the correct answer and decide whether they match in meaning.\n"
          "INSTRUCTIONS:\n"
          "- Judge the meaning, not the wording.\n"
          "- Synonyms and paraphrases count as matches.\n"
          "- Decide whether the prediction is correct with respect to the correct answer.")
ANSWER_FORMAT = ("Give your evaluation only as a yes/no verdict and a score, an integer from 0 to 5 where 5 is the "
                 "closest match in meaning. Reply with only a Python dictionary string with the keys 'pred' (the "
                 "string 'yes' or 'no') and 'score' (an INTEGER, not a STRING), no other text or explanation, "
                 "for example {'pred': 'yes', 'score': 4}.")
QUESTION_FIELDS, ANSWER_FIELDS, VIDEO_FIELDS = ("question", "Q", "q"), ("answer", "A", "a"), ("video", "video_name", "video_id")


@dataclasses.dataclass
class OpenQaItem:
    id: str
    dataset: str
    video: str
    question: str
    answer: str


def judge_messages(question: str, answer: str, prediction: str) -> list[dict]:
    user = qa_pair(question, answer, prediction) + ANSWER_FORMAT
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_verdict(text: str) -> dict:
    pred = parse_object(text).get("pred")
    if not isinstance(pred, str) or pred.strip().lower() not in ("yes", "no"):
        raise ValueError(f"'pred' {pred!r} is not 'yes' or 'no'")
    return {"pred": pred.strip().lower(), "score": parse_integer_score(text)}


def _pick(row: dict, fields: tuple[str, ...], where: str):
    value = next((row[f] for f in fields if f in row), None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # numeric answers and video ids (MSR-VTT-QA's "video_id": 7010)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: needs one of the fields {', '.join(fields)} (text)")
    return value.strip()


def _video(name: str, roots: list[str], where: str) -> str:
    for root in roots:
        for candidate in (name, "v_" + name):
            try:
                return resolve_video(candidate, root, where)
            except UserError:
                continue
    raise UserError(f"{where}: video {name!r} not found under {' or '.join(roots)}")


def _items(rows: list, dataset: str, roots: list[str], where: str, answers: dict | None = None) -> list[OpenQaItem]:
    items = []
    for n, row in enumerate(rows):
        at = f"{where}[{n}]"
        if not isinstance(row, dict):
            raise UserError(f"{at}: expected an object")
        qid = str(row.get("question_id", row.get("id", n)))
        if answers is not None:
            if qid not in answers:
                raise UserError(f"{at}: question_id {qid!r} has no answer in test_a.json")
            row = {**row, "answer": answers[qid]}
        name = dataset if answers is not None or not isinstance(row.get("dataset"), str) else row["dataset"]
        items.append(OpenQaItem(f"{name}/{qid}", name, _video(_pick(row, VIDEO_FIELDS, at), roots, at),
                                _pick(row, QUESTION_FIELDS, at), _pick(row, ANSWER_FIELDS, at)))
    return items


def _pair_folder(folder: str, videos: str | None) -> list[OpenQaItem]:
    questions, answer_file = read_json(os.path.join(folder, "test_q.json")), os.path.join(folder, "test_a.json")
    answers = read_json(answer_file)
    if not isinstance(questions, list) or not isinstance(answers, list):
        raise UserError(f"{folder}: test_q.json and test_a.json must be JSON lists")
    by_id = {str(a.get("question_id")): _pick(a, ANSWER_FIELDS, f"{answer_file}[{n}]")
             for n, a in enumerate(answers) if isinstance(a, dict)}
    roots = [videos] if videos else [folder, os.path.join(folder, "videos")]
    return _items(questions, os.path.basename(os.path.normpath(folder)), roots, os.path.join(folder, "test_q.json"), by_id)


def _file(file: str, videos: str | None) -> list[OpenQaItem]:
    folder = os.path.dirname(os.path.abspath(file))
    roots = [videos] if videos else [folder, os.path.join(folder, "videos")]
    stem = os.path.splitext(os.path.basename(file))[0]
    rows = read_jsonl(file) if file.endswith(".jsonl") else read_json(file)
    if not isinstance(rows, list):
        raise UserError(f"{file}: expected a JSON list of questions")
    return _items(rows, stem, roots, file)


def load_openqa_items(path: str, videos: str | None = None) -> list[OpenQaItem]:
    if not os.path.isdir(path):
        items = _file(path, videos)
    elif os.path.isfile(os.path.join(path, "test_q.json")):
        items = _pair_folder(path, videos)
    else:
        items = []
        for entry in sorted(glob.glob(os.path.join(path, "*"))):
            if os.path.isfile(os.path.join(entry, "test_q.json")):
                items += _pair_folder(entry, videos)
            elif entry.endswith((".json", ".jsonl")):
                items += _file(entry, videos)
    if not items:
        raise UserError(f"{path}: no questions (expected test_q.json + test_a.json, or *.json / *.jsonl QA files)")
    seen = set()
    for item in items:
        if item.id in seen:
            raise UserError(f"{path}: question id {item.id!r} occurs twice")
        seen.add(item.id)
    return items


def run_openqa(items: list[OpenQaItem], predict, session: JudgeSession) -> tuple[dict, list[dict]]:
    predictions = predict([Prompt(item.id, item.video, item.question) for item in items])
    answers = session.map(lambda item: session.ask(judge_messages(item.question, item.answer, predictions[item.id]),
                                                   parse_verdict), items)
    rows = []
    for item, answer in zip(items, answers):
        row = {"id": item.id, "dataset": item.dataset, "question": item.question, "answer": item.answer,
               "prediction": predictions[item.id]}
        rows.append({**row, **answer.value} if answer.ok else {**row, "error": answer.error})
    return aggregate_openqa(rows), rows


def _summary(rows: list[dict]) -> dict:
    judged = [r for r in rows if "error" not in r]
    yes = sum(r["pred"] == "yes" for r in judged)
    return {"accuracy": yes / len(judged) if judged else None,
            "score": sum(r["score"] for r in judged) / len(judged) if judged else None,
            "yes": yes, "no": len(judged) - yes, "failed": len(rows) - len(judged), "items": len(rows)}


def aggregate_openqa(rows: list[dict]) -> dict:
    datasets = sorted({r["dataset"] for r in rows})
    return {"per_dataset": {d: _summary([r for r in rows if r["dataset"] == d]) for d in datasets}, **_summary(rows)}
