"""Reading benchmark annotation files; every problem is a one-line UserError naming the file."""
from __future__ import annotations

import json
import os

from pegasus_jax.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".gif")  # .gif: TGIF-QA


def read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def read_jsonl(path: str) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise UserError(f"{path}:{number}: not valid JSON ({e})") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{number}: expected a JSON object")
                rows.append(row)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    return rows


def require(row: dict, field: str, where: str, kind=str):
    value = row.get(field)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise UserError(f"{where}: field {field!r} missing or not a {getattr(kind, '__name__', kind)}")
    return value


def resolve_video(name: str, root: str, where: str) -> str:
    """`name` relative to `root` (or absolute); a name without extension is tried with the usual ones,
    as Video-ChatGPT's `video_name` fields have none."""
    path = name if os.path.isabs(name) else os.path.join(root, name)
    if os.path.isfile(path):
        return path
    if not os.path.splitext(name)[1]:
        for ext in VIDEO_EXTENSIONS:
            if os.path.isfile(path + ext):
                return path + ext
    raise UserError(f"{where}: video {name!r} not found under {root}")
