"""`pegasus-jax demo`: the whole system on the built-in corpus, end to end, with a report.

1. generate the synthetic corpus (coloured shapes moving over backgrounds, with tones and, where espeak-ng is
   installed, a spoken word whose timed transcript the model reads in its transcript stream);
2. train `configs/demo.py` for a bounded time, with checkpoints;
3. caption every held-out clip (attribute *combinations* never seen in training) with the trained
   model and score each attribute parsed from the caption against the clip's truth, beside chance;
   export the held-out split as an evaluation set (`data export-eval`: videos, captions, QA, MCQ) and
   score those captions on it with the `caption` benchmark (DIR/heldout_eval/report/caption.json);
4. with speech on, the spoken word is scored too (held-out transcripts fed at inference, as training feeds
   them), and again with the transcript removed (word should fall to chance: the tiny audio tower does not
   recognise words); the same with the audio removed (pitch should fall to chance or below: the corpus has silent clips,
   so without sound the model names no tone), with the motion removed (every frame is the clip's middle
   one, where a shape's position does not tell its direction: direction should fall to chance) and with
   the temporal layers removed (the decoder also reads direction from the order of the pooled frames);
5. score the API tasks, batched with their constrained decoding, on held-out clips: the gist title naming
   the clip's colour and shape (single-part clips), and chapter and highlight times within one segment
   of the truth (two-part clips whose parts are both unseen combinations, synth.make_clip(num_parts=2));
6. export the checkpoint to PyTorch folders and run the whole model there, in a process that cannot
   import JAX: its logits and greedy caption of the held-out video against ours;
7. write DIR/demo_report.json ("accuracy", "chance", "ablation", "tasks", "seconds", "stage_seconds": where
   the time went, ...) and print a summary.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import time

import numpy as np

from data_pipelines.text import prompts

ATTRIBUTES = ("colour", "shape", "direction", "pitch")
BATCH = 16
CAPTION_TOKENS = 32  # the longest caption (speech phrase included) is 25 tokens with the demo tokenizer


def caption_accuracy(api, clips: list, use_audio: bool = True, temporal: bool = True, still: bool = False,
                     transcript: bool = False, attributes: tuple = ATTRIBUTES) -> tuple[dict, list[str]]:
    """Per-attribute accuracy of greedy captions of `clips` (VideoExamples with metadata attributes);
    `transcript`: each clip's timed transcript (its record's) goes in through the inference path."""
    from flax import nnx

    from data_pipelines.sources.synth import attributes_from_text
    from pegasus_jax.infer.sampling import SamplingParams
    from pegasus_jax.infer.video_input import SegmentEncoder

    model = api.model
    if not temporal:
        model = nnx.clone(model)
        model.video_encoder.temporal_depth = 0  # frames encoded independently: no motion signal
    encoder = SegmentEncoder(model, api.config, use_audio=use_audio, still=still, tokenizer=api.tokenizer)
    prompt = api._prompt(prompts.DESCRIBE)
    correct = {k: 0 for k in attributes}
    captions = []
    from pegasus_jax.infer.api import _stack_prefixes

    for i in range(0, len(clips), BATCH):
        chunk = clips[i:i + BATCH]
        prefix = _stack_prefixes([encoder.encode_bytes(c.video, c.transcript if transcript else None) for c in chunk])
        ids = api.generator.generate_ids([prompt] * len(chunk), prefix, SamplingParams(max_new_tokens=CAPTION_TOKENS))
        for clip, out in zip(chunk, ids):
            text = api.tokenizer.decode(out)
            captions.append(text)
            found = attributes_from_text(text)
            truth = clip.metadata["attributes"]
            for k in attributes:
                correct[k] += int(found.get(k) == truth[k])
    return {k: correct[k] / max(len(clips), 1) for k in attributes}, captions


def write_clips(folder: str, clips: list) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"{c.id}.mp4") for c in clips]
    for path, clip in zip(paths, clips):
        with open(path, "wb") as f:
            f.write(clip.video)
    return paths


def _times_match(items: list[dict], segments: list[dict], tolerance: float) -> bool:
    """As many items as true segments, each start and end within `tolerance` seconds of its segment's."""
    return len(items) == len(segments) and all(
        abs(i["start_sec"] - s["start"]) <= tolerance and abs(i["end_sec"] - s["end"]) <= tolerance
        for i, s in zip(items, segments))


