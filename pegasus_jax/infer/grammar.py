"""Decoding constrained by a grammar, a JSON schema or a regular expression, on llguidance.

llguidance (an Earley parser over a trie of the vocabulary's bytes) gives, after each token, the
bitmask of the tokens that keep the answer a prefix of some valid document. Its vocabulary is built
from one function of the project tokenizer, `token_bytes(id)` (id -> bytes; None for special ids), so
any tokenizer back end that lists its ids' bytes plugs in. The answer's end is the end-of-turn id,
allowed only where the document is complete.

JSON comes out compact (no whitespace between tokens): a barely trained model would otherwise spend
its budget on spaces. Where the tokenizer opens every encoded text with a space (SentencePiece's dummy
prefix, Llama 2's Metaspace), the answers a model was trained on began with a token holding that space
(' {"title":"' ...), so the grammar allows one space before the document and the returned text drops it:
without it the first token is one the model never saw there, and the rest of the answer went astray.
Every token consistent with the grammar stays allowed (`decoding_grammar`): the model's own tokenization
of text the grammar fixes is never refused. A document cut short by the token budget is closed with a
few more tokens chosen by the engine's mask alone (`GrammarConstraint.close`), so the answer still
validates.

Every schema is checked before anything heavy (`check_schema`): against its draft's meta-schema,
for keywords that no JSON Schema draft defines (a typo such as "maxLenght" would otherwise be ignored
as an annotation), and by the engine, which names any keyword it does not implement.
"""
from __future__ import annotations

import json

import jsonschema
import llguidance
import llguidance.numpy as llg_numpy
import numpy as np

from pegasus_jax.errors import UserError

# Engine options for JSON: compact output (also the task outputs' form).
JSON_OPTIONS = {"whitespace_flexible": False}
# Tokens appended at most to close a document the budget cut short (a pattern may never close).
CLOSE_LIMIT = 256
# When closing, these are preferred (in order) to the shortest allowed token (lowest id first, which
# for byte-fallback tokens is byte order: "," before "-" before digits): they end strings, arrays and
# objects. The quote comes first, as inside a string "]" and "}" would only lengthen it.
CLOSERS = (b'"', b"]", b"}")

# Keywords that annotate or structure a schema without constraining values (no jsonschema validator).
_ANNOTATIONS = {"$schema", "$id", "id", "$defs", "definitions", "$comment", "$anchor", "$dynamicAnchor",
                "$recursiveAnchor", "$vocabulary", "title", "description", "default", "examples", "readOnly",
                "writeOnly", "deprecated", "contentEncoding", "contentMediaType", "contentSchema", "then",
                "else", "minContains", "maxContains"}
# Where subschemas sit: keyword -> how its value holds them.
_ONE = ("additionalProperties", "additionalItems", "items", "contains", "not", "if", "then", "else",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")


def _known_keywords() -> set[str]:
    drafts = (jsonschema.Draft4Validator, jsonschema.Draft6Validator, jsonschema.Draft7Validator,
              jsonschema.Draft201909Validator, jsonschema.Draft202012Validator)
    return _ANNOTATIONS.union(*(d.VALIDATORS for d in drafts))


def _unknown_keyword(schema, path: str, known: set[str]) -> tuple[str, str] | None:
    """The first (keyword, path) no draft defines; `x-` extensions (such as x-guidance) are allowed."""
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key not in known and not key.startswith("x-"):
            return key, path or "/"
        subschemas = []
        if key in _ONE and isinstance(value, dict):
            subschemas = [(f"{path}/{key}", value)]
        elif key in _LIST and isinstance(value, list):
            subschemas = [(f"{path}/{key}/{i}", v) for i, v in enumerate(value)]
        elif key in _MAP and isinstance(value, dict):
            subschemas = [(f"{path}/{key}/{name}", v) for name, v in value.items()]
        for sub_path, sub in subschemas:
            found = _unknown_keyword(sub, sub_path, known)
            if found:
                return found
    return None


def _engine_check(grammar: str, what: str) -> None:
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        message = " ".join(messages[0].split())
        if message.startswith("Unimplemented keys:"):
            keys = ", ".join(json.loads(message.split(":", 1)[1]))
            raise UserError(f"{what}: keyword not supported by the grammar engine (llguidance): {keys}")
        raise UserError(f"{what}: the grammar engine rejects it: {message}")


def json_grammar(schema, what: str = "schema") -> str:
    """The engine's grammar for a JSON schema, after every check (UserError naming the problem)."""
    if not isinstance(schema, dict):
        raise UserError(f"{what}: a schema must be a JSON object, not {type(schema).__name__}")
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    error = jsonschema.exceptions.best_match(validator(validator.META_SCHEMA).iter_errors(schema))
    if error is not None:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        raise UserError(f"{what}: not a valid JSON Schema at {where}: {error.message}")
    unknown = _unknown_keyword(schema, "", _known_keywords())
    if unknown:
        raise UserError(f"{what}: unknown keyword {unknown[0]!r} at {unknown[1]} (not a JSON Schema keyword)")
    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_OPTIONS)
    _engine_check(grammar, what)
    return grammar


