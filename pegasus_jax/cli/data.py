"""`pegasus-jax data synth|convert|inspect`: make, convert and look at record shards."""
from __future__ import annotations

import os


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="make (synth), convert and inspect record shards")
    sub = p.add_subparsers(dest="data_command", required=True, parser_class=type(p))

    s = sub.add_parser("synth", help="generate the built-in synthetic corpus")
    s.add_argument("--out", required=True, help="output folder (train/, heldout/, corpus.json)")
    s.add_argument("--num", type=int, default=2000, help="training clips")
    s.add_argument("--heldout", type=int, default=200, help="held-out clips (unseen attribute combinations)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=64, help="frame side in pixels")
    s.add_argument("--workers", type=int, default=2, help="processes")
    s.set_defaults(func=run_synth)

    c = sub.add_parser("convert", help="convert an annotated video collection to record shards")
    c.add_argument("--format", required=True,
                   help="folder | folder_csv | webvid | msrvtt | videochatgpt | activitynet")
    c.add_argument("--input", required=True, help="annotation file, or the folder holding it (folder formats)")
    c.add_argument("--out", required=True, help="output folder for the shards")
    c.add_argument("--videos", default=None, help="folder holding the videos (default: the annotation file's folder)")
    c.add_argument("--num-shards", type=int, default=1)
    c.add_argument("--workers", type=int, default=1, help="local processes (one shard each at a time)")
    c.add_argument("--runner", default="local", help="local | beam (Apache Beam DirectRunner)")
    c.add_argument("--prefix", default="data", help="shard file name prefix")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.add_argument("--jsfusion-csv", default=None,
                   help="msrvtt: write only the evaluation file OUT/captions.jsonl for the videos this CSV lists "
                        "(MSRVTT_JSFUS_test.csv: the JSFusion 1k test split), each with all its captions")
    c.set_defaults(func=run_convert)

    e = sub.add_parser("export-eval", help="write an evaluation set (videos + caption/QA/MCQ files) from record shards",
                       description="Write the files `pegasus-jax eval` reads from record shards: OUT/videos/, "
                                   "captions.jsonl (caption, vidfactscore), generic_qa.json (vcg), mcq.jsonl (mcq), "
                                   "eval_set.json. Then: pegasus-jax eval --checkpoint DIR --benchmark caption "
                                   "--data OUT --out REPORTS")
    e.add_argument("records", help="shard folder, glob or file (local or gs://)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--split", default=None, help="keep records whose metadata split is this (e.g. heldout)")
    e.add_argument("--limit", type=int, default=None, help="at most this many records")
    e.set_defaults(func=run_export_eval)

    i = sub.add_parser("inspect", help="counts, durations, sample decodes and failures of record shards")
    i.add_argument("path", help="shard folder, glob or file (local or gs://)")
    i.add_argument("--show", type=int, default=3, help="examples to print")
    i.add_argument("--check", type=int, default=200, help="records to decode-check (0 = all)")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.set_defaults(func=run_inspect)


def _positive(value: int, flag: str) -> None:
    from pegasus_jax.errors import UserError

    if value < 0 or (value == 0 and flag in ("--workers", "--size", "--num-shards", "--limit")):
        raise UserError(f"{flag} {value}: must be positive")


def run_synth(args) -> int:
    from data_pipelines.sources.synth import generate_corpus

    for value, flag in ((args.num, "--num"), (args.heldout, "--heldout"), (args.size, "--size"), (args.workers, "--workers")):
        _positive(value, flag)
    info = generate_corpus(args.out, args.num, args.heldout, args.seed, args.size, args.workers)
    print(f"wrote {info['counts']['train']} train + {info['counts']['heldout']} heldout clips to {args.out} "
          f"in {info['seconds']} s (speech: {'yes' if info['speech'] else 'no, espeak-ng not found'})")
    return 0


def run_convert(args) -> int:
    import json

    from data_pipelines.sources.convert import convert, summary_line

    _positive(args.num_shards, "--num-shards")
    _positive(args.workers, "--workers")
    if args.jsfusion_csv:
        return _write_jsfusion_eval(args)
    result = convert(args.format, args.input, args.out, args.num_shards, args.workers, args.videos, args.runner, args.prefix)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(summary_line(result))
        for line in result["skipped"]["examples"]:
            print(f"  skipped {line}")
    return 0


def _write_jsfusion_eval(args) -> int:
    from data_pipelines.sources.convert import check_paths
    from data_pipelines.sources.msrvtt import write_jsfusion_eval
    from pegasus_jax.errors import UserError

    if args.format != "msrvtt":
        raise UserError(f"--jsfusion-csv applies to --format msrvtt, not {args.format}")
    check_paths(args.input, args.videos)
    info = write_jsfusion_eval(args.input, args.jsfusion_csv, args.out, args.videos)
    print(f"wrote {info['path']}: {info['videos']} videos, {info['captions']} captions (JSFusion list "
          f"{args.jsfusion_csv}); {info['videos_not_found']} videos not found yet")
    return 0


def run_export_eval(args) -> int:
    from data_pipelines.records.eval_set import export_eval_set

    if args.limit is not None:
        _positive(args.limit, "--limit")
    info = export_eval_set(args.records, args.out, args.split, args.limit)
    kinds = ", ".join(f"{name} {path}" for name, path in info["files"].items())
    print(f"wrote {info['videos']} videos to {os.path.join(args.out, 'videos')}: {kinds}")
    return 0


def run_inspect(args) -> int:
    import json

    from data_pipelines.records.inspect import format_report, inspect

    report = inspect(os.fspath(args.path), args.show, args.check)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
