"""JSON schemas of the task outputs (Pegasus-1 API shapes, SPEC section 1), used to constrain decoding.
Every object lists all its properties as required and no others (`_closed`).

Times are bounded by the video's duration; `chapters`/`highlights` are then sorted by start time,
ends clamped to at least their start, and chapters renumbered from 0, since order across array items
is not expressible in a schema.
"""
from __future__ import annotations


def _closed(properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


GIST = _closed({
    "title": {"type": "string", "maxLength": 60},
    "topics": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string", "maxLength": 24}},
    "hashtags": {"type": "array", "minItems": 1, "maxItems": 4, "items": {"type": "string", "maxLength": 24}},
})

SUMMARY = _closed({"summary": {"type": "string", "maxLength": 400}})


def chapters(duration: float, max_items: int = 6) -> dict:
    time = {"type": "number", "minimum": 0, "maximum": round(duration, 3)}
    return {"type": "array", "minItems": 1, "maxItems": max_items, "items": _closed({
        "chapter_number": {"type": "integer", "minimum": 0, "maximum": max_items - 1},
        "start_sec": time, "end_sec": time,
        "chapter_title": {"type": "string", "maxLength": 60},
        "chapter_summary": {"type": "string", "maxLength": 200},
    })}


def highlights(duration: float, max_items: int = 6) -> dict:
    time = {"type": "number", "minimum": 0, "maximum": round(duration, 3)}
    return {"type": "array", "minItems": 1, "maxItems": max_items, "items": _closed({
        "start_sec": time, "end_sec": time,
        "highlight": {"type": "string", "maxLength": 60},
        "highlight_summary": {"type": "string", "maxLength": 200},
    })}


def order_timed(items: list[dict], numbered: bool) -> list[dict]:
    """Sort by start, make end >= start, renumber chapters from 0."""
    items = sorted(items, key=lambda x: x["start_sec"])
    for i, item in enumerate(items):
        item["end_sec"] = max(item["end_sec"], item["start_sec"])
        if numbered:
            item["chapter_number"] = i
    return items