def task_accuracy(api, workdir: str, single: list, two_part: list, speech: bool = False) -> dict:
    """The API tasks on held-out clips, in batches of BATCH through the API's constrained decoding (greedy):
    gist titles naming the right colour and shape (first mention of each, as captions are scored) on
    `single`; chapters and highlights on `two_part`, right when there are two with both start and end
    within one segment (config.model.align.segment_seconds) of the part's. With `speech`, each clip's
    transcript goes in as the API's `transcripts`."""
    from data_pipelines.sources.synth import attributes_from_text

    tolerance = float(api.config.model.align.segment_seconds)
    single_paths = write_clips(os.path.join(workdir, "task_clips"), single)
    two_part_paths = write_clips(os.path.join(workdir, "task_clips"), two_part)
    seconds, gists, chapters, highlights = {}, [], [], []
    for name, run, paths, clips in (
            ("gist", lambda p, t: api.gist_batch(p, t, temperature=0.0), single_paths, single),
            ("chapter", lambda p, t: api.summarize_batch(p, "chapter", t, temperature=0.0), two_part_paths, two_part),
            ("highlight", lambda p, t: api.summarize_batch(p, "highlight", t, temperature=0.0), two_part_paths,
             two_part)):
        t0 = time.perf_counter()
        out = {"gist": gists, "chapter": chapters, "highlight": highlights}[name]
        for i in range(0, len(paths), BATCH):
            transcripts = [c.transcript or None for c in clips[i:i + BATCH]] if speech else None
            out += run(paths[i:i + BATCH], transcripts)
        seconds[name] = time.perf_counter() - t0
    title_right = [attributes_from_text(g["title"]).get("colour") == c.metadata["attributes"]["colour"]
                   and attributes_from_text(g["title"]).get("shape") == c.metadata["attributes"]["shape"]
                   for g, c in zip(gists, single)]
    chapter_right = [_times_match(d["chapters"], c.segments, tolerance) for d, c in zip(chapters, two_part)]
    highlight_right = [_times_match(d["highlights"], c.segments, tolerance) for d, c in zip(highlights, two_part)]
    return {
        "gist_title": float(np.mean(title_right)) if title_right else 0.0,
        "chapters": float(np.mean(chapter_right)) if chapter_right else 0.0,
        "highlights": float(np.mean(highlight_right)) if highlight_right else 0.0,
        "gist_clips": len(single), "two_part_clips": len(two_part), "tolerance_sec": tolerance, "seconds": seconds,
        "examples": [{"truth": c.metadata["gist"], "gist": g} for c, g in zip(single[:3], gists[:3])]
        + [{"truth": c.segments, "chapters": d["chapters"], "highlights": h["highlights"]}
           for c, d, h in zip(two_part[:2], chapters[:2], highlights[:2])],
        "gist": gists[0] if gists else None,
        "chapter": chapters[0] if chapters else None,
    }


def heldout_eval(workdir: str, heldout_glob: str, clips: list, captions: list[str]) -> dict:
    """The held-out split as an eval set (data_pipelines/records/eval_set.py, what `data export-eval`
    writes) and the `caption` benchmark on it, scoring `captions` (the model's, of `clips`, the same
    records in the same order) so no clip is captioned twice."""
    from data_pipelines.records.eval_set import export_eval_set
    from pegasus_jax.evaluate.runner import run_benchmark

    out = os.path.join(workdir, "heldout_eval")
    info = export_eval_set(heldout_glob, out, split="heldout", limit=len(clips))
    predictions = os.path.join(out, "predictions.jsonl")
    with open(predictions, "w") as f:
        for clip, caption in zip(clips, captions):
            f.write(json.dumps({"id": info["ids"][clip.id], "prediction": caption}) + "\n")
    reports = os.path.join(out, "report")
    caption = run_benchmark("caption", out, reports, predictions=predictions, meta={"checkpoint": workdir})
    return {"dir": out, "videos": info["videos"], "qa": info["qa"], "mcq": info["mcq"], "caption": caption,
            "report": os.path.join(reports, "caption.json")}


