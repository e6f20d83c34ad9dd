"""`videochatgpt`: instruction JSON of Video-ChatGPT / VideoChat2 / PLLaVA; a list of entries shaped

    {"video": name, "conversations": [{"from": "human", "value": "<video>\\n..."}, {"from": "gpt", ...}]}
    {"video": name, "QA": [{"i"?: instruction, "q": question, "a": answer}, ...]}
    {"video_name"|"video_id": name, "Q"|"q"|"question": ..., "A"|"a"|"answer": ...}   (evaluation sets)

Each entry becomes one example (id "vcg-{entry index}-{name}"); the `<video>` placeholder is
stripped. Videos are `{videos}/{name}` with or without one of the usual extensions."""
from __future__ import annotations

import os

from data_pipelines.errors import UserError

from data_pipelines.sources.common import Skips, clean_text, conversation_turns, find_video, item, read_json

NAME_KEYS = ("video", "video_name", "video_id")


def _pick(d: dict, *keys):
    return next((d[k] for k in keys if k in d), None)


def _qa_turns(qa: list) -> list[dict]:
    turns = []
    for pair in qa:
        question, answer = _pick(pair, "q", "Q", "question"), _pick(pair, "a", "A", "answer")
        if question is None or answer is None:
            raise ValueError(f"QA pair without question/answer: {sorted(pair)}")
        instruction = pair.get("i")
        text = clean_text(question) if not instruction else f"{clean_text(instruction)}\n{clean_text(question)}"
        turns += [{"role": "user", "text": text}, {"role": "assistant", "text": clean_text(answer)}]
    return turns


def entry_turns(entry: dict) -> list[dict]:
    if "conversations" in entry:
        return conversation_turns(entry["conversations"])
    if "QA" in entry:
        return _qa_turns(entry["QA"])
    return _qa_turns([entry])


def read_items(input_path: str, videos_dir: str | None = None) -> tuple[list[dict], Skips]:
    data = read_json(input_path)
    if not isinstance(data, list):
        raise UserError(f"--input {input_path}: expected a JSON list of entries")
    root = videos_dir or os.path.dirname(os.path.abspath(input_path))
    items, skips = [], Skips()
    for n, entry in enumerate(data):
        try:
            name = str(_pick(entry, *NAME_KEYS))
            if name == "None":
                raise ValueError("no video name")
            turns = entry_turns(entry)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            skips.add("bad_row", f"{input_path}[{n}]: {type(e).__name__}: {e}")
            continue
        stem = os.path.splitext(os.path.basename(name))[0]
        path = find_video(root, name) or os.path.join(root, name)
        items.append(item(f"vcg-{n:06d}-{stem}", path, turns=turns, metadata={"source": "videochatgpt", "video": name}))
    return items, skips
