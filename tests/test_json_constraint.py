"""Schema-constrained decoding on the grammar engine, without a model: random walks over the allowed
tokens of the corpus tokenizer always close into valid documents, and the engine refuses what the
schema forbids."""
import json
import random

import jsonschema
import numpy as np
import pytest

from data_pipelines.text.tokenizer import load_tokenizer
from pegasus_jax.infer import grammar

SCHEMA = {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object", "properties": {
    "n": {"type": "integer", "minimum": 0, "maximum": 40},
    "t": {"type": "number", "minimum": 0, "maximum": 30.5},
    "title": {"type": "string", "maxLength": 12},
    "tags": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 5}},
    "ok": {"type": "boolean"}, "none": {"type": "null"}, "kind": {"enum": ["a", "bb", 3]},
    "code": {"type": "string", "pattern": "^[a-z]{2}-[0-9]{1,3}$"},
    "ref": {"$ref": "#/$defs/point"}, "either": {"anyOf": [{"type": "integer"}, {"const": "none"}]},
    "maybe": {"type": ["string", "null"], "maxLength": 4}},
    "required": ["n", "t", "title"], "additionalProperties": False},
    "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
                        "additionalProperties": False}}}


@pytest.fixture(scope="module")
def vocab(corpus):
    tokenizer = load_tokenizer(corpus["tokenizer"])
    return grammar.Vocabulary(tokenizer, tokenizer.eot_id, tokenizer.vocab_size + 4), tokenizer.eot_id


@pytest.mark.parametrize("seed", range(0, 400, 50))
def test_random_walks_always_validate(vocab, seed):
    """Walks of random allowed tokens, cut at a random length and closed by the engine."""
    vocabulary, end_id = vocab
    rule = grammar.json_grammar(SCHEMA)
    for s in range(seed, seed + 50):
        rng, ids = random.Random(s), []
        constraint = grammar.GrammarConstraint(vocabulary, rule, 1)
        for _ in range(rng.randint(0, 150)):
            if constraint.stopped(0):
                break
            allowed = grammar._unpack(constraint.masks(np.zeros(1, bool))[0], vocabulary.size)
            token = rng.choice(list(np.flatnonzero(allowed)))
            if token == end_id:
                break
            ids.append(int(token))
            constraint.consume(0, int(token))
        ids += constraint.close(0)
        jsonschema.validate(json.loads(constraint.text(ids)), SCHEMA)


def test_rejects_what_the_schema_forbids(vocab):
    vocabulary, _ = vocab
    rule = grammar.json_grammar(SCHEMA)

    def ok(text):  # the text as the byte-fallback tokens of its bytes: every prefix is tried
        ids = [vocabulary.tokens.index(bytes([b])) for b in text.encode()]
        return grammar.GrammarConstraint(vocabulary, rule, 1).matchers[0].validate_tokens(ids) == len(ids)

    assert ok('[{"n":4')
    assert ok('[{"n":4,"t":1,"title":"","code":"ab-1')
    assert not ok('[{"n":41')  # above maximum, and more digits only grow it
    assert not ok('[{"n":-')  # minimum 0
    assert not ok('[{"n":1.')  # integer
    assert not ok('[{"x"')  # unknown property (additionalProperties false)
    assert not ok('[{"n":1,"t":1,"title":"abcdefghijklm')  # maxLength 12
    assert not ok('[{"n":1,"t":1,"title":"","tags":["a",]')  # no "]" after ","
    assert not ok("[]")  # minItems 1
    assert not ok('[{"n":1,"t":1,"title":"","code":"a1')  # pattern
    assert not ok('[{"n":1,"t":1,"title":"","either":"x')  # anyOf: an integer or the const "none"
    assert not ok('[{"n":1,"t":1,"title":"","ref":{"y"')  # $ref to an object with only "x"
    assert not ok('[{"n":1,"t":1,"title":"","maybe":1')  # string or null
    assert not ok('[{"n":1}]')  # "t" and "title" are required
    assert not ok('[ {')  # compact: no whitespace
