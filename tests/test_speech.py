"""Speech at inference: transcript files (SRT, WebVTT, JSON) into the same timed transcript stream training
fills, through the segment encoder, the Python API and the CLI; bad or mismatched files as one-line errors;
Whisper (a tiny random one, built here offline) producing the timed transcript per segment window."""
import glob
import json
import os
import shutil

import numpy as np
import pytest

from data_pipelines.decode.example import transcript_arrays
from data_pipelines.decode.media import MediaParams, decode_media
from data_pipelines.errors import UserError
from data_pipelines.sources import synth
from data_pipelines.text.transcript_files import check_items, read_transcript
from pegasus_jax.cli.main import main

SRT = """1
00:00:00,250 --> 00:00:00,750
hello <i>river</i>

2
00:00:01,100 --> 00:00:01,900
seven apple
"""
VTT = """WEBVTT - made by hand

NOTE a comment block

cue-1
00:00.250 --> 00:00.750 align:start
<v Speaker>hello</v> river

00:00:01.100 --> 00:00:01.900
seven
apple
"""
ITEMS = [{"start": 0.25, "end": 0.75, "text": "hello river"}, {"start": 1.1, "end": 1.9, "text": "seven apple"}]


def _write(folder, name, text):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_srt_vtt_and_json_parse_to_the_same_timed_items(tmp_path):
    assert read_transcript(_write(tmp_path, "a.srt", SRT)) == ITEMS
    assert read_transcript(_write(tmp_path, "a.vtt", VTT)) == ITEMS
    assert read_transcript(_write(tmp_path, "a.json", json.dumps(ITEMS))) == ITEMS
    bad = {"b.srt": ("1\n00:00:01,000 -> 00:00:02,000\nhi\n", "cue 1 has no 'start --> end' timing line"),
           "c.srt": ("1\n00:00:02,000 --> 00:00:01,000\nhi\n", "cue 1 ends before it starts"),
           "d.vtt": (SRT, "not WebVTT"),
           "e.json": ('[{"start": 0, "text": "hi"}]', "item 1 needs numeric 'start', 'end'"),
           "f.json": ("[{", "not JSON"),
           "g.txt": ("hi", "must be .srt, .vtt or .json")}
    for name, (text, message) in bad.items():
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_transcript(_write(tmp_path, name, text))
    with pytest.raises(UserError, match="transcript: cue 2 ends before it starts"):  # the Python API's list form
        check_items([ITEMS[0], {"start": 2.0, "end": 1.0, "text": "x"}], "transcript")


def test_inference_places_the_transcript_where_training_does():
    """Each planned segment's transcript slots at inference equal the training pipeline's for the same record."""
    from pegasus_jax import config as cfg
    from pegasus_jax.infer.video_input import plan_segments, segment_transcript

    config = cfg.get("tiny")
    clip = synth.make_clip(0, "train", 3, speech=False)
    clip.transcript = ITEMS

    class Words:  # a word-level tokenizer: what lands in which segment is readable
        vocab = {w: i + 1 for i, w in enumerate("hello river seven apple".split())}

        def encode(self, text):
            return [self.vocab[w] for w in text.split()]

    media, _ = decode_media(clip, MediaParams.from_config(config))
    R = config.model.transcript_tokens
    trained = transcript_arrays(Words(), clip.transcript, media, R)
    plan, _ = plan_segments(config, clip.duration)
    assert len(plan) == 2
    for i, segment in enumerate(plan):
        ours = segment_transcript(config, Words(), clip.transcript, segment)
        assert (ours["transcript"][0, 0] == trained["transcript"][i]).all()
        assert (ours["transcript_mask"][0, 0] == trained["transcript_mask"][i]).all()
    # 0.25-0.75 s is in segment 0 only, 1.1-1.9 s in segment 1 only
    assert trained["transcript"][:, :2].tolist() == [[1, 2], [3, 4]]


@pytest.fixture(scope="module")
def api(reference):
    from pegasus_jax.infer.api import Pegasus

    return Pegasus.load(str(reference))


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    clip = synth.make_clip(0, "heldout", 1, speech=False)
    path = str(tmp_path_factory.mktemp("speech") / "clip.mp4")
    with open(path, "wb") as f:
        f.write(clip.video)
    return path


