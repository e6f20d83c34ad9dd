"""Honest counters: MFU, tokens/s and examples/s count the tokens and frames really in the batches (the
train step's metrics["work"]), not padding; and metrics reach any epath workdir (gs://...)."""
import json
import os
import struct

import jax
import numpy as np
import pytest

from pegasus_jax import config as cfg
from pegasus_jax import sharding
from pegasus_jax.scaling.flops import WORK_KEYS, flops_per_step, padded_work, train_flops_of_work
from pegasus_jax.train.metrics import MetricsWriter, sum_work, throughput

PEAK = 1e9


def tiny(**overrides):
    return cfg.get("tiny", train__batch_size=2, **overrides)


def small_batch(config, seed=0):
    """Two examples of text length 48 (tiny's max_text_len), with partial content:
    example 0: 2 valid segments, audio on segment 0 only, transcripts 3 + 1 tokens, 20 text tokens;
    example 1: segment 0 valid (audio, 2 transcript tokens), segment 1 padding that carries an audio flag
    and a full transcript mask (the model masks them: not work), 10 text tokens."""
    from data_pipelines.contract import zeros_batch

    rng = np.random.default_rng(seed)
    b = zeros_batch(config, 2, 48)
    b["frames"][:] = rng.integers(0, 256, b["frames"].shape, dtype=np.uint8)
    b["audio"][:] = rng.normal(0, 0.1, b["audio"].shape).astype(np.float32)
    b["segment_mask"][:] = [[True, True], [True, False]]
    b["audio_mask"][:] = [[True, False], [True, True]]
    b["segment_start"][:] = [[0.0, 1.0], [0.0, 1.0]]
    b["transcript"][:] = rng.integers(4, 512, b["transcript"].shape)
    b["transcript_mask"][:] = [[[1, 1, 1, 0], [1, 0, 0, 0]], [[1, 1, 0, 0], [1, 1, 1, 1]]]
    for i, n in enumerate((20, 10)):
        b["tokens"][i, :n] = rng.integers(4, 512, n)
        b["targets"][i, :n - 1] = b["tokens"][i, 1:n]
        b["loss_mask"][i, n // 2:n - 1] = 1.0
        b["text_mask"][i, :n] = True
    return b


def padded_copy(batch, text_len, segments):
    """The same examples with text zero-padded to `text_len` and extra padding segments (random frames,
    audio flag and transcript mask set: garbage the model masks out)."""
    rng = np.random.default_rng(1)
    out = {}
    for k, v in batch.items():
        if k in ("tokens", "targets", "loss_mask", "text_mask"):
            v = np.concatenate([v, np.zeros((v.shape[0], text_len - v.shape[1]), v.dtype)], axis=1)
        else:
            extra = np.zeros((v.shape[0], segments - v.shape[1]) + v.shape[2:], v.dtype)
            if k == "frames":
                extra[:] = rng.integers(0, 256, extra.shape, dtype=np.uint8)
            elif k in ("audio_mask", "transcript_mask"):
                extra[:] = True
            v = np.concatenate([v, extra], axis=1)
        out[k] = v
    return out


class Stepper:
    """The real train step of `config` on a 1-CPU-device mesh, state carried from call to call (the
    work counts do not depend on it); step() returns the metrics on the host."""

    def __init__(self, config, batch):
        from pegasus_jax.train.state import TrainSpec
        from pegasus_jax.train.step import make_train_step

        spec = TrainSpec.create(config, sharding.make_mesh(config.mesh, jax.devices()[:1]))
        self.state = spec.init_state(config.seed)
        self.fn = make_train_step(spec, batch)

    def step(self, batch):
        self.state, metrics = self.fn(self.state, batch)
        return jax.device_get(metrics)


@pytest.fixture(scope="module")
def base_run():
    config = tiny()
    batch = small_batch(config)
    stepper = Stepper(config, batch)
    return config, batch, stepper.step(batch), stepper


def test_work_matches_hand_count(base_run):
    config, _, metrics, _ = base_run
    work = metrics["work"]
    assert set(work) == set(WORK_KEYS)
    assert all(work[k].dtype == np.int32 for k in WORK_KEYS if k != "tokens_sq")
    assert work["tokens_sq"].dtype == np.float32
    # example 0: 2 markers + 2 x 8 visual + 4 audio (1 segment) + 3 + 1 transcript + 20 text = 46
    # example 1: 1 marker + 8 visual + 4 audio + 2 transcript + 10 text = 25 (its padding segment: nothing)
    expected = {"examples": 2, "segments": 3, "audio_segments": 2, "visual_tokens": 24, "audio_tokens": 8,
                "transcript_tokens": 6, "text_tokens": 30, "tokens": 71, "tokens_sq": 46.0 ** 2 + 25.0 ** 2}
    assert sum_work([work]) == expected

    # FLOPs of that work, by hand (tiny's shapes as in test_flops.py)
    image = 16 * (8 * 8 * 3) * 32 + 2 * (4 * 17 * 32 * 32 + 2 * 17 * 17 * 32 + 2 * 17 * 32 * 64)
    temporal = 16 * (4 * 4 * 32 * 32 + 2 * 4 * 4 * 32 + 2 * 4 * 32 * 64)  # per segment: 16 grid locations
    audio = 100 * 3 * 80 * 32 + 50 * 3 * 32 * 32 + 2 * (4 * 50 * 32 * 32 + 2 * 50 * 50 * 32 + 2 * 50 * 32 * 64)
    align = 24 * (32 * 64 + 64 * 64) + 3 * 64 * 64 + 8 * (32 * 64 + 64 * 64)
    decoder = 2 * (71 * (64 * (2 * 64 + 2 * 32) + 3 * 64 * 128) + (46 ** 2 + 25 ** 2) * 64)  # causal: half
    lm_head = 71 * 64 * 512
    forward = 3 * 4 * image + 3 * temporal + 2 * audio + align + decoder + lm_head
    assert train_flops_of_work(config, expected) == 3 * 2 * forward


def test_padding_changes_no_real_figure(base_run):
    """The same examples with text padded to twice its length, an extra padding segment and gradient
    accumulation over 2 micro-batches: same work, so same MFU, tokens/s and examples/s at equal time;
    only the "padded" figures grow."""
    config, batch, metrics, _ = base_run
    padded_config = tiny(data__max_text_len=96, data__length_buckets=(96,), data__max_segments=3,
                         train__grad_accum=2)
    padded_batch = padded_copy(batch, 96, 3)
    padded = Stepper(padded_config, padded_batch).step(padded_batch)  # the same initial state as base_run
    assert sum_work([padded["work"]]) == sum_work([metrics["work"]])
    assert float(padded["loss"]) == pytest.approx(float(metrics["loss"]), rel=1e-5)

    seconds, steps = 3.0, 2
    work = sum_work([metrics["work"]] * steps)
    a = throughput(config, work, seconds, steps, PEAK)
    b = throughput(padded_config, sum_work([padded["work"]] * steps), seconds, steps, PEAK)
    for key in ("tokens_per_s", "examples_per_s", "mfu", "flops_per_step", "step_time_s"):
        assert a[key] == b[key], key
    assert a["tokens_per_s"] == 2 * 71 / 3.0 and a["examples_per_s"] == 2 * 2 / 3.0
    assert a["mfu"] == train_flops_of_work(config, work) / seconds / PEAK
    assert a["step_time_s"] == 1.5 and a["window_steps"] == 2 and a["work/tokens"] == 142
    # the old, padded figures: every example at the config's maximum shape
    assert a["mfu_padded"] == steps * flops_per_step(config) / seconds / PEAK
    assert a["tokens_per_s_padded"] == steps * 2 * 82 / seconds
    assert b["mfu_padded"] > a["mfu_padded"] > a["mfu"]
    assert a["real_token_fraction"] == 71 / (2 * 82)


def test_all_valid_batch_is_the_padded_count(base_run):
    """Every segment valid with audio and a full transcript, text at max_text_len: the real count is
    flops_per_step exactly."""
    config, batch, _, stepper = base_run
    full = {k: v.copy() for k, v in batch.items()}
    for k in ("segment_mask", "audio_mask", "transcript_mask", "text_mask"):
        full[k][:] = True
    metrics = stepper.step(full)  # same shapes as base_run's batch: the compiled step is reused
    work = sum_work([metrics["work"]])
    assert work == padded_work(config, config.train.batch_size)
    assert train_flops_of_work(config, work) == flops_per_step(config)
    assert throughput(config, work, 2.0, 1, PEAK)["mfu"] == throughput(config, work, 2.0, 1, PEAK)["mfu_padded"]


def test_train_flops_of_work_is_linear():
    config = tiny()
    w1 = {"examples": 1, "segments": 2, "audio_segments": 1, "visual_tokens": 16, "audio_tokens": 4,
          "transcript_tokens": 3, "text_tokens": 7, "tokens": 32, "tokens_sq": 1024.0}
    w2 = {k: 2 * v + 1 for k, v in w1.items()}
    both = {k: w1[k] + w2[k] for k in w1}
    assert train_flops_of_work(config, both) == train_flops_of_work(config, w1) + train_flops_of_work(config, w2)


# -- metrics files through etils.epath --------------------------------------------------------------
def read_events(path):
    """(tag, step, value) of the scalar summaries in a TensorBoard event file."""
    from tensorboardX.proto import event_pb2

    data, out, pos = open(path, "rb").read(), [], 0
    while pos < len(data):
        (length,) = struct.unpack("Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def lines(path):
    return [json.loads(line) for line in open(path)]


def test_local_workdir_appends_line_by_line(tmp_path):
    workdir = tmp_path / "run"
    w = MetricsWriter(str(workdir), total_steps=10, start_step=0, enabled=True)
    w.write(1, {"loss": 2.5, "mfu": 0.1})
    assert lines(workdir / "metrics.jsonl") == [{"step": 1, "loss": 2.5, "mfu": 0.1}]  # before close
    w.close()
    (event_file,) = os.listdir(workdir / "tensorboard")
    assert event_file.startswith("events.out.tfevents.")
    assert read_events(workdir / "tensorboard" / event_file) == [("loss", 1, 2.5), ("mfu", 1, pytest.approx(0.1))]
    w = MetricsWriter(str(workdir), total_steps=10, start_step=1, enabled=True)  # a resumed run appends
    w.write(2, {"loss": np.float32(2.0)})
    w.close()
    assert [r["step"] for r in lines(workdir / "metrics.jsonl")] == [1, 2]


def test_bucket_workdir_goes_through_epath(tmp_path, monkeypatch):
    """A gs:// workdir: metrics.jsonl and a TensorBoard event file reach the bucket through epath (here a
    mock backend that keeps objects under tmp_path/bucket-store and refuses appends, as buckets do), and
    nothing lands on the local disk under a literal "gs:" folder."""
    from etils.epath import gpath, testing
    from tensorboardX import record_writer

    store = tmp_path / "bucket-store"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # etils sends gs:// to TensorFlow's gfile whenever TensorFlow is importable, bypassing the backend table
    # mock_epath replaces: make it use that table.
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    # MetricsWriter registers its epath writer for "gs" in tensorboardX's table: restore it afterwards.
    monkeypatch.setitem(record_writer.REGISTERED_FACTORIES, "gs", record_writer.REGISTERED_FACTORIES.get("gs"))
    seen = []

    def local(path):
        path = os.fspath(path)
        assert path.startswith("gs://"), path
        seen.append(path)
        return str(store / path[len("gs://"):])

    def mock_open(original, path, mode):
        assert "a" not in mode and "+" not in mode, f"objects cannot be appended to: {mode} {path}"
        target = local(path)
        if "w" in mode:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        return original(target, mode)

    def makedirs(original, path, exist_ok=False):
        return original(local(path), exist_ok=exist_ok)

    with testing.mock_epath(open=mock_open, makedirs=makedirs, exists=lambda orig, p: orig(local(p)),
                            mkdir=lambda orig, p, exist_ok=False: orig(local(p), exist_ok=exist_ok),
                            isdir=lambda orig, p: orig(local(p))):
        w = MetricsWriter("gs://bucket/run", total_steps=10, start_step=0, enabled=True)
        w.write(1, {"loss": 3.0})
        assert lines(store / "bucket/run/metrics.jsonl") == [{"step": 1, "loss": 3.0}]  # the first write: at once
        w.write(2, {"loss": 2.0})  # within REMOTE_JSONL_INTERVAL_S: uploaded on flush
        assert len(lines(store / "bucket/run/metrics.jsonl")) == 1
        w.flush()
        assert [r["step"] for r in lines(store / "bucket/run/metrics.jsonl")] == [1, 2]
        w.write(3, {"loss": 1.5})
        w.close()
        (event_file,) = os.listdir(store / "bucket/run/tensorboard")
        assert event_file.startswith("events.out.tfevents.")
        events = read_events(store / "bucket/run/tensorboard" / event_file)
        assert events == [("loss", 1, 3.0), ("loss", 2, 2.0), ("loss", 3, 1.5)]
        w = MetricsWriter("gs://bucket/run", total_steps=10, start_step=3, enabled=True)  # resumed: keeps 1-3
        w.write(4, {"loss": 1.0})
        w.close()
    assert [r["step"] for r in lines(store / "bucket/run/metrics.jsonl")] == [1, 2, 3, 4]
    assert any("/tensorboard/events.out.tfevents." in p for p in seen)
    assert not [os.path.join(d, n) for d, dirs, files in os.walk(tmp_path) for n in dirs + files if "gs:" in n]
    assert os.listdir(cwd) == []
