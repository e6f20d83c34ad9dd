"""Multi-host evaluation, rehearsed with 2 JAX processes on CPU (gloo): `pegasus-jax eval --benchmark
caption` splits the videos over the processes, process 0 gathers the predictions in input order and
writes the report, and a video that fails is recorded in its row instead of stopping the run. The
report equals one process's, that one process running the model on an fsdp=2 mesh (--mesh).
And export on one host of a checkpoint whose arrays two processes saved."""
import json
import sys

import pytest

from conftest import cli, cpu_env
from data_pipelines.records import shards as records
from test_multihost import free_port, start

CLIPS = 5

pytestmark = pytest.mark.slow  # minutes of 2-process runs: conftest.py starts this file early


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


def test_export_of_a_checkpoint_saved_by_two_processes(corpus, tmp_path):
    """Two processes train one step with the parameters split between them (fsdp=2, one device each) and
    save; `export` on one host reads every tensor whole from their shards: the exported decoder equals
    the checkpoint's parameters as Orbax restores them."""
    import numpy as np
    from safetensors.numpy import load_file

    from pegasus_jax import config as cfg
    from pegasus_jax.interop.checkpoint_tensors import lazy_params
    from pegasus_jax.interop.hf_llama import llama_to_hf
    from test_export import read_state_on_host
    from test_multihost import flags

    workdir = tmp_path / "run"
    train = ["-m", "pegasus_jax.cli.main", "train", "--config", "configs/tiny.py", "--workdir", str(workdir),
             *flags(corpus, **{"train.steps": 1, "train.checkpoint_every": 1, "mesh.data": 1, "mesh.fsdp": 2})]
    procs = start(train, free_port(), devices=1)
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outs]
    run = cli("export", "--checkpoint", str(workdir), "--out", str(tmp_path / "export"), env=cpu_env())
    assert run.returncode == 0, run.stderr[-3000:]
    state = read_state_on_host(str(workdir), 1)
    decoder = {**state["params"], **(state.get("frozen") or {})}["decoder"]
    want = llama_to_hf(decoder, cfg.get("tiny").model.decoder)
    folder = tmp_path / "export" / "llm"
    got = {}
    for shard in sorted(folder.glob("*.safetensors")):
        got.update(load_file(str(shard)))
    assert sorted(got) == sorted(want)
    assert all(np.array_equal(got[k], want[k]) for k in want)
    # the stored arrays really are split: the fsdp-sharded embedding is stored as (at least) two chunks
    embed = lazy_params(str(workdir), 1)["decoder"]["embed_tokens"]
    assert np.prod(embed.chunk_layout.read_chunk.shape) <= np.prod(embed.shape) // 2, embed.chunk_layout