def regex_grammar(regex: str, what: str = "regex") -> str:
    """The engine's grammar for a regular expression the whole answer must match (Rust regex syntax)."""
    if not isinstance(regex, str) or not regex:
        raise UserError(f"{what}: a regular expression must be a non-empty string")
    grammar = llguidance.LLMatcher.grammar_from_regex(regex)
    _engine_check(grammar, what)
    return grammar


def decoding_grammar(grammar: str, leading_space: bool) -> str:
    """`grammar` (the engine's top-level JSON) as decoding runs it: under a lark start rule that refers to it,
    with "no_forcing" (where the grammar fixes the next text, a property name say, the engine would otherwise
    allow only the one token it picks to cover that text, refusing the tokens a model was trained on: a
    piece reaching past the name into the value, or a '}' piece beside the '}' byte) and, with
    `leading_space`, one optional space before the answer."""
    top = json.loads(grammar)
    inner = top["grammars"][0]["name"]
    space = '" "? ' if leading_space else ""
    rule = f'%llguidance {{"no_forcing": true}}\nstart: {space}@{inner}'
    top["grammars"] = [{"name": "answer", "lark_grammar": rule}] + top["grammars"]
    return json.dumps(top)


def request_grammar(schema=None, regex: str | None = None, stop=(), *, schema_name: str = "schema",
                    regex_name: str = "regex") -> str | None:
    """The grammar a request asks for (a schema, a regex, or None), checked whole: UserError names the flag."""
    if schema is not None and regex is not None:
        raise UserError(f"{schema_name} and {regex_name} exclude each other: give one")
    if (schema is not None or regex is not None) and stop:
        raise UserError(f"stop strings do not apply with {schema_name if schema is not None else regex_name}: "
                        "the grammar decides where the answer ends")
    if schema is not None:
        return json_grammar(schema, schema_name)
    return regex_grammar(regex, regex_name) if regex is not None else None


class Vocabulary:
    """The engine's tokenizer, built from `tokenizer.token_bytes(id)`, sized to the decoder's vocabulary."""

    def __init__(self, tokenizer, end_id: int, size: int):
        listed = [tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)]
        self.size = size
        # Ids without bytes are special to the engine (0xFF + a name): never text, allowed only by name.
        self.tokens = [b if b is not None else b"\xff<special_%d>" % i for i, b in enumerate(listed)]
        self.tokens += [b"\xff<unused_%d>" % i for i in range(len(listed), size)]
        special = [i for i, b in enumerate(self.tokens) if b.startswith(b"\xff")]
        wrapper = _EngineTokenizer(self.tokens, end_id, tokenizer.bos_id, special)
        # Text the engine forces (a const, a property name) is tokenized greedily over the same byte trie:
        # SentencePiece's encode normalizes and adds a dummy-prefix space, so it is no map from bytes.
        wrapper.tokenize = llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper), n_vocab=size,
                                                  eos_token=end_id).greedy_tokenize
        self.engine = llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper), n_vocab=size, eos_token=end_id)
        text_ids = [i for i in range(len(listed)) if listed[i]]
        self.shortest_first = np.asarray(sorted(text_ids, key=lambda i: (len(self.tokens[i]), i)), np.int64)
        by_bytes = {}
        for i in text_ids:
            by_bytes.setdefault(self.tokens[i], i)
        self.closers = [by_bytes[c] for c in CLOSERS if c in by_bytes]
        # Whether encoding opens a text with a space (a dummy prefix), as it opened every trained answer.
        first = tokenizer.encode("x")[:1]
        self.leading_space = bool(first) and (tokenizer.token_bytes(first[0]) or b"").startswith(b" ")

    def text(self, ids: list[int]) -> str:
        """The ids' text; bytes of a character not yet complete (mid-stream) are left out until it is."""
        return b"".join(self.tokens[i] for i in ids if not self.tokens[i].startswith(b"\xff")).decode(
            "utf-8", errors="ignore")


