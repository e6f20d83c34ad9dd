"""Multi-host evaluation, rehearsed with 2 JAX processes on CPU (gloo): `pegasus-jax eval --benchmark
caption` splits the videos over the processes, process 0 gathers the predictions in input order and
writes the report, and a video that fails is recorded in its row instead of stopping the run. The
report equals one process's, that one process running the model on an fsdp=2 mesh (--mesh)."""
import json
import sys

from conftest import cli, cpu_env
from data_pipelines.records import shards as records
from test_multihost import free_port, start

CLIPS = 5


def test_two_process_caption_eval_equals_one_process(corpus, reference, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for i, ex in zip(range(CLIPS), records.read_all(corpus["heldout"])):
        (data / f"{ex.id}.mp4").write_bytes(ex.video)
        rows.append({"video": f"{ex.id}.mp4", "captions": [str(c) for c in ex.captions]})
    (data / "broken.mp4").write_bytes(b"not a video\n" * 10)
    rows.insert(2, {"video": "broken.mp4", "captions": ["a red circle moves left"]})
    (data / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # batch size 1: each video is decoded alone in both runs, so the greedy tokens cannot depend on batch padding
    args = ["eval", "--checkpoint", str(reference), "--benchmark", "caption", "--data", str(data), "--batch-size", "1"]

    one = cli(*args, "--out", str(tmp_path / "one"), "--mesh", "fsdp=2", env=cpu_env(2))
    assert one.returncode == 0, one.stderr[-3000:]
    procs = start(["-m", "pegasus_jax.cli.main", *args, "--out", str(tmp_path / "two")], free_port(), devices=1)
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outs]
    assert "report:" in outs[0][0] and "report:" not in outs[1][0]  # process 0 alone reports

    want = json.load(open(tmp_path / "one" / "caption.json"))
    got = json.load(open(tmp_path / "two" / "caption.json"))
    assert got["aggregate"] == want["aggregate"] and got["items"] == want["items"]
    assert [r["id"] for r in got["items"]] == [r["video"] for r in rows]  # input order
    broken = got["items"][2]
    assert broken["prediction"] == "" and "broken.mp4" in broken["error"], broken
    assert all("error" not in r and r["prediction"] for i, r in enumerate(got["items"]) if i != 2)
    assert got["meta"]["failed_inputs"] == 1 and got["aggregate"]["items"] == CLIPS + 1
    print(f"{CLIPS + 1} videos over 2 processes; CIDEr {got['aggregate']['cider']:.4f}", file=sys.stderr)
