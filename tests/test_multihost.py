"""Pod-correct multi-host training, rehearsed with real JAX processes on CPU (gloo collectives).

- The rows of the global batch each process reads are the rows its devices address, on the
  compile-only devices of a v5p-256 (32 hosts) for the 80B and 7B layouts.
- Two processes whose model axes span both of them (tensor=2 over 1 device each; fsdp=2 x tensor=2
  over 2 devices each with the tensor pairs crossing the processes) train with per-step losses equal
  to one process on one device fed the same global batches.
- SIGTERM to one of two processes, then max_seconds on one process's clock only: both processes save
  the same step and exit 0 each time, and the resumed run's losses equal an uninterrupted run's.

This file is also the program of the forced-device-order processes: `python test_multihost.py
WORKDIR [--config.a.b=value ...]` with PEGASUS_COORDINATOR / PEGASUS_NUM_PROCESSES / PEGASUS_PROCESS_ID.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import PEAK, ROOT, cli, cpu_env, losses, overrides

STEPS, BATCH = 8, 4


def flags(corpus, **extra):
    return overrides(corpus, **{"train.steps": STEPS, "train.batch_size": BATCH, "train.checkpoint_every": 100,
                                "train.warmup_steps": 2, "train.peak_flops": PEAK, "data.length_buckets": "(48,)",
                                **extra})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, port, devices, extra_env=()):
    """Both processes of a 2-process job, each with `devices` CPU devices; argv per rank or shared."""
    procs = []
    for rank in range(2):
        env = dict(cpu_env(devices), PEGASUS_COORDINATOR=f"127.0.0.1:{port}", PEGASUS_NUM_PROCESSES="2",
                   PEGASUS_PROCESS_ID=str(rank), PYTHONPATH=ROOT, **dict(extra_env))
        args = argv[rank] if isinstance(argv[0], list) else argv
        procs.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs, timeout=600):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [err for _, err in outs]


def assert_close(got, want):
    assert sorted(got) == sorted(want), (got, want)
    assert all(abs(got[s] - want[s]) <= 1e-5 for s in want), (got, want)


@pytest.fixture(scope="module")
def one_process(corpus, tmp_path_factory):
    """The reference: one process, one device, the same global batches."""
    workdir = tmp_path_factory.mktemp("one")
    run = cli("train", "--config", "configs/tiny.py", "--workdir", str(workdir), *flags(corpus), env=cpu_env(1))
    assert run.returncode == 0, run.stderr[-3000:]
    return losses(workdir)


@pytest.mark.parametrize("name", ["pegasus_80b", "pegasus_7b"])
def test_rows_each_process_reads_are_the_rows_its_devices_address_on_v5p_256(name):
    import grain

    from data_pipelines.batch.read import ReadShard, ReadSlot
    from pegasus_jax import config as cfg
    from pegasus_jax import sharding
    from pegasus_jax.train import aot
    from pegasus_jax.train.batch_layout import BatchLayout

    config = cfg.get(name)
    _, devices = aot.topology_devices("v5p-256")
    mesh = sharding.make_mesh(config.mesh, devices)
    batch = config.train.batch_size
    # What the devices address, from the sharding of a 2-D batch field (independent of the layout's own map).
    tokens = sharding.batch_sharding(mesh, config.mesh.axis_rules, 2).devices_indices_map((batch, 48))
    addressed = {}
    for device, index in tokens.items():
        addressed.setdefault(device.process_index, set()).update(range(*index[0].indices(batch)))
    assert len(addressed) == 32
    records = grain.MapDataset.range(10 * batch)
    one_process = ReadShard(records, ReadSlot(), seed=3, shuffle=True, num_epochs=None)
    for step in range(2):
        global_batch = {}
        for process, rows in addressed.items():
            layout = BatchLayout.create(mesh, config.mesh.axis_rules, batch, process)
            assert layout.rows == tuple(sorted(rows)), process
            slot = layout.read_slot
            shard = ReadShard(records, slot, seed=3, shuffle=True, num_epochs=None)
            read = [shard[step * slot.batch_size + j][2] for j in range(slot.batch_size)]
            for row, record in zip(layout.rows, read):
                # processes feeding the same row (tensor partners on two hosts) read the same record
                assert global_batch.setdefault(row, record) == record, (process, row)
        assert sorted(global_batch) == list(range(batch))
        assert sorted(global_batch.values()) == sorted(one_process[i][2] for i in range(step * batch,
                                                                                          (step + 1) * batch))
    if name == "pegasus_80b":  # the layout the issue measured: processes 0 and 1 share rows 0:8 and 64:72
        layout = BatchLayout.create(mesh, config.mesh.axis_rules, batch, 1)
        assert layout.rows == tuple(range(0, 8)) + tuple(range(64, 72)) and layout.read_slot.count == 16


def test_a_layout_no_corpus_split_can_feed_is_refused():
    """Processes whose rows overlap without being equal cannot be fed by any split of the corpus: one line
    naming them. Compile-only v5p-16 devices (2 hosts of 4 chips), arranged by hand."""
    from jax.sharding import Mesh

    from pegasus_jax.errors import ConfigError
    from pegasus_jax.sharding import MESH_AXES
    from pegasus_jax.train import aot
    from pegasus_jax.train.batch_layout import BatchLayout

    _, devices = aot.topology_devices("v5p-16")
    host = [[d for d in devices if d.process_index == p] for p in (0, 1)]
    rules = (("batch", ("data", "fsdp")),)
    # fsdp shard -> its two tensor devices: shards 0 and 1 on host 0, 2 and 3 on host 1 -> two groups.
    fine = np.array([[host[0][0], host[0][1]], [host[0][2], host[0][3]],
                     [host[1][0], host[1][1]], [host[1][2], host[1][3]]]).reshape(1, 4, 1, 2)
    layout = BatchLayout.create(Mesh(fine, MESH_AXES), rules, 8, 1)
    assert (layout.rows, layout.group, layout.num_groups) == ((4, 5, 6, 7), 1, 2)
    # Shard 1 spans both hosts: host 0 feeds shards 0, 1 and host 1 feeds shards 1, 2, 3.
    mixed = np.array([[host[0][0], host[0][1]], [host[0][2], host[1][0]],
                      [host[1][1], host[1][2]], [host[1][3], host[0][3]]]).reshape(1, 4, 1, 2)
    with pytest.raises(ConfigError, match=r"^config.mesh: processes 0 and 1 feed overlapping but different batch "
                                          r"rows \(0:4,6:8 vs 2:8\)"):
        BatchLayout.create(Mesh(mixed, MESH_AXES), rules, 8, 0)
    with pytest.raises(ConfigError, match="config.train.batch_size: 6 does not divide over the 4 batch shards"):
        BatchLayout.create(Mesh(fine, MESH_AXES), rules, 6, 0)


@pytest.mark.slow
def test_tensor_parallel_across_two_processes_matches_one_process(corpus, one_process, tmp_path):
    """tensor=2 over two processes of one device each (launch/local.sh), in two launches: the first stops
    early (max_seconds), the second resumes its checkpoint. Every step's loss equals one process's, and
    the compiled steps land in the configured persistent compilation cache."""
    workdir, cache = tmp_path / "tp", tmp_path / "xla-cache"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    common = ["--config", "configs/tiny.py", "--workdir", str(workdir), *flags(corpus), "--config.mesh.data=1",
              "--config.mesh.tensor=2", f"--config.train.compilation_cache_dir={cache}"]
    launch = lambda *extra: subprocess.run(["bash", "launch/local.sh", "2", *common, *extra], cwd=ROOT, env=env,  # noqa: E731
                                           capture_output=True, text=True, timeout=600)
    first = launch("--config.train.max_seconds=0.001")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    stopped = {int(s) for s in re.findall(r"\[[01]\] trained to step (\d+)", first.stdout)}
    assert len(stopped) == 1 and stopped.pop() < STEPS, first.stdout[-3000:]
    # both processes feed every row: one data-parallel group
    assert first.stdout.count("batch rows 0:4 of 4 (data-parallel group 0 of 1)") == 2
    second = launch()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "[0] trained to step 8" in second.stdout and "[1] trained to step 8" in second.stdout
    logged = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, STEPS + 1))  # resumed, not restarted
    assert_close(losses(workdir), one_process)
    assert any(cache.iterdir())


@pytest.mark.slow
def test_tensor_pairs_crossing_processes_match_one_process(corpus, one_process, tmp_path):
    """fsdp=2 x tensor=2 over two processes of two devices each, the device order forced so that every
    tensor pair holds one device of each process."""
    workdir = tmp_path / "cross"
    errs = finish(start([os.path.abspath(__file__), str(workdir), *flags(corpus)], free_port(), devices=2))
    assert all("tensor pairs cross processes" in e for e in errs)
    assert_close(losses(workdir), one_process)


def _saved_step(stderr):
    return int(re.search(r"stopping: saved step (\d+)", stderr).group(1))


@pytest.mark.slow
def test_sigterm_to_one_process_and_max_seconds_on_one_clock_stop_both_at_the_same_step(corpus, one_process,
                                                                                       tmp_path):
    workdir = tmp_path / "stop"
    train = ["-m", "pegasus_jax.cli.main", "train", "--config", "configs/tiny.py", "--workdir", str(workdir),
             *flags(corpus), "--config.mesh.data=-1"]
    # 1. SIGTERM to process 1 alone, once it is training.
    procs = start(train, free_port(), devices=1)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and procs[1].poll() is None and not (metrics.exists() and losses(workdir)):
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    errs = finish(procs)
    first = {_saved_step(e) for e in errs}
    assert len(first) == 1, errs[0][-2000:] + errs[1][-2000:]
    (first,) = first
    assert first < STEPS and "SIGTERM: every process stops" in errs[1]
    assert "another process asked to stop" in errs[0]
    # 2. Resumed; process 1's clock runs out (max_seconds), process 0 has no limit.
    procs = start([train, train + ["--config.train.max_seconds=0.001"]], free_port(), devices=1)
    errs = finish(procs)
    second = {_saved_step(e) for e in errs}
    assert len(second) == 1, errs[0][-2000:] + errs[1][-2000:]
    (second,) = second
    assert first < second < STEPS and "max_seconds" in errs[1]
    # 3. Resumed to the end: the whole curve equals one uninterrupted process's.
    finish(start(train, free_port(), devices=1))
    steps = os.listdir(workdir / "checkpoints")
    assert {str(first), str(second), str(STEPS)} <= set(steps)
    assert_close(losses(workdir), one_process)


def _train_with_tensor_pairs_across_processes(workdir, args):
    from jax.sharding import Mesh

    from pegasus_jax.config import load_config
    from pegasus_jax.sharding import MESH_AXES
    from pegasus_jax.train import distributed
    from pegasus_jax.train.trainer import log_to_stderr, train

    distributed.initialize()
    import jax

    config = load_config("configs/tiny.py", dict(a[len("--config."):].split("=", 1) for a in args))
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 2, 2
    by_process = [[d for d in jax.devices() if d.process_index == p] for p in range(jax.process_count())]
    grid = np.array([[by_process[0][i], by_process[1][i]] for i in range(2)]).reshape(1, 2, 1, 2)
    mesh = Mesh(grid, MESH_AXES)
    assert all(len({d.process_index for d in pair}) == 2 for pair in grid.reshape(2, 2))
    log_to_stderr()
    print("tensor pairs cross processes", file=sys.stderr)
    train(config, workdir, mesh=mesh)


if __name__ == "__main__":
    _train_with_tensor_pairs_across_processes(sys.argv[1], sys.argv[2:])
