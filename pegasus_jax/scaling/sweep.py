"""Scaling-law sweeps: a grid of decoder sizes x training lengths, each point one `pegasus-jax train` run.

A sweep file (configs/scaling/<name>.py) defines `get_sweep()` returning a ConfigDict:
  name, base          sweep name; bundled config the points start from (configs/<base>.py)
  widths              decoder widths; per width: heads = width // head_dim,
                      kv_heads = heads // kv_group, depth = max(min_depth, round(width / width_per_layer)),
                      mlp_dim = mlp_ratio * width, learning_rate = lr_scale / sqrt(width)
  steps               training lengths (optimizer steps); warmup = max(1, round(warmup_fraction * steps))
  budgets             optional: compute budgets C (FLOPs, C = 6 N D) for an IsoFLOP grid (Chinchilla's
                      approach 2) instead of widths x steps: every width at every budget, trained for
                      D = C / (6 N) tokens, i.e. steps = D / (batch x decoder sequence length), >= 3
                      widths so each budget's curve has a minimum to fit
  loss_window         final loss = mean of the last `loss_window` logged losses
  overrides           ((dotted config field, value), ...) applied to every point (pairs: a
                      ConfigDict refuses dotted keys)

Collected runs (WORKDIR/runs.jsonl): N = non-embedding parameters (flops.param_counts); D = training
tokens: the trainer's cumulative "tokens" metric, the real decoder positions it trained on (padding
not counted, flops.work_of_batch), else (a run that logged none) steps x batch x the padded decoder
sequence length, an upper bound; C = 6 N D (scaling/fit.compute, the one C of runs.jsonl, FIT.json and
the plots); train_flops = the measured training FLOPs, encoders included: the trainer's cumulative
"train_flops" metric (real content, flops.train_flops_of_work), else train FLOPs per example at the
padded maximum shape x examples seen; loss. "D_source" and "train_flops_source" say which.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys

import ml_collections

from pegasus_jax.config import config_path, load_config
from pegasus_jax.config.loader import make_configs_importable
from pegasus_jax.errors import ConfigError, UserError
from pegasus_jax.progress import Counter
from pegasus_jax.scaling.fit import compute
from pegasus_jax.scaling.flops import decoder_sequence_length, flops_per_example, param_counts

SWEEP_FIELDS = ("name", "base", "widths", "head_dim", "kv_group", "width_per_layer", "min_depth", "mlp_ratio",
                "lr_scale", "steps", "warmup_fraction", "loss_window", "overrides")
LAUNCH_SCRIPTS = {"local": "launch/local.sh", "slurm": "launch/slurm_gpu.sbatch", "xpk": "launch/xpk.sh",
                  "tpu_vm": "launch/tpu_vm.sh"}


def load_sweep(path: str) -> ml_collections.ConfigDict:
    if not os.path.isfile(path):
        raise UserError(f"--sweep: no such file {path!r}")
    make_configs_importable(path)  # a sweep may build on another (configs/scaling/tiny_isoflop.py)
    spec = importlib.util.spec_from_file_location(f"pegasus_sweep_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_sweep"):
            raise UserError(f"--sweep: {path} has no get_sweep()")
        sweep = module.get_sweep()
    except UserError:
        raise
    except Exception as e:  # a broken sweep file is a user mistake: name it
        raise UserError(f"--sweep: {path} failed to load: {type(e).__name__}: {e}") from None
    missing = [f for f in SWEEP_FIELDS if f not in sweep and not (f == "steps" and sweep.get("budgets"))]
    if missing:
        raise UserError(f"--sweep: {path}: get_sweep() lacks field(s) {', '.join(missing)}")
    if sweep.get("budgets") and len(set(sweep.widths)) < 3:
        raise UserError(f"--sweep: {path}: an IsoFLOP grid (budgets) needs >= 3 widths, got {len(set(sweep.widths))}")
    return sweep


def size_overrides(sweep, width: int) -> dict[str, str]:
    """Decoder shape and learning rate for one width, from the sweep's rules."""
    heads = width // sweep.head_dim
    if heads < 1 or width % sweep.head_dim:
        raise UserError(f"sweep {sweep.name}: width {width} is not a multiple of head_dim {sweep.head_dim}")
    depth = max(sweep.min_depth, round(width / sweep.width_per_layer))
    return {
        "model.decoder.width": str(width),
        "model.decoder.depth": str(depth),
        "model.decoder.num_heads": str(heads),
        "model.decoder.num_kv_heads": str(max(1, heads // sweep.kv_group)),
        "model.decoder.mlp_dim": str(sweep.mlp_ratio * width),
        "train.learning_rate": repr(sweep.lr_scale / math.sqrt(width)),
    }


def shared_data_overrides(workdir: str) -> dict[str, str]:
    """One built-in corpus and tokenizer for the whole sweep, so every point sees the same data."""
    corpus = os.path.join(workdir, "corpus")
    return {"data.path": os.path.join(corpus, "train", "*.array_record"),
            "data.eval_path": os.path.join(corpus, "heldout", "*.array_record"),
            "data.tokenizer": os.path.join(workdir, "tokenizer.model")}


def plan(sweep, workdir: str) -> list[dict]:
    """Points of the sweep: name, workdir, overrides and the validated config, widths x steps."""
    base_path = config_path(sweep.base)
    if not os.path.isfile(base_path):
        raise UserError(f"sweep {sweep.name}: base config {sweep.base!r} not found ({base_path})")
    fixed = {k: str(v) for k, v in sweep.overrides}
    base = load_config(base_path, fixed)
    if base.data.path is None:
        fixed.update(shared_data_overrides(workdir))
    points = []
    for width, steps, name in _grid(sweep, base_path, fixed):
        overrides = {**fixed, **size_overrides(sweep, width), "train.steps": str(steps),
                     "train.warmup_steps": str(max(1, round(sweep.warmup_fraction * steps)))}
        try:
            config = load_config(base_path, overrides)
        except ConfigError as e:
            raise UserError(f"sweep {sweep.name}, point {name}: {e}") from None
        points.append({"name": name, "workdir": os.path.join(workdir, name), "overrides": overrides,
                       "config": config, "base_path": base_path})
    return points


def planned_tokens(config) -> int:
    """D a run of `config` is planned for: steps x batch x the decoder sequence length (its real D, with
    text padding left out, comes out smaller by about the same factor for every width)."""
    return config.train.steps * config.train.batch_size * decoder_sequence_length(config)


def _grid(sweep, base_path: str, fixed: dict) -> list[tuple[int, int, str]]:
    """(width, steps, name) per point: widths x steps, or per budget C every width for D = C / (6 N)."""
    if not sweep.get("budgets"):
        return [(w, steps, f"w{w}_s{steps}") for w in sweep.widths for steps in sweep.steps]
    grid = []
    for budget in sweep.budgets:
        for width in sweep.widths:
            config = load_config(base_path, {**fixed, **size_overrides(sweep, width), "train.steps": "1"})
            steps = round(budget / compute(param_counts(config)["non_embedding"], planned_tokens(config)))
            if steps < 1:
                raise UserError(f"sweep {sweep.name}: budget {budget:.3g} is less than one step of width {width} "
                                f"({compute(param_counts(config)['non_embedding'], planned_tokens(config)):.3g} FLOPs)")
            grid.append((width, steps, f"c{budget:.2g}_w{width}".replace("+", "")))
    return grid


def train_args(point: dict) -> list[str]:
    """Arguments of `pegasus-jax train` for one point."""
    return ["--config", point["base_path"], "--workdir", point["workdir"],
            *[f"--config.{k}={v}" for k, v in point["overrides"].items()]]


def describe(points: list[dict], sweep, workdir: str) -> list[str]:
    lines = [f"sweep {sweep.name}: {len(points)} points from configs/{sweep.base}.py into {workdir}"]
    for p in points:
        c = p["config"]
        n = param_counts(c)["non_embedding"]
        lines.append(f"{p['name']}: N={n:.4g} steps={c.train.steps} D={planned_tokens(c):.4g} "
                     f"C={compute(n, planned_tokens(c)):.4g} lr={c.train.learning_rate:.3g}")
        lines.append("  " + shlex.join(["pegasus-jax", "train", *train_args(p)]))
    return lines


def launch_commands(points: list[dict], sweep, workdir: str, launcher: str, launcher_args: str) -> list[str]:
    """One shell command per point for `launcher` (the scripts in launch/)."""
    extra = shlex.split(launcher_args)
    lines = []
    if points and points[0]["config"].data.path == shared_data_overrides(workdir)["data.path"]:
        lines.append("# shared corpus first (or set --config.data.path in the sweep's overrides):")
        lines.append("# " + shlex.join(["pegasus-jax", "data", "synth", "--out", os.path.join(workdir, "corpus")]))
    for p in points:
        job = f"{sweep.name}-{p['name']}".replace("_", "-").lower()
        args = train_args(p)
        if launcher == "local":
            cmd = [LAUNCH_SCRIPTS[launcher], "1", *extra, *args]
        elif launcher == "slurm":
            cmd = ["sbatch", f"--job-name={job}", *extra, LAUNCH_SCRIPTS[launcher], *args]
        elif launcher == "xpk":
            cmd = [LAUNCH_SCRIPTS[launcher], "--workload", job, *extra, *args]
        else:
            cmd = [LAUNCH_SCRIPTS[launcher], "train", *extra, *args]
        lines.append(shlex.join(cmd))
    return lines


def prepare_shared_data(points: list[dict], workdir: str) -> None:
    """Generate the built-in corpus and its tokenizer once, if the points use the shared ones."""
    config = points[0]["config"]
    paths = shared_data_overrides(workdir)
    if config.data.path != paths["data.path"]:
        return
    from data_pipelines.sources import synth
    from data_pipelines.records.tokenizer_corpus import train_tokenizer_for_config

    corpus = os.path.join(workdir, "corpus")
    if not os.path.exists(os.path.join(corpus, "corpus.json")):
        n = config.data.synth_clips
        synth.generate_corpus(corpus, num=n, heldout=max(n // 10, 8), seed=config.seed)
    if not os.path.exists(paths["data.tokenizer"]):
        train_tokenizer_for_config(paths["data.path"], config.model.decoder.vocab_size, paths["data.tokenizer"])


def read_metrics(workdir: str) -> dict[int, dict]:
    """step -> logged record with a loss; a resumed run re-logs replayed steps, the last record wins."""
    path = os.path.join(workdir, "metrics.jsonl")
    records = {}
    try:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{path}:{number}: not valid JSON") from None
                if "loss" in rec and "step" in rec:
                    records[int(rec["step"])] = rec
    except FileNotFoundError:
        return {}
    return records


def collect(point: dict, loss_window: int) -> dict | None:
    """The point's row of runs.jsonl, or None when it logged nothing."""
    records = read_metrics(point["workdir"])
    if not records:
        return None
    config = point["config"]
    steps = sorted(records)
    final = steps[-1]
    losses = [records[s]["loss"] for s in steps[-loss_window:]]
    examples = final * config.train.batch_size
    if "tokens" in records[final]:
        tokens, source = float(records[final]["tokens"]), "metrics tokens"
    else:  # padding counted: an upper bound on the real tokens
        tokens, source = float(examples * decoder_sequence_length(config)), "steps x batch x sequence length"
    if "train_flops" in records[final]:
        flops, flops_source = float(records[final]["train_flops"]), "metrics train_flops"
    else:  # padding counted: an upper bound on the real FLOPs
        flops, flops_source = flops_per_example(config)["total_train"] * examples, "examples x padded FLOPs per example"
    counts = param_counts(config)
    return {
        "name": point["name"], "N": counts["non_embedding"], "N_total": counts["total"], "D": tokens,
        "D_source": source, "C": compute(counts["non_embedding"], tokens), "train_flops": flops,
        "train_flops_source": flops_source,
        "loss": sum(losses) / len(losses), "steps": final, "examples": examples,
        "overrides": point["overrides"],
    }


def run_local(points: list[dict], sweep, workdir: str) -> int:
    """Train the points one after another, then write WORKDIR/runs.jsonl. Exit code 1 if any point failed."""
    os.makedirs(workdir, exist_ok=True)
    prepare_shared_data(points, workdir)
    failed = []
    progress = Counter(f"sweep {sweep.name}", len(points), "points", every_s=0.0, stream=sys.stdout)
    for p in points:
        records = read_metrics(p["workdir"])
        if records and max(records) >= p["config"].train.steps:
            print(f"{p['name']}: already trained, collecting")
            progress.update()
            continue
        os.makedirs(p["workdir"], exist_ok=True)
        log_path = os.path.join(p["workdir"], "train.log")
        print(f"{p['name']}: training ({p['config'].train.steps} steps), log {log_path}", flush=True)
        with open(log_path, "a") as log:
            rc = subprocess.call([sys.executable, "-m", "pegasus_jax.cli.main", "train", *train_args(p)],
                                 stdout=log, stderr=subprocess.STDOUT)
        if rc != 0:
            failed.append(p["name"])
            print(f"{p['name']}: failed with exit code {rc}, see {log_path}")
        progress.update()
    rows = [row for row in (collect(p, sweep.loss_window) for p in points) if row is not None]
    out = os.path.join(workdir, "runs.jsonl")
    with open(out, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {out} ({len(rows)} runs)")
    if failed:
        print(f"failed points: {', '.join(failed)}")
    return 1 if failed else 0
