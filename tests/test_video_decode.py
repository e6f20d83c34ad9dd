"""PyAV decoding: the right frames at the right times, sparse seeking on long videos, audio, errors."""
import json

import numpy as np
import pytest

from data_pipelines.sources.encode import encode_clip
from data_pipelines.sources.long_video import frame_index, make_long_video
from data_pipelines.decode.video import (DecodeError, decode_audio, decode_frame_jpegs, encode_jpeg, probe, sample_frames,
                                  segment_plan)

FPS = 8
# 16 well-separated flat colours; frame i shows COLOURS[i].
COLOURS = np.array([[(i * 67) % 200 + 30, (i * 113) % 200 + 30, (i * 29) % 200 + 30] for i in range(16)], np.uint8)


@pytest.fixture(scope="module")
def flat_clip():
    frames = np.broadcast_to(COLOURS[:, None, None, :], (16, 48, 80, 3))  # non-square: exercises resize + crop
    t = np.arange(2 * 16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return encode_clip(frames, FPS, audio)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("long") / "ten_minutes.mp4")
    return make_long_video(10, size=64, fps=4, path=path)


def test_probe(flat_clip):
    info = probe(flat_clip)
    assert (info.width, info.height, info.fps, info.num_frames) == (80, 48, 8.0, 16)
    assert info.has_video and info.has_audio and info.duration == pytest.approx(2.0, abs=0.01)


def test_frames_match_encoded_colours_at_requested_times(flat_clip):
    wanted = [15, 3, 0, 7, 8, 12, 1]  # any order, including backwards jumps
    times = [i / FPS + 0.3 / FPS for i in wanted]  # inside each frame's display interval
    frames, decoded = sample_frames(flat_clip, times, 32)
    assert frames.shape == (7, 32, 32, 3) and frames.dtype == np.uint8
    means = frames.reshape(7, -1, 3).mean(axis=1)
    nearest = [int(np.argmin(np.abs(COLOURS.astype(float) - m).sum(axis=1))) for m in means]
    assert nearest == wanted
    assert np.abs(means - COLOURS[wanted]).max() < 4.0  # codec tolerance on flat colours
    assert 7 <= decoded <= 16 + 16  # one backward seek re-decodes at most one GOP (16 frames here)


def test_frame_boundaries_pick_the_covering_frame(flat_clip):
    frames, _ = sample_frames(flat_clip, [5 / FPS - 1e-3, 5 / FPS + 1e-3, 10.0], 16)
    means = frames.reshape(3, -1, 3).mean(axis=1)
    assert np.abs(means[0] - COLOURS[4]).max() < 4 and np.abs(means[1] - COLOURS[5]).max() < 4
    assert np.abs(means[2] - COLOURS[15]).max() < 4  # past the end: the last frame


def test_sparse_sampling_of_a_ten_minute_video(long_video):
    data = open(long_video["path"], "rb").read()
    assert long_video["frames"] == 2400
    plan = segment_plan(probe(data).duration, segment_seconds=8.0, frames_per_segment=8, max_segments=2)
    times = [t for seg in plan for t in seg.timestamps]
    assert len(times) == 16 and plan[-1].end == pytest.approx(600.0, abs=0.3)
    frames, decoded = sample_frames(data, times, 64)
    assert [frame_index(f) for f in frames] == [int(t * 4) for t in times]
    gop_frames = 8  # keyframe every 2 s at 4 fps
    assert decoded <= 16 * (gop_frames + 2), decoded
    assert decoded < 2400 / 20
    # dense sampling within one GOP continues decoding instead of seeking back each time
    dense = [300 + i * 0.25 for i in range(16)]
    frames, decoded = sample_frames(data, dense, 32)
    assert [frame_index(f) for f in frames] == [1200 + i for i in range(16)]
    assert decoded <= 16 + gop_frames + 2


