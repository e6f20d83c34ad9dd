"""TFDS builders (tiny manual dirs) read back through Grain, and `data convert --runner beam`."""
import importlib.util
import json
import os

import numpy as np
import pytest

from data_pipelines.sources.encode import encode_clip
from data_pipelines.records.format import deserialize
from data_pipelines.records.shards import read_all


def clip(shade: int) -> bytes:
    return encode_clip(np.full((4, 32, 32, 3), 40 + shade, np.uint8), 4, None)


def _require(module: str):
    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed (optional extra); install pegasus-jax[{'beam' if module == 'apache_beam' else 'tfds'}]"
        print(f"SKIP: {reason}")
        pytest.skip(reason)


def _grain_records(paths: list[str]) -> list:
    import grain.python as grain

    source = grain.ArrayRecordDataSource(paths)
    return [deserialize(source[i]) for i in range(len(source))]


def test_tfds_msrvtt_builder_reads_back_through_grain(tmp_path):
    _require("tensorflow_datasets")
    from data_pipelines.sources.tfds_build import build

    manual = tmp_path / "manual"
    (manual / "TrainValVideo").mkdir(parents=True)
    videos = {f"video{i}": clip(i) for i in range(3)}
    for vid, data in videos.items():
        (manual / "TrainValVideo" / f"{vid}.mp4").write_bytes(data)
    (manual / "train_val_videodatainfo.json").write_text(json.dumps({
        "videos": [{"video_id": "video0", "split": "train"}, {"video_id": "video1", "split": "train"},
                   {"video_id": "video2", "split": "validate"}, {"video_id": "video3", "split": "train"}],
        "sentences": [{"video_id": f"video{i}", "caption": f"caption {i} {j}", "sen_id": 2 * i + j}
                      for i in range(4) for j in range(2)],
    }))
    paths = build("msrvtt", str(manual), str(tmp_path / "tfds"))
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["pegasus_msrvtt-train.array_record-00000-of-00001",
                     "pegasus_msrvtt-validate.array_record-00000-of-00001"], names
    examples = {ex.id: ex for ex in _grain_records(paths)}
    assert set(examples) == {"msrvtt-video0", "msrvtt-video1", "msrvtt-video2"}  # video3 has no file
    for i in range(3):
        ex = examples[f"msrvtt-video{i}"]
        assert ex.video == videos[f"video{i}"] and ex.captions == [f"caption {i} 0", f"caption {i} 1"]
        assert ex.duration == pytest.approx(1.0)
    assert {ex.id for ex in read_all(str(tmp_path / "tfds" / "pegasus_msrvtt" / "1.0.0"))} == set(examples)


def test_tfds_vcg_descriptions_builder(tmp_path):
    _require("tensorflow_datasets")
    from data_pipelines.sources.tfds_build import build

    manual = tmp_path / "manual"
    (manual / "Test_Videos").mkdir(parents=True)
    (manual / "Test_Videos" / "v_a1.mp4").write_bytes(clip(1))
    (manual / "generic_qa.json").write_text(json.dumps([
        {"video_name": "v_a1", "Q": "Describe the video.", "A": "A grey screen stays still."},
        {"video_name": "v_missing", "Q": "Describe the video.", "A": "Unseen."},
    ]))
    paths = build("vcg_descriptions", str(manual), str(tmp_path / "tfds"))
    [ex] = _grain_records(paths)
    assert ex.id == "vcg-000000-v_a1" and ex.captions == ["A grey screen stays still."]
    assert ex.turns[0] == {"role": "user", "text": "Describe the video."}
    assert ex.metadata["source"] == "vcg_descriptions"


def test_beam_runner_matches_local(tmp_path):
    _require("apache_beam")
    from data_pipelines.sources.convert import convert

    src = tmp_path / "src"
    src.mkdir()
    lines = []
    for i in range(5):
        (src / f"c{i}.mp4").write_bytes(clip(i))
        lines.append(json.dumps({"video": f"c{i}.mp4", "caption": f"clip {i}"}))
    lines.append(json.dumps({"video": "gone.mp4", "caption": "missing"}))
    (src / "captions.jsonl").write_text("\n".join(lines))
    beam = convert("folder", str(src), str(tmp_path / "beam"), num_shards=3, runner="beam")
    local = convert("folder", str(src), str(tmp_path / "local"), num_shards=3)
    assert beam["written"] == local["written"] == 5
    assert beam["skipped"]["counts"] == local["skipped"]["counts"] == {"missing_video": 1}
    assert [os.path.basename(p) for p in beam["shards"]] == [os.path.basename(p) for p in local["shards"]]
    for b, l in zip(beam["shards"], local["shards"]):
        assert open(b, "rb").read() == open(l, "rb").read()
