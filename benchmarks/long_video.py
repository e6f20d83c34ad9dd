"""Long-video memory: peak host RSS and wall time of `pegasus-jax summarize` on generated low-resolution
videos of 1, 10 and 60 minutes, each run in a fresh process, side by side.

    .venv/bin/python benchmarks/long_video.py [--checkpoint DIR] [--minutes 1 10 60] [--repeats 3]

Without --checkpoint a tiny one is made first (synthetic corpus, tokenizer, 2 training steps of
configs/tiny.py). The videos come from data_pipelines/long_video.py (64x64, 4 fps, H.264 + AAC).
Peak RSS is each child's own ru_maxrss. The stated bound:
the 60-minute peak is within BOUND_GROWTH of the 1-minute peak (memory does not follow duration) and
under BOUND_MIB. Prints one JSON object and a markdown table (medians over --repeats).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BOUND_MIB = 2048
BOUND_GROWTH = 1.05


def run_cli(*args: str) -> tuple[str, resource.struct_rusage]:
    """`pegasus-jax ARGS` in a fresh child process: its stdout and its own rusage (os.wait4 on this
    child alone, so runs do not mask each other). stderr goes to a file, so no pipe can fill and block."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pegasus_jax.cli.main", *args], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"pegasus-jax {' '.join(args)} failed:\n{err.read()[-3000:]}")
    return out, usage


def make_checkpoint(tmp: str) -> str:
    corpus, workdir = os.path.join(tmp, "corpus"), os.path.join(tmp, "run")
    run_cli("data", "synth", "--out", corpus, "--num", "16", "--heldout", "0")
    train = os.path.join(corpus, "train", "*.array_record")
    run_cli("tokenizer", "train", "--input", train, "--vocab-size", "512", "--out", os.path.join(corpus, "tok"))
    run_cli("train", "--config", "configs/tiny.py", "--workdir", workdir, f"--config.data.path={train}",
                f"--config.data.tokenizer={os.path.join(corpus, 'tok.model')}", "--config.train.steps=2",
                "--config.train.checkpoint_every=2")
    return workdir


def summarize_once(checkpoint: str, video: str, max_tokens: int) -> dict:
    """One `summarize --type chapter` in a fresh process: wall seconds and its own peak RSS."""
    start = time.perf_counter()
    out, usage = run_cli("summarize", "--type", "chapter", "--checkpoint", checkpoint, "--video", video,
                         "--temperature", "0", "--max-tokens", str(max_tokens))
    seconds = time.perf_counter() - start
    chapters = json.loads(out)["chapters"]
    return {"wall_s": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "chapters": len(chapters)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a tiny training workdir (default: make one)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    from data_pipelines.sources.long_video import make_long_video
    from pegasus_jax.infer.checkpoint_loader import config_from_metadata
    from pegasus_jax.infer.video_input import plan_segments
    from pegasus_jax.train import checkpoint as ckpt

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or make_checkpoint(tmp)
        config = config_from_metadata(ckpt.read_metadata(*ckpt.resolve_checkpoint(checkpoint)))
        rows = []
        for minutes in args.minutes:
            start = time.perf_counter()
            video = make_long_video(minutes, size=64, fps=4, path=os.path.join(tmp, f"{minutes:g}min.mp4"))
            made = time.perf_counter() - start
            runs = [summarize_once(checkpoint, video["path"], args.max_tokens) for _ in range(args.repeats)]
            segments, _ = plan_segments(config, video["seconds"])
            rows.append({"minutes": minutes, "file_mib": video["bytes"] / 2**20, "video_make_s": made,
                         "segments_encoded": len(segments), "segments_in_video": math.ceil(video["seconds"] / config.model.align.segment_seconds),
                         "wall_s": statistics.median(r["wall_s"] for r in runs),
                         "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                         "peak_rss_mib_runs": [round(r["peak_rss_mib"], 1) for r in runs],
                         "chapters": runs[0]["chapters"]})
    growth = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    result = {"benchmark": "long_video_summarize", "config": config.name, "repeats": args.repeats,
              "max_new_tokens": args.max_tokens, "bound": {"peak_rss_mib": BOUND_MIB, "growth": BOUND_GROWTH},
              "growth_longest_vs_shortest": growth,
              "within_bound": growth <= BOUND_GROWTH and all(r["peak_rss_mib"] <= BOUND_MIB for r in rows),
              "rows": rows}
    print(json.dumps(result))
    print()
    print("| video | file MiB | segments encoded / seconds | wall s (median) | peak RSS MiB (median) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['minutes']:g} min | {r['file_mib']:.1f} | {r['segments_encoded']} / {r['segments_in_video']} | "
              f"{r['wall_s']:.1f} | {r['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
