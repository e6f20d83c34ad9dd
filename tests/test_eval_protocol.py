"""Pegasus-1's evaluation protocol as commands, each run through the CLI against conftest's scripted
OpenAI-compatible judge on 127.0.0.1: the JSFusion 1k MSR-VTT evaluation file (all captions per listed
video), reference fusion by the judge (cached, retried) and scoring against the fused reference, QEFVC on
VCG Video Descriptions, and Video-ChatGPT-style open-ended QA. Every figure is checked by hand count."""
import json
import os
import re

import pytest

from conftest import ScriptedJudgeServer
from pegasus_jax.cli.main import main
from pegasus_jax.evaluate import vcg_prompts
from pegasus_jax.evaluate.judge import HttpJudge
from pegasus_jax.evaluate.judge_cache import JudgeCache
from pegasus_jax.evaluate.judge_session import JudgeSession
from pegasus_jax.evaluate.openqa import SYSTEM as OPENQA_SYSTEM, load_openqa_items
from pegasus_jax.evaluate.runner import run_benchmark
from pegasus_jax.evaluate.vidfactscore import DEFAULT_DESCRIPTION_PROMPT
from pegasus_jax.evaluate import vidfactscore_prompts as vfs

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "eval")
JUDGE = ["--judge-model", "judge-test", "--judge-timeout", "5", "--judge-attempts", "2", "--judge-backoff", "0.01"]
CRITERION_OF_SYSTEM = {vcg_prompts.system_prompt(c): c for c in vcg_prompts.CRITERIA}


