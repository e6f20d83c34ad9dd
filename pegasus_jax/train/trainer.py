"""`pegasus-jax train`: the loop around the jitted step.

Start-up order: join the processes, build the mesh, derive which batch rows this process reads
(batch_layout.py), make sure a corpus and a tokenizer exist (the built-in corpus is generated into
the workdir when config.data.path is unset), restore the latest complete checkpoint (or initialise,
optionally from another run's parameters), then step.

Stopping early is one decision for the whole job (stop.py): SIGTERM on any host, max_seconds on any
host's clock, or a preemption notice makes every process save the same step and exit 0. SIGKILL
loses at most the steps since the last save, and resuming replays them bit for bit (data iterator
and RNG are part of the checkpoint).
"""
from __future__ import annotations

import logging
import os
import time

import jax
import numpy as np
from etils import epath

from pegasus_jax import sharding
from pegasus_jax.errors import UserError
from pegasus_jax.scaling.flops import train_flops_of_work
from pegasus_jax.train import checkpoint, distributed
from pegasus_jax.train.batch_layout import BatchLayout
from pegasus_jax.train.metrics import MetricsWriter, WorkMeter, peak_flops, throughput
from pegasus_jax.train.state import TrainSpec, count_params
from pegasus_jax.train.step import make_eval_step, make_train_step
from pegasus_jax.train.stop import StopAgreement

log = logging.getLogger("pegasus_jax.train")


