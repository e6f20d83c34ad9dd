"""One entry point for every benchmark: load the data, get predictions (model or file), score
(with the judge where needed), write the report. The model is any object with the methods of
`pegasus_jax.infer.api.Pegasus` that the benchmark uses (generate_batch, option_logprobs, eval_loss)."""
from __future__ import annotations

import datetime
import time

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.caption_data import load_caption_items
from pegasus_jax.evaluate.captioning import DEFAULT_CAPTION_PROMPT, run_caption
from pegasus_jax.evaluate.judge_session import JudgeSession
from pegasus_jax.evaluate.mcq import load_mcq_items, run_mcq
from pegasus_jax.evaluate.openqa import load_openqa_items, run_openqa
from pegasus_jax.evaluate.predictions import FilePredictor, ModelPredictor, ScoredOnMain
from pegasus_jax.evaluate.qefvc import load_description_items, run_qefvc
from pegasus_jax.evaluate.report import write_report
from pegasus_jax.evaluate.vcg import load_vcg_items, run_vcg
from pegasus_jax.evaluate.vidfactscore import DEFAULT_DESCRIPTION_PROMPT, run_vidfactscore
from pegasus_jax.train.distributed import is_main

BENCHMARKS = ("caption", "mcq", "loss", "vcg", "vidfactscore", "qefvc", "openqa")
JUDGED = ("vcg", "vidfactscore", "qefvc", "openqa")
REFERENCE_BENCHMARKS = ("caption", "vidfactscore", "qefvc")  # the ones --references fused can change


def run_benchmark(benchmark: str, data: str, out: str, model=None, predictions: str | None = None,
                  session: JudgeSession | None = None, videos: str | None = None, prompt: str | None = None,
                  meteor: bool = False, batches: int = 50, batch_size: int = 8, meta: dict | None = None,
                  sampling: dict | None = None, references: str = "all", transcript=None,
                  predictor=None) -> dict | None:
    """Run one benchmark and write `<out>/<benchmark>.json|.md`; returns the report's aggregate.
    `sampling`: the generation's SamplingParams fields (temperature, max_new_tokens, ...).

    `references` ("all" | "fused"): caption, vidfactscore and qefvc score against every caption of a video
    or against its judge-fused reference (`eval fuse-references`).

    `transcript`: video path -> its timed transcript (or None), fed to the model's transcript stream;
    `predictor`: where the predictions come from instead of the model or file (the asr-llm baseline).

    In a multi-process job every process calls this: the generation benchmarks (caption, vcg,
    vidfactscore, qefvc, openqa) split their prompts over the processes, and process 0 alone scores them (the
    judge's calls included) and writes the report; mcq and loss run on process 0. The others return None.
    """
    if benchmark not in BENCHMARKS:
        raise UserError(f"--benchmark {benchmark!r}: expected one of {', '.join(BENCHMARKS)}")
    if benchmark in JUDGED and session is None and is_main():
        raise UserError(f"--benchmark {benchmark} needs a judge (--judge-url / PEGASUS_JUDGE_URL)")
    if predictions is None and model is None and predictor is None:
        raise UserError("pass --checkpoint (or, for generation benchmarks, --predictions FILE)")
    if references != "all" and benchmark not in REFERENCE_BENCHMARKS:
        raise UserError(f"--references {references} applies to --benchmark {' | '.join(REFERENCE_BENCHMARKS)}, "
                        f"not {benchmark}")
    if predictions is not None and benchmark in ("mcq", "loss"):
        raise UserError(f"--predictions does not apply to --benchmark {benchmark}: it scores the model itself")
    predict = predictor or (FilePredictor(predictions) if predictions
                            else ModelPredictor(model, batch_size, sampling, transcript))
    start = time.time()
    try:
        aggregate, items = _run(benchmark, data, predict, model, session, videos, prompt, meteor, batches, references)
    except ScoredOnMain:
        return None
    failed = getattr(predict, "errors", {})
    for row in items:  # a failed input was scored as an empty prediction; its row says why
        errors = [e for pid, e in failed.items() if pid == row.get("id") or pid.startswith(f"{row.get('id')}/")]
        if errors:
            row["error"] = errors[0]
    report_meta = {"data": data, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "seconds": round(time.time() - start, 3), **(meta or {})}
    if failed:
        report_meta["failed_inputs"] = len(failed)
    if predictions:
        report_meta["predictions"] = predictions
    if references != "all":
        report_meta["references"] = references
    if session is not None and benchmark in JUDGED:
        report_meta["judge"] = session.judge.describe()
        report_meta["judge_stats"] = vars(session.stats).copy()
    write_report(out, benchmark, aggregate, items, report_meta)
    return aggregate


def _run(benchmark, data, predict, model, session, videos, prompt, meteor, batches, references) -> tuple[dict, list[dict]]:
    if benchmark in ("mcq", "loss") and not is_main():
        raise ScoredOnMain
    if benchmark == "caption":
        aggregate, items = run_caption(load_caption_items(data, videos, references), predict,
                                       prompt or DEFAULT_CAPTION_PROMPT, meteor)
    elif benchmark == "mcq":
        aggregate, items = run_mcq(load_mcq_items(data, videos), model)
    elif benchmark == "loss":
        if batches < 1:
            raise UserError(f"--batches {batches}: must be positive")
        aggregate, items = dict(model.eval_loss(data, batches)), []
    elif benchmark == "vcg":
        aggregate, items = run_vcg(load_vcg_items(data, videos), predict, session)
    elif benchmark == "qefvc":
        aggregate, items = run_qefvc(load_description_items(data, videos, references), predict, session,
                                     prompt or DEFAULT_DESCRIPTION_PROMPT)
    elif benchmark == "openqa":
        aggregate, items = run_openqa(load_openqa_items(data, videos), predict, session)
    else:
        aggregate, items = run_vidfactscore(load_caption_items(data, videos, references), predict, session,
                                            prompt or DEFAULT_DESCRIPTION_PROMPT)
    return aggregate, items
