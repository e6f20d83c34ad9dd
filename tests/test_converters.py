"""Each converter on a small fixture in its real format: ids, texts, turns, segments, bytes, skips."""
import csv
import json
import os

import numpy as np
import pytest

from data_pipelines.sources.convert import convert, summary_line
from data_pipelines.sources.encode import encode_clip
from data_pipelines.records.format import invalid_text_fields
from data_pipelines.records.shards import read_all
from pegasus_jax.cli.main import main
from pegasus_jax.errors import UserError


def clip(seconds_frames: int = 4, shade: int = 0) -> bytes:
    return encode_clip(np.full((seconds_frames, 32, 32, 3), 40 + shade, np.uint8), 4, None)


def put(path, data: bytes) -> bytes:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return data


def by_id(out) -> dict:
    return {ex.id: ex for ex in read_all(str(out))}


def test_folder_jsonl(tmp_path):
    src = tmp_path / "src"
    a = put(str(src / "a.mp4"), clip(8, 1))
    b = put(str(src / "sub" / "b.mp4"), clip(4, 2))
    lines = [
        json.dumps({"video": "a.mp4", "caption": "a grey square",
                    "conversations": [{"from": "human", "value": "<video>\nWhat is shown?"}, {"from": "gpt", "value": "grey"}],
                    "transcript": [{"start": 0.0, "end": 0.5, "text": "hi"}], "license": "cc-by"}).encode(),
        b'{"video": "sub/b.mp4", "caption": "caf\xe9 latin-1"}',  # not UTF-8
        json.dumps({"video": "gone.mp4", "caption": "missing file"}).encode(),
        b"{not json",
        json.dumps({"video": "a.mp4"}).encode(),  # no caption, no conversations
    ]
    (src / "captions.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = convert("folder", str(src), str(tmp_path / "out"))
    assert result["written"] == 2
    assert result["skipped"]["counts"] == {"missing_video": 1, "bad_row": 1, "no_text": 1}
    assert "converted 2 of 5 rows" in summary_line(result) and "missing_video=1" in summary_line(result)
    got = by_id(tmp_path / "out")
    assert set(got) == {"a", "sub/b"}
    ea, eb = got["a"], got["sub/b"]
    assert ea.video == a and eb.video == b  # original bytes, not re-encoded
    assert ea.fps == 4.0 and ea.duration == pytest.approx(2.0) and eb.duration == pytest.approx(1.0)
    assert ea.captions == ["a grey square"]
    assert ea.turns == [{"role": "user", "text": "What is shown?"}, {"role": "assistant", "text": "grey"}]
    assert ea.transcript == [{"start": 0.0, "end": 0.5, "text": "hi"}]
    assert ea.metadata == {"source": "folder", "path": "a.mp4", "fields": {"license": "cc-by"}}
    assert eb.captions == [b"caf\xe9 latin-1"] and invalid_text_fields(eb) == ["captions[0]"]


def test_folder_csv_and_parallel_shards(tmp_path):
    src = tmp_path / "src"
    data = {f"v{i}.mp4": put(str(src / f"v{i}.mp4"), clip(4, i)) for i in range(5)}
    with open(src / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "caption"])
        w.writerows([[name, f"clip number {name[1]}, with a comma"] for name in data] + [["v9.mp4", "missing"]])
    result = convert("folder_csv", str(src), str(tmp_path / "out"), num_shards=2, workers=2)
    assert [os.path.basename(p) for p in result["shards"]] == ["data-00000-of-00002.array_record",
                                                                "data-00001-of-00002.array_record"]
    assert result["written"] == 5 and result["skipped"]["counts"] == {"missing_video": 1}
    got = by_id(tmp_path / "out")
    assert {k: v.video for k, v in got.items()} == {name[:-4]: d for name, d in data.items()}
    assert got["v3"].captions == ["clip number 3, with a comma"]