def _touch(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        open(os.path.join(folder, name), "wb").close()


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _report(folder, benchmark):
    with open(os.path.join(folder, f"{benchmark}.json")) as f:
        return json.load(f)


def _msrvtt_annotations(path):
    """Five videos with 20 captions each; sen_id runs backwards, so file order is not caption order."""
    videos = [{"video_id": f"video700{i}", "split": "test", "category": i} for i in range(5)]
    sentences = [{"video_id": f"video700{i}", "caption": f"v{i} caption {j}", "sen_id": 100 * i + 19 - j}
                 for i in range(5) for j in range(20)]
    path.write_text(json.dumps({"videos": videos, "sentences": sentences}))


FUSED = {"video7003": "A woman talks about her cat.", "video7000": "A man cooks pasta.",
         "video7004": "Children play football."}
PREDICTIONS = {"video7003": "A woman talks about her cat.", "video7000": "Dogs swim.", "video7004": "Children play football."}
QEFVC_SCORES = {  # prediction -> (correctness, detail, context); None: the judge never answers properly
    "A woman talks about her cat.": (5, 4, 5), "Dogs swim.": (0, 1, None), "Children play football.": (4, 3, 4)}


def qefvc_script(messages, attempt):
    criterion = CRITERION_OF_SYSTEM[messages[0]["content"]]
    prediction = re.search(r"Predicted Answer: (.*)\n", messages[1]["content"]).group(1)
    score = QEFVC_SCORES[prediction][("correctness", "detail", "context").index(criterion)]
    return "no idea" if score is None else "{'score': %d}" % score


def _numbered(block):
    return re.findall(r"^\d+\. (.*)$", block, re.M)


def vidfactscore_script(messages, attempt):
    """Atoms are a text's sentences; an atom is supported / found when the other side has it verbatim."""
    system, user = messages[0]["content"], messages[1]["content"]
    if system == vfs.ATOMIZE_SYSTEM:
        return json.dumps({"atoms": [user.split("\n", 1)[1]]})
    first, second = (_numbered(part) for part in user.split("\n\n"))
    key = {vfs.PRECISION_SYSTEM: "supported", vfs.RECALL_SYSTEM: "found"}[system]
    return json.dumps({key: [atom in first for atom in second]})


def test_jsfusion_file_fused_references_and_scores(tmp_path, capsys):
    src, out = tmp_path / "msrvtt", tmp_path / "eval"
    _msrvtt_annotations(tmp_path / "MSRVTT_data.json")
    _touch(src / "videos", ["video7000.mp4", "video7003.mp4", "video7001.mp4"])  # video7004 not downloaded yet
    csv = os.path.join(FIXTURES, "jsfusion", "MSRVTT_JSFUS_test.csv")
    convert = ["data", "convert", "--format", "msrvtt", "--input", str(tmp_path / "MSRVTT_data.json"),
               "--videos", str(src / "videos"), "--out", str(out), "--jsfusion-csv", csv]
    assert main(convert) == 0
    printed = capsys.readouterr().out
    assert "3 videos, 60 captions" in printed and "1 videos not found yet" in printed
    rows = [json.loads(line) for line in open(out / "captions.jsonl")]
    ids = [os.path.basename(r["video"])[:-4] for r in rows]
    assert ids == ["video7003", "video7000", "video7004"]  # the CSV's order, the CSV's videos only
    assert rows[0]["captions"] == [f"v3 caption {j}" for j in range(19, -1, -1)]  # all 20, in sen_id order
    assert rows[0]["video"] == os.path.join("..", "msrvtt", "videos", "video7003.mp4")
    _touch(src / "videos", ["video7004.mp4"])

    fuse_requests = []

    def fuse_script(messages, attempt):
        assert messages[0]["content"] == vfs.FUSE_SYSTEM
        index = re.search(r"1\. v(\d) caption 19", messages[1]["content"]).group(1)
        fuse_requests.append(index)
        if index == "0" and attempt == 1:
            return '{"paragraph": '  # truncated once: retried
        return json.dumps({"paragraph": FUSED[f"video700{index}"]})

    fused = out / "fused.jsonl"
    with ScriptedJudgeServer(fuse_script) as server:
        fuse = ["eval", "fuse-references", "--data", str(out), "--out", str(fused), "--judge-url", server.url, *JUDGE]
        assert main(fuse) == 0
        assert capsys.readouterr().out.strip() == f"fused 3 of 3 videos' references into {fused}"
        assert sorted(fuse_requests) == ["0", "0", "3", "4"]
        assert main(fuse) == 0 and server.requests == 4  # the rerun is answered from the cache
    fused_rows = [json.loads(line) for line in open(fused)]
    assert [r["video"] for r in fused_rows] == [r["video"] for r in rows]  # same folder: names (ids) kept
    assert [r["fused_reference"] for r in fused_rows] == [FUSED[i] for i in ids]
    assert fused_rows[1]["captions"] == rows[1]["captions"]

    predictions = tmp_path / "predictions.jsonl"
    _write_jsonl(predictions, [{"id": r["video"], "prediction": PREDICTIONS[i]} for r, i in zip(rows, ids)])
    for references, rouge in (("fused", [1.0, 0.0, 1.0]), ("all", [0.0, 0.0, 0.0])):
        reports = tmp_path / f"caption_{references}"
        assert main(["eval", "--benchmark", "caption", "--data", str(fused), "--predictions", str(predictions),
                     "--out", str(reports), "--references", references]) == 0
        report = _report(reports, "caption")
        assert [r["rouge_l"] for r in report["items"]] == rouge
        assert report["aggregate"]["rouge_l"] == pytest.approx(sum(rouge) / 3, abs=1e-12)
        assert len(report["items"][0]["references"]) == (1 if references == "fused" else 20)

    with ScriptedJudgeServer(vidfactscore_script) as server:
        # on the 20 captions, VidFactScore fuses them itself: the same question, answered by fuse-references' cache
        assert main(["eval", "--benchmark", "vidfactscore", "--data", str(fused), "--predictions", str(predictions),
                     "--out", str(tmp_path / "vfs"), "--judge-cache", str(out / "judge_cache.sqlite"),
                     "--judge-url", server.url, *JUDGE]) == 0
        # atomize 3 references and the 1 prediction that differs from its reference (the identical two are the
        # same question: cached), then P and R for each video
        assert server.requests == 3 + 1 + 3 * 2
    report = _report(tmp_path / "vfs", "vidfactscore")
    assert [r["reference"] for r in report["items"]] == [FUSED[i] for i in ids]
    # P and R per video: 1 (identical), 0 (nothing shared), 1 (identical)
    assert report["aggregate"]["precision"] == report["aggregate"]["recall"] == pytest.approx(2 / 3, abs=1e-12)
    assert report["meta"]["judge_stats"]["cache_hits"] == 3 + 2  # the 3 fusions, the 2 repeated atomizations

    with ScriptedJudgeServer(qefvc_script) as server:
        reports = tmp_path / "qefvc"
        assert main(["eval", "--benchmark", "qefvc", "--data", str(fused), "--references", "fused", "--predictions",
                     str(predictions), "--out", str(reports), "--judge-url", server.url, *JUDGE]) == 0
        assert server.requests == 8 + 2  # 9 questions, the malformed one asked twice
    aggregate = _report(reports, "qefvc")["aggregate"]
    # correctness (5+0+4)/3 = 3, detail (4+1+3)/3 = 8/3, context (5+4)/2 = 4.5 (one failed)
    assert {c: v["mean"] for c, v in aggregate["criteria"].items()} == pytest.approx(
        {"correctness": 3.0, "detail": 8 / 3, "context": 4.5}, abs=1e-12)
    assert aggregate["criteria"]["context"]["failed"] == 1 and aggregate["failed"] == 1 and aggregate["items"] == 3
    assert aggregate["qefvc"] == pytest.approx((3 + 8 / 3 + 4.5) / 3, abs=1e-12) and "average" not in aggregate


def test_protocol_input_errors_are_one_line(tmp_path, capsys):
    _msrvtt_annotations(tmp_path / "ann.json")
    bad_csv = tmp_path / "list.csv"
    bad_csv.write_text("key,vid_key,video_id,sentence\nret0,msr7009,video7009,a dog\n")
    base = ["data", "convert", "--input", str(tmp_path / "ann.json"), "--out", str(tmp_path / "o")]
    assert main(base + ["--format", "msrvtt", "--jsfusion-csv", str(bad_csv)]) == 2
    assert "1 of 1 listed videos have no captions" in capsys.readouterr().err
    bad_csv.write_text("key,vid\nret0,msr7000\n")
    assert main(base + ["--format", "msrvtt", "--jsfusion-csv", str(bad_csv)]) == 2
    assert "missing CSV column(s) video_id" in capsys.readouterr().err
    assert main(base + ["--format", "webvid", "--jsfusion-csv", str(bad_csv)]) == 2
    assert capsys.readouterr().err.strip() == "error: --jsfusion-csv applies to --format msrvtt, not webvid"
    predictions = tmp_path / "p.jsonl"
    _write_jsonl(predictions, [{"id": "v1.mp4", "prediction": "x"}])
    _touch(tmp_path / "videos", ["v1.mp4", "v2.mp4"])
    assert main(["eval", "--benchmark", "caption", "--data", os.path.join(FIXTURES, "captions.jsonl"), "--videos",
                 str(tmp_path / "videos"), "--predictions", str(predictions), "--out", str(tmp_path / "r"),
                 "--references", "fused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no 'fused_reference'" in err
    assert main(["eval", "--benchmark", "openqa", "--data", str(tmp_path), "--predictions", str(predictions), "--out",
                 str(tmp_path / "r"), "--references", "fused", "--judge-url", "http://127.0.0.1:9", *JUDGE]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --references fused applies to --benchmark caption | vidfactscore | qefvc, not openqa")


def test_qefvc_on_vcg_video_descriptions(tmp_path, capsys):
    """Video-ChatGPT's release: one <video id>.txt per video (BOM, curly quotes, line breaks)."""
    descriptions, videos = tmp_path / "Test_Human_Annotated_Captions", tmp_path / "Test_Videos"
    descriptions.mkdir()
    (descriptions / "v_aaa.txt").write_bytes("\ufeffA man\u2019s dog\ncatches a frisbee.\n".encode())
    (descriptions / "v_bbb.txt").write_text("Two people paint a fence.")
    _touch(videos, ["v_aaa.mp4", "v_bbb.mkv"])
    predictions = tmp_path / "p.jsonl"
    _write_jsonl(predictions, [{"id": "v_aaa", "prediction": "A dog catches a frisbee."},
                               {"id": "v_bbb", "prediction": "People paint."}])
    scores = {("A man's dog catches a frisbee.", "A dog catches a frisbee."): (4, 2, 5),
              ("Two people paint a fence.", "People paint."): (3, 1, 2.7)}  # 2.7 counts 2, as in Video-ChatGPT

    def script(messages, attempt):
        criterion = CRITERION_OF_SYSTEM[messages[0]["content"]]
        user = messages[1]["content"]
        assert f"\nQuestion: {DEFAULT_DESCRIPTION_PROMPT}\n" in user
        reference = re.search(r"Correct Answer: (.*)\n", user).group(1)
        prediction = re.search(r"Predicted Answer: (.*)\n", user).group(1)
        return json.dumps({"score": scores[(reference, prediction)][("correctness", "detail", "context").index(criterion)]})

    with ScriptedJudgeServer(script) as server:
        assert main(["eval", "--benchmark", "qefvc", "--data", str(descriptions), "--videos", str(videos),
                     "--predictions", str(predictions), "--out", str(tmp_path / "r"), "--judge-url", server.url,
                     *JUDGE]) == 0
        assert server.requests == 6
    report = _report(tmp_path / "r", "qefvc")
    assert {c: v["mean"] for c, v in report["aggregate"]["criteria"].items()} == {
        "correctness": 3.5, "detail": 1.5, "context": 3.5}
    assert report["aggregate"]["qefvc"] == pytest.approx(17 / 6, abs=1e-12)  # (3.5 + 1.5 + 3.5) / 3
    assert report["items"][0]["reference"] == "A man's dog catches a frisbee."
    assert "qefvc: 2.8333" in capsys.readouterr().out


def _openqa_data(root):
    """Two datasets in Video-ChatGPT's test_q/test_a layout (ActivityNet-QA's names lack the 'v_' of its
    files) and one JSONL in our format with a GIF (TGIF-QA)."""
    msvd, anet = root / "MSVD_Zero_Shot_QA", root / "Activitynet_Zero_Shot_QA"
    for folder, questions in ((msvd, [("vid1", "q1", "what is the man doing?", "cooking"),
                                      ("vid1", "q2", "who is cooking?", "man"),
                                      ("vid2", "q3", "what animal runs?", "dog")]),
                              (anet, [("abc", "abc_0", "what sport is played?", "tennis"),
                                      ("abc", "abc_1", "is it indoors?", "no")])):
        folder.mkdir(parents=True)
        (folder / "test_q.json").write_text(json.dumps(
            [{"video_name": v, "question_id": q, "question": text} for v, q, text, _ in questions]))
        (folder / "test_a.json").write_text(json.dumps(
            [{"question_id": q, "answer": a, "type": 0} for _, q, _, a in reversed(questions)]))
    _touch(msvd / "videos", ["vid1.avi", "vid2.avi"])
    _touch(anet, ["v_abc.mp4"])
    _touch(root, ["tumblr_x1.gif"])
    _write_jsonl(root / "tgif_qa.jsonl", [{"video": "tumblr_x1", "question": "what does the cat do?", "answer": "jump"}])


OPENQA_VERDICTS = {  # prediction -> the judge's reply
    "He cooks.": "{'pred': 'yes', 'score': 5}",
    "A woman.": "{'pred': 'no', 'score': 1}",
    "A dog runs.": "{'pred': 'Yes', 'score': 4.8}",  # int() as Video-ChatGPT's script takes it: 4
    "Tennis.": '```python\n{"pred": "yes", "score": 3}\n```',
    "Yes, inside.": "{'pred': 'maybe', 'score': 2}",  # never a verdict: failed after the retries
    "It jumps.": "{'pred': 'yes', 'score': 4}",
}


def test_openqa_accuracy_and_score_per_dataset(tmp_path):
    _openqa_data(tmp_path / "qa")
    predictions = {"MSVD_Zero_Shot_QA/q1": "He cooks.", "MSVD_Zero_Shot_QA/q2": "A woman.",
                   "MSVD_Zero_Shot_QA/q3": "A dog runs.", "Activitynet_Zero_Shot_QA/abc_0": "Tennis.",
                   "Activitynet_Zero_Shot_QA/abc_1": "Yes, inside.", "tgif_qa/0": "It jumps."}
    _write_jsonl(tmp_path / "p.jsonl", [{"id": k, "prediction": v} for k, v in predictions.items()])
    seen = {}

    def script(messages, attempt):
        assert messages[0]["content"] == OPENQA_SYSTEM
        user = messages[1]["content"]
        prediction = re.search(r"Predicted Answer: (.*)\n", user).group(1)
        seen[prediction] = re.search(r"Correct Answer: (.*)\n", user).group(1)
        if prediction == "He cooks." and attempt == 1:
            return "{'pred': 'yes'"  # truncated once
        return OPENQA_VERDICTS[prediction]

    with ScriptedJudgeServer(script) as server:
        assert main(["eval", "--benchmark", "openqa", "--data", str(tmp_path / "qa"), "--predictions",
                     str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "r"), "--judge-url", server.url, *JUDGE]) == 0
        assert server.requests == 6 + 1 + 1  # one retry of a truncated reply, one of the failed question
    assert seen["A dog runs."] == "dog" and seen["Tennis."] == "tennis"  # answers joined by question_id
    aggregate = _report(tmp_path / "r", "openqa")["aggregate"]
    assert aggregate["per_dataset"] == {
        "Activitynet_Zero_Shot_QA": {"accuracy": 1.0, "score": 3.0, "yes": 1, "no": 0, "failed": 1, "items": 2},
        "MSVD_Zero_Shot_QA": {"accuracy": 2 / 3, "score": 10 / 3, "yes": 2, "no": 1, "failed": 0, "items": 3},
        "tgif_qa": {"accuracy": 1.0, "score": 4.0, "yes": 1, "no": 0, "failed": 0, "items": 1}}
    # over all 5 judged questions: 4 yes; scores 5 + 1 + 4 + 3 + 4 = 17
    assert (aggregate["accuracy"], aggregate["score"], aggregate["failed"], aggregate["items"]) == (0.8, 3.4, 1, 6)

    class QuestionModel:  # a model asked each question as its prompt gives the same answers
        def generate_batch(self, pairs):
            return [answer_to[prompt] for _, prompt in pairs]

    items = {i.id: i for i in load_openqa_items(str(tmp_path / "qa"))}
    answer_to = {items[qid].question: text for qid, text in predictions.items()}
    with ScriptedJudgeServer(script) as server:
        session = JudgeSession(HttpJudge(url=server.url, model="judge-test", timeout_s=5),
                               JudgeCache(str(tmp_path / "r" / "judge_cache.sqlite")), attempts=2, backoff_s=0.01)
        again = run_benchmark("openqa", str(tmp_path / "qa"), str(tmp_path / "r2"), model=QuestionModel(), session=session)
        assert again == aggregate and server.requests == 2  # only the failed question is asked again
