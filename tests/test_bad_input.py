"""Every kind of bad input is skipped, counted by kind and logged with its id; good ones all arrive;
the decoder crashing or hanging (in its isolated helper) does not stop the pipeline; the ratio guard.
A bug is not a bad record: a decoder raising TypeError stops the run with its traceback, in process
and from the isolated helper, while a truncated file beside it is still counted and skipped."""
import logging
import os
import time

import numpy as np
import pytest

from data_pipelines.batch import iterators as pipeline
from data_pipelines.decode.registry import DecoderBug
from data_pipelines.sources import synth
from data_pipelines.sources.encode import encode_clip
from data_pipelines.records.format import VideoExample, serialize
from data_pipelines.records.shards import read_all, write_records
from data_pipelines.text.tokenizer import load_tokenizer
from data_pipelines.records.tokenizer_corpus import train_tokenizer_for_config
from pegasus_jax import config as cfg
from pegasus_jax.errors import UserError

GOOD = 8


def misbehaving_decoder(ex, params):
    """The real PyAV decoder, except that it aborts the process on "crash-*" ids and hangs on "hang-*"."""
    from data_pipelines.decode.media import decode_media

    if ex.id.startswith("crash-"):
        os.abort()
    if ex.id.startswith("hang-"):
        time.sleep(3600)
    return decode_media(ex, params)


def buggy_decoder(ex, params):
    """The real PyAV decoder, except for a programming error on "bug-*" ids."""
    from data_pipelines.decode.media import decode_media

    if ex.id.startswith("bug-"):
        return len(None)  # TypeError: our code's mistake, not the file's
    return decode_media(ex, params)


