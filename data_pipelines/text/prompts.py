"""Task prompts: the one place both training data and inference take them from.

Training conversations built from a record (`conversations`):
  - each caption -> [user: DESCRIBE, assistant: caption]
  - the record's instruction turns, as they are
  - timed `segments` -> [user: CHAPTER, assistant: chapters as JSON], the API's chapter shape:
    [{"chapter_number" (from 0), "start_sec", "end_sec", "chapter_title", "chapter_summary"}]
"""
from __future__ import annotations

import json

DESCRIBE = "Describe the video."
GIST = "Give a title, topics and hashtags for the video as JSON."
SUMMARY = "Summarize the video."
CHAPTER = "Split the video into chapters as JSON."
HIGHLIGHT = "List the highlights of the video as JSON."

TASKS = {"describe": DESCRIBE, "caption": DESCRIBE, "gist": GIST, "summary": SUMMARY, "chapter": CHAPTER,
         "highlight": HIGHLIGHT}

# Which conversations each corpus kind trains on (data.mixture kinds).
KINDS = ("video", "caption", "instruction", "image")
TITLE_WORDS = 6


def task_prompt(task: str, prompt: str | None = None) -> str:
    """The prompt text of a task; task "open" takes the user's own prompt."""
    if task == "open":
        if not prompt:
            raise ValueError("task 'open' needs a prompt")
        return prompt
    return TASKS[task]


def chapters(segments: list[dict]) -> list[dict]:
    """Chapter objects from timed segments: the title is the text's first words, the summary all of it."""
    out = []
    for i, s in enumerate(sorted(segments, key=lambda s: s["start"])):
        words = s["text"].split()
        out.append({"chapter_number": i, "start_sec": round(float(s["start"]), 2), "end_sec": round(float(s["end"]), 2),
                    "chapter_title": " ".join(words[:TITLE_WORDS]), "chapter_summary": s["text"]})
    return out


def chapters_json(segments: list[dict]) -> str:
    return json.dumps(chapters(segments), ensure_ascii=False)


def _user(text: str) -> dict:
    return {"role": "user", "text": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "text": text}


def _paired(turns: list[dict]) -> list[dict]:
    """Strict user/assistant alternation: other roles and unanswered questions are left out."""
    out, pending = [], None
    for t in turns:
        if t.get("role") == "user":
            pending = t
        elif t.get("role") == "assistant" and pending is not None:
            out += [_user(pending["text"]), _assistant(t["text"])]
            pending = None
    return out


def conversations(ex, kind: str = "video") -> list[list[dict]]:
    """The training conversations of one record (see the module docstring); kind narrows them:
    "caption"/"image" -> captions only, "instruction" -> turns only, "video" -> everything."""
    if kind not in KINDS:
        raise ValueError(f"unknown corpus kind {kind!r}; expected one of {KINDS}")
    out = []
    if kind in ("video", "caption", "image"):
        out += [[_user(DESCRIBE), _assistant(c)] for c in ex.captions if c.strip()]
    if kind in ("video", "instruction"):
        turns = _paired(ex.turns)
        if turns:
            out.append(turns)
    if kind == "video" and ex.segments:
        out.append([_user(CHAPTER), _assistant(chapters_json(ex.segments))])
    return out
