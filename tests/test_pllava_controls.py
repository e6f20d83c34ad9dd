"""PLLaVA's controls at inference: `eval --lora-alpha` sweeps the LoRA scale in one run (alpha 0 is the
base model exactly, other alphas score differently), `--num-segments` recuts the video within the token
budget, and every control flag is checked (one-line error, exit 2) before the model loads."""
import json

import numpy as np
import pytest

from conftest import cli, cpu_env, overrides
from data_pipelines.records import shards as records
from data_pipelines.text.tokenizer import load_tokenizer
from pegasus_jax.cli.main import main
from tests.test_cli_ux import in_process, one_line_error

ALPHAS = (0.0, 16.0, 256.0)
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def lora_run(corpus, reference, tmp_path_factory):
    """A few instruct_lora steps from the reference run, adapters only (the projector frozen, so the
    reference run is exactly this run's base model), at a learning rate that moves the adapters."""
    workdir = tmp_path_factory.mktemp("lora_run")
    flags = overrides(corpus, **{"train.stage": "instruct_lora", "model.lora.rank": 4,
                                 "model.lora.train_projector": False, "train.init_from": str(reference),
                                 "train.steps": 3, "train.checkpoint_every": 3, "train.warmup_steps": 1,
                                 "train.learning_rate": 0.03})
    run = cli("train", "--config", "configs/tiny.py", "--workdir", str(workdir), *flags, env=cpu_env())
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


@pytest.fixture(scope="module")
def captions(corpus, tmp_path_factory):
    """Three held-out clips with their captions (the caption benchmark's folder format)."""
    root = tmp_path_factory.mktemp("captions")
    with open(root / "captions.jsonl", "w") as f:
        for ex, _ in zip(records.read_all(corpus["heldout"]), range(3)):
            (root / f"{ex.id}.mp4").write_bytes(ex.video)
            f.write(json.dumps({"video": f"{ex.id}.mp4", "captions": [str(c) for c in ex.captions]}) + "\n")
    return root


@pytest.fixture(scope="module")
def base(reference):
    """The reference run through the Python API: the LoRA run's base model."""
    from pegasus_jax.infer.api import Pegasus

    return Pegasus.load(str(reference))


def test_lora_alpha_sweep_tables_scores_and_alpha_zero_is_the_base_model(lora_run, base, captions, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["eval", "--checkpoint", str(lora_run), "--benchmark", "caption", "--data", str(captions),
                 "--out", str(out), "--lora-alpha", ",".join(f"{a:g}" for a in ALPHAS),
                 "--max-new-tokens", str(NEW_TOKENS)]) == 0
    printed = capsys.readouterr().out
    table = json.load(open(out / "caption_lora_alpha.json"))
    assert [row["lora_alpha"] for row in table["rows"]] == list(ALPHAS)
    assert (out / "caption_lora_alpha.md").read_text() in printed
    scores = [tuple(v for k, v in row.items() if k != "lora_alpha") for row in table["rows"]]
    assert len(set(scores)) == len(ALPHAS), scores  # each alpha scores differently

    def predictions(alpha):
        report = json.load(open(out / f"lora_alpha_{alpha:g}" / "caption.json"))
        assert report["meta"]["lora_alpha"] == alpha and report["meta"]["sampling"]["max_new_tokens"] == NEW_TOKENS
        return [item["prediction"] for item in report["items"]]

    items = [(str(captions / json.loads(line)["video"]), json.loads(line)) for line in open(captions / "captions.jsonl")]
    from pegasus_jax.evaluate.captioning import DEFAULT_CAPTION_PROMPT

    expected = base.generate_batch([(video, DEFAULT_CAPTION_PROMPT) for video, _ in items], max_new_tokens=NEW_TOKENS)
    assert predictions(0) == expected  # alpha 0: the base model's output, exactly
    assert predictions(256) != expected


def test_num_segments_recuts_the_video_within_the_budget(base, captions):
    from pegasus_jax.models.alignment import pool_shape, tokens_per_segment

    model = base
    video = str(next(captions.glob("*.mp4")))  # a 2 s clip: 2 consecutive 1 s segments
    m = model.config.model
    for count, segments in ((1, 1), (2, 2), (4, 2)):  # 1: one window over the whole clip
        model.set_num_segments(count)
        prefix = model.encode_video(video)
        assert len(prefix.segment_starts) == segments
        pool = pool_shape(m, count)  # pooled for the asked count: (2, 1, 1) at 4 in tiny's budget of 64
        assert prefix.embeddings.shape[1] == segments * tokens_per_segment(pool, m.align.audio_tokens,
                                                                          m.transcript_tokens)
    assert pool_shape(m, 4) == (2, 1, 1)
    model.set_num_segments(2)  # the training count again, for the other tests
    assert model.generate(video, "Describe the video.", max_new_tokens=4)