def test_segment_plan_short_and_long():
    short = segment_plan(20.0, 8.0, 4, 4)
    assert [(s.start, s.end) for s in short] == [(0, 8), (8, 16), (16, 20)]
    assert short[0].timestamps == [1.0, 3.0, 5.0, 7.0] and short[2].timestamps == [16.5, 17.5, 18.5, 19.5]
    long = segment_plan(3600.0, 8.0, 2, 3)  # longer than 3 * 8 s: windows over the whole hour
    assert [(s.start, s.end) for s in long] == [(0, 1200), (1200, 2400), (2400, 3600)]
    assert long[1].timestamps == [1500.0, 2100.0]
    assert segment_plan(0.0, 8.0, 4, 4) == []


def test_audio_resampled_mono_16k(flat_clip):
    audio = decode_audio(flat_clip, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 32000) <= 1024  # AAC pads to whole 1024-sample frames
    spectrum = np.abs(np.fft.rfft(audio[:16000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2  # 1 Hz bins over one second
    window = decode_audio(flat_clip, 8000, start=0.5, end=1.5)
    assert len(window) == 8000
    assert np.abs(window).max() == pytest.approx(0.3, abs=0.03)


def test_no_audio_stream_gives_empty_array():
    silent = encode_clip(np.zeros((4, 32, 32, 3), np.uint8), FPS, None)
    assert probe(silent).has_audio is False
    assert decode_audio(silent).shape == (0,)


def test_decode_error_kinds(flat_clip, audio_only):
    cases = {
        "empty": (b"", {}),
        "truncated": (flat_clip[: len(flat_clip) // 2], {}),
        "undecodable": (np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(), {}),
        "no_video": (audio_only, {}),
        "too_large": (flat_clip, {"max_pixels": 80 * 48 - 1}),
    }
    for kind, (data, kwargs) in cases.items():
        with pytest.raises(DecodeError) as err:
            sample_frames(data, [0.5], 16, **kwargs)
        assert err.value.kind == kind, (kind, str(err.value))
    assert sample_frames(flat_clip, [0.5], 16, max_pixels=80 * 48)[0].shape == (1, 16, 16, 3)


def test_jpeg_frames_alternative():
    jpegs = [encode_jpeg(np.full((40, 60, 3), COLOURS[i], np.uint8)) for i in range(4)]
    frames = decode_frame_jpegs(jpegs, fps=2.0, timestamps=[1.6, 0.1, 0.9], size=24)
    means = frames.reshape(3, -1, 3).mean(axis=1)
    assert np.abs(means - COLOURS[[3, 0, 1]]).max() < 4


def test_inspect_counts_failures_by_kind(flat_clip, tmp_path, capsys):
    from data_pipelines.records.inspect import inspect
    from data_pipelines.records.format import VideoExample, serialize
    from data_pipelines.records.shards import write_records
    from pegasus_jax.cli.main import main

    good = VideoExample(id="good", video=flat_clip, fps=8, duration=2.0, captions=["colours"])
    write_records([serialize(good), serialize(good)[:30],
                   serialize(VideoExample(id="cut", video=flat_clip[:2000], duration=2.0)),
                   serialize(VideoExample(id="nil", video=b"")),
                   serialize(VideoExample(id="latin", video=flat_clip, duration=2.0, captions=[b"caf\xe9"]))],
                  str(tmp_path / "mixed-00000-of-00001.array_record"))
    report = inspect(str(tmp_path), show=5, check=0)
    assert report["records"] == 5 and report["total_duration_s"] == 6.0
    assert report["failures"] == {"record": 1, "truncated": 1, "empty": 1, "non_utf8_text": 1}
    assert [f.get("id") for f in report["failed"]] == [None, "cut", "nil", "latin"]
    assert [(e["id"], e["frames_decoded"]) for e in report["examples"]] == [("good", 4), ("latin", 4)]
    assert abs(report["examples"][0]["audio_seconds"] - 2.0) < 0.1
    assert main(["data", "inspect", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["failures"]["empty"] == 1
