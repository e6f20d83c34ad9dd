"""Task prompts: the one place both training data and inference take them from.

Training conversations built from a record (`conversations`):
  - each caption -> [user: DESCRIBE, assistant: caption]
  - the record's instruction turns, as they are
  - the API tasks (`task_conversations`), each answered exactly as the task answers at inference
    (pegasus_jax/infer/api.py: the same prompt; the JSON in the task schema's key order, compact, as
    the grammar engine writes it, infer/grammar.py):
    - metadata "gist" {"title", "topics", "hashtags"} -> [user: GIST, assistant: that JSON];
    - metadata "summary", else the first caption -> [user: SUMMARY, assistant: the text];
    - timed `segments` -> [user: CHAPTER, assistant: chapters JSON], the API's chapter shape
      [{"chapter_number" (from 0), "start_sec", "end_sec", "chapter_title", "chapter_summary"}], and
      [user: HIGHLIGHT, assistant: highlights JSON], one highlight per segment
      [{"start_sec", "end_sec", "highlight", "highlight_summary"}].
Which sources give which (docs/record_format.md): every captioned record gives a summary; timed segments
(ActivityNet Captions, a folder's "segments", the built-in corpus) give chapters and highlights; a gist
needs a title, topics and hashtags, which captions do not hold: the built-in corpus writes them from its
known attributes, and a folder's captions.jsonl may carry a "gist" object.
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

# Which conversations each corpus kind trains on (data.mixture kinds); "tasks": the API tasks alone.
KINDS = ("video", "caption", "instruction", "image", "tasks")
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


def highlights(segments: list[dict]) -> list[dict]:
    """Highlight objects from timed segments, one per segment: the text's first words, then all of it."""
    return [{"start_sec": c["start_sec"], "end_sec": c["end_sec"], "highlight": c["chapter_title"],
             "highlight_summary": c["chapter_summary"]} for c in chapters(segments)]


def task_json(doc) -> str:
    """A task answer as the constrained decoder writes it: compact JSON (grammar.JSON_OPTIONS), keys in
    the schema's order (the order the objects above are built in)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def chapters_json(segments: list[dict]) -> str:
    return task_json(chapters(segments))


def gist_target(ex) -> dict | None:
    """The record's gist {"title", "topics", "hashtags"} (metadata "gist"), or None."""
    gist = (ex.metadata or {}).get("gist")
    if not isinstance(gist, dict) or not all(k in gist for k in ("title", "topics", "hashtags")):
        return None
    return {"title": str(gist["title"]), "topics": [str(t) for t in gist["topics"]],
            "hashtags": [str(h) for h in gist["hashtags"]]}


def task_conversations(ex) -> list[list[dict]]:
    """The API-task conversations of one record (see the module docstring)."""
    out = []
    gist = gist_target(ex)
    if gist is not None:
        out.append([_user(GIST), _assistant(task_json(gist))])
    summary = (ex.metadata or {}).get("summary") or next((c for c in ex.captions if c.strip()), None)
    if summary:
        out.append([_user(SUMMARY), _assistant(str(summary).strip())])
    if ex.segments:
        out.append([_user(CHAPTER), _assistant(chapters_json(ex.segments))])
        out.append([_user(HIGHLIGHT), _assistant(task_json(highlights(ex.segments)))])
    return out


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
    "caption"/"image" -> captions only, "instruction" -> turns only, "tasks" -> the API tasks only,
    "video" -> captions, turns and chapters (the mix the demo's accuracies were tuned on)."""
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
    if kind == "tasks":
        out += task_conversations(ex)
    return out
