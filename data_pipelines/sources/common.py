"""Shared pieces of the converters: the item a format reader produces, skip accounting, text helpers.

A format reader turns the user's annotation files into a list of items (plain dicts, so they cross
process and Beam boundaries as data) plus a Skips tally of rows it could not use:

    {"id": str, "video_path": str, "captions": [text], "turns": [{"role", "text"}],
     "transcript": [{"start", "end", "text"}], "segments": [{"start", "end", "text"}], "metadata": {}}

Text read from files keeps invalid UTF-8 as lone surrogates (errors="surrogateescape");
records.serialize stores such text as raw bytes so training can count and skip it.
"""
from __future__ import annotations

import collections
import csv
import json
import os

from data_pipelines.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
VIDEO_PLACEHOLDER = "<video>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
MAX_LISTED = 20  # skipped rows named individually in a summary


class Skips:
    """Rows left out, by reason, with the first few named so the user can find them."""

    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self.examples: list[str] = []

    def add(self, reason: str, what: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < MAX_LISTED:
            self.examples.append(f"{reason}: {what}")

    def merge(self, other: dict) -> None:
        self.counts.update(other.get("counts", {}))
        self.examples += other.get("examples", [])[: max(0, MAX_LISTED - len(self.examples))]

    def as_dict(self) -> dict:
        return {"counts": dict(self.counts), "examples": list(self.examples)}


def item(id: str, video_path: str, captions=(), turns=(), transcript=(), segments=(), metadata=None) -> dict:
    return {"id": id, "video_path": video_path, "captions": list(captions), "turns": list(turns),
            "transcript": list(transcript), "segments": list(segments), "metadata": dict(metadata or {})}


def require_file(path: str, flag: str = "--input") -> str:
    if not os.path.isfile(path):
        raise UserError(f"{flag} {path}: file not found")
    return path


def read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def read_json(path: str, flag: str = "--input"):
    try:
        return json.loads(read_text(require_file(path, flag)))
    except json.JSONDecodeError as e:
        raise UserError(f"{flag} {path}: not valid JSON ({e})") from None


def read_csv(path: str, required: tuple[str, ...], flag: str = "--input") -> list[dict]:
    with open(require_file(path, flag), newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{flag} {path}: missing CSV column(s) {', '.join(missing)} (has {reader.fieldnames})")
        return list(reader)


def clean_text(text) -> str:
    return str(text).replace(VIDEO_PLACEHOLDER, "").strip()


def conversation_turns(conversations: list) -> list[dict]:
    """[{"from": "human"|"gpt", "value": ...}] -> [{"role": "user"|"assistant", "text": ...}], placeholder removed."""
    turns = []
    for c in conversations:
        role = ROLES.get(str(c.get("from", c.get("role", ""))).lower())
        if role is None:
            raise ValueError(f"unknown speaker {c.get('from')!r}")
        turns.append({"role": role, "text": clean_text(c.get("value", c.get("text", "")))})
    return turns


def timed(entries: list) -> list[dict]:
    return [{"start": float(e["start"]), "end": float(e["end"]), "text": str(e["text"])} for e in entries]


def find_video(directory: str, name: str) -> str | None:
    """`name` under `directory`, trying the common video extensions when it has none that exists."""
    path = os.path.join(directory, name)
    if os.path.isfile(path):
        return path
    for ext in VIDEO_EXTENSIONS:
        if os.path.isfile(path + ext):
            return path + ext
    return None
