"""Stages train only their parameters: stage 1 (align) the projector, LoRA the adapters (and the projector,
as PLLaVA, unless model.lora.train_projector is off); merge is exact."""
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


def test_lora_trains_adapters_and_projector_and_merge_is_exact():
    """PLLaVA's LoRA stage (model.lora.train_projector, the default) tunes the alignment model with the adapters."""
    from pegasus_jax.models.lora import merge_lora

    spec, before, after, batch = train_a_few_steps(cfg.get("tiny", train__stage="instruct_lora", model__lora__rank=4))
    moved = changed(before, after)
    assert moved and all("lora" in k or k.startswith("alignment/") for k in moved), sorted(moved)[:5]
    assert any(k.startswith("alignment/vision_projector/") for k in moved)
    trainable = {"/".join(map(str, k)) for k in traverse_util.flatten_dict(after["params"])}
    assert "alignment/vision_projector/fc1/kernel" in trainable  # trained, so it has Adam moments:
    assert count_params(after["opt_state"]) >= 2 * count_params(after["params"])
    model = spec.model(after["params"], after["frozen"], after["rest"])
    adapted = np.asarray(model(batch))
    base = spec.model(before["params"], after["frozen"], after["rest"])
    assert np.abs(adapted - np.asarray(base(batch))).max() > 1e-6  # the adapters did something
    merged = merge_lora(model)
    np.testing.assert_allclose(np.asarray(merged(batch)), adapted, atol=1e-5)


def test_lora_stage_without_train_projector_trains_the_adapters_alone():
    config = cfg.get("tiny", train__stage="instruct_lora", model__lora__rank=4, model__lora__train_projector=False)
    config.mesh.data = 1
    spec = TrainSpec.create(config, sharding.make_mesh(config.mesh, jax.devices()[:1]))
    trainable = traverse_util.flatten_dict(spec.templates[0].to_pure_dict())
    assert trainable and all(path[-1] in ("lora_a", "lora_b") for path in trainable), sorted(trainable)[:5]


def test_lr_mults_scale_the_matching_updates_and_a_typo_is_an_error():
    from pegasus_jax.errors import ConfigError
    from pegasus_jax.train.optimizer import make_optimizer

    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.normal(size=shape).astype(np.float32)
    params = {"video_encoder": {"temporal": {"kernel": normal(4, 4)}, "frames": {"kernel": normal(4, 4)}},
              "decoder": {"kernel": normal(4, 4), "scale": normal(4)}}
    grads = [jax.tree.map(lambda p: normal(*p.shape), params) for _ in range(2)]

    def second_update(lr_mults):
        tx = make_optimizer(cfg.get("tiny", train__lr_mults=str(lr_mults)).train)
        state = tx.init(params)
        for g in grads:
            updates, state = tx.update(g, state, params)
        return updates

    plain = second_update(())
    scaled = second_update((("video_encoder/temporal", 10.0), ("video_encoder", 3.0)))
    assert np.abs(plain["video_encoder"]["temporal"]["kernel"]).min() > 0
    np.testing.assert_allclose(scaled["video_encoder"]["temporal"]["kernel"],
                               10 * plain["video_encoder"]["temporal"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(scaled["video_encoder"]["frames"]["kernel"],
                               3 * plain["video_encoder"]["frames"]["kernel"], rtol=1e-6)
    np.testing.assert_array_equal(scaled["decoder"]["kernel"], plain["decoder"]["kernel"])

    with pytest.raises(ConfigError, match="config.train.lr_mults: 'video_encodr' matches no trainable parameter"):
        TrainSpec.create(cfg.get("tiny", train__lr_mults="(('video_encodr', 2.0),)"),
                         sharding.make_mesh(cfg.get("tiny").mesh, jax.devices()[:1]))
    with pytest.raises(ConfigError, match="config.train.lr_mults: .* not a regular expression"):
        cfg.get("tiny", train__lr_mults="(('video_encoder[', 2.0),)")
    with pytest.raises(ConfigError, match="config.train.lr_mults: entries are"):
        cfg.get("tiny", train__lr_mults="(('decoder', -1.0),)")


def test_wsd_holds_the_peak_then_decays_linearly_and_bad_settings_are_errors():
    from pegasus_jax.errors import ConfigError
    from pegasus_jax.train.optimizer import learning_rate_schedule

    c = cfg.get("tiny", train__schedule="wsd", train__steps="100", train__warmup_steps="10",
                train__learning_rate="1e-3", train__decay_fraction="0.25", train__min_lr_ratio="0.1")
    lr = lambda step: float(learning_rate_schedule(c.train)(step))
    assert lr(5) == pytest.approx(5e-4)  # warmup
    assert [lr(s) for s in (10, 40, 75)] == pytest.approx([1e-3] * 3)  # the peak is held until the last 25 steps
    assert lr(75) > lr(80) > lr(90) > lr(99)
    assert lr(80) - lr(90) == pytest.approx(lr(90) - lr(100))  # a straight line ...
    assert lr(100) == pytest.approx(1e-4)  # ... down to min_lr_ratio x peak
    cosine = cfg.get("tiny", train__steps="100", train__warmup_steps="10", train__learning_rate="1e-3")
    assert float(learning_rate_schedule(cosine.train)(40)) < 1e-3 * 0.8  # cosine is already well down

    with pytest.raises(ConfigError, match="config.train.schedule: must be one of"):
        cfg.get("tiny", train__schedule="linear")
    with pytest.raises(ConfigError, match=r"config.train.decay_fraction: warmup_steps 10 \+ 95 decay steps exceed"):
        cfg.get("tiny", train__schedule="wsd", train__steps="100", train__warmup_steps="10",
                train__decay_fraction="0.95")
    with pytest.raises(ConfigError, match=r"config.train.decay_fraction: must be in \(0, 1\]"):
        cfg.get("tiny", train__schedule="wsd", train__decay_fraction="0")
