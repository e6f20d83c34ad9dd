"""Reading structured answers out of judge replies. Judges are asked for a JSON object; many reply
with a Python-dict literal (single quotes, True/False) or wrap it in a code fence, which we accept.
Anything else raises ValueError, which the session treats as a malformed answer (retried)."""
from __future__ import annotations

import ast
import json


def parse_object(text: str) -> dict:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no {...} object in the answer")
    snippet = text[start:end + 1]
    try:
        value = json.loads(snippet)
    except ValueError:
        try:
            value = ast.literal_eval(snippet)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError("answer is neither JSON nor a Python dict literal") from None
    if not isinstance(value, dict):
        raise ValueError("answer is not an object")
    return value


def parse_score(text: str, low: int = 0, high: int = 5) -> float:
    """{"score": n} with low <= n <= high."""
    score = parse_object(text).get("score")
    if isinstance(score, str):
        try:
            score = float(score.strip())
        except ValueError:
            raise ValueError(f"score {score!r} is not a number") from None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not low <= score <= high:
        raise ValueError(f"score {score!r} is not a number in [{low}, {high}]")
    return float(score)


def parse_integer_score(text: str) -> int:
    """parse_score truncated with int(), as Video-ChatGPT's scoring scripts take the judge's reply
    (judges asked for an integer still answer 4.8 now and then: that counts 4)."""
    return int(parse_score(text))


def parse_string_list(text: str, key: str) -> list[str]:
    """{key: ["...", ...]}; blank strings are dropped."""
    value = parse_object(text).get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} is not a list of strings")
    return [v.strip() for v in value if v.strip()]


def parse_verdicts(text: str, key: str, count: int) -> list[bool]:
    """{key: [true/false, ...]} with exactly `count` booleans (0/1 accepted)."""
    value = parse_object(text).get(key)
    if not isinstance(value, list) or len(value) != count:
        raise ValueError(f"{key!r} is not a list of {count} verdicts")
    if not all(isinstance(v, bool) or v in (0, 1) for v in value):
        raise ValueError(f"{key!r} holds non-boolean verdicts")
    return [bool(v) for v in value]


def parse_text(text: str, key: str) -> str:
    value = parse_object(text).get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key!r} is not a non-empty string")
    return value.strip()
