"""The judge client against a scripted OpenAI-compatible server on 127.0.0.1 (conftest's, bounded):
exact QEFVC and VidFactScore aggregates implied by the scripted answers, retries of malformed and
timed-out answers, failures counted, the cache making reruns silent, and the API key kept secret."""
import json
import logging
import os
import re

import pytest

from conftest import ScriptedJudgeServer
from pegasus_jax.cli.main import main
from pegasus_jax.evaluate import vcg_prompts
from pegasus_jax.evaluate import vidfactscore_prompts as vfs
from pegasus_jax.evaluate.caption_data import load_caption_items
from pegasus_jax.evaluate.judge import HttpJudge
from pegasus_jax.evaluate.judge_cache import JudgeCache
from pegasus_jax.evaluate.judge_session import JudgeSession
from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.predictions import FilePredictor, ModelPredictor
from pegasus_jax.evaluate.vcg import load_vcg_items, run_vcg
from pegasus_jax.evaluate.vidfactscore import run_vidfactscore

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "eval")
API_KEY = "sk-test-SECRET-7f3a9c"


def _session(server, cache_path, attempts=3, timeout_s=0.3):
    judge = HttpJudge(url=server.url, model="judge-test", api_key=API_KEY, timeout_s=timeout_s)
    return JudgeSession(judge, JudgeCache(str(cache_path)), attempts=attempts, backoff_s=0.01, workers=4)


