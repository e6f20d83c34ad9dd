"""Data pipeline throughput: clips/s of the Grain pipeline (tiny config shapes) against a plain PyAV
loop decoding the same frames and audio of the same files, for 0 (in-process), 1 and 2 worker
processes, with and without decode isolation (the helper process per reading thread).

    .venv/bin/python benchmarks/data_pipeline.py [--clips 64] [--batches 40] [--warmup 8]

Prints one JSON object and a markdown table; each row's rate is also given as a ratio to the raw
PyAV loop's. Start-up (worker and helper processes) is reported separately from the steady rate,
measured over `--batches` batches after `--warmup` more (the buffers filled during start-up would
otherwise inflate it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import markdown_table  # noqa: E402


def raw_pyav(config, pattern: str) -> float:
    """Clips/s of the bare decode: the same segment plan, frames and per-segment audio."""
    from data_pipelines.records.shards import read_all
    from data_pipelines.decode.video import decode_audio, sample_frames, segment_plan

    al = config.model.align
    examples = list(read_all(pattern))
    start = time.perf_counter()
    for ex in examples:
        plan = segment_plan(ex.duration, al.segment_seconds, al.frames_per_segment, config.data.max_segments)
        sample_frames(ex.video, [t for s in plan for t in s.timestamps], config.model.vision.image_size)
        for s in plan:
            decode_audio(ex.video, config.data.sample_rate, s.start, s.start + al.segment_seconds)
    return len(examples) / (time.perf_counter() - start)


def pipeline_rate(config, tok, batches: int, warmup: int) -> tuple[float, float]:
    """(start-up seconds to the first batch, steady clips/s over `batches` batches after `warmup` more,
    which drain what the workers buffered during start-up)."""
    from data_pipelines.batch import iterators as pipeline

    start = time.perf_counter()
    it = pipeline.make_train_iterator(config, tok)
    next(it)
    startup = time.perf_counter() - start
    for _ in range(warmup):
        next(it)
    first = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * config.train.batch_size / (time.perf_counter() - first)
    it.close()
    return startup, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=8, help="batches skipped after the first")
    args = parser.parse_args()

    from data_pipelines.sources import synth
    from data_pipelines.text.tokenizer import load_tokenizer
    from data_pipelines.records.tokenizer_corpus import train_tokenizer_for_config
    from pegasus_jax import config as cfg

    with tempfile.TemporaryDirectory() as tmp:
        synth.generate_corpus(tmp, num=args.clips, heldout=0, seed=0, size=64, workers=2)
        pattern = os.path.join(tmp, "train", "*.array_record")
        tok = load_tokenizer(train_tokenizer_for_config(pattern, 512, os.path.join(tmp, "tok.model")))
        config = cfg.get("tiny", data__path=pattern, train__batch_size=8)
        rows = [{"mode": "raw PyAV loop", "workers": "-", "isolate": "-", "startup_s": 0.0,
                 "clips_per_s": raw_pyav(config, pattern)}]
        for isolate in (False, True):
            for workers in (0, 1, 2):
                config.data.num_workers, config.data.isolate_decode = workers, isolate
                startup, rate = pipeline_rate(config, tok, args.batches, args.warmup)
                rows.append({"mode": "pipeline", "workers": workers, "isolate": isolate,
                             "startup_s": round(startup, 2), "clips_per_s": rate})
    raw = rows[0]["clips_per_s"]
    for row in rows:
        row["vs_raw_pyav"] = round(row["clips_per_s"] / raw, 2)
        row["clips_per_s"] = round(row["clips_per_s"], 1)
    result = {"benchmark": "data_pipeline", "clips": args.clips, "batch_size": 8, "image_size": 32,
              "frames_per_segment": 4, "max_segments": 2, "cpu_count": os.cpu_count(),
              "load_average_1m": round(os.getloadavg()[0], 2), "rows": rows}
    print(json.dumps(result))
    print()
    print(markdown_table(["mode", "workers", "isolate decode", "start-up s", "clips/s", "vs raw PyAV"],
                         [[r["mode"], r["workers"], r["isolate"], r["startup_s"], r["clips_per_s"], r["vs_raw_pyav"]]
                          for r in rows]))


if __name__ == "__main__":
    main()