class _EngineTokenizer:
    """What llguidance.TokenizerWrapper reads: the byte listing, the end id, and a tokenize function
    (`tokenize`, set once the byte trie exists)."""

    def __init__(self, tokens, eos_token_id, bos_token_id, special_token_ids):
        self.tokens, self.eos_token_id, self.bos_token_id = tokens, eos_token_id, bos_token_id
        self.special_token_ids = special_token_ids
        self.tokenize = None

    def __call__(self, text: str) -> list[int]:
        return self.tokenize(text)


class GrammarConstraint:
    """One engine matcher per batch row: the Generator asks for masks and feeds back each row's token."""

    def __init__(self, vocab: Vocabulary, grammar: str, rows: int):
        self.vocab = vocab
        grammar = decoding_grammar(grammar, vocab.leading_space)
        self.matchers = [llguidance.LLMatcher(vocab.engine, grammar, log_level=0) for _ in range(rows)]
        self.bitmask = llg_numpy.allocate_token_bitmask(rows, vocab.size)

    def masks(self, finished: np.ndarray) -> np.ndarray:
        """(rows, ceil(V/32)) int32 bitmask of allowed ids; a finished row allows all (its token is dropped)."""
        self.bitmask[finished] = -1
        # Row by row: llguidance's thread-pool fill (fill_next_token_bitmask_par) measured 14 ms for 8 rows
        # on 2 busy cores against 0.16 ms in turn (benchmarks/constrained_decode.py's vocabulary).
        for i in np.flatnonzero(~finished):
            llg_numpy.fill_next_token_bitmask(self.matchers[i], self.bitmask, int(i))
        return self.bitmask

    def consume(self, row: int, token: int) -> None:
        matcher = self.matchers[row]
        if not matcher.consume_token(token):
            raise RuntimeError(f"grammar engine refused token {token}: {matcher.get_error()}")

    def stopped(self, row: int) -> bool:
        """The document is complete and nothing may follow (only the end id would be allowed)."""
        return self.matchers[row].is_stopped()

    def close(self, row: int) -> list[int]:
        """Tokens that complete a row's unfinished document: a closer where the mask allows one, else the
        shortest allowed token; consumed into the row's matcher."""
        matcher, added = self.matchers[row], []
        while not matcher.is_accepting():
            if len(added) == CLOSE_LIMIT:
                raise RuntimeError(f"could not close the document within {CLOSE_LIMIT} tokens")
            allowed = _unpack(np.frombuffer(matcher.compute_bitmask(), np.int32), self.vocab.size)
            closer = next((t for t in self.vocab.closers if allowed[t]), None)
            if closer is None:
                closer = int(self.vocab.shortest_first[np.argmax(allowed[self.vocab.shortest_first])])
            self.consume(row, closer)
            added.append(closer)
        return added

    def text(self, ids: list[int]) -> str:
        text = self.vocab.text(ids)
        return text[1:] if self.vocab.leading_space and text.startswith(" ") else text


def _unpack(words: np.ndarray, size: int) -> np.ndarray:
    """Bool mask of `size` ids from an int32 bitmask (bit i of word i // 32)."""
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:size].astype(bool)