def test_the_transcript_enters_the_prefix_at_its_segments_slots(api, clip_file, tmp_path):
    import jax.numpy as jnp

    plain = api.encode_video(clip_file)
    spoken = api.encode_video(clip_file, _write(tmp_path, "t.srt", SRT))
    assert plain.embeddings.shape == spoken.embeddings.shape
    assert int(spoken.mask.sum()) - int(plain.mask.sum()) == sum(
        min(len(api.tokenizer.encode(item["text"])), api.config.model.transcript_tokens) for item in ITEMS)
    changed = jnp.any(plain.embeddings != spoken.embeddings, axis=-1)[0]
    assert bool(jnp.all(changed == (spoken.mask != plain.mask)[0]))  # only the new transcript slots change
    # the list form and the file give the same prefix; the answer is conditioned on it
    assert bool(jnp.all(api.encode_video(clip_file, ITEMS).embeddings == spoken.embeddings))
    late = [{"start": 0.5, "end": 3.0, "text": "river"}]  # the clip is 2 s long
    with pytest.raises(UserError, match="cue 1 ends at 3.000 s, after the video's 2.000 s"):
        api.generate(clip_file, "Describe the video.", transcript=late)


def test_cli_transcript_runs_and_bad_files_fail_before_the_model_loads(reference, clip_file, tmp_path, capsys):
    good = _write(tmp_path, "ok.vtt", VTT)
    assert main(["gist", "--checkpoint", str(reference), "--video", clip_file, "--transcript", good]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"id", "title", "topics", "hashtags"}
    late = _write(tmp_path, "late.json", json.dumps([{"start": 1.0, "end": 9.0, "text": "river"}]))
    cases = [(_write(tmp_path, "bad.srt", "garbage\n"), "bad.srt: cue 1 has no 'start --> end' timing line"),
             (_write(tmp_path, "back.srt", "1\n00:00:01,500 --> 00:00:01,000\nx\n"), "cue 1 ends before it starts"),
             (late, "late.json: cue 1 ends at 9.000 s, after the video's 2.000 s")]
    for path, message in cases:
        assert main(["generate", "--checkpoint", str(reference), "--video", clip_file, "--prompt", "hi",
                     "--transcript", path]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    # a checkpoint whose model has no transcript stream: its metadata says so, no weight is read
    silent = tmp_path / "silent"
    shutil.copytree(reference, silent, ignore=shutil.ignore_patterns("tensorboard", "*.log"))
    for path in glob.glob(str(silent / "checkpoints" / "*" / "metadata" / "metadata")):
        meta = json.load(open(path))
        meta["config"]["model"]["transcript_tokens"] = 0
        json.dump(meta, open(path, "w"))
    assert main(["summarize", "--checkpoint", str(silent), "--video", clip_file, "--transcript", good]) == 2
    assert "has no transcript stream (model.transcript_tokens = 0)" in capsys.readouterr().err


# ---- Whisper ----------------------------------------------------------------------------------

def tiny_whisper(folder):
    """A random WhisperForConditionalGeneration with its processor (a byte-level BPE tokenizer trained here on a
    few words), saved as a local Whisper folder. Byte and control tokens are suppressed so that it speaks in words."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([" ".join(synth.ATTRIBUTES["word"] * 20)], trainers.BpeTrainer(
        vocab_size=280, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    os.makedirs(folder, exist_ok=True)
    bpe.model.save(str(folder))
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    tok = transformers.WhisperTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                                        additional_special_tokens=specials[1:], unk_token=specials[0],
                                        bos_token=specials[0], eos_token=specials[0], pad_token=specials[0])
    ids = tok.convert_tokens_to_ids(specials)
    config = transformers.WhisperConfig(
        vocab_size=len(tok), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_target_positions=64, pad_token_id=ids[0], bos_token_id=ids[0], eos_token_id=ids[0],
        decoder_start_token_id=ids[1], begin_suppress_tokens=None, suppress_tokens=list(range(256)) + ids[1:])
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config.forced_decoder_ids = None
    model.generation_config.suppress_tokens = config.suppress_tokens
    model.save_pretrained(folder)
    transformers.WhisperProcessor(transformers.WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return tiny_whisper(tmp_path_factory.mktemp("whisper") / "whisper")


def test_whisper_transcribes_each_segment_window_into_its_segment(whisper, api, reference, clip_file, tmp_path,
                                                                   capsys):
    import torch
    import transformers

    from data_pipelines.decode.video import decode_audio
    from pegasus_jax.infer.asr import WhisperTranscriber
    from pegasus_jax.infer.video_input import plan_segments, segment_transcript

    asr = WhisperTranscriber(whisper, max_new_tokens=6)
    entries = asr.transcribe_segments(clip_file, api.config)
    plan, _ = plan_segments(api.config, 2.0)
    assert [(e["start"], e["end"]) for e in entries] == [(s.start, s.end) for s in plan] == [(0.0, 1.0), (1.0, 2.0)]
    # each entry is what transformers' Whisper says about that window's audio alone
    processor = transformers.WhisperProcessor.from_pretrained(whisper)
    model = transformers.WhisperForConditionalGeneration.from_pretrained(whisper).eval()
    for entry, segment in zip(entries, plan):
        wave = decode_audio(clip_file, 16000, segment.start, segment.end)
        with torch.no_grad():
            ids = model.generate(processor(wave, sampling_rate=16000, return_tensors="pt").input_features,
                                 max_new_tokens=6, do_sample=False)
        assert entry["text"] == " ".join(processor.batch_decode(ids, skip_special_tokens=True)[0].split()) != ""
    # ... and lands in its own segment's slots only
    for i, segment in enumerate(plan):
        slots = segment_transcript(api.config, api.tokenizer, entries, segment)["transcript"][0, 0]
        alone = segment_transcript(api.config, api.tokenizer, [entries[i]], segment)["transcript"][0, 0]
        assert (slots == alone).all() and (slots == np.asarray(
            (api.tokenizer.encode(entries[i]["text"]) + [0] * 8)[:len(slots)])).all()
    # a folder that is not Whisper, and a checkpoint without transcript stream, are one-line errors
    capsys.readouterr()  # transformers' loading bars
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for command in (["gist", "--checkpoint", str(reference), "--video", clip_file],
                    ["eval", "--benchmark", "caption", "--data", str(tmp_path), "--out", str(tmp_path / "o")]):
        assert main(command + ["--asr-model", str(llama)]) == 2
        assert capsys.readouterr().err.strip() == f"error: --asr-model: {llama} is a 'llama' model, not Whisper"


def test_eval_transcripts_folder_feeds_each_video_its_own_file(tmp_path, capsys):
    from pegasus_jax.cli.speech import TranscriptSource
    from pegasus_jax.evaluate.runner import run_benchmark

    data = tmp_path / "set"
    data.mkdir()
    (data / "captions.jsonl").write_text("".join(json.dumps({"video": f"{v}.mp4", "caption": "a shape moves"}) + "\n"
                                                 for v in ("v1", "v2", "v3")))
    for v in ("v1", "v2", "v3"):
        (data / f"{v}.mp4").write_bytes(b"")
    subs = tmp_path / "subs"
    subs.mkdir()
    _write(subs, "v1.srt", SRT)
    _write(subs, "v2.json", json.dumps(ITEMS[:1]))
    source = TranscriptSource(str(subs), None, "--transcripts")
    got = {}

    class Recorder:  # the model's side of generate_batch: which transcript came with which video
        def generate_batch(self, pairs, transcripts=None):
            for (video, _), transcript in zip(pairs, transcripts or [None] * len(pairs)):
                got[os.path.basename(video)] = transcript
            return ["a shape moves"] * len(pairs)

    run_benchmark("caption", str(data), str(tmp_path / "out"), model=Recorder(), batch_size=2,
                  transcript=lambda video: source.for_video(video, None))
    capsys.readouterr()
    assert got == {"v1.mp4": ITEMS, "v2.mp4": ITEMS[:1], "v3.mp4": None}
    _write(subs, "v3.vtt", "WEBVTT\n\n00:01.000 --> 00:00.500\nback\n")
    assert main(["eval", "--checkpoint", "x", "--benchmark", "caption", "--data", str(data), "--out",
                 str(tmp_path / "o"), "--transcripts", str(subs)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {subs / 'v3.vtt'}: cue 1 ends before it starts (1.000 -> 0.500 s)"
