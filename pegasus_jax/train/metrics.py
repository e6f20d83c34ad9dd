"""Per-step metrics: JSONL (WORKDIR/metrics.jsonl), TensorBoard, a terminal progress bar, and MFU.

MFU = analytic model FLOPs per step (pegasus_jax.scaling.flops; causal attention counted as half the
full score matrix, rematerialisation not counted) / step time / (devices x peak FLOP/s per device).
The peak comes from `config.train.peak_flops`, else the chip table below, else (CPU) a measured
fp32 matmul peak of this host.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

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


class MetricsWriter:
    """Writes each logged step to metrics.jsonl and TensorBoard (process 0 only) and drives a progress bar."""

    def __init__(self, workdir: str, total_steps: int, start_step: int, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        if sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _scalar(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)):
                self._tb.add_scalar(k, v, step)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", refresh=False)

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
