"""Multiple-choice video QA scored by likelihood: the prediction is the option whose tokens the model
finds most likely as the answer (`model.option_logprobs`, ties go to the first option).

Inputs: an MVBench task file (JSON list of {"video", "question", "candidates", "answer"}, the task is
the file's stem), a folder of such files (one task each), or a JSONL of
{"video", "question", "options", "answer", "task"}. "answer" is the correct option's text or its
0-based index. Videos are resolved under --videos (default: the annotation file's folder).
Reported: accuracy over all questions, per task, and the mean of per-task accuracies (MVBench's "Avg").
"""
from __future__ import annotations

import dataclasses
import glob
import os

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.data_files import read_json, read_jsonl, resolve_video
from pegasus_jax.progress import Counter


@dataclasses.dataclass
class McqItem:
    id: str
    task: str
    video: str
    question: str
    options: list[str]
    answer: int  # index into options


def _item(row: dict, task: str, index: int, options_field: str, root: str, where: str) -> McqItem:
    options = row.get(options_field)
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise UserError(f"{where}: field {options_field!r} must list at least two option texts")
    question, video, answer = row.get("question"), row.get("video"), row.get("answer")
    if not isinstance(question, str) or not isinstance(video, str):
        raise UserError(f"{where}: fields 'question' and 'video' must be texts")
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise UserError(f"{where}: field 'answer' must be an option text or index")
    if isinstance(answer, int):
        if not 0 <= answer < len(options):
            raise UserError(f"{where}: answer index {answer} out of range for {len(options)} options")
        index_of_answer = answer
    elif answer in options:
        index_of_answer = options.index(answer)
    else:
        raise UserError(f"{where}: answer {answer!r} is not one of the options")
    return McqItem(id=f"{task}/{index}", task=task, video=resolve_video(video, root, where), question=question,
                   options=options, answer=index_of_answer)


def load_mcq_items(path: str, videos: str | None = None) -> list[McqItem]:
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.json")))
        if not files:
            raise UserError(f"{path}: no MVBench task files (*.json)")
    else:
        files = [path]
    items = []
    for file in files:
        root = videos or os.path.dirname(os.path.abspath(file))
        if file.endswith(".jsonl"):
            for n, row in enumerate(read_jsonl(file)):
                task = row.get("task") if isinstance(row.get("task"), str) else "default"
                items.append(_item(row, task, n, "options", root, f"{file}:{n + 1}"))
            continue
        rows = read_json(file)
        if not isinstance(rows, list):
            raise UserError(f"{file}: expected a JSON list of questions (MVBench format)")
        task = os.path.splitext(os.path.basename(file))[0]
        items.extend(_item(row if isinstance(row, dict) else {}, task, n, "candidates", root, f"{file}[{n}]")
                     for n, row in enumerate(rows))
    if not items:
        raise UserError(f"{path}: no questions")
    return items


def run_mcq(items: list[McqItem], model) -> tuple[dict, list[dict]]:
    rows = []
    progress = Counter("eval mcq", len(items), "questions")
    for item in items:
        scores = [float(s) for s in model.option_logprobs(item.video, item.question, item.options)]
        if len(scores) != len(item.options):
            raise ValueError(f"{item.id}: model scored {len(scores)} of {len(item.options)} options")
        predicted = max(range(len(scores)), key=lambda i: (scores[i], -i))
        rows.append({"id": item.id, "task": item.task, "question": item.question, "options": item.options,
                     "answer": item.answer, "predicted": predicted, "logprobs": scores,
                     "correct": predicted == item.answer})
        progress.update()
    per_task: dict[str, list[bool]] = {}
    for row in rows:
        per_task.setdefault(row["task"], []).append(row["correct"])
    task_accuracy = {task: sum(v) / len(v) for task, v in sorted(per_task.items())}
    aggregate = {"accuracy": sum(r["correct"] for r in rows) / len(rows),
                 "task_mean_accuracy": sum(task_accuracy.values()) / len(task_accuracy),
                 "per_task": task_accuracy, "items": len(rows)}
    return aggregate, rows
