"""Training examples of the API tasks (gist, summary, chapters, highlights): from the built-in corpus's
known attributes and timeline and from the converters' captions and timed segments, each in exactly the
form the task prompts and parses at inference: the task's prompt, and an answer the task's grammar
(infer/schemas.py through infer/grammar.py, compact JSON in the schema's key order) accepts whole."""
import json

import jsonschema
import numpy as np
import pytest

from data_pipelines.records.format import VideoExample
from data_pipelines.sources import activitynet, folder, synth
from data_pipelines.text import prompts
from data_pipelines.text.tokenizer import load_tokenizer
from pegasus_jax.infer import grammar, schemas


@pytest.fixture(scope="module")
def accepts(corpus):
    """accepts(schema, text): the task grammar of `schema` takes `text` (as byte tokens) whole and may end there."""
    tokenizer = load_tokenizer(corpus["tokenizer"])
    vocabulary = grammar.Vocabulary(tokenizer, tokenizer.eot_id, tokenizer.vocab_size + 4)

    def accepts(schema, text):
        matcher = grammar.GrammarConstraint(vocabulary, grammar.json_grammar(schema), 1).matchers[0]
        ids = [vocabulary.tokens.index(bytes([b])) for b in text.encode()]
        return matcher.validate_tokens(ids) == len(ids) and matcher.consume_tokens(ids) and matcher.is_accepting()

    return accepts


def by_prompt(ex, kind="tasks") -> dict:
    return {c[0]["text"]: c[1]["text"] for c in prompts.conversations(ex, kind)}


def check_timed(accepts, answers: dict, segments: list[dict], duration: float) -> None:
    """Chapters and highlights: accepted by the task's grammar, valid, one per segment at its times."""
    for prompt, schema, key in ((prompts.CHAPTER, schemas.chapters(duration), "chapter_summary"),
                                (prompts.HIGHLIGHT, schemas.highlights(duration), "highlight_summary")):
        assert accepts(schema, answers[prompt]), answers[prompt]
        items = json.loads(answers[prompt])
        jsonschema.validate(items, schema)
        assert [(i["start_sec"], i["end_sec"], i[key]) for i in items] == [
            (s["start"], s["end"], s["text"]) for s in segments]
    assert [c["chapter_number"] for c in json.loads(answers[prompts.CHAPTER])] == list(range(len(segments)))


def test_builtin_two_part_clip_trains_every_task(accepts):
    clip = synth.make_clip(0, "heldout", 3, size=32, speech=False, num_parts=2)
    parts = clip.metadata["parts"]
    assert clip.duration == 2 * synth.PART_SECONDS and all(tuple(p[k] for k in synth.COMBO_KEYS) in
                                                           synth.HELDOUT_COMBOS for p in parts)
    answers = by_prompt(clip)
    assert set(answers) == {prompts.GIST, prompts.SUMMARY, prompts.CHAPTER, prompts.HIGHLIGHT}
    assert accepts(schemas.GIST, answers[prompts.GIST]), answers[prompts.GIST]
    gist = json.loads(answers[prompts.GIST])
    jsonschema.validate(gist, schemas.GIST)
    assert gist["title"] == f"{parts[0]['colour']} {parts[0]['shape']} then {parts[1]['colour']} {parts[1]['shape']}"
    assert {f"#{parts[0]['colour']}", f"#{parts[0]['shape']}"} <= set(gist["hashtags"])
    assert answers[prompts.SUMMARY] == clip.captions[0]
    check_timed(accepts, answers, [{"start": 0.0, "end": 2.0, "text": clip.segments[0]["text"]},
                                   {"start": 2.0, "end": 4.0, "text": clip.segments[1]["text"]}], clip.duration)
    # the same held-out stream without num_parts stays single-part, with a gist naming its one combo
    single = synth.make_clip(0, "heldout", 3, size=32, speech=False)
    attrs = single.metadata["attributes"]
    assert len(single.segments) == 1 and single.id != clip.id
    title = json.loads(by_prompt(single)[prompts.GIST])["title"]
    assert title == f"{attrs['colour']} {attrs['shape']} moving {attrs['direction']}"


