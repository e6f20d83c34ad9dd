"""The demo, reduced to CI size: it must learn from the video and the audio, and the ablations must show it.

Same code path as `make demo` (pegasus_jax/demo.py): corpus generation, training, captioning held-out
attribute combinations, the no-audio ablation, gist and chapters, the JSON report. Fewer clips and
steps than the full demo, so only the attributes it learns within this budget are asserted.
"""
import json
import os

import numpy as np
import pytest

from data_pipelines import synth

pytestmark = pytest.mark.slow

REDUCED = {
    "data.synth_clips": "600",
    "train.steps": "320",
    "train.max_seconds": "300",
    "train.checkpoint_every": "320",
    "train.eval_every": "0",
    "demo.eval_clips": "48",
    # The full demo's 3x video-encoder rate needs its 1800 steps: at 320 it left colour without the audio at
    # 48% (asserted below: >= 55%) and shape at 44%; one rate for the whole model, as here, gives 71% and 52%.
    "train.lr_mults": "()",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from pegasus_jax.demo import run_demo

    workdir = str(tmp_path_factory.mktemp("demo"))
    run_demo(workdir, overrides=REDUCED)
    with open(os.path.join(workdir, "demo_report.json")) as f:
        return json.load(f)


def test_report_has_the_fixed_fields(report):
    assert set(report["accuracy"]) == set(report["chance"]) == {"colour", "shape", "direction", "pitch"}
    assert report["chance"]["pitch"] == pytest.approx(1 / len(synth.ATTRIBUTES["pitch"]))
    assert set(report["ablation"]) == {"no_audio", "no_motion", "no_temporal"}
    assert all(set(a) == set(report["accuracy"]) for a in report["ablation"].values())
    assert report["seconds"] > 0 and report["heldout_clips"] == 48
    assert report["loss"]["last"] < report["loss"]["first"] / 4


def test_colour_shape_and_pitch_are_learned_on_unseen_combinations(report):
    acc, chance = report["accuracy"], report["chance"]
    assert acc["colour"] >= chance["colour"] + 0.4, acc
    assert acc["pitch"] >= chance["pitch"] + 0.4, acc
    # Shape is half learned at this budget (52%; 46-65% in eight variants of batch, steps, pooling and
    # tower depth; chance 25%); guessing reaches 20 of 48 clips (41.7%) less than once in 100 tries.
    assert acc["shape"] >= 20 / 48, acc


def test_removing_the_audio_drops_pitch_to_near_chance(report):
    pitch = report["ablation"]["no_audio"]["pitch"]
    assert pitch <= report["chance"]["pitch"] + 0.2, report["ablation"]
    assert report["accuracy"]["pitch"] - pitch >= 0.3
    # colour is read from the video: it stays far above chance without the audio
    assert report["ablation"]["no_audio"]["colour"] >= report["chance"]["colour"] + 0.3


def test_no_motion_shows_the_middle_frame_where_position_does_not_tell_the_direction():
    # The shape travels from 25% to 75% of the frame: in the first frame its position alone gives the
    # direction away, in the middle frame it sits mid-path whichever way it moves.
    from flax import nnx

    from pegasus_jax import config as cfg
    from pegasus_jax.infer.video_input import SegmentEncoder
    from pegasus_jax.models.pegasus import Pegasus

    config = cfg.get("tiny")
    encoder = SegmentEncoder(Pegasus(config, rngs=nnx.Rngs(0)), still=True)
    shown = []
    encode = encoder._encode
    encoder._encode = lambda state, batch, pool: shown.append(batch["frames"][0, 0].copy()) or encode(state, batch, pool)
    clip = next(c for c in (synth.make_clip(0, "heldout", i, speech=False) for i in range(40))
                if c.metadata["attributes"]["direction"] == "right" and c.metadata["attributes"]["colour"] == "red")
    encoder.encode_bytes(clip.video)
    frames = np.concatenate(shown)
    assert len(shown) == 2 and (frames == frames[0]).all()  # both segments, every frame: one still
    red = (frames[0, ..., 0].astype(int) > 150) & (frames[0, ..., 1] < 100)
    centre_x = np.nonzero(red)[1].mean() / red.shape[1]
    assert abs(centre_x - 0.5) < 0.06, centre_x  # mid-path (the first frame has it at ~0.28)


def test_gist_and_chapters_parse_with_times_inside_the_clip(report):
    assert isinstance(report["gist"]["title"], str) and isinstance(report["gist"]["topics"], list)
    duration = synth.PART_SECONDS  # held-out clips are single-part
    for chapter in report["chapters"]["chapters"]:
        assert 0 <= chapter["start_sec"] <= chapter["end_sec"] <= duration + 1e-6


def test_the_pytorch_export_gives_our_logits_and_caption_without_jax(report):
    exported = report["export"]
    assert exported["checked"], exported
    assert exported["loaded_as"] == "PegasusModel torch.float32"
    assert exported["max_abs_logit_diff"] <= 1e-3, exported
    assert exported["same_caption"] and exported["torch_caption"] == exported["caption"], exported
    assert os.path.exists(os.path.join(exported["llm"], "model.safetensors.index.json"))
