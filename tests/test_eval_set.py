"""`data export-eval`: record shards and a split become the files the evaluators read, and `eval` runs
on them with a trained checkpoint."""
import json

import pytest

from data_pipelines.records import shards
from pegasus_jax.cli.main import main


def test_export_eval_then_evaluate(corpus, reference, tmp_path, capsys):
    out, reports = tmp_path / "eval_set", tmp_path / "reports"
    assert main(["data", "export-eval", corpus["heldout"], "--out", str(out), "--split", "heldout", "--limit", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 1 videos to {out / 'videos'}")
    records = list(shards.read_all(corpus["heldout"]))[:1]
    info = json.loads((out / "eval_set.json").read_text())
    assert info["videos"] == 1 and list(info["ids"]) == [r.id for r in records]
    captions = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert len(captions) == len(records)
    mcq = [json.loads(line) for line in (out / "mcq.jsonl").read_text().splitlines()]
    qa = json.loads((out / "generic_qa.json").read_text())
    for record, row in zip(records, captions):
        assert (out / row["video"]).read_bytes() == record.video and row["captions"] == record.captions
        truth = record.metadata["attributes"]
        asked = {q["task"]: q["answer"] for q in mcq if q["video"] == row["video"]}
        assert asked == {k: v for k, v in truth.items() if v}
        turns = [(t["text"]) for t in record.turns]
        assert [x for q in qa if q["video_name"] == row["video"] for x in (q["Q"], q["A"])] == turns

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(reference), "--benchmark", "mcq", "--data", str(out / "mcq.jsonl"),
                 "--out", str(reports)]) == 0
    report = json.loads((reports / "mcq.json").read_text())
    assert report["aggregate"]["items"] == len(mcq) and set(report["aggregate"]["per_task"]) == {q["task"] for q in mcq}
    assert all(row["options"][row["answer"]] == q["answer"] for row, q in zip(report["items"], mcq))
    assert f"eval mcq: {len(mcq)}/{len(mcq)} questions" in capsys.readouterr().err  # progress, with its ETA
    # the caption files as the caption benchmark reads them (scored on given predictions: the model's
    # captioning is test_video_tasks' subject)
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": row["video"], "prediction": row["captions"][0]}) + "\n"
                                   for row in captions))
    assert main(["eval", "--benchmark", "caption", "--data", str(out), "--predictions", str(predictions),
                 "--out", str(reports)]) == 0
    report = json.loads((reports / "caption.json").read_text())
    assert [item["references"] for item in report["items"]] == [r.captions for r in records]
    assert report["aggregate"]["bleu4"] > 0.99  # each prediction is its reference


def test_export_eval_errors(corpus, tmp_path, capsys):
    code = main(["data", "export-eval", corpus["train"], "--out", str(tmp_path / "x"), "--split", "heldout"])
    assert code == 2 and capsys.readouterr().err == (f"error: {corpus['train']}: no records with a video in split "
                                                     "'heldout' (splits: train)\n")
    code = main(["data", "export-eval", str(tmp_path / "none*.array_record"), "--out", str(tmp_path / "y")])
    assert code == 2 and "no record shards found" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"question": "q", "options": ["a"], "answer": "a"},
                                 {"question": "q", "options": ["a", "b"], "answer": "c"}])
def test_bad_mcq_metadata_is_named(tmp_path, bad):
    from data_pipelines.errors import UserError
    from data_pipelines.records.eval_set import export_eval_set
    from data_pipelines.records.format import VideoExample

    shards.write_shard([VideoExample(id="v1", video=b"\x00\x00\x00\x18ftypmp42", metadata={"mcq": [bad]})],
                       str(tmp_path / "data-00000-of-00001.array_record"))
    with pytest.raises(UserError, match="record v1: metadata 'mcq' items need"):
        export_eval_set(str(tmp_path / "*.array_record"), str(tmp_path / "out"))