def test_the_task_grammar_allows_the_tokens_training_feeds(corpus):
    """Constrained decoding leaves the model its training tokenization: each task answer of a built-in clip,
    encoded as training encodes it (a SentencePiece dummy-prefix space opening it, pieces reaching across
    JSON punctuation into names and numbers), is allowed token by token by the task's mask, and the text
    comes back as it was. Before, the first token (' {"title":"') and pieces past a fixed property name
    ('end_sec":4.0,"') were refused, and a trained model's gists and chapters went astray."""
    tokenizer = load_tokenizer(corpus["tokenizer"])
    vocabulary = grammar.Vocabulary(tokenizer, tokenizer.eot_id, tokenizer.vocab_size + 4)
    assert vocabulary.leading_space
    for parts in (1, 2):
        clip = synth.make_clip(0, "heldout", 3, size=32, speech=False, num_parts=parts)
        answers = by_prompt(clip)
        for prompt, schema in ((prompts.GIST, schemas.GIST), (prompts.CHAPTER, schemas.chapters(clip.duration)),
                               (prompts.HIGHLIGHT, schemas.highlights(clip.duration))):
            constraint = grammar.GrammarConstraint(vocabulary, grammar.json_grammar(schema), 1)
            ids = tokenizer.encode(answers[prompt])
            for i, token in enumerate(ids):
                mask = constraint.masks(np.zeros(1, bool))[0]
                assert (mask[token // 32] >> (token % 32)) & 1, (prompt, tokenizer.decode(ids[:i]),
                                                                 vocabulary.tokens[token])
                constraint.consume(0, token)
            assert constraint.matchers[0].is_accepting() and constraint.text(ids) == answers[prompt]


def test_activitynet_segments_train_chapters_highlights_and_summary(tmp_path, accepts):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"v_abc": {"duration": 30.0, "timestamps": [[12.5, 30.0], [0.0, 12.5]],
                                          "sentences": ["Then he jumps.", "A man runs."]}}))
    items, _ = activitynet.read_items(str(path))
    answers = by_prompt(example(items[0]))
    assert set(answers) == {prompts.SUMMARY, prompts.CHAPTER, prompts.HIGHLIGHT}  # no gist: captions hold none
    assert answers[prompts.SUMMARY] == "A man runs. Then he jumps."
    check_timed(accepts, answers, [{"start": 0.0, "end": 12.5, "text": "A man runs."},
                                   {"start": 12.5, "end": 30.0, "text": "Then he jumps."}], 30.0)


def test_folder_gist_and_segments_and_caption_only_rows(tmp_path, accepts):
    rows = [{"video": "a.mp4", "caption": "a dog plays", "gist": {"title": "Dog at play", "topics": ["dogs"],
                                                                  "hashtags": ["#dog"]},
             "segments": [{"start": 0, "end": 3.5, "text": "a dog plays"}]},
            {"video": "b.mp4", "caption": "a cat sleeps"},
            {"video": "c.mp4", "caption": "x", "gist": {"title": "no topics"}}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items, skips = folder.read_items(str(tmp_path))
    assert [i["id"] for i in items] == ["a", "b"] and skips.counts["bad_row"] == 1
    full, caption_only = by_prompt(example(items[0])), by_prompt(example(items[1]))
    assert accepts(schemas.GIST, full[prompts.GIST])
    assert json.loads(full[prompts.GIST]) == rows[0]["gist"]
    check_timed(accepts, full, [{"start": 0.0, "end": 3.5, "text": "a dog plays"}], 3.5)
    assert caption_only == {prompts.SUMMARY: "a cat sleeps"}
    # the caption kind still trains on captions alone, the video kind on captions and chapters
    assert by_prompt(example(items[0]), "caption") == {prompts.DESCRIBE: "a dog plays"}
    assert by_prompt(example(items[0]), "video") == {prompts.DESCRIBE: "a dog plays",
                                                     prompts.CHAPTER: full[prompts.CHAPTER]}


def example(item: dict) -> VideoExample:
    return VideoExample(id=item["id"], captions=item["captions"], turns=item["turns"], segments=item["segments"],
                        metadata=item["metadata"])
