"""Structured output on the grammar engine, from a barely trained model (conftest's `reference`, as a
user's model is at first): answers under schemas with anyOf, pattern, $ref, const, optional keys and
nullable types validate, streamed or not, in a batch, and when the token budget cuts them short; a
regex answer matches in full; a bad schema, an unsupported or unknown keyword and a bad regex are one
`error:` line with exit code 2, before the model loads."""
import json
import re

import jsonschema
import pytest

from conftest import cli, cpu_env
from data_pipelines.records import shards as records
from pegasus_jax.errors import UserError

PROMPT = "Describe the video."
SCHEMAS = {
    "anyOf": {"type": "object", "properties": {"value": {"anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 99}, {"type": "string", "maxLength": 8}]}},
        "required": ["value"], "additionalProperties": False},
    "pattern": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}},
                "required": ["code"]},
    "$ref": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"$ref": "#/$defs/shape"}, "$defs": {
        "shape": {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]},
                                                   "size": {"type": "number", "minimum": 0, "maximum": 1}},
                  "required": ["colour", "size"], "additionalProperties": False}}},
    "const": {"type": "object", "properties": {"kind": {"const": "caption"}, "text": {"type": "string", "maxLength": 20}},
              "required": ["kind", "text"], "additionalProperties": False},
    "optional keys": {"type": "object", "properties": {
        "title": {"type": "string", "maxLength": 12}, "score": {"type": "integer"},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 6}}},
        "required": ["title"], "additionalProperties": False},
    "nullable": {"type": "object", "properties": {"speaker": {"type": ["string", "null"], "maxLength": 10},
                                                  "count": {"type": ["integer", "null"]}},
                 "required": ["speaker", "count"], "additionalProperties": False},
}


@pytest.fixture(scope="module")
def model(reference, corpus, tmp_path_factory):
    from pegasus_jax.infer.api import Pegasus

    video = tmp_path_factory.mktemp("structured") / "heldout.mp4"
    video.write_bytes(next(records.read_all(corpus["heldout"])).video)
    return Pegasus.load(str(reference)), str(video)


def test_the_model_alone_does_not_answer_in_json(model):
    """What the constraint is for: unconstrained, the barely trained model writes no JSON document."""
    m, video = model
    with pytest.raises(json.JSONDecodeError):
        json.loads(m.generate(video, PROMPT, temperature=1.0, max_new_tokens=24))


@pytest.mark.parametrize("name", SCHEMAS)
def test_answers_validate_streamed_or_not(model, name):
    m, video = model
    schema = SCHEMAS[name]
    sampling = {"temperature": 1.0, "seed": 1, "max_new_tokens": 40}
    text = m.generate(video, PROMPT, schema=schema, **sampling)
    jsonschema.validate(json.loads(text), schema)
    streamed = "".join(m.stream(video, PROMPT, schema=schema, **sampling))
    assert streamed == text  # the same seed: the stream is the same document, piece by piece
    for answer in m.generate_batch([(video, PROMPT)] * 2, schema=schema, temperature=1.0, seed=2, max_new_tokens=5):
        jsonschema.validate(json.loads(answer), schema)  # cut at 5 tokens, closed by the engine


def test_regex_answer_matches_in_full(model):
    m, video = model
    regex = r"(red|green|blue) [a-z]{2,8}( [0-9]{1,2})?"
    for seed in range(3):
        answer = m.generate(video, PROMPT, regex=regex, temperature=1.0, seed=seed, max_new_tokens=12)
        assert re.fullmatch(regex, answer), answer


def test_stream_through_the_cli_honours_the_schema(model, reference, tmp_path):
    _, video = model
    schema = SCHEMAS["$ref"]
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    run = cli("generate", "--checkpoint", str(reference), "--video", video, "--prompt", PROMPT,
              "--response-schema", str(path), "--stream", "--temperature", "1", "--max-tokens", "30", env=cpu_env())
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[0] == {"event_type": "stream_start"} and events[-1] == {"event_type": "stream_end"}
    jsonschema.validate(json.loads("".join(e["text"] for e in events[1:-1])), schema)


BAD = {  # case -> (schema, the message's telling part)
    "invalid schema": ({"type": "strin"}, "not a valid JSON Schema at /type"),
    "unsupported keyword": ({"type": "array", "uniqueItems": True},
                            "not supported by the grammar engine (llguidance): uniqueItems"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_schema_is_one_line_before_the_model_loads(case, model, tmp_path):
    """The checkpoint does not exist: the schema's error coming first shows it is checked before loading."""
    _, video = model
    schema, message = BAD[case]
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    run = cli("generate", "--checkpoint", str(tmp_path / "no_checkpoint"), "--video", video, "--prompt", PROMPT,
              "--response-schema", str(tmp_path / "schema.json"), env=cpu_env())
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.startswith("error: --response-schema: ") and len(run.stderr.strip().splitlines()) == 1
    assert message in run.stderr and run.stdout == ""


@pytest.mark.parametrize("schema, regex, stop, message", [
    ({"type": "object", "properties": {"a": {"maxLenght": 3}}}, None, (), "unknown keyword 'maxLenght' at /properties/a"),
    ({"not": {"type": "string"}}, None, (), "not supported by the grammar engine (llguidance): not"),
    (None, "[a-z", (), "regex: the grammar engine rejects it"),
    ({"type": "string"}, None, ("}",), "stop strings do not apply with schema"),
    ({"type": "string"}, "a+", (), "schema and regex exclude each other"),
])
def test_what_the_api_refuses(model, schema, regex, stop, message):
    m, video = model
    with pytest.raises(UserError, match=re.escape(message)):
        m.generate(video, PROMPT, schema=schema, regex=regex, stop=stop)
