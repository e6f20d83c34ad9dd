"""The train loop's guards: nan_policy="stop" catches a non-finite step between two logging steps, and
the eval step is compiled once per run, not at every evaluation."""
import jax
import numpy as np
import pytest

from pegasus_jax import config as cfg


def tiny(corpus, **extra):
    return cfg.get("tiny", data__path=corpus["train"], data__eval_path=corpus["heldout"],
                   data__tokenizer=corpus["tokenizer"], **extra)


def test_nan_policy_stop_catches_a_non_finite_step_between_logging_steps(corpus, tmp_path, monkeypatch):
    """Batch 2 of 8 carries a NaN loss weight (its step is skipped as non-finite); steps 1-4 are logged
    only at step 4, whose own loss is finite. The run must still stop there."""
    from data_pipelines.batch import iterators as pipeline
    from pegasus_jax import sharding
    from pegasus_jax.errors import UserError
    from pegasus_jax.train.trainer import train

    real_next, calls = pipeline.BatchIterator.__next__, []

    def poisoned_next(self):
        batch = real_next(self)
        calls.append(1)
        if len(calls) == 2:
            batch["loss_mask"] = np.where(batch["loss_mask"] > 0, np.nan, 0.0).astype(np.float32)
        return batch

    monkeypatch.setattr(pipeline.BatchIterator, "__next__", poisoned_next)
    config = tiny(corpus, train__steps=8, train__log_every=4, train__checkpoint_every=100, train__peak_flops=1e9,
                  mesh__data=1, train__nan_policy="stop", data__packing=False)  # the bucket batcher is poisoned
    with pytest.raises(UserError, match=r"non-finite loss or gradient in 1 step\(s\) up to step 4"):
        train(config, str(tmp_path / "stop"), mesh=sharding.make_mesh(config.mesh, jax.devices()[:1]))
    assert len(calls) == 4  # it stopped at the first logging step after the bad one
    metrics = (tmp_path / "stop" / "metrics.jsonl")
    assert not metrics.exists() or metrics.read_text() == ""


def test_eval_step_is_compiled_once_per_run(corpus):
    from data_pipelines.text.tokenizer import load_tokenizer
    from pegasus_jax import sharding
    from pegasus_jax.train.batch_layout import BatchLayout
    from pegasus_jax.train.state import TrainSpec
    from pegasus_jax.train.trainer import _eval_runner

    config = tiny(corpus, train__eval_batches=2, mesh__data=1)
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    spec = TrainSpec.create(config, mesh)
    state = spec.init_state(0)
    layout = BatchLayout.create(mesh, config.mesh.axis_rules, config.train.batch_size)
    evaluate = _eval_runner(spec, config, load_tokenizer(corpus["tokenizer"]), corpus["heldout"], layout)
    from jax._src import monitoring

    traces = []

    def listen(event, seconds, **kw):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            traces.append(event)

    monitoring.register_event_duration_secs_listener(listen)
    try:
        first = evaluate(state)
        traced_first = len(traces)
        second = evaluate(state)
    finally:
        monitoring.unregister_event_duration_listener(listen)
    assert traced_first > 0 and len(traces) == traced_first  # the second evaluation traced nothing anew
    assert first == second and 0 < first < np.log(config.model.decoder.vocab_size) * 2
