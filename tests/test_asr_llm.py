"""`eval --baseline asr-llm`: a local (tiny random) Whisper's transcript of each video, as text, to an
OpenAI-compatible LLM on a real loopback server with scripted answers; the answers scored by the vcg benchmark's
own code and judge (same server), figures checked by hand; `eval compare` tables model against baseline."""
import json
import os
import re

import pytest

from data_pipelines.sources import synth
from pegasus_jax.cli.main import main
from pegasus_jax.evaluate import vcg_prompts
from pegasus_jax.evaluate.asr_llm import NO_SPEECH, SYSTEM
from pegasus_jax.evaluate.report import compare_markdown
from pegasus_jax.evaluate.runner import run_benchmark
from test_judge import ScriptedJudgeServer, ScriptedModel
from test_speech import tiny_whisper

QUESTIONS = {"What word is spoken?": "A-one", "What is said in the video?": "A-two", "Is anything said?": "A-three"}
MODEL_ANSWERS = {"What word is spoken?": "M-one", "What is said in the video?": "M-two", "Is anything said?": "M-three"}
SCORES = {  # (criterion, answer) -> judge score
    ("correctness", "A-one"): 4, ("correctness", "A-two"): 2, ("correctness", "A-three"): 0,
    ("detail", "A-one"): 3, ("detail", "A-two"): 3, ("detail", "A-three"): 3,
    ("context", "A-one"): 5, ("context", "A-two"): 4, ("context", "A-three"): 0,
}
# baseline: correctness (4+2+0)/3 = 2, detail 3, context (5+4+0)/3 = 3, qefvc (2+3+3)/3 = 8/3; the model's
# answers score 4 everywhere: qefvc 4.
CRITERION_OF_SYSTEM = {vcg_prompts.system_prompt(c): c for c in vcg_prompts.CRITERIA}


@pytest.fixture
def vcg_set(tmp_path):
    """Three videos: two with a spoken word (espeak-ng) or a tone, one without an audio track."""
    videos = {"spoken": synth.make_clip(0, "heldout", 0, speech=synth.speech_available()),
              "tone": synth.make_clip(0, "heldout", 1, speech=False),
              "mute": next(c for c in (synth.make_clip(0, "train", i, speech=False) for i in range(200))
                           if c.metadata["silent"])}
    folder = tmp_path / "vcg"
    folder.mkdir()
    for name, clip in videos.items():
        (folder / f"{name}.mp4").write_bytes(clip.video)
    rows = [{"video_name": name, "Q": q, "A": "reference"} for name, q in zip(videos, QUESTIONS)]
    (folder / "generic_qa.json").write_text(json.dumps(rows))
    return folder


def test_asr_llm_baseline_scored_by_the_benchmark_and_compared(vcg_set, tmp_path, capsys):
    from pegasus_jax.infer.asr import WhisperTranscriber

    whisper = tiny_whisper(tmp_path / "whisper")
    seen = {}

    def script(messages, attempt):
        if messages[0]["content"] == SYSTEM:  # the baseline LLM
            question = next(q for q in QUESTIONS if messages[1]["content"].endswith(q))
            seen[question] = messages[1]["content"]
            return QUESTIONS[question] if attempt > 1 or question != "Is anything said?" else "  "  # empty: retried
        answer = re.search(r"\b[AM]-\w+", messages[1]["content"]).group(0)
        criterion = CRITERION_OF_SYSTEM[messages[0]["content"]]
        return json.dumps({"score": 4 if answer.startswith("M-") else SCORES[(criterion, answer)]})

    with ScriptedJudgeServer(script) as server:
        out = tmp_path / "baseline"
        assert main(["eval", "--baseline", "asr-llm", "--asr-model", whisper, "--benchmark", "vcg",
                     "--data", str(vcg_set), "--out", str(out), "--judge-url", server.url, "--judge-model", "judge",
                     "--baseline-model", "gpt-3.5-turbo", "--judge-backoff", "0"]) == 0
        requests = server.requests
        model_out = tmp_path / "model"
        with ScriptedJudgeServer(script) as judge_only:
            from pegasus_jax.evaluate.judge import HttpJudge
            from pegasus_jax.evaluate.judge_session import JudgeSession

            run_benchmark("vcg", str(vcg_set), str(model_out), model=ScriptedModel(MODEL_ANSWERS),
                          session=JudgeSession(HttpJudge(url=judge_only.url, model="judge")),
                          meta={"checkpoint": "runs/demo"})
    report = json.load(open(out / "vcg.json"))
    crit = report["aggregate"]["criteria"]
    assert {c: v["mean"] for c, v in crit.items()} == {"correctness": 2.0, "detail": 3.0, "context": 3.0}
    assert report["aggregate"]["qefvc"] == pytest.approx(8 / 3)
    assert report["meta"]["baseline"] == "asr-llm" and report["meta"]["llm"]["model"] == "gpt-3.5-turbo"
    # 3 baseline answers (+1 retry of the empty one) and 9 judge scores
    assert requests == 3 + 1 + 9
    predictions = [json.loads(line) for line in open(report["meta"]["predictions_file"])]
    assert predictions == [{"id": f"generic_qa/{i}", "prediction": a} for i, a in enumerate(QUESTIONS.values())]
    # the LLM got each video's Whisper transcript as text (none for the video without audio)
    asr = WhisperTranscriber(whisper)
    for (name, question) in zip(("spoken", "tone"), QUESTIONS):
        entries = asr.transcribe_all(str(vcg_set / f"{name}.mp4"))
        assert len(entries) == 1 and entries[0]["start"] == 0.0 and entries[0]["end"] == pytest.approx(2.0, abs=0.05)
        assert f"[0.0-2.0 s] {entries[0]['text']}\n\n{question}" in seen[question]
    assert f"{NO_SPEECH}\n\nIs anything said?" in seen["Is anything said?"]
    table = compare_markdown(str(model_out), str(out))
    assert "| metric | A: model | B: asr-llm baseline | B - A |" in table
    assert "| qefvc | 4.0000 | 2.6667 | -1.3333 |" in table
    assert main(["eval", "--baseline", "asr-llm", "--benchmark", "mcq", "--data", "x", "--out", str(tmp_path),
                 "--asr-model", whisper]) == 2
    assert "not for --benchmark mcq" in capsys.readouterr().err
