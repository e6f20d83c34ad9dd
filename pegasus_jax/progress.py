"""Progress that reads well in a log file as on a terminal: the train step line (what MaxText and Levanter
users look for in pod logs) and a counter with an ETA for evaluation and sweeps. A leaf: no JAX."""
from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    """`42s`, `11m32s`, `3h05m`: an ETA or elapsed time, short."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def train_line(step: int, total: int, values: dict) -> str:
    """One logged train step: `step 120/1800 | loss 2.3456 | 14,210 tokens/s | 0.412 s/step | MFU 21.3% | ETA 9m04s`.

    `values` is the record metrics.jsonl gets; MFU appears where the trainer knew a peak."""
    parts = [f"step {step}/{total}", f"loss {values['loss']:.4f}"]
    if "tokens_per_s" in values:
        parts.append(f"{values['tokens_per_s']:,.0f} tokens/s")
    if "step_time_s" in values:
        parts.append(f"{values['step_time_s']:.3f} s/step")
    if values.get("mfu") is not None:
        parts.append(f"MFU {100 * values['mfu']:.1f}%")
    if "step_time_s" in values:
        parts.append(f"ETA {duration(max(total - step, 0) * values['step_time_s'])}")
    return " | ".join(parts)


class Counter:
    """`what i/n, elapsed, ETA` lines on stderr as items finish: a tqdm bar on a terminal, else a line for
    the first item, the last, and at most one every `every_s` seconds between (a log stays readable)."""

    def __init__(self, what: str, total: int, unit: str, every_s: float = 10.0, stream=None):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self.last_line = time.perf_counter()
        self._bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=what, unit=unit, file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if self.done >= self.total:
                self._bar.close()
            return
        now = time.perf_counter()
        if self.done in (n, self.total) or now - self.last_line >= self.every_s:
            self.last_line = now
            elapsed = now - self.start
            eta = elapsed / self.done * (self.total - self.done)
            print(f"{self.what}: {self.done}/{self.total} {self.unit}, {duration(elapsed)} elapsed, "
                  f"ETA {duration(eta)}", file=self.stream, flush=True)
