"""Model-free evaluation logic: caption metrics (hand-computed values and pycocoevalcap equality),
likelihood multiple choice (MVBench format, stand-in model with fixed log-likelihoods), held-out loss,
reports and `eval compare`."""
import json
import math
import os
import shutil

import pytest

from pegasus_jax.cli.main import main
from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.caption_data import load_caption_items
from pegasus_jax.evaluate.caption_metrics import caption_scores, tokenize_caption
from pegasus_jax.evaluate.mcq import load_mcq_items, run_mcq
from pegasus_jax.evaluate.report import compare_markdown
from pegasus_jax.evaluate.runner import run_benchmark

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "eval")


def _touch_videos(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        open(os.path.join(folder, name), "wb").close()  # placeholders: stand-in models never decode them


def test_tokenizer_lowercases_and_strips_punctuation():
    assert tokenize_caption("  A man's DOG, running!\n(fast)") == "a man s dog running fast"


def test_bleu_rouge_cider_hand_computed():
    # BLEU-4: clipped precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty.
    single = caption_scores([["The cat sat on a mat."]], ["the cat sat on the mat"])
    assert single["aggregate"]["bleu4"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-6)
    # ROUGE-L: LCS("a b c d", "a c d e") = 3 -> P = R = 3/4 -> F_beta = 3/4 for any beta.
    rouge = caption_scores([["a c d e"]], ["a b c d"])
    assert rouge["aggregate"]["rouge_l"] == pytest.approx(0.75, abs=1e-12)
    # CIDEr-D over two clips (idf = log 2 for every reference n-gram, no length penalty):
    # clip 1 "a b" vs "a c": unigram cosine 1/2, bigram 0 -> 10 * (1/2) / 4 = 1.25;
    # clip 2 "e f" vs "e f": unigram and bigram cosine 1, no 3/4-grams -> 10 * 2 / 4 = 5.
    cider = caption_scores([["a c"], ["e f"]], ["a b", "e f"])
    assert [row["cider"] for row in cider["per_item"]] == pytest.approx([1.25, 5.0], abs=1e-9)
    assert cider["aggregate"]["cider"] == pytest.approx(3.125, abs=1e-9)


def test_caption_scores_equal_pycocoevalcap_on_fixture():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs = {}  # read independently of caption_data: this test checks the scoring wiring only
    for line in open(os.path.join(FIXTURES, "captions.jsonl")):
        row = json.loads(line)
        refs.setdefault(row["video"], []).extend(row.get("captions") or [row["caption"]])
    preds = {json.loads(l)["id"]: json.loads(l)["prediction"] for l in open(os.path.join(FIXTURES, "caption_predictions.jsonl"))}
    ids = list(refs)
    ours = caption_scores([refs[i] for i in ids], [preds[i] for i in ids])["aggregate"]
    gts = {i: [tokenize_caption(r) for r in refs[i]] for i in ids}
    res = {i: [tokenize_caption(preds[i])] for i in ids}
    assert ours["bleu4"] == Bleu(4).compute_score(gts, res, verbose=0)[0][3]
    assert ours["rouge_l"] == Rouge().compute_score(gts, res)[0]
    assert ours["cider"] == Cider().compute_score(gts, res)[0]
    assert 0 < ours["bleu4"] < 1 and 0 < ours["cider"]


def test_caption_benchmark_pools_references_and_handles_empty_prediction(tmp_path):
    data = tmp_path / "set"
    shutil.copytree(FIXTURES, data, ignore=shutil.ignore_patterns("mvbench", "vcg"))
    _touch_videos(data, ["v1.mp4", "v2.mp4", "v3.mp4", "v4.mp4"])
    items = load_caption_items(str(data / "captions.jsonl"))
    assert [len(i.references) for i in items] == [3, 2, 2, 1]  # the two v2 lines are pooled

    class CaptionModel:
        def generate_batch(self, pairs):
            return ["" if path.endswith("v4.mp4") else "a man slices a tomato" for path, _ in pairs]

    aggregate = run_benchmark("caption", str(data), str(tmp_path / "out"), model=CaptionModel(), batch_size=3)
    report = json.load(open(tmp_path / "out" / "caption.json"))
    assert report["aggregate"] == aggregate and aggregate["items"] == 4
    assert report["items"][3]["prediction"] == "" and report["items"][3]["cider"] == 0.0
    assert report["items"][0]["cider"] > report["items"][1]["cider"]
    from_file = run_benchmark("caption", str(data), str(tmp_path / "out2"),
                              predictions=str(data / "caption_predictions.jsonl"))
    expected = caption_scores([i.references for i in items],
                              [json.loads(l)["prediction"] for l in open(data / "caption_predictions.jsonl")])
    assert {k: from_file[k] for k in ("bleu4", "rouge_l", "cider")} == expected["aggregate"]


def test_meteor_runs_offline_with_java():
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: METEOR (a jar inside pycocoevalcap) cannot run")
    scores = caption_scores([["A man is playing a guitar.", "Someone plays guitar"], ["a cat sleeps"]],
                            ["A man plays the guitar", "a dog runs"], meteor=True)
    # Reference numbers: pycocoevalcap's Meteor().compute_score on the same tokenized text.
    assert scores["aggregate"]["meteor"] == pytest.approx(0.256235889975838, abs=1e-9)
    assert [r["meteor"] for r in scores["per_item"]] == pytest.approx([0.38490314546683607, 0.05714285714285714], abs=1e-9)


class FixedLikelihoodModel:
    """Stand-in for Pegasus.option_logprobs: fixed log-likelihoods per question."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def option_logprobs(self, video, question, options):
        self.calls.append((os.path.basename(video), question, tuple(options)))
        return self.table[question]


MVBENCH_LOGPROBS = {
    "What did the person do first?": [-3.0, -1.0, -2.0],       # picks 1 "Sat down." -> right
    "What happened after the ball fell?": [-4.0, -0.5],        # picks 1 "It stopped." -> wrong
    "What did the cat do last?": [-9.0, -8.0, -7.5, -7.0],     # picks 3 "Ran." -> right
    "Where is the coin now?": [-1.0, -1.0, -5.0],              # tie -> first, "Left cup." -> right
    "Which cup hides the ball?": [-0.1, -2.0],                 # picks "Left." -> wrong
}


def test_mcq_mvbench_picks_argmax_and_reports_per_task_accuracy(tmp_path):
    _touch_videos(tmp_path / "videos", ["a1.mp4", "a2.mp4", "a3.mp4", "b1.mp4", "b2.mp4"])
    items = load_mcq_items(os.path.join(FIXTURES, "mvbench"), videos=str(tmp_path / "videos"))
    model = FixedLikelihoodModel(MVBENCH_LOGPROBS)
    aggregate, rows = run_mcq(items, model)
    assert [r["predicted"] for r in rows] == [1, 1, 3, 0, 0]
    assert [r["correct"] for r in rows] == [True, False, True, True, False]
    assert aggregate["per_task"] == {"action_sequence": 2 / 3, "object_shuffle": 1 / 2}
    assert aggregate["accuracy"] == 3 / 5
    assert aggregate["task_mean_accuracy"] == (2 / 3 + 1 / 2) / 2
    assert [r["id"] for r in rows] == ["action_sequence/0", "action_sequence/1", "action_sequence/2",
                                       "object_shuffle/0", "object_shuffle/1"]
    assert model.calls[0] == ("a1.mp4", "What did the person do first?", ("Opened the door.", "Sat down.", "Took the cup."))


def test_mcq_jsonl_answers_by_index_or_text_and_bad_answer_is_user_error(tmp_path):
    _touch_videos(tmp_path, ["a1.mp4", "a2.mp4", "a3.mp4"])
    data = tmp_path / "mcq.jsonl"
    shutil.copy(os.path.join(FIXTURES, "mcq.jsonl"), data)
    model = FixedLikelihoodModel({"What color is the square?": [-2.0, -3.0, -1.0],
                                  "How many circles?": [-1.0, -0.2], "What color is the circle?": [-0.3, -0.9]})
    aggregate = run_benchmark("mcq", str(data), str(tmp_path / "out"), model=model)
    assert aggregate["per_task"] == {"color": 1.0, "count": 0.0}
    assert aggregate["accuracy"] == 2 / 3 and aggregate["task_mean_accuracy"] == 0.5
    data.write_text('{"video": "a1.mp4", "question": "q", "options": ["x", "y"], "answer": "z"}\n')
    with pytest.raises(UserError, match="answer 'z' is not one of the options"):
        load_mcq_items(str(data))
    data.write_text('{"video": "missing.mp4", "question": "q", "options": ["x", "y"], "answer": 0}\n')
    with pytest.raises(UserError, match="missing.mp4"):
        load_mcq_items(str(data))


def test_loss_report_and_compare(tmp_path, capsys):
    class LossModel:
        def __init__(self, loss):
            self.loss = loss

        def eval_loss(self, records_glob, batches):
            assert (records_glob, batches) == ("heldout/*.array_record", 4)
            return {"loss": self.loss, "perplexity": math.exp(self.loss), "tokens": 1000}

    for name, loss in (("a", 2.0), ("b", 1.5)):
        run_benchmark("loss", "heldout/*.array_record", str(tmp_path / name), model=LossModel(loss), batches=4)
    report = json.load(open(tmp_path / "a" / "loss.json"))
    assert report["aggregate"] == {"loss": 2.0, "perplexity": math.exp(2.0), "tokens": 1000}
    assert "| loss | 2.0000 |" in (tmp_path / "a" / "loss.md").read_text()
    table = compare_markdown(str(tmp_path / "a"), str(tmp_path / "b" / "loss.json"))
    assert "| loss | 2.0000 | 1.5000 | -0.5000 |" in table
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "| tokens | 1000 | 1000 | 0.0000 |" in capsys.readouterr().out
    assert main(["eval", "compare", str(tmp_path / "a")]) == 2
    assert "use `eval compare A B`" in capsys.readouterr().err
    assert main(["eval", "--benchmark", "loss", "--data", "x", "--out", str(tmp_path / "c")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
