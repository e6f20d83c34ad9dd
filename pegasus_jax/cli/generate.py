"""`pegasus-jax generate | gist | summarize --checkpoint DIR --video FILE|FOLDER|LIST.jsonl`.

A single video prints one JSON object (or, with --stream, NDJSON events). A folder of videos or a
JSONL file of {"video": path} lines runs as a batch: one JSON line per video, and a video that fails
is reported in its line ("error") while the others go on.
"""
from __future__ import annotations

import json
import os
import sys

from pegasus_jax.cli.args import lora_alphas_from_args, sampling_from_args
from pegasus_jax.cli.speech import TranscriptSource, add_transcript_flags
from pegasus_jax.errors import UserError
from pegasus_jax.infer.sampling import DEFAULT_TEMPERATURE


def add_model_flags(p, lora_alpha_help: str = "LoRA scale at inference (the delta is alpha / rank times A @ B); "
                                                "0 = the base model (default: the checkpoint's)") -> None:
    p.add_argument("--mesh", metavar="AXIS=N,...",
                   help="shard the model over this host's devices, e.g. fsdp=4,tensor=2 (default: one device)")
    p.add_argument("--dtype", choices=("bf16", "fp32"), help="parameters and compute (default: the checkpoint's)")
    p.add_argument("--num-segments", type=int, metavar="N",
                   help="segment windows each video is cut into, pooled to fit the model's visual-token budget "
                        "(PLLaVA's frame-count control; default: the checkpoint's data.max_segments)")
    p.add_argument("--lora-alpha", metavar="ALPHA", help=lora_alpha_help)


def add_sampling_flags(p, max_tokens_default: str = "the task's") -> None:
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                   help="sampling temperature, >= 0; 0 = greedy, as in the Python API")
    p.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest tokens; 0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, in (0, 1]; 1 = off")
    p.add_argument("--max-new-tokens", "--max-tokens", dest="max_tokens", type=int, default=None,
                   help=f"most tokens to generate (default: {max_tokens_default})")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def check_model_flags(args, sweep: bool, speech=None) -> None:
    """--num-segments, --lora-alpha (with `sweep`, a list) and a transcript source (`speech`) against the
    checkpoint's config (its metadata only, read once): a one-line error before the model loads."""
    alphas = lora_alphas_from_args(args, sweep)
    if args.num_segments is None and not alphas and speech is None:
        return
    from pegasus_jax.infer.checkpoint_loader import config_from_metadata
    from pegasus_jax.infer.video_input import check_num_segments
    from pegasus_jax.models.lora import check_lora_alpha
    from pegasus_jax.train import checkpoint

    config = config_from_metadata(checkpoint.read_metadata(*checkpoint.resolve_checkpoint(args.checkpoint)))
    if args.num_segments is not None:
        check_num_segments(config, args.num_segments)
    for alpha in alphas:
        check_lora_alpha(config, alpha)
    if speech is not None:
        speech.check_model(config, args.checkpoint)


def load_model(args):
    """The checkpoint as the Python API, on --mesh / --config.mesh.* and in --dtype, cutting videos into
    --num-segments windows and with a single --lora-alpha applied (eval sweeps a list itself); the flags
    were checked by `check_model_flags`."""
    from pegasus_jax.infer.api import Pegasus

    mesh = args.mesh
    overrides = {k[len("mesh."):]: v for k, v in getattr(args, "config_overrides", {}).items() if k.startswith("mesh.")}
    if overrides:
        mesh = ",".join(filter(None, [mesh] + [f"{k}={v}" for k, v in overrides.items()]))
    model = Pegasus.load(args.checkpoint, mesh=mesh, dtype=args.dtype)
    if args.num_segments is not None:
        model.set_num_segments(args.num_segments)
    alphas = lora_alphas_from_args(args, sweep=True)
    if len(alphas) == 1:
        model.set_lora_alpha(alphas[0])
    return model


def _common(p) -> None:
    p.add_argument("--checkpoint", required=True, help="training workdir or one step's checkpoint folder")
    p.add_argument("--video", required=True, help="a video file, a folder of videos, or a JSONL of {\"video\": path}")
    add_sampling_flags(p)
    add_transcript_flags(p, per_video_folder=False)
    add_model_flags(p)


def register(subparsers) -> None:
    g = subparsers.add_parser("generate", help="answer an open prompt about a video")
    _common(g)
    g.add_argument("--prompt", required=True)
    constrain = g.add_mutually_exclusive_group()
    constrain.add_argument("--response-schema", metavar="FILE", help="JSON schema the answer must follow")
    constrain.add_argument("--response-regex", metavar="REGEX",
                           help="regular expression (Rust regex syntax) the whole answer must match")
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    g.add_argument("--stream", action="store_true", help="print NDJSON events: start, text, end")
    g.set_defaults(func=run, task="generate")
    s = subparsers.add_parser("gist", help="title, topics and hashtags of a video")
    _common(s)
    s.set_defaults(func=run, task="gist")
    m = subparsers.add_parser("summarize", help="summary, chapters or highlights of a video")
    _common(m)
    m.add_argument("--type", choices=("summary", "chapter", "highlight"), default="summary")
    m.set_defaults(func=run, task="summarize")


