"""Training: the loss falls, resume after SIGKILL / SIGTERM is exact, checkpoints restore onto other
meshes, stages train only what they should, and MFU is the analytic FLOPs over time and peak."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import PEAK, REFERENCE_STEPS, ROOT, cli, cpu_env, losses, overrides, reference_flags
from pegasus_jax import config as cfg
from pegasus_jax import sharding


def test_tiny_loss_falls(reference):
    curve = losses(reference)
    first = np.mean([curve[s] for s in (1, 2, 3)])
    last = np.mean([curve[s] for s in (38, 39, 40)])
    assert last < 0.7 * first, (first, last)
    rec = [json.loads(l) for l in open(reference / "metrics.jsonl")][-1]
    for key in ("loss", "learning_rate", "grad_norm", "tokens_per_s", "examples_per_s", "step_time_s", "mfu",
                "data_wait_fraction", "bad_records", "nan_skips", "tokens"):
        assert key in rec, key


def test_mfu_matches_hand_count(reference):
    """MFU counts the real content of the logged window's batches (its summed "work/*"), not padding."""
    from pegasus_jax.scaling.flops import WORK_KEYS, flops_per_step, train_flops_of_work

    tiny = cfg.get("tiny")
    rec = [json.loads(l) for l in open(reference / "metrics.jsonl")][-1]
    work = {k: rec[f"work/{k}"] for k in WORK_KEYS}
    flops = rec["mfu"] * rec["step_time_s"] * PEAK * 1  # one device: real FLOPs per step
    assert flops == pytest.approx(train_flops_of_work(tiny, work) / rec["window_steps"], rel=1e-9)
    assert 0 < flops < flops_per_step(tiny)  # the corpus's clips and texts are shorter than the maximum
    assert rec["mfu_padded"] * rec["step_time_s"] * PEAK == pytest.approx(flops_per_step(tiny), rel=1e-9)
    assert rec["tokens_per_s"] * rec["step_time_s"] * rec["window_steps"] == pytest.approx(work["tokens"], rel=1e-9)


def _run_until_step(args, workdir, step, sig, env):
    """Start a training subprocess, send `sig` once `step` has been logged; return its exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "pegasus_jax.cli.main", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(metrics) and max(losses(workdir), default=0) >= step:
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    proc.wait(timeout=600)
    return proc.returncode, proc.stderr.read()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_resume_after_kill_is_exact(corpus, reference, tmp_path, sig):
    killed = tmp_path / "killed"
    args = ["train", "--config", "configs/tiny.py", "--workdir", str(killed), *reference_flags(corpus)]
    code, err = _run_until_step(args, str(killed), 12, sig, cpu_env())
    if sig == signal.SIGTERM:
        assert code == 0, err[-3000:]
        saved = sorted(int(p) for p in os.listdir(killed / "checkpoints") if p.isdigit())
        assert saved[-1] >= 12  # SIGTERM saved the step it stopped at
    else:
        assert code == -signal.SIGKILL
    resumed = cli(*args, env=cpu_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref, got = losses(reference), losses(killed)
    assert sorted(got) == list(range(1, REFERENCE_STEPS + 1))
    assert all(ref[s] == got[s] for s in got), [(s, ref[s], got[s]) for s in got if ref[s] != got[s]]


def test_bad_mesh_is_one_line_error(corpus, tmp_path):
    run = cli("train", "--config", "configs/tiny.py", "--workdir", str(tmp_path),
              *overrides(corpus, **{"mesh.data": 3}), env=cpu_env(8))
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and "config.mesh" in run.stderr
    assert "Traceback" not in run.stderr


def test_restore_on_other_meshes(corpus, tmp_path):
    """Saved on fsdp=4 x tensor=2, restored on data=2 x fsdp=2 x tensor=2 and on one device: same loss."""
    from data_pipelines.batch import iterators as pipeline
    from data_pipelines.text.tokenizer import load_tokenizer
    from pegasus_jax.train import checkpoint
    from pegasus_jax.train.state import TrainSpec
    from pegasus_jax.train.batch_layout import BatchLayout
    from pegasus_jax.train.step import make_eval_step

    def config_for(mesh_axes):
        c = cfg.get("tiny", data__path=corpus["train"], data__tokenizer=corpus["tokenizer"], train__steps=2,
                    train__checkpoint_every=2)
        c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh_axes
        return c

    from pegasus_jax.train.trainer import train
    train(config_for((1, 4, 2)), str(tmp_path))
    batch_np = next(pipeline.make_eval_iterator(config_for((1, 4, 2)), load_tokenizer(corpus["tokenizer"])))
    results = []
    for axes, devices in (((1, 4, 2), 8), ((2, 2, 2), 8), ((1, 1, 1), 1)):
        c = config_for(axes)
        mesh = sharding.make_mesh(c.mesh, jax.devices()[:devices])
        spec = TrainSpec.create(c, mesh)
        state, _, _ = checkpoint.restore(checkpoint.manager(str(tmp_path), c.train, read_only=True), 2,
                                         spec.abstract_state(), None)
        batch = BatchLayout.create(mesh, c.mesh.axis_rules, len(batch_np["tokens"])).to_global(batch_np)
        nll, tokens = make_eval_step(spec, batch)(state, batch)
        results.append(float(nll) / float(tokens))
    assert abs(results[0] - results[1]) <= 1e-5 and abs(results[0] - results[2]) <= 1e-5, results


def test_init_from_another_run_reports_what_was_loaded(corpus, reference, tmp_path):
    """Stage 1 -> stage 2: the new run starts from the old run's weights and says what it loaded."""
    second = cli("train", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "stage2"),
                 *overrides(corpus, **{"train.steps": 1, "train.stage": "instruct_lora", "model.lora.rank": 4,
                                       "train.init_from": str(reference)}), env=cpu_env())
    assert second.returncode == 0, second.stderr[-3000:]
    report = next(l for l in second.stderr.splitlines() if "initialised from" in l)
    import re
    loaded, new = map(int, re.search(r"loaded (\d+) tensors from step 40, (\d+) new", report).groups())
    assert loaded > 0 and new > 0  # every pretrained tensor loaded; the LoRA adapters are new
    bad = cli("train", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "stage2b"),
              *overrides(corpus, **{"train.steps": 1, "model.decoder.mlp_dim": 96,
                                    "train.init_from": str(reference)}), env=cpu_env())
    assert bad.returncode == 2 and "config.train.init_from: tensor" in bad.stderr and "Traceback" not in bad.stderr