def _touch(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        open(os.path.join(folder, name), "wb").close()


# ---- QEFVC (Video-ChatGPT protocol) ----

VCG_PREDICTIONS = {  # generation id -> prediction text (tokens the scripted judge keys on)
    "generic_qa/0": "P-g0", "generic_qa/1": "P-g1", "generic_qa/2": "P-g2",
    "temporal_qa/0": "P-t0", "temporal_qa/1": "P-t1",
    "consistency_qa/0/q1": "P-c0a", "consistency_qa/0/q2": "P-c0b",
    "consistency_qa/1/q1": "P-c1a", "consistency_qa/1/q2": "P-c1b",
}
VCG_SCORES = {
    ("correctness", "P-g0"): 4, ("detail", "P-g0"): 3, ("context", "P-g0"): 5,
    ("correctness", "P-g1"): 2, ("detail", "P-g1"): 2, ("context", "P-g1"): 4,
    ("correctness", "P-g2"): "malformed", ("detail", "P-g2"): 1, ("context", "P-g2"): 3,
    ("temporal", "P-t0"): 5, ("temporal", "P-t1"): 2,
    ("consistency", "P-c0a"): 3, ("consistency", "P-c1a"): "timeout",
}
# correctness (4+2)/2 = 3 (1 failed), detail (3+2+1)/3 = 2, context (5+4+3)/3 = 4, temporal 3.5,
# consistency 3 (1 failed); average = (3+2+4+3.5+3)/5 = 3.1; qefvc = (3+2+4)/3 = 3.
VCG_CRITERION_OF_SYSTEM = {vcg_prompts.system_prompt(c): c for c in vcg_prompts.CRITERIA}


def vcg_script(messages, attempt):
    criterion = VCG_CRITERION_OF_SYSTEM[messages[0]["content"]]
    prediction = re.search(r"P-\w+", messages[1]["content"]).group(0)
    score = VCG_SCORES[(criterion, prediction)]
    if score == "timeout":
        return ("sleep", 1.0)
    if score == "malformed":
        return "I would say it is quite good."
    if (criterion, prediction) == ("detail", "P-g1") and attempt == 1:
        return "{'score': "  # malformed once, then fine: the retry must recover it
    if prediction == "P-t0":
        return f"Sure! ```python\n{{'score': {score}}}\n```"  # Python-dict answers are accepted
    return json.dumps({"score": score})


class ScriptedModel:
    def __init__(self, by_prompt):
        self.by_prompt = by_prompt

    def generate_batch(self, pairs):
        return [self.by_prompt[prompt] for _, prompt in pairs]


def _vcg_items(tmp_path):
    _touch(tmp_path / "videos", ["v_aaa.mp4", "v_bbb.mkv", "v_ccc.mp4"])
    return load_vcg_items(os.path.join(FIXTURES, "vcg"), videos=str(tmp_path / "videos"))


def test_vcg_exact_aggregate_retries_failures_and_cache(tmp_path):
    items = _vcg_items(tmp_path)
    questions = {}
    for item in items:
        if item.kind == "consistency_qa":
            questions[item.question], questions[item.question2] = VCG_PREDICTIONS[item.id + "/q1"], VCG_PREDICTIONS[item.id + "/q2"]
        else:
            questions[item.question] = VCG_PREDICTIONS[item.id]
    model = ScriptedModel(questions)
    with ScriptedJudgeServer(vcg_script) as server:
        session = _session(server, tmp_path / "cache.sqlite")
        aggregate, rows = run_vcg(items, ModelPredictor(model, batch_size=4), session)
        crit = aggregate["criteria"]
        assert {c: v["mean"] for c, v in crit.items()} == {
            "correctness": 3.0, "detail": 2.0, "context": 4.0, "temporal": 3.5, "consistency": 3.0}
        assert crit["correctness"] == {"mean": 3.0, "scored": 2, "failed": 1}
        assert crit["consistency"] == {"mean": 3.0, "scored": 1, "failed": 1}
        assert aggregate["average"] == pytest.approx(3.1, abs=1e-12)
        assert aggregate["qefvc"] == 3.0 and aggregate["failed"] == 2 and aggregate["items"] == 7
        by_id = {r["id"]: r for r in rows}
        assert "malformed answer" in by_id["generic_qa/2"]["errors"]["correctness"]
        assert "timed out" in by_id["consistency_qa/1"]["errors"]["consistency"]
        assert by_id["consistency_qa/0"]["prediction2"] == "P-c0b"
        # 11 answered questions + 1 retry (detail P-g1) + 3 + 3 attempts for the two failures.
        assert server.requests == 11 + 1 + 3 + 3
        assert session.stats.failed_questions == 2 and session.stats.retries == 1 + 2 + 2
        assert server.auth == {f"Bearer {API_KEY}"}

        before = server.requests
        rerun = _session(server, tmp_path / "cache.sqlite")
        again, _ = run_vcg(items, ModelPredictor(model), rerun)
        assert again == aggregate
        assert server.requests - before == 6  # only the two failed questions are asked again
        assert rerun.stats.cache_hits == 11


# ---- VidFactScore ----

REF1 = ["A man cooks.", "The man cooks pasta.", "The man is in a kitchen.", "The man tastes the pasta."]
PRED1 = ["A man cooks.", "The man is outdoors.", "The man cooks pasta."]
FUSED2 = "A brown dog runs and barks."
REF2, PRED2 = ["A dog runs.", "A dog barks.", ], ["A dog runs."]
REF3, REF4 = ["A child paints.", "The child paints a picture."], ["A bird sits on a branch."]
DESCRIPTIONS = {"d1.mp4": "A man cooking pasta outside.", "d2.mp4": "A dog running.", "d3.mp4": "",
                "d4.mp4": "A bird."}


def _replies():
    """(system, user) -> reply, built with the benchmark's own prompt builders."""
    pairs = {}

    def add(messages, reply):
        pairs[(messages[0]["content"], messages[1]["content"])] = reply

    add(vfs.fuse_messages(["a dog runs", "a dog is barking", "a brown dog running and barking"]),
        json.dumps({"paragraph": FUSED2}))
    for text, atoms in (("A man cooks pasta in a kitchen and tastes it.", REF1), (DESCRIPTIONS["d1.mp4"], PRED1),
                        (FUSED2, REF2), (DESCRIPTIONS["d2.mp4"], PRED2), ("A child paints a picture.", REF3),
                        ("A bird sits on a branch.", REF4)):
        add(vfs.atomize_messages(text), json.dumps({"atoms": atoms}))
    add(vfs.atomize_messages(DESCRIPTIONS["d4.mp4"]), '{"atoms": ["A bird."')  # always truncated: d4 fails
    add(vfs.precision_messages(REF1, PRED1), json.dumps({"supported": [True, False, True]}))   # P = 2/3
    add(vfs.recall_messages(REF1, PRED1), json.dumps({"found": [True, True, False, False]}))   # R = 1/2
    add(vfs.precision_messages(REF2, PRED2), json.dumps({"supported": [True]}))                # P = 1
    add(vfs.recall_messages(REF2, PRED2), "{'found': [True, False]}")                          # R = 1/2
    return pairs


def _vfs_items(tmp_path):
    _touch(tmp_path / "videos", list(DESCRIPTIONS))
    return load_caption_items(os.path.join(FIXTURES, "descriptions.jsonl"), videos=str(tmp_path / "videos"))


class DescriptionModel:
    def generate_batch(self, pairs):
        return [DESCRIPTIONS[os.path.basename(video)] for video, _ in pairs]


def test_vidfactscore_exact_aggregate_and_silent_rerun(tmp_path):
    replies = _replies()
    items = _vfs_items(tmp_path)
    with ScriptedJudgeServer(lambda m, attempt: replies[(m[0]["content"], m[1]["content"])]) as server:
        aggregate, rows = run_vidfactscore(items, ModelPredictor(DescriptionModel()), _session(server, tmp_path / "c.sqlite"))
        # P = mean(2/3, 1, 0) = 5/9, R = mean(1/2, 1/2, 0) = 1/3 (d3: empty prediction), F1 on the means.
        assert aggregate["precision"] == pytest.approx(5 / 9, abs=1e-12)
        assert aggregate["recall"] == pytest.approx(1 / 3, abs=1e-12)
        assert aggregate["f1"] == pytest.approx(2 * (5 / 9) * (1 / 3) / (5 / 9 + 1 / 3), abs=1e-12)
        assert (aggregate["scored"], aggregate["failed"], aggregate["items"]) == (3, 1, 4)
        by_id = {r["id"]: r for r in rows}
        assert by_id["d2.mp4"]["reference"] == FUSED2 and by_id["d3.mp4"]["precision"] == 0.0
        assert by_id["d4.mp4"]["error"].startswith("atomize prediction: malformed answer")
        # d1: 2 atomize + P + R; d2: fuse + 2 atomize + P + R; d3: atomize reference; d4: 1 + 3 attempts.
        assert server.requests == 4 + 5 + 1 + 4

        before = server.requests
        complete = [i for i in items if i.id != "d4.mp4"]
        again, _ = run_vidfactscore(complete, ModelPredictor(DescriptionModel()), _session(server, tmp_path / "c.sqlite"))
        assert server.requests == before  # everything came from the cache
        assert (again["precision"], again["recall"]) == (aggregate["precision"], aggregate["recall"])


# ---- the command line: judge-only rescoring from a predictions file; the key stays secret ----

def test_cli_vcg_from_predictions_never_leaks_the_key(tmp_path, monkeypatch, capsys, caplog):
    _vcg_items(tmp_path)  # creates the placeholder videos
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": k, "prediction": v}) + "\n" for k, v in VCG_PREDICTIONS.items()))

    def script(messages, attempt):
        if "P-g2" in messages[1]["content"]:
            return ("status", 500)  # error page that echoes the Authorization header
        return vcg_script(messages, attempt)

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PEGASUS_JUDGE_API_KEY", API_KEY)
    monkeypatch.setenv("PEGASUS_JUDGE_MODEL", "judge-test")
    with ScriptedJudgeServer(script) as server:
        out = tmp_path / "out"
        rc = main(["eval", "--benchmark", "vcg", "--data", os.path.join(FIXTURES, "vcg"), "--videos",
                   str(tmp_path / "videos"), "--predictions", str(predictions), "--out", str(out),
                   "--judge-url", server.url, "--judge-timeout", "0.3", "--judge-attempts", "2",
                   "--judge-backoff", "0.01"])
        assert rc == 0
        assert server.auth == {f"Bearer {API_KEY}"}
    report = json.load(open(out / "vcg.json"))
    # P-g2's three criteria now fail (HTTP 500) as well as the timed-out consistency question.
    assert report["aggregate"]["criteria"]["detail"] == {"mean": 2.5, "scored": 2, "failed": 1}
    assert report["meta"]["judge"]["model"] == "judge-test" and report["meta"]["predictions"] == str(predictions)
    assert "HTTP 500" in report["items"][2]["errors"]["context"]
    assert "***" in report["items"][2]["errors"]["context"]  # the echoed key was scrubbed
    printed = capsys.readouterr()
    leaks = [p.name for p in out.iterdir() if API_KEY.encode() in p.read_bytes()]
    assert leaks == [] and sorted(p.name for p in out.iterdir()) == ["judge_cache.sqlite", "vcg.json", "vcg.md"]
    assert API_KEY not in printed.out + printed.err and API_KEY not in caplog.text
    assert "judge attempt" in caplog.text  # the failures were logged, without the key
    assert API_KEY not in repr(HttpJudge(url=server.url, model="m", api_key=API_KEY))


def test_missing_judge_and_bad_predictions_are_one_line_errors(tmp_path, monkeypatch, capsys):
    for name in ("PEGASUS_JUDGE_URL", "PEGASUS_JUDGE_MODEL", "PEGASUS_JUDGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    args = ["eval", "--benchmark", "vidfactscore", "--data", "x", "--out", str(tmp_path)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == "error: this benchmark needs a judge: pass --judge-url or set PEGASUS_JUDGE_URL"
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "generic_qa/0"}\n')
    with pytest.raises(UserError, match=r"p.jsonl:1: needs string fields 'id' and 'prediction'"):
        FilePredictor(str(bad))
