"""The demo, reduced to CI size: it must learn from the video, the audio and the transcript, the ablations must
show it, and the API tasks must be learned.

Same code path, corpus and mixture (the API tasks included) as `make demo` (pegasus_jax/demo.py): corpus
generation, training, captioning held-out attribute combinations, the ablations (and the transcript removed,
with speech on), the API tasks through constrained decoding, the PyTorch export, the JSON report. 800 steps
(the full demo: 1650) at one learning rate for the whole model, with the demo's warmup-stable-decay schedule.
Motion direction is learned only later in training (see below): the full demo checks it.
"""
import json
import os

import numpy as np
import pytest

from data_pipelines.sources import synth

pytestmark = pytest.mark.slow

REDUCED = {
    "train.steps": "800",
    "train.max_seconds": "900",  # a guard only: 800 steps take ~240 s here
    "train.checkpoint_every": "800",
    "train.eval_every": "0",
    "demo.eval_clips": "48",
    "demo.task_clips": "32",
    "train.lr_mults": "()",  # the full demo's 3x video-encoder rate needs its 1800 steps
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from pegasus_jax.demo import run_demo

    workdir = str(tmp_path_factory.mktemp("demo"))
    run_demo(workdir, overrides=REDUCED)
    with open(os.path.join(workdir, "demo_report.json")) as f:
        return json.load(f)


def test_report_has_the_fixed_fields(report):
    speech = {"word"} if report["speech"] else set()
    assert set(report["accuracy"]) == set(report["chance"]) == {"colour", "shape", "direction", "pitch"} | speech
    assert report["chance"]["pitch"] == pytest.approx(1 / len(synth.ATTRIBUTES["pitch"]))
    assert set(report["ablation"]) == {"no_audio", "no_motion", "no_temporal"} | ({"no_transcript"} if speech else set())
    assert all(set(a) == set(report["accuracy"]) for a in report["ablation"].values())
    assert report["seconds"] > 0 and report["heldout_clips"] == 48
    assert report["loss"]["last"] < report["loss"]["first"] / 4
    # the held-out split exported as an eval set (data export-eval) and its caption report
    held = report["heldout_eval"]
    assert held["videos"] == 48 and held["mcq"] >= 4 * 48 and held["caption"]["items"] == 48
    with open(held["report"]) as f:
        rows = json.load(f)["items"]
    assert [r["prediction"] for r in rows[:5]] == [e["caption"] for e in report["examples"]]
    assert 0 < held["caption"]["cider"] and 0 < held["caption"]["bleu4"] <= 1


# Measured, seed 0 (what CI runs), with the API tasks in the mixture (2026-12-03): colour 100%, shape 66.7%,
# direction 10.4%, pitch 100%, word 100%; gist title 59.4%, chapters 100%, highlights 100%. Direction is learned
# later than this run's 800 steps now (1000 steps: 4.2%; 1000 with the 3x video-encoder rate: 16.7%; without the
# tasks kind, 800 steps: 41.7%), and between 1000 and 1500 steps in the full demo (1500: 85.0%, 1650: 96.0%), so
# direction and the no-motion ablation are checked by the full demo (README, "The demo"), not here.


def test_every_attribute_is_learned_on_unseen_combinations(report):
    acc, chance = report["accuracy"], report["chance"]
    assert acc["colour"] >= chance["colour"] + 0.4, acc
    assert acc["pitch"] >= chance["pitch"] + 0.4, acc
    # guessing reaches 20 of 48 clips (41.7%) less than once in 100 tries
    assert acc["shape"] >= 20 / 48, acc


def test_removing_the_audio_drops_pitch_to_near_chance(report):
    no_audio = report["ablation"]["no_audio"]
    assert no_audio["pitch"] <= report["chance"]["pitch"] + 0.2, report["ablation"]
    assert report["accuracy"]["pitch"] - no_audio["pitch"] >= 0.3
    # colour is read from the video: it stays far above chance without the audio
    assert no_audio["colour"] >= report["chance"]["colour"] + 0.4, report["ablation"]


def test_the_spoken_word_is_read_from_the_transcript(report):
    """The corpus speaks a word (espeak-ng) and training feeds its timed transcript; held-out clips get theirs
    through the inference path. Without it the word falls to near chance (the audio tower hears no words)."""
    if not report["speech"]:
        reason = "espeak-ng is not installed (`make speech` installs it): the corpus has no speech"
        if os.environ.get("PEGASUS_REQUIRE_SPEECH"):
            pytest.fail(reason + ", but PEGASUS_REQUIRE_SPEECH is set (CI)")
        pytest.skip(reason)
    assert report["accuracy"]["word"] >= 0.9, report["accuracy"]
    no_transcript = report["ablation"]["no_transcript"]
    assert no_transcript["word"] <= report["chance"]["word"] + 0.2, report["ablation"]
    # the other attributes do not lean on the transcript
    assert no_transcript["colour"] >= report["chance"]["colour"] + 0.4, report["ablation"]


def test_no_motion_shows_the_middle_frame_where_position_does_not_tell_the_direction():
    # In the built-in clips a shape passes its path's midpoint exactly at the middle frame (test_synth checks
    # that this frame is the same for all four directions); the first frame would give the direction away.
    from flax import nnx

    from data_pipelines.decode.video import sample_frames
    from pegasus_jax import config as cfg
    from pegasus_jax.infer.video_input import SegmentEncoder
    from pegasus_jax.models.pegasus import Pegasus

    config = cfg.get("tiny")
    encoder = SegmentEncoder(Pegasus(config.model, rngs=nnx.Rngs(0)), config, still=True)
    shown = []
    encode = encoder._encode
    encoder._encode = lambda state, batch, pool: shown.append(batch["frames"][0, 0].copy()) or encode(state, batch, pool)
    clip = synth.make_clip(0, "heldout", 0, speech=False)
    encoder.encode_bytes(clip.video)
    frames = np.concatenate(shown)
    assert len(shown) == 2 and (frames == frames[0]).all()  # both segments, every frame: one still
    size = config.model.vision.image_size
    (middle, first), _ = sample_frames(clip.video, [clip.duration / 2, 0.0], size)
    assert (frames[0] == middle).all() and not (frames[0] == first).all()


def test_gist_and_chapters_parse_with_times_inside_the_clip(report):
    assert isinstance(report["gist"]["title"], str) and isinstance(report["gist"]["topics"], list)
    duration = 2 * synth.PART_SECONDS  # the chapters of a held-out two-part clip
    for chapter in report["chapters"]["chapters"]:
        assert 0 <= chapter["start_sec"] <= chapter["end_sec"] <= duration + 1e-6


def test_api_tasks_are_learned_on_held_out_clips(report):
    """configs/demo.py trains the tasks (mixture kind 'tasks'); decoded through the API's constrained decoding,
    the gist titles name the held-out clip's colour and shape, and two-part clips get two chapters and two
    highlights whose times are within one segment of the parts'."""
    tasks = report["tasks"]
    assert tasks["gist_clips"] == tasks["two_part_clips"] == 32 and tasks["tolerance_sec"] == 1.0
    assert tasks["chapters"] >= 0.8 and tasks["highlights"] >= 0.8, tasks
    # a title needs both colour and shape right (chance 1/16; untrained 6.2%), and shape is not yet at its
    # full-demo accuracy after 800 steps (the full demo: 93.8%)
    assert tasks["gist_title"] >= 0.4, tasks
    assert len(report["chapters"]["chapters"]) == 2 and report["chapters"]["id"].endswith("-2part")


def test_the_pytorch_export_gives_our_logits_and_caption_without_jax(report):
    exported = report["export"]
    assert exported["checked"], exported
    assert exported["loaded_as"] == "PegasusModel torch.float32"
    assert exported["max_abs_logit_diff"] <= 1e-3, exported
    assert exported["same_caption"] and exported["torch_caption"] == exported["caption"], exported
    assert os.path.exists(os.path.join(exported["llm"], "model.safetensors.index.json"))
