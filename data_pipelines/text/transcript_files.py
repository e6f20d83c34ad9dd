"""Timed transcript files -> the records' transcript list [{"start", "end", "text"}] (seconds).

Three formats, by extension: SubRip (.srt), WebVTT (.vtt) and JSON (.json: a list of {start, end, text},
the records' own field). SRT and VTT are parsed here (cue blocks separated by blank lines, a timing line
`HH:MM:SS,mmm --> HH:MM:SS.mmm`, the text lines after it; VTT's header, NOTE/STYLE/REGION blocks, cue
settings and inline tags such as <v Speaker> or <c.red> are dropped): no subtitle library is installed
and the two formats need no more. Every problem is a one-line UserError naming the file and the cue.
"""
from __future__ import annotations

import json
import os
import re

from data_pipelines.errors import UserError

FORMATS = (".srt", ".vtt", ".json")
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>]*>")


def _seconds(hours, minutes, seconds, millis) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _cues(text: str, name: str, vtt: bool) -> list[dict]:
    blocks = [b for b in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n").strip("\ufeff\n ")) if b.strip()]
    if vtt:
        if not blocks or not blocks[0].startswith("WEBVTT"):
            raise UserError(f"{name}: not WebVTT (the file must start with 'WEBVTT')")
        blocks = blocks[1:]
    items = []
    for number, block in enumerate(blocks, 1):
        lines = block.strip("\n").split("\n")
        if vtt and lines[0].split(" ", 1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        at = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
        match = _TIMING.match(lines[at]) if at is not None else None
        if match is None:
            raise UserError(f"{name}: cue {number} has no 'start --> end' timing line: {lines[0][:60]!r}")
        words = " ".join(_TAG.sub("", line).strip() for line in lines[at + 1:])
        items.append({"start": _seconds(*match.groups()[:4]), "end": _seconds(*match.groups()[4:]),
                      "text": " ".join(words.split())})
    return items


def _json_items(text: str, name: str) -> list[dict]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{name}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(rows, list):
        raise UserError(f"{name}: expected a JSON list of {{start, end, text}}")
    items = []
    for number, row in enumerate(rows, 1):
        ok = isinstance(row, dict) and isinstance(row.get("text"), str) and all(
            isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) for k in ("start", "end"))
        if not ok:
            raise UserError(f"{name}: item {number} needs numeric 'start', 'end' (seconds) and string 'text'")
        items.append({"start": float(row["start"]), "end": float(row["end"]), "text": row["text"]})
    return items


def read_transcript(path: str) -> list[dict]:
    """The timed transcript in `path` (.srt, .vtt or .json), checked: start >= 0 and end >= start per cue."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise UserError(f"{path}: transcript must be .srt, .vtt or .json (got {ext or 'no extension'!r})")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such transcript file")
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise UserError(f"{path}: transcript is not UTF-8 text") from None
    return check_items(_json_items(text, path) if ext == ".json" else _cues(text, path, vtt=ext == ".vtt"), path)


def check_items(items: list[dict], name: str) -> list[dict]:
    """`items` themselves, after checking that every cue starts at >= 0 and ends no earlier than it starts."""
    for number, item in enumerate(items, 1):
        if item["start"] < 0 or item["end"] < item["start"]:
            raise UserError(f"{name}: cue {number} ends before it starts ({item['start']:.3f} -> {item['end']:.3f} s)")
    return items


def check_against_duration(items: list[dict], duration: float, name: str, slack_s: float = 0.5) -> None:
    """A cue that ends more than `slack_s` after the video does belongs to another video (or another cut)."""
    late = next((i for i, item in enumerate(items, 1) if item["end"] > duration + slack_s), None)
    if late is not None:
        raise UserError(f"{name}: cue {late} ends at {items[late - 1]['end']:.3f} s, after the video's "
                        f"{duration:.3f} s: is this the transcript of another video?")
