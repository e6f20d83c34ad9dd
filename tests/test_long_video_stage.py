"""The long-video stage (configs/pegasus_7b_long.py): one hour of video at the stage's density fits its
decoder sequence, and inference plans, decodes and pools a video's segments exactly as training does."""
import numpy as np
import pytest

from data_pipelines.contract import zeros_batch
from data_pipelines.decode.media import MediaParams, decode_media
from data_pipelines.decode.video import segment_plan
from data_pipelines.records.format import VideoExample
from pegasus_jax import config as cfg
from pegasus_jax.infer.video_input import plan_segments, segment_batch
from pegasus_jax.models.alignment import pool_shape, tokens_per_segment
from pegasus_jax.scaling.flops import decoder_sequence_length


def test_one_hour_fits_the_long_stage_at_full_density():
    c = cfg.get("pegasus_7b_long")
    al = c.model.align
    hour = 3600.0
    plan, pool = plan_segments(c, hour)
    # Every 8 s of the hour is its own segment: consecutive, none stretched into a longer window.
    assert len(plan) == hour / al.segment_seconds == 450 and len(plan) <= c.data.max_segments
    assert all(s.end - s.start == al.segment_seconds and s.start == i * al.segment_seconds
               for i, s in enumerate(plan))
    per_segment = tokens_per_segment(pool, al.audio_tokens, c.model.transcript_tokens)
    assert len(plan) * per_segment <= al.visual_token_budget
    sequence = decoder_sequence_length(c)
    assert sequence >= 32768 and len(plan) * per_segment + c.data.max_text_len <= sequence
    assert c.data.max_text_len >= 2048  # text of a few thousand tokens
    # Training's side of the same hour: the pipeline's plan for this config, and the pooling the model
    # applies to a training batch (always data.max_segments segments, padding masked).
    training_plan = segment_plan(hour, al.segment_seconds, al.frames_per_segment,
                                 MediaParams.from_config(c).max_segments)
    assert plan == training_plan
    padded_segments = zeros_batch(c, 1, text_len=1)["segment_mask"].shape[1]
    assert pool == pool_shape(c.model, padded_segments) == (al.pool_t, al.pool_h, al.pool_w)


@pytest.fixture(scope="module")
def six_second_video(tmp_path_factory):
    from data_pipelines.sources.long_video import make_long_video

    video = make_long_video(0.1, size=32, fps=4, path=str(tmp_path_factory.mktemp("long") / "six.mp4"))
    with open(video["path"], "rb") as f:
        return f.read()


@pytest.mark.parametrize("max_segments", [2, 6])  # 6 s in 2 segments: two 3 s windows; in 6: six of 1 s
def test_inference_segments_are_the_ones_training_decodes(six_second_video, max_segments):
    """The tiny config (1 s segments, 4 frames each): the arrays inference encodes segment by segment equal
    the rows of the training pipeline's decoded example, frames, start times and audio alike."""
    c = cfg.get("tiny", data__max_segments=max_segments)
    trained, _ = decode_media(VideoExample(id="six", video=six_second_video), MediaParams.from_config(c))
    plan, pool = plan_segments(c, 6.0)
    assert len(plan) == int(trained["segment_mask"].sum()) == min(max_segments, 6)
    assert pool == pool_shape(c.model, max_segments)
    for i, segment in enumerate(plan):
        row = segment_batch(c, six_second_video, segment, has_audio=True)
        np.testing.assert_array_equal(row["frames"][0, 0], trained["frames"][i])
        assert row["segment_start"][0, 0] == trained["segment_start"][i]
        np.testing.assert_array_equal(row["audio"][0, 0], trained["audio"][i])
        assert row["audio_mask"][0, 0] == trained["audio_mask"][i]