def prepare_data(config, workdir: str) -> tuple[str, str, str | None]:
    """(train glob, eval glob or None, tokenizer path); generates the built-in corpus when needed."""
    from data_pipelines.sources import synth
    from data_pipelines.records.tokenizer_corpus import train_tokenizer_for_config

    train_glob, eval_glob = config.data.path, config.data.eval_path
    if train_glob is None:
        corpus = os.path.join(workdir, "corpus")
        if distributed.is_main() and not os.path.exists(os.path.join(corpus, "corpus.json")):
            synth.generate_corpus(corpus, num=config.data.synth_clips, heldout=max(config.data.synth_clips // 10, 8),
                                  seed=config.seed)
        distributed.barrier("corpus")
        train_glob = os.path.join(corpus, "train", "*.array_record")
        eval_glob = eval_glob or os.path.join(corpus, "heldout", "*.array_record")
    tokenizer = config.data.tokenizer
    if tokenizer is None:
        tokenizer = os.path.join(workdir, "tokenizer.model")
        if distributed.is_main() and not os.path.exists(tokenizer):
            train_tokenizer_for_config(train_glob, config.model.decoder.vocab_size, tokenizer)
        distributed.barrier("tokenizer")
    elif not epath.Path(tokenizer).exists():
        raise UserError(f"config.data.tokenizer: {tokenizer} does not exist")
    return train_glob, eval_glob, tokenizer


def initial_state(spec: TrainSpec, config, mngr, data_iter):
    """(state, rng, cumulative work or None): the latest complete checkpoint of this run, else a fresh
    state (optionally with another run's parameters)."""
    step = mngr.latest_step()
    if step is not None:
        state, rng, meta = checkpoint.restore(mngr, step, spec.abstract_state(), data_iter)
        log.info("resumed from step %d", step)
        return state, rng, meta.get("work")
    state = spec.init_state(config.seed)
    if config.train.init_from:
        from pegasus_jax.train.init_from import load_into

        state, report = load_into(state, config.train.init_from)
        log.info("initialised from %s: %s", config.train.init_from, report)
    return state, jax.random.key(config.seed), None


def use_compilation_cache(directory: str | None) -> None:
    """XLA's persistent compilation cache (any path epath takes, gs:// included): a restarted job
    loads its compiled step instead of compiling it again."""
    if directory:
        jax.config.update("jax_compilation_cache_dir", str(directory))


def train(config, workdir: str, mesh=None) -> dict:
    """Train to config.train.steps (or until the job agrees to stop); `mesh` overrides the config's."""
    distributed.initialize()
    use_compilation_cache(config.train.compilation_cache_dir)
    stop = StopAgreement(config.train.max_seconds, config.train.stop_check_every)  # SIGTERM from here on
    try:
        return _train(config, workdir, mesh, stop)
    finally:
        stop.restore()


def _train(config, workdir: str, mesh, stop: StopAgreement) -> dict:
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    mesh = mesh if mesh is not None else sharding.make_mesh(config.mesh)
    layout = BatchLayout.create(mesh, config.mesh.axis_rules, config.train.batch_size)
    spec = TrainSpec.create(config, mesh)
    train_glob, eval_glob, tokenizer_path = prepare_data(config, workdir)

    from data_pipelines.batch import iterators as pipeline
    from data_pipelines.batch.mixture import with_builtin
    from data_pipelines.text.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    data_cfg = config.copy_and_resolve_references()
    data_cfg.data.path = train_glob
    data_cfg.data.mixture = with_builtin(config.data.mixture, train_glob)
    if jax.process_count() > 1:
        # Every process must hand the same shapes to the global batch: one text length for all.
        data_cfg.data.length_buckets = (config.data.max_text_len,)
    data_iter = pipeline.make_train_iterator(data_cfg, tokenizer, layout.read_slot)
    mngr = checkpoint.manager(workdir, config.train)
    stop.checkpoint_manager = mngr  # from here on, JAX's preemption notices count too
    state, rng, work_totals = initial_state(spec, config, mngr, data_iter)
    meter = WorkMeter(work_totals)  # the tokens and frames really in the batches, for MFU and the sweep's D
    start = int(jax.device_get(state["step"]))
    meta = checkpoint.metadata(config, tokenizer_path, start)

    n_params = count_params(state["params"]) + count_params(state["frozen"])
    log.info("params: %.3e (%.3e trainable), mesh %s, %s", n_params, count_params(state["params"]),
             dict(mesh.shape), layout.describe())
    peak, peak_source = peak_flops(config.train)
    writer = MetricsWriter(workdir, config.train.steps, start, enabled=distributed.is_main())
    step_fn = None
    eval_fn = _eval_runner(spec, data_cfg, tokenizer, eval_glob, layout) if eval_glob else None
    nan_skips_seen = int(jax.device_get(state["nan_skips"]))
    profile = tuple(config.train.profile_steps)
    last = {}
    try:
        stop.start_clock()
        window_start, data_wait = time.perf_counter(), 0.0
        steps_in_window = 0
        for step in range(start, config.train.steps):
            if profile and step == profile[0] and distributed.is_main():
                jax.profiler.start_trace(os.path.join(workdir, "profile"))
            t0 = time.perf_counter()
            local = next(data_iter)
            data_wait += time.perf_counter() - t0
            batch = layout.to_global(local)
            if step_fn is None:
                step_fn = make_train_step(spec, batch)
            state, metrics = step_fn(state, batch)
            meter.add(metrics["work"])
            steps_in_window += 1
            writer.advance()
            if profile and step + 1 == profile[1] and distributed.is_main():
                jax.profiler.stop_trace()
            done = step + 1
            stopping = stop.should_stop(done)
            if done % config.train.log_every == 0 or done == config.train.steps or stopping:
                metrics = jax.device_get(metrics)
                nan_skips = int(jax.device_get(state["nan_skips"]))
                if nan_skips > nan_skips_seen and config.train.nan_policy == "stop":
                    raise UserError(f"non-finite loss or gradient in {nan_skips - nan_skips_seen} step(s) up to step "
                                    f"{done} (config.train.nan_policy=stop)")
                nan_skips_seen = nan_skips
                elapsed = time.perf_counter() - window_start
                totals = meter.totals()
                last = {
                    "loss": float(metrics["loss"]), "learning_rate": float(metrics["learning_rate"]),
                    "grad_norm": float(metrics["grad_norm"]),
                    **throughput(config, meter.take_window(), elapsed, steps_in_window, peak),
                    "data_wait_fraction": data_wait / elapsed,
                    "bad_records": pipeline.bad_record_count(data_iter),
                    "nan_skips": nan_skips,
                    "tokens": totals["tokens"], "train_flops": train_flops_of_work(config, totals),
                }
                writer.write(done, last)
                window_start, data_wait, steps_in_window = time.perf_counter(), 0.0, 0
            if eval_fn is not None and config.train.eval_every and done % config.train.eval_every == 0:
                writer.write(done, {"eval_loss": eval_fn(state)})
            if done % config.train.checkpoint_every == 0 or done == config.train.steps or stopping:
                meta["step"], meta["work"] = done, meter.totals()
                writer.flush()
                checkpoint.save(mngr, done, state, data_iter, rng, meta, force=True)
            if stopping:
                log.info("stopping: saved step %d", done)
                break
        seen = pipeline.stats(data_iter)
        if seen["bad_total"]:  # each was logged when skipped; the summary names the first of each kind
            log.warning("skipped %d bad records of %d: %s; first of each kind: %s", seen["bad_total"], seen["seen"],
                        seen["bad_records"], seen["first_bad"])
        mngr.wait_until_finished()
    finally:
        writer.close()
        mngr.close()
    return {"final_step": int(jax.device_get(state["step"])), "peak_flops_source": peak_source, **last}


def _eval_runner(spec, config, tokenizer, eval_glob, layout):
    """Held-out loss over config.train.eval_batches batches; the eval step is compiled once per run
    (one text length, the longest bucket, so every eval batch has the same shapes)."""
    from data_pipelines.batch import iterators as pipeline

    cfg = config.copy_and_resolve_references()
    cfg.data.path = eval_glob
    cfg.data.length_buckets = (config.data.max_text_len,)
    compiled = []

    def run(state):
        total, count = 0.0, 0.0
        for i, local in enumerate(pipeline.make_eval_iterator(cfg, tokenizer, layout.read_slot)):
            if i >= config.train.eval_batches:
                break
            batch = layout.to_global(local)
            if not compiled:
                compiled.append(make_eval_step(spec, batch))
            nll, tokens = jax.device_get(compiled[0](state, batch))
            total, count = total + float(nll), count + float(tokens)
        return total / max(count, 1.0)

    return run


def log_to_stderr() -> None:
    # force: JAX / absl may have configured the root logger already, which would hide our lines.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax's per-save chatter
    np.set_printoptions(precision=4)