def test_webvid(tmp_path):
    videos = tmp_path / "videos"
    nested = put(str(videos / "000001_000050" / "1001.mp4"), clip(4, 1))
    flat = put(str(videos / "1002.mp4"), clip(4, 2))
    with open(tmp_path / "results_2M_val.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        w.writerow(["1001", "https://x/1001.mp4", "PT00H00M01S", "000001_000050", "Aerial shot of a beach"])
        w.writerow(["1002", "https://x/1002.mp4", "PT00H00M01S", "000001_000050", "A cat sleeping"])
        w.writerow(["1003", "https://x/1003.mp4", "PT00H00M01S", "000001_000050", "Not downloaded"])
    result = convert("webvid", str(tmp_path / "results_2M_val.csv"), str(tmp_path / "out"), videos_dir=str(videos))
    assert result["written"] == 2 and result["skipped"]["counts"] == {"missing_video": 1}
    got = by_id(tmp_path / "out")
    assert got["webvid-1001"].video == nested and got["webvid-1002"].video == flat
    assert got["webvid-1001"].captions == ["Aerial shot of a beach"]
    assert got["webvid-1001"].metadata["page_dir"] == "000001_000050"


def test_msrvtt_keeps_every_caption(tmp_path):
    v0 = put(str(tmp_path / "video0.mp4"), clip(4, 1))
    v1 = put(str(tmp_path / "video1.mp4"), clip(4, 2))
    annotations = {
        "info": {}, "videos": [{"video_id": "video0", "split": "train", "category": 9},
                               {"video_id": "video1", "split": "test", "category": 3},
                               {"video_id": "video2", "split": "test", "category": 3}],
        "sentences": [{"video_id": "video0", "caption": "a man talks", "sen_id": 1},
                      {"video_id": "video0", "caption": "someone speaks", "sen_id": 0},
                      {"video_id": "video1", "caption": "a car drives", "sen_id": 2},
                      {"video_id": "video2", "caption": "no file", "sen_id": 3}],
    }
    (tmp_path / "train_val_videodatainfo.json").write_text(json.dumps(annotations))
    result = convert("msrvtt", str(tmp_path / "train_val_videodatainfo.json"), str(tmp_path / "out"))
    assert result["written"] == 2 and result["skipped"]["counts"] == {"missing_video": 1}
    got = by_id(tmp_path / "out")
    assert got["msrvtt-video0"].captions == ["someone speaks", "a man talks"] and got["msrvtt-video0"].video == v0
    assert got["msrvtt-video1"].video == v1 and got["msrvtt-video1"].metadata["split"] == "test"


def test_videochatgpt_shapes(tmp_path):
    put(str(tmp_path / "v_abc.mp4"), clip(4, 1))
    put(str(tmp_path / "v_def.mkv"), clip(4, 2))
    entries = [
        {"video": "v_abc.mp4", "conversations": [{"from": "human", "value": "<video>\nDescribe it."},
                                                 {"from": "gpt", "value": "A dark clip."},
                                                 {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "grey"}]},
        {"video": "v_def", "QA": [{"i": "Answer briefly.", "q": "What?", "a": "Nothing."}]},
        {"video_name": "v_abc", "Q": "Is it dark?", "A": "Yes."},
        {"video": "v_missing", "QA": [{"q": "?", "a": "!"}]},
        {"conversations": []},
    ]
    (tmp_path / "instruct.json").write_text(json.dumps(entries))
    result = convert("videochatgpt", str(tmp_path / "instruct.json"), str(tmp_path / "out"))
    assert result["written"] == 3 and result["skipped"]["counts"] == {"missing_video": 1, "bad_row": 1}
    got = by_id(tmp_path / "out")
    assert got["vcg-000000-v_abc"].turns == [
        {"role": "user", "text": "Describe it."}, {"role": "assistant", "text": "A dark clip."},
        {"role": "user", "text": "Colour?"}, {"role": "assistant", "text": "grey"}]
    assert got["vcg-000001-v_def"].turns == [{"role": "user", "text": "Answer briefly.\nWhat?"},
                                             {"role": "assistant", "text": "Nothing."}]
    assert got["vcg-000002-v_abc"].turns[1] == {"role": "assistant", "text": "Yes."}
    assert got["vcg-000001-v_def"].video == (tmp_path / "v_def.mkv").read_bytes()


def test_activitynet_segments(tmp_path):
    put(str(tmp_path / "v_QOlSCBRmfWY.mp4"), clip(4, 1))
    put(str(tmp_path / "ehGHCYKzyZ8.mp4"), clip(4, 2))  # stored without the v_ prefix
    data = {
        "v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[17.5, 60.1], [0.83, 19.86]],
                          "sentences": [" Then she dances.", "A woman stands in a room."]},
        "v_ehGHCYKzyZ8": {"duration": 61.7, "timestamps": [[0, 61.7]], "sentences": ["A man plays."]},
        "v_gone": {"duration": 10.0, "timestamps": [[0, 1]], "sentences": ["x"]},
        "v_bad": {"duration": 10.0, "timestamps": [[0, 1], [1, 2]], "sentences": ["only one"]},
    }
    (tmp_path / "val_1.json").write_text(json.dumps(data))
    result = convert("activitynet", str(tmp_path / "val_1.json"), str(tmp_path / "out"))
    assert result["written"] == 2 and result["skipped"]["counts"] == {"missing_video": 1, "bad_row": 1}
    ex = by_id(tmp_path / "out")["anet-v_QOlSCBRmfWY"]
    assert ex.segments == [{"start": 0.83, "end": 19.86, "text": "A woman stands in a room."},
                           {"start": 17.5, "end": 60.1, "text": "Then she dances."}]
    assert ex.captions == ["A woman stands in a room. Then she dances."]
    assert ex.metadata["declared_duration"] == 82.73


def test_user_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="--input"):
        convert("folder", str(tmp_path / "nope"), str(tmp_path / "out"))
    with pytest.raises(UserError, match="--format"):
        convert("youtube", str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(UserError, match="captions.jsonl"):
        convert("folder", str(tmp_path), str(tmp_path / "out"))
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="missing CSV column"):
        convert("webvid", str(tmp_path / "x.csv"), str(tmp_path / "out"))
    code = main(["data", "convert", "--format", "folder", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--input" in err