@pytest.mark.parametrize("flags, message", [
    (["--lora-alpha", "4,x"], "--lora-alpha '4,x': expected a number or numbers separated by commas, e.g. 0,2,4,8,16"),
    (["--lora-alpha", "4,4"], "--lora-alpha '4,4': a value is repeated"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0: must be >= 1"),
    (["--temperature", "-1"], "--temperature -1.0: must be >= 0 (0 = greedy)"),
    (["--num-segments", "0"], "--num-segments 0: must be between 1 and 6 for this model "
                              "(align.visual_token_budget=64, 10 tokens per segment at least)"),
    (["--num-segments", "7"], "--num-segments 7: must be between 1 and 6 for this model "
                              "(align.visual_token_budget=64, 10 tokens per segment at least)"),
    (["--lora-alpha", "2"], "--lora-alpha: this checkpoint has no LoRA adapters (model.lora.rank is 0)"),
])
def test_eval_control_flags_are_one_line_errors_before_the_model_loads(flags, message, reference, tmp_path, capsys):
    one_line_error(in_process(capsys, "eval", "--checkpoint", str(reference), "--benchmark", "caption",
                              "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out"), *flags), message)
    assert not (tmp_path / "out").exists()


def test_task_control_flags(lora_run, corpus, captions, tmp_path, capsys):
    video = str(next(captions.glob("*.mp4")))
    for flags, message in [
        (["--lora-alpha", "0,2"], "--lora-alpha '0,2': one value here (eval sweeps a list)"),
        (["--lora-alpha", "-1"], "--lora-alpha -1.0: must be a finite number >= 0 (0 = the base model)"),
        (["--lora-alpha", "nan"], "--lora-alpha nan: must be a finite number >= 0 (0 = the base model)"),
    ]:
        one_line_error(in_process(capsys, "gist", "--checkpoint", str(lora_run), "--video", video, *flags), message)
    one_line_error(in_process(capsys, "eval", "--predictions", str(tmp_path / "p.jsonl"), "--benchmark", "caption",
                              "--data", str(captions), "--out", str(tmp_path), "--num-segments", "2"),
                   "--lora-alpha and --num-segments set the model's generation: pass --checkpoint, not --predictions")
    # the flags reach the task: one segment window, alpha 0, a short answer
    run = in_process(capsys, "summarize", "--checkpoint", str(lora_run), "--video", video, "--num-segments", "1",
                     "--lora-alpha", "0", "--max-new-tokens", "3")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)["summary"]
    assert len(load_tokenizer(corpus["tokenizer"]).encode(summary)) <= 3


def test_pool_after_projector_keeps_the_token_count_and_changes_the_tokens():
    """PLLaVA's order (the projector on every grid token, then pooling) against ours (pooling first): as many
    visual tokens, other values (the projector is non-linear). The exported model's parity with this order
    is in test_export.py, the FLOPs in test_flops.py."""
    import jax.numpy as jnp
    from flax import nnx

    from pegasus_jax import config as cfg
    from pegasus_jax.models.alignment import Alignment, adaptive_avg_pool

    first, after = (Alignment(cfg.get("tiny", model__align__pool_after_projector=flag).model, dtype=jnp.float32,
                              param_dtype=jnp.float32, rngs=nnx.Rngs(0)) for flag in (False, True))
    grid = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 4, 4, 32)), jnp.float32)  # (N, F, g, g, Wv)
    pooled_first, pooled_after = first.vision(grid, (2, 2, 2)), after.vision(grid, (2, 2, 2))
    assert pooled_first.shape == pooled_after.shape == (3, 8, 64)
    assert np.abs(np.asarray(pooled_first) - np.asarray(pooled_after)).max() > 1e-3
    np.testing.assert_allclose(  # the order, spelled out, with the same projector weights
        np.asarray(pooled_after),
        np.asarray(adaptive_avg_pool(first.vision_projector(grid), (2, 2, 2), (1, 2, 3)).reshape(3, 8, 64)), atol=1e-6)


def test_a_checkpoint_from_before_train_projector_reads_as_adapters_alone():
    """Its LoRA stage froze the projector: its train state holds the projector among the frozen parameters."""
    from pegasus_jax import config as cfg
    from pegasus_jax.infer.checkpoint_loader import config_from_metadata

    stored = cfg.get("tiny", train__stage="instruct_lora", model__lora__rank=4).to_dict()
    assert config_from_metadata({"config": stored}).model.lora.train_projector is True
    del stored["model"]["lora"]["train_projector"]
    assert config_from_metadata({"config": stored}).model.lora.train_projector is False
