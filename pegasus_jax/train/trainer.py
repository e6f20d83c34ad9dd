"""`pegasus-jax train`: the loop around the jitted step.

Start-up order: join the processes, build the mesh, make sure a corpus and a tokenizer exist
(the built-in corpus is generated into the workdir when config.data.path is unset), restore the
latest complete checkpoint (or initialise, optionally from another run), then step. SIGTERM saves a
checkpoint at the next step boundary and exits 0; SIGKILL loses at most the steps since the last save,
and resuming replays them bit for bit (data iterator and RNG are part of the checkpoint).
"""
from __future__ import annotations

import logging
import os
import signal
import time

import jax
import numpy as np
from etils import epath

from pegasus_jax import sharding
from pegasus_jax.errors import UserError
from pegasus_jax.scaling.flops import decoder_sequence_length, flops_per_step
from pegasus_jax.train import checkpoint, distributed
from pegasus_jax.train.metrics import MetricsWriter, peak_flops
from pegasus_jax.train.state import TrainSpec, count_params
from pegasus_jax.train.step import make_eval_step, make_train_step

log = logging.getLogger("pegasus_jax.train")


class _StopRequest:
    """Turns SIGTERM into a flag the loop checks between steps."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


def prepare_data(config, workdir: str) -> tuple[str, str, str | None]:
    """(train glob, eval glob or None, tokenizer path); generates the built-in corpus when needed."""
    from data_pipelines import synth
    from data_pipelines.tokenizer import train_tokenizer_for_config

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
    """Latest complete checkpoint of this run, else a fresh state (optionally from another run)."""
    step = mngr.latest_step()
    if step is not None:
        state, rng, _ = checkpoint.restore(mngr, step, spec.abstract_state(), data_iter)
        log.info("resumed from step %d", step)
        return state, rng
    state = spec.init_state(config.seed)
    if config.train.init_from:
        from pegasus_jax.train.init_from import load_into

        state, report = load_into(spec, state, config.train.init_from)
        log.info("initialised from %s: %s", config.train.init_from, report)
    return state, jax.random.key(config.seed)


def train(config, workdir: str) -> dict:
    distributed.initialize()
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh(config.mesh)
    spec = TrainSpec.create(config, mesh)
    train_glob, eval_glob, tokenizer_path = prepare_data(config, workdir)

    from data_pipelines import pipeline
    from data_pipelines.mixture import with_builtin
    from data_pipelines.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(tokenizer_path)
    data_cfg = config.copy_and_resolve_references()
    data_cfg.data.path = train_glob
    data_cfg.data.mixture = with_builtin(config.data.mixture, train_glob)
    if jax.process_count() > 1:
        # Every process must hand the same shapes to the global batch: one text length for all.
        data_cfg.data.length_buckets = (config.data.max_text_len,)
    data_iter = pipeline.make_train_iterator(data_cfg, tokenizer)
    mngr = checkpoint.manager(workdir, config.train)
    state, rng = initial_state(spec, config, mngr, data_iter)
    start = int(jax.device_get(state["step"]))
    meta = checkpoint.metadata(config, tokenizer_path, start)

    n_params = count_params(state["params"]) + count_params(state["frozen"])
    log.info("params: %.3e (%.3e trainable), mesh %s", n_params, count_params(state["params"]), dict(mesh.shape))
    step_flops = flops_per_step(config)
    seq_len = decoder_sequence_length(config)  # decoder positions per example: "tokens" counts these
    peak, peak_source = peak_flops(config.train)
    writer = MetricsWriter(workdir, config.train.steps, start, enabled=distributed.is_main())
    stop = _StopRequest()
    step_fn = eval_fn = None
    profile = tuple(config.train.profile_steps)
    last = {}
    try:
        started = time.perf_counter()
        window_start, data_wait = time.perf_counter(), 0.0
        steps_in_window = 0
        for step in range(start, config.train.steps):
            if profile and step == profile[0] and distributed.is_main():
                jax.profiler.start_trace(os.path.join(workdir, "profile"))
            t0 = time.perf_counter()
            local = next(data_iter)
            data_wait += time.perf_counter() - t0
            batch = pipeline.to_global_batch(local, mesh, config.mesh.axis_rules)
            if step_fn is None:
                step_fn = make_train_step(spec, batch)
            state, metrics = step_fn(state, batch)
            steps_in_window += 1
            writer.advance()
            if profile and step + 1 == profile[1] and distributed.is_main():
                jax.profiler.stop_trace()
            done = step + 1
            if config.train.max_seconds and time.perf_counter() - started > config.train.max_seconds:
                log.info("config.train.max_seconds=%s reached at step %d", config.train.max_seconds, done)
                stop.requested = True
            if done % config.train.log_every == 0 or done == config.train.steps or stop.requested:
                metrics = jax.device_get(metrics)
                if not metrics["finite"] and config.train.nan_policy == "stop":
                    raise UserError(f"non-finite loss or gradient at step {done} (config.train.nan_policy=stop)")
                elapsed = time.perf_counter() - window_start
                step_time = elapsed / steps_in_window
                last = {
                    "loss": float(metrics["loss"]), "learning_rate": float(metrics["learning_rate"]),
                    "grad_norm": float(metrics["grad_norm"]), "step_time_s": step_time,
                    "examples_per_s": config.train.batch_size / step_time,
                    "tokens_per_s": config.train.batch_size * seq_len / step_time,
                    "mfu": step_flops / step_time / peak,
                    "data_wait_fraction": data_wait / elapsed,
                    "bad_records": pipeline.bad_record_count(data_iter),
                    "nan_skips": int(jax.device_get(state["nan_skips"])),
                    "tokens": done * config.train.batch_size * seq_len,
                }
                writer.write(done, last)
                window_start, data_wait, steps_in_window = time.perf_counter(), 0.0, 0
            if config.train.eval_every and done % config.train.eval_every == 0 and eval_glob:
                eval_fn = eval_fn or _eval_runner(spec, data_cfg, tokenizer, eval_glob, mesh)
                writer.write(done, {"eval_loss": eval_fn(state)})
            if done % config.train.checkpoint_every == 0 or done == config.train.steps or stop.requested:
                meta["step"] = done
                checkpoint.save(mngr, done, state, data_iter, rng, meta, force=True)
            if stop.requested:
                log.info("stopping: saved step %d", done)
                break
        mngr.wait_until_finished()
    finally:
        stop.restore()
        writer.close()
        mngr.close()
    return {"final_step": int(jax.device_get(state["step"])), "peak_flops_source": peak_source, **last}


def _eval_runner(spec, config, tokenizer, eval_glob, mesh):
    from data_pipelines import pipeline

    def run(state):
        cfg = config.copy_and_resolve_references()
        cfg.data.path = eval_glob
        total, count = 0.0, 0.0
        eval_step = None
        for i, local in enumerate(pipeline.make_eval_iterator(cfg, tokenizer)):
            if i >= config.train.eval_batches:
                break
            batch = pipeline.to_global_batch(local, mesh, config.mesh.axis_rules)
            eval_step = eval_step or make_eval_step(spec, batch)
            nll, tokens = jax.device_get(eval_step(state, batch))
            total, count = total + float(nll), count + float(tokens)
        return total / max(count, 1.0)

    return run


def log_to_stderr() -> None:
    # force: JAX / absl may have configured the root logger already, which would hide our lines.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax's per-save chatter
    np.set_printoptions(precision=4)
