"""The built-in corpus: counts, held-out combinations, captions that name what the clip shows, determinism."""
import json
import os

import numpy as np
import pytest

from data_pipelines.sources import synth
from data_pipelines.records.shards import iter_raw, read_all
from data_pipelines.decode.video import decode_audio, probe, sample_frames


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth"))
    info = synth.generate_corpus(out, num=40, heldout=10, seed=3, size=64, workers=2)
    return out, info


def test_heldout_combos_are_unseen_but_every_value_is_trained():
    train, heldout = set(synth.TRAIN_COMBOS), set(synth.HELDOUT_COMBOS)
    assert len(train) + len(heldout) == 4 * 4 * 4 * 3 and not train & heldout and len(heldout) == 34  # (c + s + d + p) % 8 == 5
    for k, key in enumerate(synth.COMBO_KEYS):
        assert {c[k] for c in train} == set(synth.ATTRIBUTES[key])


def test_counts_layout_and_corpus_json(corpus):
    out, info = corpus
    saved = json.load(open(os.path.join(out, "corpus.json")))
    assert saved["counts"] == {"train": 40, "heldout": 10} and saved["seed"] == 3
    assert len(saved["heldout_combos"]) == 34 and saved["attributes"]["pitch"] == ["low", "mid", "high"]
    train, heldout = list(read_all(os.path.join(out, "train"))), list(read_all(os.path.join(out, "heldout")))
    assert len(train) == 40 and len(heldout) == 10
    assert len({e.id for e in train + heldout}) == 50


def test_examples_are_consistent(corpus):
    out, _ = corpus
    heldout = {tuple(c) for c in synth.HELDOUT_COMBOS}
    two_part = silent_clips = 0
    for split in ("train", "heldout"):
        for ex in read_all(os.path.join(out, split)):
            parts = ex.metadata["parts"]
            assert ex.metadata["split"] == split and ex.metadata["attributes"] == parts[0]
            combos = {tuple(p[k] for k in synth.COMBO_KEYS) for p in parts}
            assert (combos <= heldout) if split == "heldout" else not (combos & heldout)
            assert ex.duration == 2.0 * len(parts) and len(ex.segments) == len(parts)
            assert probe(ex.video).duration == pytest.approx(ex.duration, abs=0.05)
            for part, seg in zip(parts, ex.segments):
                found = synth.attributes_from_text(seg["text"])
                assert all(found[k] == part[k] for k in ("colour", "shape", "direction")), (seg["text"], part)
            assert synth.attributes_from_text(ex.captions[0])["colour"] == parts[0]["colour"]
            answers = {t["text"] for t in ex.turns if t["role"] == "assistant"}
            assert {p[k] for p in parts for k in synth.COMBO_KEYS} - {None} == answers - set(synth.ATTRIBUTES["word"])
            # a silent clip has no audio track, no pitch, and captions that name no tone
            silent = ex.metadata["silent"]
            assert not (silent and split == "heldout")
            assert probe(ex.video).has_audio != silent and all((p["pitch"] is None) == silent for p in parts)
            assert ("tone" in ex.captions[0]) != silent and not (silent and ex.transcript)
            silent_clips += silent
            assert [t["role"] for t in ex.turns] == ["user", "assistant"] * (len(ex.turns) // 2)
            two_part += len(parts) == 2
            if ex.metadata["speech"]:
                assert ex.transcript and ex.transcript[0]["text"] == parts[0]["word"]
    assert 3 <= two_part <= 20  # ~25% of 40 training clips; none held out
    assert 1 <= silent_clips <= 10  # ~10% of 40 training clips; none held out


def test_pixels_and_tone_show_the_labelled_attributes(corpus):
    out, _ = corpus
    for ex in list(read_all(os.path.join(out, "train")))[:6]:
        attrs = ex.metadata["parts"][0]
        frames, _ = sample_frames(ex.video, [0.0625, 1.9375], 64)
        target = np.array(synth.COLOUR_RGB[attrs["colour"]], float)
        centres = []
        for frame in frames:
            mask = np.abs(frame.astype(float) - target).sum(axis=2) < 60
            assert mask.sum() > 40, attrs  # the shape is visible in its colour
            ys, xs = np.nonzero(mask)
            centres.append((xs.mean(), ys.mean()))
        dx, dy = centres[1][0] - centres[0][0], centres[1][1] - centres[0][1]
        expect = synth.DIRECTION_VECTOR[attrs["direction"]]
        assert (np.sign(round(dx / 10)), np.sign(round(dy / 10))) == expect, (attrs, dx, dy)
        if ex.metadata["silent"]:
            continue
        audio = decode_audio(ex.video, 16000, 0.0, 1.0)
        peak = np.argmax(np.abs(np.fft.rfft(audio))) * 16000 / len(audio)
        assert abs(peak - synth.PITCH_HZ[attrs["pitch"]]) < 5, (attrs, peak)


def test_the_middle_frame_does_not_tell_the_direction():
    # The no-motion ablation shows a clip's middle frame: there the shape must sit where it would whichever
    # way it moves (same random draws, four directions), while the first frame differs by direction.
    background = np.zeros((64, 64, 3))
    frames = 16
    renders = [synth._render_part(np.random.default_rng(7), {"colour": "red", "shape": "circle", "direction": d},
                                  background, 64, frames) for d in synth.ATTRIBUTES["direction"]]
    middles = np.stack([r[frames // 2] for r in renders])
    assert (middles == middles[0]).all()
    firsts = np.stack([r[0] for r in renders])
    assert len({f.tobytes() for f in firsts}) == 4


def test_attributes_from_text():
    got = synth.attributes_from_text("A Yellow cross moves UP while a low tone plays, then a red circle moves left")
    assert got == {"colour": "yellow", "shape": "cross", "direction": "up", "pitch": "low", "word": None}
    assert synth.attributes_from_text("nothing here") == dict.fromkeys(synth.ATTRIBUTES)


def test_deterministic_for_any_worker_count(corpus, tmp_path):
    out, _ = corpus
    again = synth.generate_corpus(str(tmp_path), num=40, heldout=10, seed=3, size=64, workers=1)
    assert again["counts"] == {"train": 40, "heldout": 10}
    for split in ("train", "heldout"):
        first = [r for _, _, r in iter_raw(os.path.join(out, split))]
        second = [r for _, _, r in iter_raw(os.path.join(str(tmp_path), split))]
        assert first == second
    other_seed = synth.make_clip(4, "train", 0)
    assert other_seed.video != next(read_all(os.path.join(out, "train"))).video


def test_cli_synth(tmp_path, capsys):
    from pegasus_jax.cli.main import main

    assert main(["data", "synth", "--out", str(tmp_path), "--num", "3", "--heldout", "2", "--seed", "1", "--workers", "1"]) == 0
    assert "wrote 3 train + 2 heldout clips" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["corpus.json", "heldout", "train"]
    assert main(["data", "synth", "--out", str(tmp_path), "--num", "-1"]) == 2