def clip(frames, size, audio=True):
    rgb = np.full((frames, size, size, 3), 90, np.uint8)
    wave = np.zeros(int(frames / 8 * 16000), np.float32) if audio else None
    return encode_clip(rgb, 8, wave)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, audio_only):
    root = tmp_path_factory.mktemp("bad")
    synth.generate_corpus(str(root / "synth"), num=GOOD, heldout=0, seed=1, size=32, workers=1)
    good = list(read_all(str(root / "synth" / "train")))
    video = good[0].video
    cap = {"captions": ["a grey square"]}
    kept = {  # odd but usable: kept, counted as notes
        "video-only": VideoExample(id="video-only", video=clip(8, 32, audio=False), fps=8, duration=1.0, **cap),
        "one-frame": VideoExample(id="one-frame", video=clip(1, 32), fps=8, **cap),
    }
    bad = {  # id -> expected kind
        "zero-bytes": ("empty", VideoExample(id="zero-bytes", video=b"", **cap)),
        "truncated": ("truncated", VideoExample(id="truncated", video=video[: len(video) // 3], **cap)),
        "undecodable": ("undecodable", VideoExample(id="undecodable", video=bytes(range(256)) * 40, **cap)),
        "audio-only": ("no_video", VideoExample(id="audio-only", video=audio_only, **cap)),
        "8k": ("too_large", VideoExample(id="8k", video=_eight_k(), **cap)),
        "latin-1": ("bad_text", VideoExample(id="latin-1", video=video, captions=[b"caf\xe9 cr\xe8me"])),
        "crash-1": ("crash", VideoExample(id="crash-1", video=video, **cap)),
        "hang-1": ("timeout", VideoExample(id="hang-1", video=video, **cap)),
    }
    records = [serialize(ex) for ex in good + list(kept.values())] + [serialize(ex) for _, ex in bad.values()]
    records.append(b"\x93not a record")  # corrupt record bytes: no id to report, so it is named by its index
    rng = np.random.default_rng(0)
    order = rng.permutation(len(records))
    write_records([records[i] for i in order], root / "mixed.array_record")
    corrupt_index = int(np.flatnonzero(order == len(records) - 1)[0])
    tok = train_tokenizer_for_config(str(root / "synth" / "train"), 512, str(root / "tok.model"))
    expected_bad = {id_: kind for id_, (kind, _) in bad.items()} | {f"record#{corrupt_index}": "corrupt_record"}
    truncated = serialize(bad["truncated"][1])
    write_records([serialize(ex) for ex in good] + [truncated], root / "truncated.array_record")
    bug = serialize(VideoExample(id="bug-1", video=video, **cap))
    write_records([serialize(ex) for ex in good[:3]] + [truncated, bug] + [serialize(ex) for ex in good[3:]],
                  root / "bug.array_record")
    return {"path": str(root / "mixed.array_record"), "tok": load_tokenizer(tok),
            "truncated": str(root / "truncated.array_record"), "bug": str(root / "bug.array_record"),
            "good": sorted([ex.id for ex in good] + list(kept)), "bad": expected_bad,
            "good_only": str(root / "synth" / "train" / "*.array_record")}


def _eight_k() -> bytes:
    return encode_clip(np.zeros((1, 4320, 7680, 3), np.uint8), 1)


def config(path, **data):
    c = cfg.get("tiny", data__path=path, train__batch_size=1, data__max_bad_ratio=1.0)
    for k, v in data.items():
        c.data[k] = v
    return c


def test_bad_kinds_are_skipped_counted_and_logged(corpus, caplog):
    c = config(corpus["path"], isolate_decode=True, decode_timeout_s=4.0,
               decoder="tests.test_bad_input:misbehaving_decoder")
    it = pipeline.make_eval_iterator(c, corpus["tok"])
    with caplog.at_level(logging.INFO, logger="pegasus_jax.data"):
        arrived = [id_ for _ in it for id_ in it.last_ids]
    assert sorted(arrived) == corpus["good"]
    stats = pipeline.stats(it)
    expected = {}
    for kind in corpus["bad"].values():
        expected[kind] = expected.get(kind, 0) + 1
    assert stats["bad_records"] == expected
    assert stats["notes"] == {"no_audio": 1, "one_frame": 1}
    assert stats["seen"] == len(corpus["good"]) + len(corpus["bad"])
    assert pipeline.bad_record_count(it) == len(corpus["bad"])
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped bad record")]
    assert len(skipped) == len(corpus["bad"])
    for id_ in corpus["bad"]:
        assert sum(m.startswith(f"skipped bad record {id_}:") for m in skipped) == 1, id_


def test_helper_start_up_does_not_count_against_the_first_record(corpus):
    # The decoder's module sleeps 3 s on import; with 2 s per record a helper that imported it on the
    # first request would skip that good record as "timeout".
    c = config(corpus["good_only"], isolate_decode=True, decode_timeout_s=2.0,
               decoder="tests.slow_import_decoder:decode_media")
    it = pipeline.make_eval_iterator(c, corpus["tok"])
    arrived = [id_ for _ in it for id_ in it.last_ids]
    assert len(arrived) == GOOD and pipeline.stats(it)["bad_records"] == {}


def test_video_only_and_one_frame_examples_are_usable(corpus):
    c = config(corpus["path"], isolate_decode=False)
    it = pipeline.make_eval_iterator(c, corpus["tok"])
    for batch in it:
        if it.last_ids == ["video-only"]:
            assert batch["segment_mask"][0, 0] and not batch["audio_mask"][0].any() and not batch["audio"].any()
        if it.last_ids == ["one-frame"]:
            frames = batch["frames"][0, 0]
            assert batch["segment_mask"][0].tolist() == [True, False] and batch["audio_mask"][0, 0]
            assert all((f == frames[0]).all() for f in frames) and frames[0].any()  # the one frame, repeated


def test_ratio_guard_aborts_with_one_line(corpus):
    c = config(corpus["path"], isolate_decode=False, max_bad_ratio=0.1)
    c.train.batch_size = 4
    with pytest.raises(UserError) as err:
        for _ in pipeline.make_train_iterator(c, corpus["tok"]):
            pass
    message = str(err.value)
    assert "config.data.max_bad_ratio=0.1" in message and "last bad:" in message and "\n" not in message
    assert any(id_ in message for id_ in corpus["bad"])


def test_unknown_decoder_is_a_user_error(corpus):
    with pytest.raises(UserError, match="config.data.decoder"):
        pipeline.make_train_iterator(config(corpus["path"], isolate_decode=False, decoder="nope"), corpus["tok"])


def test_default_ratio_is_small():
    assert cfg.get("tiny").data.max_bad_ratio == 0.05


@pytest.mark.parametrize("isolate", [False, True])
def test_truncated_file_beside_the_bug_decoder_is_counted_and_skipped(corpus, isolate):
    c = config(corpus["truncated"], isolate_decode=isolate, decoder="tests.test_bad_input:buggy_decoder")
    it = pipeline.make_eval_iterator(c, corpus["tok"])
    arrived = [id_ for _ in it for id_ in it.last_ids]
    assert len(arrived) == GOOD
    assert pipeline.stats(it)["bad_records"] == {"truncated": 1}
    assert pipeline.stats(it)["first_bad"] == {"truncated": ["truncated"]}


def test_decoder_bug_stops_the_run_with_its_traceback_in_process(corpus):
    c = config(corpus["bug"], isolate_decode=False, decoder="tests.test_bad_input:buggy_decoder")
    with pytest.raises(TypeError) as err:
        for _ in pipeline.make_eval_iterator(c, corpus["tok"]):
            pass
    assert any(entry.name == "buggy_decoder" for entry in err.traceback)


def test_decoder_bug_stops_the_run_from_the_isolated_helper(corpus):
    c = config(corpus["bug"], isolate_decode=True, decoder="tests.test_bad_input:buggy_decoder")
    with pytest.raises(DecoderBug) as err:
        for _ in pipeline.make_eval_iterator(c, corpus["tok"]):
            pass
    message = str(err.value)
    assert "TypeError" in message and "'bug-1'" in message and "a bug, not a bad record" in message
    assert "in buggy_decoder" in message and "Traceback (most recent call last)" in message  # the helper's traceback
