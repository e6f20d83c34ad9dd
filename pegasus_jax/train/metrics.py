"""Per-step metrics: JSONL (WORKDIR/metrics.jsonl), TensorBoard, a terminal progress bar, MFU and
throughput.

MFU = analytic model FLOPs of the real content of the steps (pegasus_jax.scaling.flops.
train_flops_of_work over the train step's metrics["work"]; causal attention counted as half the full
score matrix, rematerialisation not counted) / time / (devices x peak FLOP/s per device). Padding
(invalid segments, missing audio, unused transcript slots, text padding) is not work; "mfu_padded"
and "tokens_per_s_padded" are the figures that count every example at the config's maximum shape
(flops_per_step), as before. The peak comes from `config.train.peak_flops`, else the chip table below,
else (CPU) a measured fp32 matmul peak of this host.

Files go through etils.epath, so the workdir may be any path Orbax accepts (gs://..., s3://...). On
a local disk metrics.jsonl is appended to and flushed line by line, as with builtin open. Objects in
a bucket cannot be appended to: there the writer keeps the object's earlier content (a resumed run's
lines) and rewrites the whole object, at most every REMOTE_JSONL_INTERVAL_S seconds (a bucket limits
rewrites of one object to about one a second), on flush() and on close(). TensorBoard events reach a
bucket through an epath-backed tensorboardX record writer that likewise rewrites its event file on each
of tensorboardX's flushes (every flush_secs, 120 s, and on close).
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
from etils import epath

from pegasus_jax.progress import train_line

log = logging.getLogger("pegasus_jax.train")

REMOTE_JSONL_INTERVAL_S = 10.0
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

# Dense bf16 peak FLOP/s per chip, from the vendors' spec sheets.
CHIP_PEAK_FLOPS = {
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,
    "tpu v5e": 197e12,
    "tpu v5p": 459e12,
    "tpu v5": 459e12,
    "tpu v6 lite": 918e12,
    "tpu v6e": 918e12,
    "nvidia h100": 989e12,
    "nvidia h200": 989e12,
    "nvidia a100": 312e12,
}


@functools.lru_cache(maxsize=None)
def measured_matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` n x n fp32 matmuls on this host's first device."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def peak_flops(train_cfg) -> tuple[float, str]:
    """Peak FLOP/s of the whole job and where the figure comes from."""
    devices = jax.devices()
    if train_cfg.peak_flops > 0:
        return train_cfg.peak_flops * len(devices), "config.train.peak_flops"
    kind = devices[0].device_kind.lower()
    for name, flops in CHIP_PEAK_FLOPS.items():
        if kind.startswith(name):
            return flops * len(devices), f"chip table ({kind})"
    # CPU: simulated devices share the host's cores, so the host's measured peak is the job's peak.
    return measured_matmul_peak() * jax.process_count(), "measured fp32 matmul peak (CPU)"


# -- throughput from the train step's "work" ------------------------------------------------------
def sum_work(works) -> dict:
    """Host-side sum of several steps' metrics["work"] dicts (device arrays fine: fetched here), as
    Python ints ("tokens_sq" a float), which do not overflow over a long window the way int32 would."""
    from pegasus_jax.scaling.flops import WORK_KEYS

    total = {k: 0 for k in WORK_KEYS}
    total["tokens_sq"] = 0.0
    for work in jax.device_get(list(works)):
        for k in WORK_KEYS:
            total[k] += float(work[k]) if k == "tokens_sq" else int(work[k])
    return total


class WorkMeter:
    """Sums the train step's metrics["work"] per logging window and over the whole run.

    add() keeps the device arrays without waiting for the step; take_window() and totals() fetch what
    is pending. `totals` restores the run's cumulative sums (e.g. from checkpoint metadata) on resume.
    """

    def __init__(self, totals: dict | None = None):
        self._pending = []
        self._window = sum_work([])
        self._totals = {**sum_work([]), **(totals or {})}

    def add(self, work: dict) -> None:
        self._pending.append(work)

    def _drain(self) -> None:
        if self._pending:
            got = sum_work(self._pending)
            self._pending = []
            self._window = _add_work(self._window, got)
            self._totals = _add_work(self._totals, got)

    def take_window(self) -> dict:
        """The work since the last take_window(), and start a new window."""
        self._drain()
        window, self._window = self._window, sum_work([])
        return window

    def totals(self) -> dict:
        """Cumulative work of the run (JSON-serialisable)."""
        self._drain()
        return dict(self._totals)


def _add_work(a: dict, b: dict) -> dict:
    return {k: a[k] + b[k] for k in a}


def throughput(config, work_sum: dict, seconds: float, steps: int, peak: float) -> dict:
    """Throughput of a logging window: `steps` steps that took `seconds` and did `work_sum` (the sum of
    their metrics["work"], host numbers), on a job whose peak is `peak` FLOP/s (all devices).

    Real figures count the tokens and frames in the batches: "tokens_per_s" (real decoder positions),
    "examples_per_s", "mfu", "flops_per_step" (real training FLOPs, mean over the window). "*_padded"
    count every example at the config's maximum shape (flops_per_step(config), decoder_sequence_length):
    the figures logged before real counting; "real_token_fraction" = real / padded decoder positions
    (with data.packing, the rows' data.pack_tokens positions each).
    Also "step_time_s", "window_steps", and the window's work as "work/<key>" (flops.WORK_KEYS).
    """
    from pegasus_jax.scaling.flops import (WORK_KEYS, decoder_sequence_length, flops_per_step,
                                           real_decoder_tokens, train_flops_of_work)

    from data_pipelines.contract import pack_budget

    flops = train_flops_of_work(config, work_sum)
    row_tokens = pack_budget(config)[0] if config.data.packing else decoder_sequence_length(config)
    padded_tokens = steps * config.train.batch_size * row_tokens
    tokens = real_decoder_tokens(work_sum)
    out = {
        "step_time_s": seconds / steps,
        "tokens_per_s": tokens / seconds,
        "examples_per_s": work_sum["examples"] / seconds,
        "mfu": flops / seconds / peak,
        "flops_per_step": flops / steps,
        "tokens_per_s_padded": padded_tokens / seconds,
        "mfu_padded": steps * flops_per_step(config) / seconds / peak,
        "real_token_fraction": tokens / padded_tokens,
        "window_steps": steps,
    }
    out.update({f"work/{k}": work_sum[k] for k in WORK_KEYS})
    return out


# -- writing: local disk or any epath scheme --------------------------------------------------------
def is_remote(path) -> bool:
    """True for URIs with a scheme (gs://, s3://, ...), False for local paths."""
    return _SCHEME.match(os.fspath(path)) is not None


class _ObjectAppend:
    """Append for an object store: objects are immutable, so each upload rewrites the whole object with
    its earlier content plus the new lines. Uploads at most every `interval_s` seconds (the first write
    at once), on flush() and on close()."""

    def __init__(self, path: epath.Path, interval_s: float):
        self.path = path
        self._data = bytearray(path.read_bytes() if path.exists() else b"")
        self._interval = interval_s
        self._uploaded = len(self._data)
        self._last = -math.inf

    def write(self, text: str) -> None:
        self._data += text.encode("utf-8")
        if time.monotonic() - self._last >= self._interval:
            self.flush()

    def flush(self) -> None:
        if len(self._data) != self._uploaded:
            self.path.write_bytes(bytes(self._data))
            self._uploaded = len(self._data)
            self._last = time.monotonic()

    def close(self) -> None:
        self.flush()


class _EpathRecordWriter:
    """tensorboardX record-writer file for a bucket: keeps the event file in memory and rewrites the
    object through epath on each flush (tensorboardX flushes every flush_secs and on close)."""

    def __init__(self, path: str):
        self.path = epath.Path(path)
        self._data = bytearray()
        self._uploaded = -1

    def write(self, data: bytes) -> None:
        self._data += data

    def flush(self) -> None:
        if len(self._data) != self._uploaded:
            self.path.write_bytes(bytes(self._data))
            self._uploaded = len(self._data)

    def close(self) -> None:
        self.flush()


class _EpathRecordWriterFactory:
    """A tensorboardX writer factory (record_writer.register_writer_factory) backed by etils.epath."""

    def open(self, path: str) -> _EpathRecordWriter:
        return _EpathRecordWriter(path)

    def directory_check(self, path: str) -> None:
        epath.Path(path).mkdir(parents=True, exist_ok=True)


def _tensorboard_writer(logdir: epath.Path):
    from tensorboardX import SummaryWriter

    path = os.fspath(logdir)
    if is_remote(path):
        # tensorboardX picks a writer by the scheme before "://"; its own gs/s3 writers need
        # google-cloud-storage / boto3, this one goes wherever epath (and so Orbax) can.
        from tensorboardX.record_writer import register_writer_factory

        register_writer_factory(_SCHEME.match(path).group(1), _EpathRecordWriterFactory())
    return SummaryWriter(path)


class MetricsWriter:
    """Writes each logged step to metrics.jsonl and TensorBoard (process 0 only), a progress line to the
    `pegasus_jax.train` log (pegasus_jax.progress.train_line; above the bar on a terminal) and drives a
    progress bar on a terminal.

    `workdir` is a local path or any epath URI (see the module docstring for what appending means there).
    """

    def __init__(self, workdir: str, total_steps: int, start_step: int, enabled: bool):
        self.enabled = enabled
        self.total_steps = total_steps
        self._bar = None
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        root = epath.Path(workdir)
        root.mkdir(parents=True, exist_ok=True)
        path = root / "metrics.jsonl"
        if is_remote(workdir):
            self._jsonl = _ObjectAppend(path, REMOTE_JSONL_INTERVAL_S)
        else:
            self._jsonl = path.open("a")  # builtin open: flushed after every line below
        self._tb = _tensorboard_writer(root / "tensorboard")
        if sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _scalar(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        if not isinstance(self._jsonl, _ObjectAppend):
            self._jsonl.flush()
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)):
                self._tb.add_scalar(k, v, step)
        if "loss" in record:
            self._line(train_line(step, self.total_steps, record))
        if "eval_loss" in record:
            self._line(f"step {step}/{self.total_steps} | eval loss {record['eval_loss']:.4f}")
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", refresh=False)

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            log.info(text)

    def flush(self) -> None:
        """Push everything written so far to the workdir (for a bucket: upload now), e.g. with a checkpoint."""
        if not self.enabled:
            return
        self._jsonl.flush()
        self._tb.flush()

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        self._tb.close()
        self._jsonl.close()

def _scalar(v):
    v = jax.device_get(v)
    if hasattr(v, "item"):
        v = v.item()
    return v
