"""Decoding constrained by a JSON schema: every output parses and validates.

The schema compiles into a character-level pushdown automaton over *canonical* JSON (no whitespace,
object properties in schema order, all of them present). Its state is an immutable tuple of frames,
so the decoder can ask, for every vocabulary token, whether appending that token's text keeps the
output a prefix of some valid document (`allowed`), and close a document cut short by the token
budget with the shortest valid completion (`finish`).

Supported keywords: type (object, array, string, integer, number, boolean, null), properties,
items, enum, minItems, maxItems, maxLength, minimum, maximum. Strings default to at most
DEFAULT_MAX_LENGTH characters and arrays to DEFAULT_MAX_ITEMS items so every document is finite.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

DEFAULT_MAX_LENGTH = 80
DEFAULT_MAX_ITEMS = 8
MAX_DIGITS = 7

# Frames (tuples, hashable):
#   ("seq", items, index, offset)       items: tuple of ("lit", text) | ("val", schema_key)
#   ("arr", schema_key, count, phase)    phase: "open" | "first" | "after"
#   ("str", max_len, length, opened)
#   ("num", integer, text, minimum, maximum)
#   ("alt", options, typed)


class _Schemas:
    """Schemas by integer key so frames stay hashable."""

    def __init__(self):
        self.items: list[dict] = []

    def key(self, schema: dict) -> int:
        self.items.append(schema)
        return len(self.items) - 1


class JsonConstraint:
    def __init__(self, schema: dict, surfaces: Sequence[str | None]):
        """`surfaces[i]` is the text token i appends, or None for tokens never allowed (specials, bytes)."""
        self.schema = schema
        self._schemas = _Schemas()
        self._root = self._schemas.key(schema)
        self.surfaces = list(surfaces)
        self._by_first: dict[str, list[int]] = {}
        for i, s in enumerate(self.surfaces):
            if s:
                self._by_first.setdefault(s[0], []).append(i)

    # -- the automaton ----------------------------------------------------------------------------
    def initial(self) -> tuple:
        return (self._value_frame(self._root),)

    def _value_frame(self, key: int) -> tuple:
        s = self._schemas.items[key]
        if "enum" in s:
            return ("alt", tuple(json.dumps(v, separators=(",", ":")) for v in s["enum"]), "")
        t = s.get("type", "string")
        if t == "object":
            items: list[tuple] = [("lit", "{")]
            for n, (name, sub) in enumerate(s.get("properties", {}).items()):
                items.append(("lit", ("," if n else "") + json.dumps(name) + ":"))
                items.append(("val", self._schemas.key(sub)))
            items.append(("lit", "}"))
            return ("seq", tuple(items), 0, 0)
        if t == "array":
            return ("arr", key, 0, "open")
        if t == "string":
            return ("str", s.get("maxLength", DEFAULT_MAX_LENGTH), 0, False)
        if t in ("integer", "number"):
            return ("num", t == "integer", "", s.get("minimum"), s.get("maximum"))
        if t == "boolean":
            return ("alt", ("true", "false"), "")
        if t == "null":
            return ("alt", ("null",), "")
        raise ValueError(f"unsupported schema type {t!r}")

    def feed(self, state: tuple, ch: str) -> tuple | None:
        """State after one more character, or None if no valid document has this prefix."""
        if not state:
            return None
        *rest, top = state
        rest = tuple(rest)
        kind = top[0]
        if kind == "seq":
            _, items, index, offset = top
            item = items[index]
            if item[0] == "lit":
                if item[1][offset] != ch:
                    return None
                if offset + 1 < len(item[1]):
                    return rest + (("seq", items, index, offset + 1),)
                return self._advance_seq(rest, items, index + 1)
            return self.feed(rest + (("seq", items, index + 1, 0), self._value_frame(item[1])), ch)
        if kind == "arr":
            _, key, count, phase = top
            s = self._schemas.items[key]
            lo, hi = s.get("minItems", 0), s.get("maxItems", DEFAULT_MAX_ITEMS)
            if phase == "open":
                return rest + (("arr", key, 0, "first"),) if ch == "[" else None
            if ch == "]" and phase != "item" and count >= lo:  # no "]" right after a ","
                return rest
            if phase == "after":
                return rest + (("arr", key, count, "item"),) if ch == "," and count < hi else None
            if count >= hi:
                return None
            item = self._schemas.key(s.get("items", {}))
            return self.feed(rest + (("arr", key, count + 1, "after"), self._value_frame(item)), ch)
        if kind == "str":
            _, max_len, length, opened = top
            if not opened:
                return rest + (("str", max_len, 0, True),) if ch == '"' else None
            if ch == '"':
                return rest
            if ch == "\\" or ord(ch) < 0x20 or length >= max_len:
                return None
            return rest + (("str", max_len, length + 1, True),)
        if kind == "num":
            _, integer, text, lo, hi = top
            candidate = text + ch
            if _number_prefix_ok(candidate, integer, lo, hi):
                return rest + (("num", integer, candidate, lo, hi),)
            if _number_complete(text, lo, hi):  # the number ended: the character belongs to the parent
                return self.feed(rest, ch)
            return None
        if kind == "alt":
            _, options, typed = top
            typed += ch
            live = tuple(o for o in options if o.startswith(typed))
            if not live:
                return None
            if typed in live and len(live) == 1:
                return rest
            return rest + (("alt", live, typed),)
        raise AssertionError(kind)

    def _advance_seq(self, rest, items, index):
        if index == len(items):
            return rest
        return rest + (("seq", items, index, 0),)

    def feed_text(self, state: tuple | None, text: str) -> tuple | None:
        for ch in text:
            if state is None:
                return None
            state = self.feed(state, ch)
        return state

    def is_complete(self, state: tuple | None) -> bool:
        if state is None:
            return False
        if not state:
            return True
        # a top-level number ends without a following character
        return len(state) == 1 and state[0][0] == "num" and _number_complete(*state[0][2:])

    # -- what the decoder asks ----------------------------------------------------------------------
    def allowed_for(self, text: str) -> np.ndarray:
        """Bool mask over the vocabulary: tokens whose text keeps `text` a valid prefix."""
        mask = np.zeros(len(self.surfaces), bool)
        state = self.feed_text(self.initial(), text)
        if state is None or state == ():
            return mask
        for first, ids in self._by_first.items():
            after_first = self.feed(state, first)
            if after_first is None:
                continue
            for i in ids:
                if self.feed_text(after_first, self.surfaces[i][1:]) is not None:
                    mask[i] = True
        return mask

    def finish(self, text: str) -> str:
        """Shortest completion of a valid prefix to a complete document (text + completion)."""
        state = self.feed_text(self.initial(), text)
        if state is None:
            raise ValueError("not a valid prefix")
        out = text
        while not self.is_complete(state):
            top = state[-1]
            if top[0] == "num" and _number_complete(*top[2:]):
                ch = self._closing_char(state[-2])  # the number may end: continue with its parent
            else:
                ch = self._closing_char(top)
            out += ch
            state = self.feed(state, ch)
        return out

    def _closing_char(self, top) -> str:
        kind = top[0]
        if kind == "seq":
            _, items, index, offset = top
            item = items[index]
            return item[1][offset] if item[0] == "lit" else self._first_char(item[1])
        if kind == "arr":
            _, key, count, phase = top
            lo = self._schemas.items[key].get("minItems", 0)
            if phase == "open":
                return "["
            if count >= lo and phase != "item":
                return "]"
            if phase == "after":
                return ","
            return self._first_char(self._schemas.key(self._schemas.items[key].get("items", {})))
        if kind == "str":
            return '"'
        if kind == "num":
            _, integer, text, lo, hi = top
            return next(d for d in "0123456789" if _number_prefix_ok(text + d, integer, lo, hi))
        if kind == "alt":
            return top[1][0][len(top[2])]
        raise AssertionError(kind)

    def _first_char(self, key: int) -> str:
        frame = self._value_frame(key)
        return self._closing_char(frame)


def _number_prefix_ok(text: str, integer: bool, lo, hi) -> bool:
    body = text[1:] if text.startswith("-") else text
    if text.startswith("-") and lo is not None and lo >= 0:
        return False
    if body == "":
        return True
    if not all(c.isdigit() or c == "." for c in body) or body.count(".") > 1 or body.startswith("."):
        return False
    if integer and "." in body:
        return False
    whole = body.split(".")[0]
    if len(whole) > MAX_DIGITS or (len(whole) > 1 and whole.startswith("0")):
        return False
    if "." in body and len(body.split(".")[1]) > 3:
        return False
    if text.startswith("-"):
        return True  # negative numbers: bounds are checked when the number completes
    return _reachable(body, lo, hi)


def _reachable(body: str, lo, hi) -> bool:
    """Whether some extension of a non-negative number prefix lies in [lo, hi]."""
    lo = -float("inf") if lo is None else lo
    hi = float("inf") if hi is None else hi
    if "." in body:
        base = float(body.rstrip("."))
        return base <= hi and base + 1 > lo
    whole = int(body)
    if lo <= whole <= hi:
        return True
    if whole == 0:
        return lo < 1 and hi >= 0  # "0" can only grow by decimals
    for extra in range(1, MAX_DIGITS - len(body) + 1):
        scale = 10 ** extra
        if whole * scale <= hi and (whole + 1) * scale - 1 >= lo:
            return True
    return lo < whole + 1 and whole <= hi  # decimals of `whole`


def _number_complete(text: str, lo, hi) -> bool:
    if text in ("", "-") or text.endswith("."):
        return False
    value = float(text)
    return (lo is None or value >= lo) and (hi is None or value <= hi)


class SchemaConstraint:
    """The Generator's constraint interface over a JsonConstraint: one document per batch row."""

    def __init__(self, schema: dict, surfaces: Sequence[str | None]):
        self.json = JsonConstraint(schema, surfaces)

    def text(self, ids: list[int]) -> str:
        return "".join(self.json.surfaces[i] for i in ids)

    def allowed(self, outputs: list[list[int]], finished) -> np.ndarray:
        rows = []
        for ids, done in zip(outputs, finished):
            mask = self.json.allowed_for(self.text(ids)) if not done else np.ones(len(self.json.surfaces), bool)
            rows.append(mask if mask.any() else np.ones_like(mask))  # a finished row's token is discarded
        return np.stack(rows)

    def complete(self, ids: list[int]) -> bool:
        """Done: the document is complete, or no token can continue it (finish() then closes it)."""
        text = self.text(ids)
        return self.json.is_complete(self.json.feed_text(self.json.initial(), text)) or \
            not self.json.allowed_for(text).any()

    def result(self, ids: list[int]) -> str:
        """The document: the generated text, closed by the shortest completion when the budget ran out."""
        return self.json.finish(self.text(ids))
