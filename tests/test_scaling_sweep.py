"""Scaling sweeps: points from the width/depth/lr rules are valid configs, metrics.jsonl files become
runs.jsonl rows (N, D, C, loss), launch commands are emitted per launcher, and a 3-point sweep trains
for real and collects."""
import json
import math
import os
import shlex
import subprocess
import sys

import pytest

from pegasus_jax.cli.main import main
from pegasus_jax.errors import UserError
from pegasus_jax.scaling import sweep
from pegasus_jax.scaling.flops import decoder_sequence_length, flops_per_example, param_counts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SWEEP = os.path.join(ROOT, "configs", "scaling", "tiny_sweep.py")

SWEEP_FILE = """
import ml_collections

def get_sweep():
    s = ml_collections.ConfigDict()
    s.name, s.base = "e2e", "tiny"
    s.widths, s.head_dim, s.kv_group, s.width_per_layer, s.min_depth = {widths}, 16, 2, 32, 1
    s.mlp_ratio, s.lr_scale, s.steps, s.warmup_fraction, s.loss_window = 2, 0.024, {steps}, 0.1, 2
    s.overrides = (("data.synth_clips", 32), ("train.log_every", 2), ("train.checkpoint_every", 1000))
    return s
"""


def write_sweep(tmp_path, widths=(32, 64, 96), steps=(10,)):
    path = tmp_path / "sweep.py"
    path.write_text(SWEEP_FILE.format(widths=widths, steps=steps))
    return str(path)


