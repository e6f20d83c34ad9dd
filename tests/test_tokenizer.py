"""Tokenizer (specials, byte fallback, foreign models), task prompts and the chat template's loss mask."""
import json

import pytest

from data_pipelines.text import chat
from data_pipelines.text import tokenizer as tk
from data_pipelines.records.format import VideoExample
from data_pipelines.text import prompts
from pegasus_jax.errors import UserError

TEXTS = [f"a {c} {s} moves {d} while a {p} tone plays" for c in ("red", "green", "blue") for s in ("circle", "square")
         for d in ("left", "right") for p in ("low", "high")] * 4 + [prompts.DESCRIBE, prompts.CHAPTER]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tk.load_tokenizer(tk.train(TEXTS, 512, str(tmp_path_factory.mktemp("tok") / "t")))


def test_special_ids_and_roundtrip(tok):
    # unk is SentencePiece's id 0; every other special is appended above its vocabulary, in SPECIALS order
    assert tok.unk_id == 0
    appended = [p for p in tk.SPECIALS if p != "<unk>"]
    assert [tok.special_ids[p] for p in appended] == list(range(tok.base_size, tok.base_size + len(appended)))
    assert tok.vocab_size == tok.base_size + len(appended) <= 512
    for text in ("a red circle moves left", "unseen wörds, 日本語 and 🎬!"):  # byte fallback: nothing is lost
        ids = tok.encode(text)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == text
    ids = tok.encode("red circle")
    assert tok.decode([tok.bos_id, tok.user_id] + ids + [tok.eot_id, tok.pad_id]) == "red circle"


def test_foreign_model_without_specials_gets_reserved_ids(tmp_path):
    import sentencepiece as spm

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS))
    # A Llama-like model: unk=0, bos=1, eos=2, no pad, none of our user-defined tokens.
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "llama"), vocab_size=300,
                                   byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
                                   hard_vocab_limit=False)
    tok = tk.load_tokenizer(tmp_path / "llama.model")
    missing = ["<pad>"] + list(tk.MARKERS)
    assert (tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert [tok.special_ids[p] for p in missing] == list(range(tok.base_size, tok.base_size + len(missing)))
    assert tok.vocab_size == tok.base_size + len(missing)
    tok.check_fits(tok.vocab_size)
    with pytest.raises(UserError, match="config.model.decoder.vocab_size"):
        tok.check_fits(tok.vocab_size - 1)
    assert tok.decode([tok.user_id] + tok.encode("red square") + [tok.eot_id]) == "red square"


def test_older_models_user_defined_markers_are_never_matched_in_text(tmp_path):
    """An older release trained the markers as user-defined symbols, which SentencePiece matches in text."""
    import sentencepiece as spm

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "old"), vocab_size=300,
                                   byte_fallback=True, pad_id=0, unk_id=1, bos_id=2, eos_id=3, minloglevel=2,
                                   user_defined_symbols=list(tk.MARKERS), hard_vocab_limit=False)
    assert 9 in spm.SentencePieceProcessor(model_file=str(tmp_path / "old.model")).encode("<user>")  # the old hole
    tok = tk.load_tokenizer(tmp_path / "old.model")
    assert [tok.special_ids[m] for m in tk.MARKERS] == list(range(4, 4 + len(tk.MARKERS)))  # same ids as before
    ids = tok.encode("a <user> b <eot>")
    assert not set(ids) & set(tok.special_ids.values()) and tok.decode(ids) == "a <user> b <eot>"


def test_chat_template_masks_only_answers(tok):
    turns = [{"role": "user", "text": "what colour?"}, {"role": "assistant", "text": "red"},
             {"role": "user", "text": "which shape?"}, {"role": "assistant", "text": "circle"}]
    ids, weights = chat.render_chat(tok, turns, 64)
    q1, a1, q2, a2 = (tok.encode(t["text"]) for t in turns)
    expected = ([tok.bos_id, tok.user_id] + q1 + [tok.assistant_id] + a1 + [tok.eot_id]
                + [tok.user_id] + q2 + [tok.assistant_id] + a2 + [tok.eot_id])
    assert ids == expected
    answer_ids = [i for i, w in zip(ids, weights) if w]
    assert answer_ids == a1 + [tok.eot_id] + a2 + [tok.eot_id]
    # Too long for two pairs: the second pair is dropped whole.
    short, _ = chat.render_chat(tok, turns, len(expected) - 2)
    assert short == expected[: 3 + len(q1) + len(a1) + 1]
    assert chat.prompt_ids(tok, "what colour?") == [tok.bos_id, tok.user_id] + q1 + [tok.assistant_id]


def test_truncation_keeps_the_answer_start(tok):
    long_prompt = " ".join(TEXTS[:6])
    turns = [{"role": "user", "text": long_prompt}, {"role": "assistant", "text": "blue square"}]
    answer = tok.encode("blue square") + [tok.eot_id]
    window = 2 * len(answer) + 4
    ids, weights = chat.render_chat(tok, turns, window)
    assert len(ids) == window + 1 and ids[0] == tok.bos_id and ids[1] == tok.user_id
    assert [i for i, w in zip(ids, weights) if w] == answer  # the whole short answer survives
    assert ids[-len(answer) - 1:] == [tok.assistant_id] + answer
    # The prompt kept its end: the tokens before <assistant> are the last prompt tokens.
    kept = ids[2:-len(answer) - 1]
    assert kept == tok.encode(long_prompt)[-len(kept):]


def test_conversations_from_a_record():
    ex = VideoExample(id="x", captions=["a red circle", " "],
                      turns=[{"role": "user", "text": "colour?"}, {"role": "assistant", "text": "red"}],
                      segments=[{"start": 2.0, "end": 4.0, "text": "a blue square moves up while a low tone plays"},
                                {"start": 0.0, "end": 2.0, "text": "a red circle"}])
    convs = prompts.conversations(ex)
    assert convs[0] == [{"role": "user", "text": "Describe the video."}, {"role": "assistant", "text": "a red circle"}]
    assert convs[1] == ex.turns
    assert convs[2][0]["text"] == prompts.CHAPTER
    assert convs[2][1]["text"].startswith('[{"chapter_number":0,"start_sec":0.0,')  # compact, as decoding writes it
    assert json.loads(convs[2][1]["text"]) == [
        {"chapter_number": 0, "start_sec": 0.0, "end_sec": 2.0, "chapter_title": "a red circle",
         "chapter_summary": "a red circle"},
        {"chapter_number": 1, "start_sec": 2.0, "end_sec": 4.0, "chapter_title": "a blue square moves up while",
         "chapter_summary": "a blue square moves up while a low tone plays"}]
    assert len(convs) == 3
    tasks = prompts.conversations(ex, "tasks")  # no gist: the record has no metadata "gist"
    assert [c[0]["text"] for c in tasks] == [prompts.SUMMARY, prompts.CHAPTER, prompts.HIGHLIGHT]
    assert tasks[1] == convs[2]
    assert prompts.conversations(ex, "instruction") == [ex.turns]
    assert prompts.conversations(ex, "image") == [convs[0]]
    assert prompts.task_prompt("open", "why?") == "why?" and prompts.task_prompt("summary") == prompts.SUMMARY


def test_cli_trains_from_a_text_file(tmp_path, capsys):
    from pegasus_jax.cli.main import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS))
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "400", "--out", str(tmp_path / "t")]) == 0
    made = tk.load_tokenizer(tmp_path / "t.model")
    assert made.bos_id == made.base_size + 1 and made.vocab_size <= 400
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "100", "--out", str(tmp_path / "u")]) == 2
    assert "--vocab-size 100" in capsys.readouterr().err
