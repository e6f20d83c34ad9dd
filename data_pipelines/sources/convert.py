"""`data convert`: read a format's annotations, split the items into shards, convert the shards in
parallel (local processes or Beam), and summarise what was written and what was skipped."""
from __future__ import annotations

import importlib
import os
import time

from data_pipelines.errors import UserError

from data_pipelines.sources.common import Skips

FORMATS = ("folder", "folder_csv", "webvid", "msrvtt", "videochatgpt", "activitynet")
RUNNERS = ("local", "beam")


def read_items(fmt: str, input_path: str, videos_dir: str | None = None):
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown (choose from {', '.join(FORMATS)})")
    check_paths(input_path, videos_dir)
    return importlib.import_module(f"data_pipelines.sources.{fmt}").read_items(input_path, videos_dir)


def check_paths(input_path: str, videos_dir: str | None) -> None:
    if not os.path.exists(input_path):
        raise UserError(f"--input {input_path}: no such file or directory")
    if videos_dir is not None and not os.path.isdir(videos_dir):
        raise UserError(f"--videos {videos_dir}: not a directory")


def _split(items: list[dict], num_shards: int) -> list[list[dict]]:
    """Contiguous chunks of near-equal size (keeps the source order within and across shards)."""
    bounds = [round(i * len(items) / num_shards) for i in range(num_shards + 1)]
    return [items[bounds[i]:bounds[i + 1]] for i in range(num_shards)]


def convert(fmt: str, input_path: str, out_dir: str, num_shards: int = 1, workers: int = 1,
            videos_dir: str | None = None, runner: str = "local", prefix: str = "data",
            beam_args: list[str] | None = None) -> dict:
    """Convert and return {"format", "items", "written", "shards", "skipped", "seconds"}."""
    from data_pipelines.sources.convert_shard import convert_shard_task
    from data_pipelines.records.shards import shard_name

    if num_shards < 1:
        raise UserError(f"--num-shards {num_shards}: must be >= 1")
    if runner not in RUNNERS:
        raise UserError(f"--runner {runner}: unknown (choose from {', '.join(RUNNERS)})")
    started = time.perf_counter()
    items, skips = read_items(fmt, input_path, videos_dir)
    seen, unique = set(), []
    for it in items:
        if it["id"] in seen:
            skips.add("duplicate_id", it["id"])
        else:
            seen.add(it["id"])
            unique.append(it)
    os.makedirs(out_dir, exist_ok=True)
    tasks = [(chunk, os.path.join(out_dir, shard_name(prefix, i, num_shards)))
             for i, chunk in enumerate(_split(unique, num_shards))]
    if runner == "beam":
        from data_pipelines.sources.beam import run_beam

        results = run_beam(tasks, beam_args)
    elif workers > 1 and len(tasks) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
            results = pool.map(convert_shard_task, tasks, chunksize=1)
    else:
        results = [convert_shard_task(t) for t in tasks]
    for r in results:
        skips.merge(r["skipped"])
    return {"format": fmt, "items": len(items), "written": sum(r["written"] for r in results),
            "shards": sorted(r["path"] for r in results), "skipped": skips.as_dict(),
            "seconds": round(time.perf_counter() - started, 2)}


def summary_line(result: dict) -> str:
    skipped = result["skipped"]["counts"]
    total = sum(n for reason, n in skipped.items() if reason != "unprobed")
    detail = ", ".join(f"{reason}={n}" for reason, n in sorted(skipped.items())) or "none"
    return (f"converted {result['written']} of {result['items'] + skipped.get('bad_row', 0) + skipped.get('no_text', 0)}"
            f" rows into {len(result['shards'])} shard(s) in {result['seconds']} s; skipped {total} ({detail})")
