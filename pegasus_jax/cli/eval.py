"""`pegasus-jax eval --checkpoint DIR --benchmark caption|mcq|loss|vcg|vidfactscore|qefvc|openqa --data PATH
--out DIR`, `pegasus-jax eval compare A B` (two reports, or two report folders, side by side in markdown) and
`pegasus-jax eval fuse-references --data CAPTIONS --out FILE` (each video's captions fused by the judge into
one reference, read by `--references fused`). The protocol of each benchmark: docs/evaluation.md.

`--transcripts DIR` / `--asr-model DIR` feed each video's speech to the model (generation benchmarks).
`--baseline asr-llm --asr-model DIR` runs the seeds' "Whisper + ChatGPT-3.5" baseline instead of a checkpoint:
the Whisper transcript as text to an OpenAI-compatible LLM (--baseline-url / --baseline-model, default the
judge's; key PEGASUS_BASELINE_API_KEY, else the judge's), scored by the same benchmark code.

Judged benchmarks (vcg, vidfactscore, qefvc, openqa) and fuse-references talk to any OpenAI-compatible
chat-completions endpoint: --judge-url / PEGASUS_JUDGE_URL, --judge-model / PEGASUS_JUDGE_MODEL, and the key from
PEGASUS_JUDGE_API_KEY (preferred: a --judge-api-key flag is visible in process lists).

Generation follows the sampling flags (default greedy, 96 new tokens), --num-segments sets the segment
windows per video, and --lora-alpha 0,2,4,8,16 sweeps the LoRA scale in one run (evaluate/lora_sweep.py).
"""
from __future__ import annotations

import os