def video_list(spec: str) -> list[str]:
    from pegasus_jax.evaluate.data_files import VIDEO_EXTENSIONS, read_jsonl, require

    if os.path.isdir(spec):
        videos = sorted(os.path.join(spec, f) for f in os.listdir(spec) if f.lower().endswith(VIDEO_EXTENSIONS))
    elif spec.endswith(".jsonl"):
        base = os.path.dirname(spec)
        videos = [os.path.join(base, require(row, "video", f"{spec}:{number}"))
                  for number, row in enumerate(read_jsonl(spec), 1)]
    else:
        return [spec]
    if not videos:
        raise UserError(f"--video: no videos in {spec}")
    return videos


def run(args) -> int:
    sampling = sampling_from_args(args)
    lora_alphas_from_args(args, sweep=False)
    schema = None
    if getattr(args, "response_schema", None):
        if not os.path.isfile(args.response_schema):
            raise UserError(f"--response-schema: no such file {args.response_schema}")
        try:
            schema = json.load(open(args.response_schema))
        except json.JSONDecodeError as e:
            raise UserError(f"--response-schema: {args.response_schema} is not JSON ({e.msg})") from None
    regex = getattr(args, "response_regex", None)
    if args.task == "generate":
        from pegasus_jax.infer.grammar import request_grammar

        # the flags' checks (sampling, schema, regex) come first: no file is read for them
        request_grammar(schema, regex, args.stop, schema_name="--response-schema", regex_name="--response-regex")
    from pegasus_jax.train.checkpoint import resolve_checkpoint

    resolve_checkpoint(args.checkpoint)  # a wrong --checkpoint fails before the video is read
    speech = TranscriptSource.from_args(args)  # transcript files parsed, the Whisper folder checked
    videos = video_list(args.video)
    single = len(videos) == 1 and videos[0] == args.video
    if speech is not None and speech.single_file and not single:
        raise UserError("--transcript: one file is one video's transcript; for several videos pass a folder of "
                        "<video stem>.srt|.vtt|.json")
    import jax

    from pegasus_jax.infer.video_input import check_video
    from pegasus_jax.train import distributed

    if single:
        duration = check_video(args.video).duration  # a bad video fails before the seconds spent loading the model
        if speech is not None:
            speech.check_video(duration)
    else:
        distributed.initialize()  # a multi-process job splits a batch over its processes
    check_model_flags(args, sweep=False, speech=speech)  # after initialize: Orbax starts the backend
    model = load_model(args)
    if args.task == "generate" and args.stop:
        sampling["stop"] = tuple(args.stop)

    def transcript(path: str):
        return speech.for_video(path, model.config) if speech is not None else None

    def one(path: str) -> dict:
        if args.task == "gist":
            return model.gist(path, transcript=transcript(path), **sampling)
        if args.task == "summarize":
            return model.summarize(path, args.type, transcript=transcript(path), **sampling)
        text = model.generate(path, args.prompt, schema=schema, regex=regex, transcript=transcript(path), **sampling)
        return {"id": os.path.splitext(os.path.basename(path))[0],
                "data": json.loads(text) if schema is not None else text}

    if single:
        if args.task == "generate" and args.stream:
            print(json.dumps({"event_type": "stream_start"}), flush=True)
            for piece in model.stream(videos[0], args.prompt, schema=schema, regex=regex,
                                      transcript=transcript(videos[0]), **sampling):
                print(json.dumps({"event_type": "text_generation", "text": piece}), flush=True)
            print(json.dumps({"event_type": "stream_end"}), flush=True)
            return 0
        print(json.dumps(one(videos[0]), ensure_ascii=False))
        return 0
    from tqdm import tqdm

    def record(path: str) -> dict:
        try:
            return one(path)
        except UserError as e:  # a bad video in a batch is recorded, the batch goes on
            return {"id": os.path.splitext(os.path.basename(path))[0], "error": str(e)}

    if jax.process_count() == 1:  # lines as they come
        rows = []
        for path in tqdm(videos, unit="video", disable=not sys.stderr.isatty()):
            rows.append(record(path))
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    else:  # every process_count-th video here; process 0 prints every line, in input order
        shares = distributed.gather_json([record(path) for path in videos[jax.process_index()::jax.process_count()]])
        if shares is None:
            return 0
        rows = [shares[i % len(shares)][i // len(shares)] for i in range(len(videos))]
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), flush=True)
    return 1 if all("error" in row for row in rows) else 0
