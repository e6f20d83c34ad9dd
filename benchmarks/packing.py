"""Padding with and without sequence packing: the share of decoder positions that are padding and of the
segment slots (frames through the ViT) that are zeros, on a corpus of 5 s clips to 10-minute videos
with 10 to 400 text tokens.

    .venv/bin/python benchmarks/packing.py [--examples 4096] [--seed 0]

It measures layout, not decoding: each example's size follows from its duration (the pipeline's own
segment plan, data_pipelines/decode/video.py) and its text length (cut to data.max_text_len, as the chat
template cuts it); every segment has audio. Unpacked: batches of train.batch_size examples in stream
order, each padded to data.max_segments segments and the smallest length bucket that fits (the
BucketBatcher). Packed: the packer's own placement (data_pipelines/batch/packing.py: best fit over a
window of data.pack_window examples, oldest first) into rows of data.pack_tokens positions and
data.pack_segments slots, at 1x (room for one longest example, the default) and 4x those budgets
(4x fewer rows per step: the same positions per step), and at 4x the slots with the positions fitted to
the corpus (`fitted_tokens`, on a separate sample of it): padding positions and zero slots can both be
small only when a row's positions and slots come in the corpus's proportion. Rows per step: one host's
share of the batch (ROWS). Prints one JSON object and a markdown table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.harness import markdown_table  # noqa: E402

ROWS = 16  # unpacked examples per step on one host (pegasus_80b: 256 over 16 data-parallel groups)
SCALES = (1, 4)
TARGET = 0.05


def corpus(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Durations (s), log-uniform in [5, 600], and text lengths, uniform in [10, 400]."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(math.log(5.0), math.log(600.0), n)), rng.integers(10, 401, n)


def sizes(config, durations, texts) -> list[tuple[int, int, int]]:
    """(decoder tokens, segments, text tokens) of each example as the model lays it out."""
    from data_pipelines.contract import slot_tokens
    from data_pipelines.decode.video import segment_plan

    m, d = config.model, config.data
    k = slot_tokens(config) - m.transcript_tokens  # no transcripts in this corpus
    out = []
    for duration, text in zip(durations, texts):
        segs = len(segment_plan(float(duration), m.align.segment_seconds, m.align.frames_per_segment, d.max_segments))
        text = min(int(text), d.max_text_len)
        out.append((segs * k + text, segs, text))
    return out


def unpacked(config, examples) -> dict:
    from data_pipelines.contract import slot_tokens

    d = config.data
    buckets = sorted(d.length_buckets)
    per_segment = slot_tokens(config)
    positions = real = slots = 0
    for start in range(0, len(examples) - ROWS + 1, ROWS):
        batch = examples[start: start + ROWS]
        width = next(b for b in buckets if b >= max(t for _, _, t in batch))
        positions += ROWS * (d.max_segments * per_segment + width)
        slots += ROWS * d.max_segments
        real += sum(t for t, _, _ in batch)
    used = sum(s for _, s, _ in examples[: len(examples) // ROWS * ROWS])
    return {"padding": 1 - real / positions, "zero_frames": 1 - used / slots, "rows_per_step": ROWS,
            "row_tokens": d.max_segments * per_segment + buckets[-1], "row_segments": d.max_segments}


def packed(config, examples, scale: int, tokens: int | None = None) -> dict:
    """The packer's placement over the stream, steps of ROWS / scale rows, until the stream runs dry.
    `tokens`: positions per row (default: `scale` longest examples)."""
    from data_pipelines.batch.packing import PackSpec, place

    cfg = config.copy_and_resolve_references()
    base = PackSpec.from_config(cfg, ROWS)
    cfg.data.pack_tokens, cfg.data.pack_segments = tokens or scale * base.tokens, scale * base.segments
    spec = PackSpec.from_config(cfg, ROWS // scale)
    held, stream = [], iter(examples)
    positions = real = slots = used = steps = 0
    while True:
        held += [e for _, e in zip(range(spec.window - len(held)), stream)]
        if len(held) < spec.window:  # the stream's tail: a training stream never ends, so leave it out
            break
        rows, _ = place([(t, s) for t, s, _ in held], spec.rows, spec.tokens, spec.segments)
        taken = {i for row in rows for i in row}
        real += sum(held[i][0] for i in taken)
        used += sum(held[i][1] for i in taken)
        positions += spec.rows * spec.tokens
        slots += spec.rows * spec.segments
        held = [e for i, e in enumerate(held) if i not in taken]
        steps += 1
    return {"padding": 1 - real / positions, "zero_frames": 1 - used / slots, "rows_per_step": spec.rows,
            "row_tokens": spec.tokens, "row_segments": spec.segments, "window": spec.window, "steps": steps}


def fitted_tokens(config, examples, scale: int) -> int:
    """Positions per row for `scale` x the slots, fitted to a sample of the corpus: around slots x its mean
    decoder tokens per segment (-15%..+15%, multiples of 64) or `scale` longest examples, the one whose
    worse figure (padding or zero frames) is lowest."""
    from data_pipelines.contract import pack_budget

    longest, slots = pack_budget(config)
    per_segment = sum(t for t, _, _ in examples) / sum(s for _, s, _ in examples)
    centre = scale * slots * per_segment
    candidates = [t for t in range(64 * math.floor(0.85 * centre / 64), 64 * math.ceil(1.15 * centre / 64) + 1, 64)
                  if t >= longest] + [scale * longest]

    def worse(tokens):
        r = packed(config, examples, scale, tokens)
        return max(r["padding"], r["zero_frames"])

    return min(candidates, key=worse)


def configs() -> dict:
    from pegasus_jax import config as cfg

    long_text = cfg.get("pegasus_80b")
    long_text.data.max_text_len, long_text.data.length_buckets = 512, (128, 256, 512)
    return {"pegasus_80b": cfg.get("pegasus_80b"), "pegasus_80b, text to 512": long_text, "small": cfg.get("small")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    durations, texts = corpus(args.examples, args.seed)
    sample = corpus(args.examples // 4, args.seed + 1)  # the budgets are fitted on other draws than measured
    results = {}
    for name, config in configs().items():
        examples = sizes(config, durations, texts)
        tokens = fitted_tokens(config, sizes(config, *sample), SCALES[-1])
        results[name] = {"unpacked": unpacked(config, examples),
                         **{f"packed_{s}x": packed(config, examples, s) for s in SCALES},
                         f"packed_{SCALES[-1]}x_fitted": packed(config, examples, SCALES[-1], tokens)}
    print(json.dumps({"examples": args.examples, "seed": args.seed, "target": TARGET, "results": results}, indent=1))
    rows = [[name, mode, r["rows_per_step"], r["row_tokens"], r["row_segments"], f"{100 * r['padding']:.1f}%",
             f"{100 * r['zero_frames']:.1f}%"] for name, res in results.items() for mode, r in res.items()]
    print(markdown_table(["config", "layout", "rows/step", "positions/row", "segment slots/row", "decoder padding",
                          "zero frames through the ViT"], rows))


if __name__ == "__main__":
    main()
