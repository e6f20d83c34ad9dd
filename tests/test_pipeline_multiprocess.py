"""Two real JAX processes (jax.distributed on CPU, gloo): each reads a disjoint half of every epoch,
together all records exactly once; per-process Orbax save/restore of the iterator is exact; local
batches assemble into one global batch.

Run by pytest; the same file is each process's program (`python this_file.py PROCESS_ID ...`).
"""
import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM = 24


def worker(process_id: int, port: int, train: str, tok_path: str, workdir: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    import numpy as np
    import orbax.checkpoint as ocp

    from data_pipelines.batch import iterators as pipeline
    from data_pipelines.text.tokenizer import load_tokenizer
    from pegasus_jax import config as cfg
    from pegasus_jax import sharding
    from pegasus_jax.train.batch_layout import BatchLayout

    c = cfg.get("tiny", data__path=train, data__isolate_decode=False, train__batch_size=8, data__packing=False)
    tok = load_tokenizer(tok_path)
    mesh = sharding.make_mesh(c.mesh)  # data=-1: one data-parallel group per process
    layout = BatchLayout.create(mesh, c.mesh.axis_rules, c.train.batch_size)
    slot = layout.read_slot

    def take(it, n):
        out = []
        for _ in range(n):
            out.append((next(it), list(it.last_ids)))
        return out

    epoch = take(pipeline.make_train_iterator(c, tok, slot), NUM // 8)
    it = pipeline.make_train_iterator(c, tok, slot)
    take(it, 1)
    with ocp.CheckpointManager(os.path.join(workdir, "ckpt")) as mngr:
        mngr.save(1, args=ocp.args.Composite(data=pipeline.checkpoint_args_save(it)))
        mngr.wait_until_finished()
    reference = take(it, 3)
    fresh = pipeline.make_train_iterator(c, tok, slot)
    with ocp.CheckpointManager(os.path.join(workdir, "ckpt")) as mngr:
        mngr.restore(1, args=ocp.args.Composite(data=pipeline.checkpoint_args_restore(fresh)))
    resumed = take(fresh, 3)
    same = all(a[1] == b[1] and all(np.array_equal(a[0][k], b[0][k]) for k in a[0]) for a, b in zip(reference, resumed))
    global_batch = layout.to_global(epoch[0][0])
    result = {"epoch_ids": [i for _, ids in epoch for i in ids], "local_batch": epoch[0][0]["tokens"].shape[0], "slot": [slot.index, slot.count],
              "global_batch": global_batch["frames"].shape[0], "resume_exact": bool(same),
              "resumed_ids": [ids for _, ids in resumed],
              "state_files": sorted(os.listdir(os.path.join(workdir, "ckpt", "1", "data")))}
    with open(os.path.join(workdir, f"result_{process_id}.json"), "w") as f:
        json.dump(result, f)
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from data_pipelines.sources import synth
    from data_pipelines.records.tokenizer_corpus import train_tokenizer_for_config

    root = tmp_path_factory.mktemp("mp")
    synth.generate_corpus(str(root), num=NUM, heldout=0, seed=2, size=32, workers=1)
    train = str(root / "train" / "*.array_record")
    return {"train": train, "tok": train_tokenizer_for_config(train, 512, str(root / "tok.model"))}


def test_two_processes_split_each_epoch_and_resume(corpus, tmp_path):
    from data_pipelines.records.shards import read_all

    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
               PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), str(i), str(port), corpus["train"],
                               corpus["tok"], str(tmp_path)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    results = [json.load(open(tmp_path / f"result_{i}.json")) for i in range(2)]
    ids = results[0]["epoch_ids"] + results[1]["epoch_ids"]
    assert len(ids) == NUM and sorted(ids) == sorted(ex.id for ex in read_all(corpus["train"]))
    assert not set(results[0]["epoch_ids"]) & set(results[1]["epoch_ids"])
    for r in results:
        assert r["resume_exact"] and r["local_batch"] == 4 and r["global_batch"] == 8
        assert [f for f in r["state_files"] if f.endswith(".json")] == ["process_0-of-2.json", "process_1-of-2.json"]
    assert [r["slot"] for r in results] == [[0, 2], [1, 2]]
    assert results[0]["resumed_ids"] != results[1]["resumed_ids"]


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