def test_inference_restores_the_model_without_the_optimizer_state(reference):
    from flax import nnx

    from pegasus_jax.infer.checkpoint_loader import load
    from pegasus_jax.train import checkpoint
    from pegasus_jax.train.state import TrainSpec

    model, config, _, step = load(str(reference))
    spec = TrainSpec.create(config, sharding.make_mesh(config.mesh, jax.devices()[:1]))
    reader = lambda: checkpoint.manager(str(reference), None, read_only=True)  # Orbax: one handler per item
    full, _, _ = checkpoint.restore(reader(), step, spec.abstract_state(), None)
    model_only = checkpoint.restore_model(reader(), step, spec.abstract_state())
    assert set(model_only) == {"params", "frozen", "rest"} and jax.tree.leaves(full["opt_state"])
    assert jax.tree.all(jax.tree.map(np.array_equal, model_only, {k: full[k] for k in model_only}))
    assert jax.tree.all(jax.tree.map(np.array_equal, nnx.state(model, nnx.Param).to_pure_dict(), full["params"]))


def test_eval_loss_and_gist_from_a_trained_checkpoint(corpus, reference, tmp_path):
    """The trained checkpoint serves `eval --benchmark loss` and the gist task through the CLI."""
    out = tmp_path / "eval"
    run = cli("eval", "--checkpoint", str(reference), "--benchmark", "loss", "--data", corpus["heldout"],
              "--out", str(out), "--batches", "2", env=cpu_env())
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.load(open(out / "loss.json"))
    loss = report["aggregate"]["loss"]
    assert 0 < loss < np.log(512) and report["aggregate"]["perplexity"] == pytest.approx(np.exp(loss))
    from data_pipelines.records import shards as records

    clip = next(records.read_all(corpus["heldout"]))
    video = tmp_path / "clip.mp4"
    video.write_bytes(clip.video)
    gist = cli("gist", "--checkpoint", str(reference / "checkpoints" / "40"), "--video", str(video),
               "--temperature", "0", "--max-tokens", "40", env=cpu_env())
    assert gist.returncode == 0, gist.stderr[-3000:]
    assert set(json.loads(gist.stdout)) == {"id", "title", "topics", "hashtags"}