def cli(*args, **kw):
    """The CLI in a subprocess, for the sweep that trains; planning and printing run `main` in process (a
    subprocess per case only re-imported JAX)."""
    return subprocess.run([sys.executable, "-m", "pegasus_jax.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, **kw)


def test_plan_follows_the_rules(tmp_path):
    spec = sweep.load_sweep(TINY_SWEEP)
    points = sweep.plan(spec, str(tmp_path))
    assert [p["name"] for p in points] == ["w32_s20", "w32_s40", "w64_s20", "w64_s40", "w96_s20", "w96_s40"]
    by_name = {p["name"]: p["config"] for p in points}
    d = by_name["w96_s40"].model.decoder
    assert (d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim) == (96, 3, 6, 3, 192)
    assert math.isclose(by_name["w64_s20"].train.learning_rate, 3e-3)
    assert by_name["w32_s40"].train.steps == 40 and by_name["w32_s40"].train.warmup_steps == 4
    # The built-in corpus is generated once for the sweep, not once per point.
    assert all(p["config"].data.path == str(tmp_path / "corpus" / "train" / "*.array_record") for p in points)
    sizes = [param_counts(by_name[f"w{w}_s20"])["non_embedding"] for w in (32, 64, 96)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_isoflop_grid_puts_three_sizes_at_each_budget(tmp_path):
    """configs/scaling/tiny_isoflop.py: every width at every budget, each trained for D = C / (6N)."""
    spec = sweep.load_sweep(os.path.join(ROOT, "configs", "scaling", "tiny_isoflop.py"))
    points = sweep.plan(spec, str(tmp_path))
    assert len(points) == len(spec.budgets) * len(spec.widths) and len(spec.widths) >= 3
    for budget in spec.budgets:
        group = [p["config"] for p in points if p["name"].startswith(f"c{budget:.2g}_".replace("+", ""))]
        sizes = [param_counts(c)["non_embedding"] for c in group]
        assert len(set(sizes)) == len(spec.widths)
        for n, config in zip(sizes, group):
            planned = 6 * n * sweep.planned_tokens(config)
            # steps are whole: within half a step of the budget
            assert abs(planned - budget) <= 0.5 * planned / config.train.steps, (budget, planned)
        assert [c.train.steps for c in group] == sorted((c.train.steps for c in group), reverse=True)
    two = tmp_path / "two.py"
    two.write_text(SWEEP_FILE.format(widths=(32, 64), steps=(10,)).replace("return s", "s.budgets = (1e10,)\n    return s"))
    with pytest.raises(UserError, match=r"IsoFLOP grid \(budgets\) needs >= 3 widths, got 2"):
        sweep.load_sweep(str(two))


def test_bad_rule_names_the_point(tmp_path):
    path = tmp_path / "bad.py"
    # width 160 -> 10 heads; 3 query heads per KV head -> 3 KV heads, which do not divide 10.
    path.write_text(SWEEP_FILE.format(widths=(160,), steps=(10,)).replace("16, 2, 32, 1", "16, 3, 32, 1"))
    with pytest.raises(UserError, match=r"point w160_s10: config.model.decoder.num_kv_heads"):
        sweep.plan(sweep.load_sweep(str(path)), str(tmp_path))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(UserError, match="no get_sweep"):
        sweep.load_sweep(str(tmp_path / "empty.py"))


def write_metrics(workdir, records):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")


def test_collect_from_metrics_files(tmp_path):
    points = sweep.plan(sweep.load_sweep(write_sweep(tmp_path, widths=(32, 64), steps=(6,))), str(tmp_path))
    a, b = points
    # Point a: a resumed run re-logged step 4 (the later record wins); the trainer logged the real
    # cumulative "tokens" and "train_flops".
    write_metrics(a["workdir"], [{"step": 2, "loss": 5.0}, {"step": 4, "loss": 9.0}, {"step": 4, "loss": 4.0},
                                 {"step": 6, "loss": 3.0, "tokens": 1234, "train_flops": 5.5e9},
                                 {"step": 6, "eval_loss": 2.0}])
    # Point b: no "tokens" nor "train_flops": D = steps x batch x decoder sequence length, C = padded FLOPs.
    write_metrics(b["workdir"], [{"step": 2, "loss": 6.0}, {"step": 4, "loss": 5.0}, {"step": 6, "loss": 4.5}])
    row_a, row_b = (sweep.collect(p, loss_window=2) for p in points)
    config = a["config"]
    assert row_a["loss"] == (4.0 + 3.0) / 2 and row_a["steps"] == 6 and row_a["D"] == 1234.0
    assert row_a["N"] == param_counts(config)["non_embedding"]
    # C is 6ND, the fit's and the plots' C; the measured FLOPs (encoders included) travel beside it.
    assert row_a["C"] == 6 * row_a["N"] * 1234 and row_a["train_flops"] == 5.5e9
    assert row_a["train_flops_source"] == "metrics train_flops"
    assert row_b["train_flops"] == flops_per_example(b["config"])["total_train"] * 6 * b["config"].train.batch_size
    assert row_b["D"] == 6 * b["config"].train.batch_size * decoder_sequence_length(b["config"])
    assert row_b["C"] == 6 * row_b["N"] * row_b["D"]
    assert row_b["loss"] == (5.0 + 4.5) / 2 and row_b["overrides"]["model.decoder.width"] == "64"
    assert sweep.collect({**a, "workdir": str(tmp_path / "nothing")}, 2) is None


@pytest.mark.parametrize("launcher,first,extra", [
    ("local", "launch/local.sh", ""), ("slurm", "sbatch", "--nodes=2"),
    ("xpk", "launch/xpk.sh", "--cluster c1 --tpu-type v5p-8"), ("tpu_vm", "launch/tpu_vm.sh", "--name t1 --zone z1")])
def test_emit_commands(tmp_path, launcher, first, extra, capsys):
    workdir = str(tmp_path / "my sweep")
    code = main(["scaling", "sweep", "--sweep", write_sweep(tmp_path), "--workdir", workdir, "--emit-commands",
                 "--launcher", launcher, f"--launcher-args={extra}"])
    out, err = capsys.readouterr()
    assert code == 0, err
    commands = [shlex.split(line) for line in out.splitlines() if not line.startswith("#")]
    assert len(commands) == 3
    for cmd, width in zip(commands, (32, 64, 96)):
        assert cmd[0] == first and shlex.split(extra) == [a for a in cmd if a in shlex.split(extra)]
        assert cmd[cmd.index("--workdir") + 1] == os.path.join(workdir, f"w{width}_s10")
        assert f"--config.model.decoder.width={width}" in cmd
    assert not os.path.exists(workdir), "emitting commands must not run anything"
    if launcher in ("xpk", "tpu_vm"):  # the emitted command is one the launcher accepts
        check = subprocess.run(["bash", *commands[0], "--dry-run"], cwd=ROOT, capture_output=True, text=True)
        assert check.returncode == 0 and f"decoder.width=32" in check.stdout, check.stderr


def test_dry_run_prints_plan(tmp_path, capsys):
    code = main(["scaling", "sweep", "--sweep", write_sweep(tmp_path), "--workdir", str(tmp_path / "w"), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("pegasus-jax train --config") == 3 and "w96_s10: N=" in out


@pytest.mark.slow
def test_three_point_sweep_trains_and_collects(tmp_path):
    if not os.path.exists(os.path.join(ROOT, "pegasus_jax", "cli", "train.py")):
        pytest.fail("pegasus_jax/cli/train.py (the trainer) is missing: the sweep cannot train")
    workdir = tmp_path / "sweep"
    res = cli("scaling", "sweep", "--sweep", write_sweep(tmp_path), "--workdir", str(workdir), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = [json.loads(line) for line in (workdir / "runs.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == ["w32_s10", "w64_s10", "w96_s10"]
    for r in rows:
        assert r["steps"] == 10 and r["N"] > 0 and r["D"] > 0 and r["C"] > 0 and math.isfinite(r["loss"])
    assert rows[0]["N"] < rows[1]["N"] < rows[2]["N"] and rows[0]["C"] < rows[2]["C"]
    # A second invocation finds every point trained and only re-collects.
    again = cli("scaling", "sweep", "--sweep", write_sweep(tmp_path), "--workdir", str(workdir), timeout=300)
    assert again.returncode == 0 and again.stdout.count("already trained") == 3, again.stdout
