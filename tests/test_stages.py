"""Stages train only their parameters: stage 1 (align) the projector, LoRA the adapters; merge is exact."""
import jax
import numpy as np
import pytest
from flax import nnx, traverse_util

from pegasus_jax import config as cfg
from pegasus_jax import sharding
from pegasus_jax.train.state import TrainSpec, count_params
from pegasus_jax.train.step import make_train_step
from tests.test_model import random_batch


def train_a_few_steps(config, steps=3):
    config.mesh.data = 1
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    spec = TrainSpec.create(config, mesh)
    state = spec.init_state(0)
    before = jax.tree.map(np.asarray, jax.device_get(state))
    batch = random_batch(config, batch_size=4)
    step = make_train_step(spec, batch)
    for _ in range(steps):
        state, metrics = step(state, batch)
        assert bool(metrics["finite"])
    return spec, before, jax.tree.map(np.asarray, jax.device_get(state)), batch


def flat_params(state):
    return {**traverse_util.flatten_dict(state["params"]), **traverse_util.flatten_dict(state["frozen"])}


def changed(before, after):
    b, a = flat_params(before), flat_params(after)
    assert b.keys() == a.keys()
    return {"/".join(map(str, k)) for k in b if not np.array_equal(b[k], a[k])}


def test_stage1_trains_only_the_alignment_model():
    spec, before, after, _ = train_a_few_steps(cfg.get("tiny", train__stage="align"))
    moved = changed(before, after)
    assert moved and all(k.startswith("alignment/") for k in moved), sorted(moved)[:5]
    # frozen parameters hold no optimizer state: Adam moments cover the trainable ones only
    assert count_params(after["opt_state"]) < 3 * count_params(after["params"]) + 10
    assert count_params(after["params"]) < count_params(after["frozen"])


def test_lora_trains_only_adapters_and_merge_is_exact():
    from pegasus_jax.models.lora import merge_lora

    spec, before, after, batch = train_a_few_steps(cfg.get("tiny", train__stage="instruct_lora", model__lora__rank=4))
    moved = changed(before, after)
    assert moved and all("lora" in k for k in moved), sorted(moved)[:5]
    model = spec.model(after["params"], after["frozen"], after["rest"])
    adapted = np.asarray(model(batch))
    base = spec.model(before["params"], after["frozen"], after["rest"])
    assert np.abs(adapted - np.asarray(base(batch))).max() > 1e-6  # the adapters did something
    merged = merge_lora(model)
    np.testing.assert_allclose(np.asarray(merged(batch)), adapted, atol=1e-5)
