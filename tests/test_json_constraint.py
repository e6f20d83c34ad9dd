"""The JSON-schema automaton: random walks over allowed tokens always close into valid documents."""
import json
import random

import jsonschema
import numpy as np
import pytest

from pegasus_jax.infer.json_constraint import SchemaConstraint

SCHEMA = {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object", "properties": {
    "n": {"type": "integer", "minimum": 0, "maximum": 40},
    "t": {"type": "number", "minimum": 0, "maximum": 30.5},
    "title": {"type": "string", "maxLength": 12},
    "tags": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 5}},
    "ok": {"type": "boolean"}, "none": {"type": "null"}, "kind": {"enum": ["a", "bb", 3]}}}}
SURFACES = [None] + list('{}[],:"abc 0123456789.-\\') + ['"n', "true", "fal", "se", "null", "12", "3.5", '"},{"', '",', "],"]


@pytest.mark.parametrize("seed", range(0, 400, 50))
def test_random_walks_always_validate(seed):
    c = SchemaConstraint(SCHEMA, SURFACES)
    for s in range(seed, seed + 50):
        rng, ids = random.Random(s), []
        for _ in range(rng.randint(0, 150)):
            if c.complete(ids):
                break
            ids.append(int(rng.choice(list(np.flatnonzero(c.allowed([ids], [False])[0])))))
        jsonschema.validate(json.loads(c.result(ids)), SCHEMA)


def test_rejects_what_the_schema_forbids():
    j = SchemaConstraint(SCHEMA, SURFACES).json
    ok = lambda text: j.feed_text(j.initial(), text) is not None
    assert ok('[{"n":4')
    assert not ok('[{"n":41')  # above maximum, and more digits only grow it
    assert not ok('[{"n":-')  # minimum 0
    assert not ok('[{"n":1.')  # integer
    assert not ok('[{"x"')  # unknown property
    assert not ok('[{"n":1,"t":1,"title":"abcdefghijklm')  # maxLength 12
    assert not ok('[{"n":1,"t":1,"title":"","tags":["a",]')  # no "]" after ","
    assert not ok("[]")  # minItems 1
    assert not ok('[{"n":1,"t":1,"title":"a\\')  # no escapes
