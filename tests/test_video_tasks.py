"""The video tasks and caption evaluation through the CLI, on conftest's trained tiny checkpoint:
every bad input is one `error:` line with exit code 2; a batch records its failing videos and goes
on; chapters of a multi-segment video are valid, ordered and inside the video; and the trained model
captions the held-out split better than the untrained one."""
import io
import json

import av
import jsonschema
import numpy as np
import pytest

from conftest import cli, cpu_env
from data_pipelines.records import shards as records


def _one_frame_ts() -> bytes:
    """An MPEG-TS holding a single MPEG-2 frame: a video stream with zero duration."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        for packet in stream.encode(frame) + stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def media(tmp_path_factory, corpus, audio_only):
    """Good clips from the corpus (a 2 s held-out clip; a 4 s two-part training clip) and bad files."""
    root = tmp_path_factory.mktemp("media")
    heldout = next(records.read_all(corpus["heldout"]))
    two_part = next(ex for ex in records.read_all(corpus["train"]) if len(ex.segments) == 2)
    files = {"good": heldout.video, "two_part": two_part.video, "text": b"not a video at all\n" * 20,
             "audio_only": audio_only, "zero_duration": _one_frame_ts()}
    for name, data in files.items():
        (root / f"{name}.mp4").write_bytes(data)
    (root / "empty_run" / "checkpoints").mkdir(parents=True)  # a workdir killed before its first save
    (root / "plain").mkdir()
    return root


BAD = {  # case -> (video file, checkpoint ("" = the trained one), the message's telling part)
    "missing video": ("nope.mp4", "", "no such file"),
    "not a video": ("text.mp4", "", "is not a readable video (undecodable)"),
    "no video stream": ("audio_only.mp4", "", "has no video stream"),
    "zero duration": ("zero_duration.mp4", "", "has zero duration"),
    "workdir without a checkpoint": ("good.mp4", "empty_run", "holds no complete checkpoint"),
    "folder without a model": ("good.mp4", "plain", "neither a training workdir nor a checkpoint step folder"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_error(case, media, reference):
    video, checkpoint, message = BAD[case]
    run = cli("gist", "--checkpoint", str(media / checkpoint) if checkpoint else str(reference),
              "--video", str(media / video), env=cpu_env())
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and run.stderr.startswith("error: ")
    assert message in run.stderr and "Traceback" not in run.stderr and run.stdout == ""


def test_batch_records_failing_videos_and_goes_on(media, reference, tmp_path):
    listing = tmp_path / "videos.jsonl"
    names = ["good", "text", "missing", "audio_only", "two_part"]
    listing.write_text("".join(json.dumps({"video": str(media / f"{n}.mp4")}) + "\n" for n in names))
    run = cli("gist", "--checkpoint", str(reference), "--video", str(listing), "--max-tokens", "24",
              "--temperature", "0", env=cpu_env())
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["id"] for line in lines] == names
    assert ["error" in line for line in lines] == [False, True, True, True, False]
    assert "no such file" in lines[2]["error"] and "no video stream" in lines[3]["error"]
    assert all({"title", "topics", "hashtags"} <= set(line) for line in (lines[0], lines[4]))

    folder = cli("gist", "--checkpoint", str(reference), "--video", str(media), "--max-tokens", "24",
                 "--temperature", "0", env=cpu_env())
    assert folder.returncode == 0, folder.stderr[-3000:]
    ids = {json.loads(line)["id"]: json.loads(line) for line in folder.stdout.splitlines()}
    assert sorted(ids) == sorted(["good", "two_part", "text", "audio_only", "zero_duration"])
    assert {i for i, line in ids.items() if "error" in line} == {"text", "audio_only", "zero_duration"}


def test_trained_chapters_of_a_multi_segment_video(media, reference):
    """A 4 s two-part clip (4 one-second segments): chapters parse, are ordered and lie inside it."""
    from pegasus_jax.infer import schemas

    run = cli("summarize", "--type", "chapter", "--checkpoint", str(reference), "--video",
              str(media / "two_part.mp4"), "--temperature", "0", env=cpu_env())
    assert run.returncode == 0, run.stderr[-3000:]
    chapters = json.loads(run.stdout)["chapters"]
    jsonschema.validate(chapters, schemas.chapters(4.0))
    assert len(chapters) >= 1 and [c["chapter_number"] for c in chapters] == list(range(len(chapters)))
    assert all(0 <= c["start_sec"] <= c["end_sec"] <= 4.0 for c in chapters)
    assert [c["start_sec"] for c in chapters] == sorted(c["start_sec"] for c in chapters)


def test_caption_eval_trained_beats_untrained(corpus, reference, tmp_path):
    """`eval --benchmark caption` on the held-out split: the trained checkpoint against the same
    config freshly initialised, scored by the same runner."""
    from flax import nnx

    from pegasus_jax.evaluate.runner import run_benchmark
    from pegasus_jax.infer.api import Pegasus as PegasusAPI
    from pegasus_jax.infer.checkpoint_loader import load
    from pegasus_jax.models.pegasus import Pegasus

    data = tmp_path / "heldout"
    data.mkdir()
    with open(data / "captions.jsonl", "w") as f:
        for ex in records.read_all(corpus["heldout"]):
            (data / f"{ex.id}.mp4").write_bytes(ex.video)
            f.write(json.dumps({"video": f"{ex.id}.mp4", "captions": [str(c) for c in ex.captions]}) + "\n")
    run = cli("eval", "--checkpoint", str(reference), "--benchmark", "caption", "--data", str(data),
              "--out", str(tmp_path / "trained"), env=cpu_env())
    assert run.returncode == 0, run.stderr[-3000:]
    trained = json.load(open(tmp_path / "trained" / "caption.json"))["aggregate"]

    _, config, tokenizer, _ = load(str(reference))
    untrained_model = PegasusAPI(Pegasus(config.model, rngs=nnx.Rngs(0)), config, tokenizer)
    untrained = run_benchmark("caption", str(data), str(tmp_path / "untrained"), model=untrained_model)
    assert trained["items"] == untrained["items"] == 16
    assert trained["cider"] > untrained["cider"] + 0.15, (trained, untrained)
    assert trained["rouge_l"] > untrained["rouge_l"] + 0.15, (trained, untrained)