def check_export(api, workdir: str, clip) -> dict:
    """Export the trained checkpoint (OUT/llm, OUT/full) and run OUT/full in PyTorch without JAX on `clip`:
    the largest logit difference from our model, and whether its greedy caption is ours token for token."""
    import subprocess
    import sys

    import jax.numpy as jnp
    from flax import nnx

    from pegasus_jax.infer.api import _stack_prefixes
    from pegasus_jax.infer.sampling import SamplingParams
    from pegasus_jax.infer.video_input import whole_video_batch
    from pegasus_jax.interop.export import export

    t0 = time.perf_counter()
    out = os.path.join(workdir, "export")
    folders = export(workdir, out)
    summary = {"llm": folders["llm"], "full": folders["full"]}
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        return {**summary, "checked": False, "why": f"{' and '.join(missing)} not installed (pip install -e '.[dev]')"}
    prompt = api._prompt(prompts.DESCRIBE)
    transcript = clip.transcript if api.config.model.transcript_tokens else None  # the export's transcript stream too
    batch = whole_video_batch(api.config, clip.video, prompt, transcript, api.tokenizer)
    ours = np.asarray(nnx.jit(lambda m, b: m(b))(api.model, {k: jnp.asarray(v) for k, v in batch.items()}))
    prefix = _stack_prefixes([api.encoder.encode_bytes(clip.video, transcript)])
    our_ids = api.generator.generate_ids([prompt], prefix, SamplingParams(max_new_tokens=CAPTION_TOKENS))[0]
    inputs, outputs = os.path.join(out, "check_inputs.npz"), os.path.join(out, "check_outputs.npz")
    np.savez(inputs, **batch, greedy_steps=np.asarray(CAPTION_TOKENS))
    run = subprocess.run([sys.executable, "-m", "pegasus_jax.interop.torch_check", folders["full"], inputs, outputs],
                         capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"the PyTorch check of {folders['full']} failed:\n{run.stderr[-3000:]}")
    with np.load(outputs) as f:
        theirs, torch_ids = f["logits"], f["greedy_ids"].tolist()
    return {**summary, "checked": True, "loaded_as": run.stdout.strip(),
            "max_abs_logit_diff": float(np.abs(theirs - ours).max()),
            "caption": api.tokenizer.decode(our_ids), "torch_caption": api.tokenizer.decode(torch_ids),
            "same_caption": torch_ids == list(our_ids), "seconds": time.perf_counter() - t0}