from pegasus_jax.cli.args import lora_alphas_from_args, sampling_from_args
from pegasus_jax.cli.generate import add_model_flags, add_sampling_flags, check_model_flags, load_model
from pegasus_jax.cli.speech import TranscriptSource, add_transcript_flags
from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.caption_data import REFERENCE_MODES


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a checkpoint on a benchmark, or compare two reports",
                              description="eval --checkpoint DIR --benchmark NAME --data PATH --out DIR | eval compare A B "
                                          "| eval fuse-references --data CAPTIONS --out FILE")
    p.add_argument("compare", nargs="*", metavar="compare A B | fuse-references",
                   help="compare two reports (files or --out folders); or fuse each video's captions of --data "
                        "into one reference by the judge, written to the JSONL file --out")
    p.add_argument("--checkpoint", help="training workdir (latest complete checkpoint) or one step's folder")
    p.add_argument("--benchmark", help="caption | mcq | loss | vcg | vidfactscore | qefvc | openqa")
    p.add_argument("--data", help="annotations (see the benchmark's docs) or, for loss, a records glob")
    p.add_argument("--out", help="folder for <benchmark>.json, <benchmark>.md and the judge cache")
    p.add_argument("--videos", help="folder the annotations' video paths are relative to (default: theirs)")
    p.add_argument("--predictions", help="JSONL of {id, prediction}: score these instead of generating")
    p.add_argument("--prompt", help="generation prompt for caption / vidfactscore / qefvc")
    p.add_argument("--references", choices=REFERENCE_MODES, default="all",
                   help="caption, vidfactscore, qefvc: score against all captions of a video, or against its "
                        "'fused_reference' (written by `eval fuse-references`)")
    p.add_argument("--meteor", action="store_true", help="caption: also METEOR (needs java, ~10 s)")
    p.add_argument("--batches", type=int, default=50, help="loss: number of batches")
    p.add_argument("--batch-size", type=int, default=8, help="videos per generate_batch call")
    add_sampling_flags(p, max_tokens_default="96")
    add_model_flags(p, lora_alpha_help="LoRA scale at inference; a comma-separated list (e.g. 0,2,4,8,16) "
                                       "sweeps it in one run and tables the scores per alpha "
                                       "(<out>/<benchmark>_lora_alpha.json|.md); 0 = the base model")
    add_transcript_flags(p, per_video_folder=True)
    p.add_argument("--baseline", choices=("asr-llm",),
                   help="score a baseline instead of --checkpoint: asr-llm = the --asr-model Whisper transcript given "
                        "as text to an OpenAI-compatible LLM")
    p.add_argument("--baseline-url", help="the baseline LLM's OpenAI-compatible base URL (default: the judge's)")
    p.add_argument("--baseline-model", help="the baseline LLM's model name (default: the judge's)")
    p.add_argument("--judge-url", help="OpenAI-compatible base URL (default $PEGASUS_JUDGE_URL)")
    p.add_argument("--judge-model", help="judge model name (default $PEGASUS_JUDGE_MODEL)")
    p.add_argument("--judge-api-key", help="judge API key (default $PEGASUS_JUDGE_API_KEY; prefer the variable)")
    p.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--judge-attempts", type=int, default=3, help="tries per question (errors, malformed answers)")
    p.add_argument("--judge-backoff", type=float, default=1.0, help="seconds before the first retry, doubling")
    p.add_argument("--judge-workers", type=int, default=8, help="concurrent judge requests")
    p.add_argument("--judge-cache", help="sqlite answer cache (default <out>/judge_cache.sqlite)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.compare == ["fuse-references"]:
        return _fuse_references(args)
    if args.compare:
        if len(args.compare) != 3 or args.compare[0] != "compare":
            raise UserError(f"unexpected arguments {' '.join(args.compare)!r}: use `eval compare A B` "
                            "or `eval fuse-references`")
        from pegasus_jax.evaluate.report import compare_markdown

        print(compare_markdown(args.compare[1], args.compare[2]))
        return 0
    for flag in ("benchmark", "data", "out"):
        if not getattr(args, flag):
            raise UserError(f"--{flag} is required")
    sampling = sampling_from_args(args)
    alphas = lora_alphas_from_args(args, sweep=True)
    from pegasus_jax.evaluate.runner import JUDGED, run_benchmark
    from pegasus_jax.train import distributed

    speech = TranscriptSource.from_args(args)  # transcript files parsed, the Whisper folder checked
    if args.baseline:
        return _run_baseline(args, speech)
    if speech is not None and (args.benchmark in ("mcq", "loss") or args.predictions):
        raise UserError(f"--transcripts / --asr-model feed the model's generation; not with "
                        f"{'--predictions' if args.predictions else '--benchmark ' + args.benchmark}")
    uses_model = bool(args.checkpoint) and not (args.predictions and args.benchmark not in ("mcq", "loss"))
    if not uses_model and (alphas or args.num_segments is not None):
        raise UserError("--lora-alpha and --num-segments set the model's generation: pass --checkpoint, not --predictions")
    distributed.initialize()  # a multi-process job splits the inputs over its processes
    if uses_model:  # speech without a model was refused above
        check_model_flags(args, sweep=True, speech=speech)  # after initialize: Orbax starts the backend
    session = _judge_session(args) if args.benchmark in JUDGED and distributed.is_main() else None
    model = load_model(args) if uses_model else None
    transcript = (lambda video: speech.for_video(video, model.config)) if speech is not None else None
    meta = {"checkpoint": args.checkpoint, "sampling": sampling, "num_segments": args.num_segments,
            "lora_alpha": alphas[0] if alphas else None, **_speech_meta(args)}

    def evaluate(out: str, lora_alpha: float | None = meta["lora_alpha"]) -> dict | None:
        return run_benchmark(args.benchmark, args.data, out, model=model, predictions=args.predictions,
                             session=session, videos=args.videos, prompt=args.prompt, meteor=args.meteor,
                             batches=args.batches, batch_size=args.batch_size, sampling=sampling,
                             meta={**meta, "lora_alpha": lora_alpha}, references=args.references,
                             transcript=transcript)

    try:
        if len(alphas) > 1:
            from pegasus_jax.evaluate.lora_sweep import sweep_lora_alpha, table_markdown

            table = sweep_lora_alpha(model, alphas, evaluate, args.out, args.benchmark, {**meta, "lora_alpha": alphas})
            if table is not None:
                print(table_markdown(table), end="")
                print(f"report: {os.path.join(args.out, args.benchmark + '_lora_alpha.json')}")
            return 0
        aggregate = evaluate(args.out)
    finally:
        if session is not None and session.cache is not None:
            session.cache.close()
    return _print_aggregate(args, aggregate)


def _run_baseline(args, speech) -> int:
    """`--baseline asr-llm`: no checkpoint; Whisper transcripts to the baseline LLM, scored as the model would be."""
    from pegasus_jax.evaluate.asr_llm import AsrLlmPredictor
    from pegasus_jax.evaluate.runner import JUDGED, run_benchmark
    from pegasus_jax.infer.asr import WhisperTranscriber

    if args.checkpoint or args.predictions or not args.asr_model:
        raise UserError("--baseline asr-llm takes --asr-model DIR (a Whisper folder), not --checkpoint / --predictions")
    if args.benchmark in ("mcq", "loss"):
        raise UserError(f"--baseline asr-llm answers in text: not for --benchmark {args.benchmark}")
    llm = _judge_session(args, url=args.baseline_url or args.judge_url, model=args.baseline_model or args.judge_model,
                         api_key=os.environ.get("PEGASUS_BASELINE_API_KEY") or args.judge_api_key)
    session = _judge_session(args) if args.benchmark in JUDGED else None
    predictor = AsrLlmPredictor(WhisperTranscriber(speech.asr_model), llm, args.out)
    try:
        aggregate = run_benchmark(args.benchmark, args.data, args.out, predictor=predictor, session=session,
                                  videos=args.videos, prompt=args.prompt, meteor=args.meteor,
                                  references=args.references,
                                  meta={"baseline": "asr-llm", "asr_model": args.asr_model,
                                        "llm": llm.judge.describe(), "predictions_file": predictor.written})
    finally:
        for s in (llm, session):
            if s is not None and s.cache is not None:
                s.cache.close()
    return _print_aggregate(args, aggregate)


def _speech_meta(args) -> dict:
    if args.transcripts:
        return {"transcripts": args.transcripts}
    return {"asr_model": args.asr_model} if args.asr_model else {}


def _print_aggregate(args, aggregate) -> int:
    if aggregate is None:  # another process's report
        return 0
    from pegasus_jax.evaluate.report import flatten

    for name, value in flatten(aggregate).items():
        print(f"{name}: {value}")
    print(f"report: {os.path.join(args.out, args.benchmark + '.json')}")
    return 0


def _fuse_references(args) -> int:
    from pegasus_jax.evaluate.reference_fusion import write_fused_references

    for flag in ("data", "out"):
        if not getattr(args, flag):
            raise UserError(f"--{flag} is required (fuse-references: --out is the JSONL file to write)")
    if os.path.isdir(args.out):
        raise UserError(f"--out {args.out}: a folder; fuse-references writes a JSONL file")
    session = _judge_session(args, os.path.dirname(os.path.abspath(args.out)))
    try:
        info = write_fused_references(args.data, args.out, session, args.videos)
    finally:
        session.cache.close()
    print(f"fused {info['fused']} of {info['videos']} videos' references into {args.out}"
          + (f"; {info['failed']} failed (rerun to retry them: the others are cached)" if info["failed"] else ""))
    return 1 if info["failed"] else 0


def _judge_session(args, cache_dir: str | None = None, url=None, model=None, api_key=None):
    """The judge's session (cache, retries, workers); with url/model/api_key, the baseline LLM's, on the same cache."""
    from pegasus_jax.evaluate.judge import http_judge_from_flags
    from pegasus_jax.evaluate.judge_cache import JudgeCache
    from pegasus_jax.evaluate.judge_session import JudgeSession

    if args.judge_attempts < 1 or args.judge_workers < 1 or args.judge_backoff < 0:
        raise UserError("--judge-attempts and --judge-workers must be >= 1, --judge-backoff >= 0")
    judge = http_judge_from_flags(url or args.judge_url, model or args.judge_model, api_key or args.judge_api_key,
                                  args.judge_timeout)
    cache = JudgeCache(args.judge_cache or os.path.join(cache_dir or args.out, "judge_cache.sqlite"))
    return JudgeSession(judge, cache, attempts=args.judge_attempts, backoff_s=args.judge_backoff,
                        workers=args.judge_workers)