def run_demo(workdir: str, config_path: str | None = None, overrides: dict | None = None) -> dict:
    from data_pipelines.records import shards as records
    from data_pipelines.sources import synth
    from pegasus_jax.config import config_path as bundled, load_config
    from pegasus_jax.infer.api import Pegasus
    from pegasus_jax.train.trainer import train

    t0, started = time.perf_counter(), time.time()
    config = load_config(config_path or bundled("demo"), overrides or {})
    os.makedirs(workdir, exist_ok=True)
    print(f"[demo] training {config.name} in {workdir} (at most {config.train.steps} steps, "
          f"{config.train.max_seconds:.0f} s)", flush=True)
    result = train(config, workdir)
    t_train = time.perf_counter()
    curve = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    losses = [r for r in curve if "loss" in r]
    corpus_s = _corpus_seconds(workdir, started)  # the trainer made the corpus, if this run did
    stages = {"corpus": corpus_s, "train": t_train - t0 - (corpus_s or 0.0)}

    def timed(name, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        stages[name] = time.perf_counter() - start
        return out

    api = timed("load", Pegasus.load, workdir)
    heldout_glob = os.path.join(workdir, "corpus", "heldout", "*.array_record")
    heldout = list(records.read_all(heldout_glob))[: config.demo.eval_clips]
    # speech is on when the corpus speaks (espeak-ng was found) and the model has a transcript stream
    speech = config.model.transcript_tokens > 0 and any(c.metadata.get("speech") for c in heldout)
    keys = ATTRIBUTES + ("word",) if speech else ATTRIBUTES
    print(f"[demo] captioning {len(heldout)} held-out clips (speech {'on' if speech else 'off'})", flush=True)
    score = functools.partial(caption_accuracy, api, heldout, transcript=speech, attributes=keys)
    accuracy, captions = timed("caption", score)
    eval_set = timed("heldout_eval", heldout_eval, workdir, heldout_glob, heldout, captions)
    ablation = {"no_audio": timed("caption_no_audio", score, use_audio=False)[0],
                "no_motion": timed("caption_no_motion", score, still=True)[0],
                "no_temporal": timed("caption_no_temporal", score, temporal=False)[0]}
    if speech:
        ablation["no_transcript"] = timed("caption_no_transcript", score, transcript=False)[0]
    chance = {k: 1.0 / len(synth.ATTRIBUTES[k]) for k in keys}

    count = config.demo.get("task_clips", 64)
    print(f"[demo] gist on {count} held-out clips, chapters and highlights on {count} held-out two-part clips",
          flush=True)
    two_part = timed("two_part_clips", lambda: [synth.make_clip(config.seed, "heldout", i, num_parts=2)
                                                for i in range(count)])
    tasks = timed("tasks", task_accuracy, api, workdir, heldout[:count], two_part, speech)
    sample = write_clips(os.path.join(workdir, "task_clips"), heldout[:1])[0]
    print("[demo] exporting to PyTorch and checking the export without JAX", flush=True)
    exported = timed("export", check_export, api, workdir, heldout[0])
    seconds = time.perf_counter() - t0
    report = {
        "accuracy": accuracy,
        "chance": chance,
        "ablation": ablation,
        "speech": speech,
        "tasks": {k: v for k, v in tasks.items() if k not in ("gist", "chapter")},
        "seconds": seconds,
        "train_seconds": t_train - t0,
        "stage_seconds": stages,
        "steps": result["final_step"],
        "loss": {"first": losses[0]["loss"], "last": losses[-1]["loss"],
                 "eval_last": next((r["eval_loss"] for r in reversed(curve) if "eval_loss" in r), None)},
        "throughput": {"examples_per_s": result.get("examples_per_s"), "tokens_per_s": result.get("tokens_per_s"),
                       "mfu": result.get("mfu")},
        "heldout_clips": len(heldout),
        "heldout_eval": eval_set,
        "examples": [{"truth": c.metadata["attributes"], "caption": t} for c, t in zip(heldout[:5], captions[:5])],
        "gist": tasks["gist"],
        "chapters": tasks["chapter"],
        "export": exported,
        "artifacts": {"workdir": workdir, "checkpoints": os.path.join(workdir, "checkpoints"),
                      "pytorch": exported["full"],
                      "metrics": os.path.join(workdir, "metrics.jsonl"), "video": sample},
    }
    with open(os.path.join(workdir, "demo_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(format_report(report), flush=True)
    return report


def _corpus_seconds(workdir: str, since: float) -> float | None:
    """How long generating the built-in corpus took (its corpus.json), None when it was made before `since`
    (a rerun in the same workdir) or the run read other data."""
    path = os.path.join(workdir, "corpus", "corpus.json")
    if not os.path.exists(path) or os.path.getmtime(path) < since:
        return None
    with open(path) as f:
        return json.load(f)["seconds"]


def format_report(report: dict) -> str:
    ablation = report["ablation"]
    names = {"no_audio": "no audio", "no_motion": "no motion", "no_temporal": "no temporal layers",
             "no_transcript": "no transcript"}
    rows = ["| attribute | accuracy | chance | " + " | ".join(names[a] for a in ablation) + " |",
            "|---|---|---|" + "---|" * len(ablation)]
    for k in report["accuracy"]:
        rows.append(f"| {k} | {report['accuracy'][k]:.1%} | {report['chance'][k]:.1%} | "
                    + " | ".join(f"{ablation[a][k]:.1%}" for a in ablation) + " |")
    loss = report["loss"]
    rows += ["", f"loss {loss['first']:.3f} -> {loss['last']:.3f} in {report['steps']} steps "
                 f"(held-out loss {loss['eval_last']}); {report['seconds']:.0f} s in all: "
                 + ", ".join(f"{k} {v:.0f} s" for k, v in report["stage_seconds"].items() if v is not None),
             heldout_eval_line(report["heldout_eval"]), tasks_line(report["tasks"]),
             f"gist: {json.dumps(report['gist'])}", f"chapters: {json.dumps(report['chapters'])}",
             export_line(report["export"]),
             f"report: {os.path.join(report['artifacts']['workdir'], 'demo_report.json')}"]
    return "\n".join(rows)


def tasks_line(tasks: dict) -> str:
    return (f"API tasks on held-out clips: gist title naming colour and shape {tasks['gist_title']:.1%} "
            f"({tasks['gist_clips']} clips); chapter times within {tasks['tolerance_sec']:g} s "
            f"{tasks['chapters']:.1%}, highlight times {tasks['highlights']:.1%} ({tasks['two_part_clips']} two-part "
            f"clips)")


def heldout_eval_line(eval_set: dict) -> str:
    caption = eval_set["caption"]
    return (f"held-out eval set {eval_set['dir']} ({eval_set['videos']} videos, {eval_set['mcq']} MCQ questions): "
            f"captions BLEU-4 {caption['bleu4']:.3f}, ROUGE-L {caption['rouge_l']:.3f}, CIDEr {caption['cider']:.3f}; "
            f"report {eval_set['report']}")


def export_line(exported: dict) -> str:
    if not exported["checked"]:
        return f"PyTorch export {exported['full']}: not checked, {exported['why']}"
    return (f"PyTorch export {exported['full']} ({exported['loaded_as']}, no JAX): largest logit difference "
            f"{exported['max_abs_logit_diff']:.1e}, greedy caption "
            f"{'identical' if exported['same_caption'] else 'DIFFERENT'}: {exported['torch_caption']!r}")
