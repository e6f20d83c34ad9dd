"""The composed model: pooling matches torch, parameter counts match the analytic formula, and the
forward + loss give the same value on 1 device and sharded over 8 simulated devices."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from data_pipelines.contract import zeros_batch
from pegasus_jax import config as cfg
from pegasus_jax import sharding
from pegasus_jax.models.alignment import adaptive_avg_pool, pool_shape
from pegasus_jax.models.param_count import analytic_param_counts
from pegasus_jax.models.pegasus import Pegasus, loss_fn
from pegasus_jax.scaling.flops import decoder_sequence_length


def random_batch(config, batch_size=8, seed=0):
    rng = np.random.default_rng(seed)
    b = zeros_batch(config, batch_size)
    b["frames"] = rng.integers(0, 256, b["frames"].shape, dtype=np.uint8)
    b["audio"] = rng.normal(0, 0.1, b["audio"].shape).astype(np.float32)
    b["segment_mask"][:] = True
    b["segment_mask"][::3, -1] = False  # some videos are one segment short
    b["audio_mask"][:] = True
    b["audio_mask"][1::4] = False  # some have no audio
    b["segment_start"][:] = np.arange(b["segment_start"].shape[1]) * config.model.align.segment_seconds
    vocab = config.model.decoder.vocab_size
    b["transcript"] = rng.integers(5, vocab, b["transcript"].shape).astype(np.int32)
    b["transcript_mask"][:, :, :2] = True
    L = b["tokens"].shape[1]
    b["tokens"] = rng.integers(5, vocab, (batch_size, L)).astype(np.int32)
    b["targets"] = np.roll(b["tokens"], -1, axis=1)
    lengths = rng.integers(L // 2, L, batch_size)
    b["text_mask"] = np.arange(L)[None] < lengths[:, None]
    b["loss_mask"] = (b["text_mask"] & (np.arange(L)[None] >= 4)).astype(np.float32)
    return b


def test_adaptive_pool_matches_torch():
    x = np.random.default_rng(0).normal(size=(2, 7, 9, 5, 3)).astype(np.float32)
    ours = adaptive_avg_pool(jnp.asarray(x), (3, 4, 2), axes=(1, 2, 3))
    ref = torch.nn.AdaptiveAvgPool3d((3, 4, 2))(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
    np.testing.assert_allclose(np.asarray(ours), ref.numpy(), atol=1e-6)


def test_pool_shape_adapts_to_budget():
    c = cfg.get("small")
    assert pool_shape(c.model, 1) == (c.model.align.pool_t, c.model.align.pool_h, c.model.align.pool_w)
    many = pool_shape(c.model, 40)
    per_segment = 1 + np.prod(many) + c.model.align.audio_tokens + c.model.transcript_tokens
    assert 40 * per_segment <= c.model.align.visual_token_budget
    assert many[1] < c.model.align.pool_h  # space pooled harder before time
    with pytest.raises(ValueError, match="do not fit"):
        pool_shape(c.model, 10_000)


@pytest.mark.parametrize("name", ["tiny", "small", "pegasus_1b", "pegasus_7b", "pegasus_80b"])
def test_analytic_param_count_matches_model(name):
    c = cfg.get(name)
    abstract = nnx.eval_shape(lambda: Pegasus(c.model, rngs=nnx.Rngs(0)))
    real = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert analytic_param_counts(c)["total"] == real
    if name == "pegasus_80b":
        assert 75e9 <= real <= 85e9


def test_analytic_count_follows_qwen2_biases_and_llava_projectors():
    c = cfg.get("tiny", model__decoder__family="qwen2", model__align__projector_norm=False)
    abstract = nnx.eval_shape(lambda: Pegasus(c.model, rngs=nnx.Rngs(0)))
    real = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert analytic_param_counts(c)["total"] == real
    # q/k/v biases (64 + 32 + 32) in 2 layers added; 2 projector norms (scale, bias of width 32) gone
    assert real - analytic_param_counts(cfg.get("tiny"))["total"] == 2 * (64 + 2 * 32) - 2 * (32 + 32)


def test_analytic_count_includes_lora():
    c = cfg.get("tiny", model__lora__rank=4)
    abstract = nnx.eval_shape(lambda: Pegasus(c.model, rngs=nnx.Rngs(0)))
    real = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert analytic_param_counts(c)["total"] == real and analytic_param_counts(c)["lora"] > 0


def _loss_on_mesh(config, batch, mesh_axes):
    config = config.copy_and_resolve_references()
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_axes
    n = int(np.prod(mesh_axes))
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:n])
    model = Pegasus(config.model, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    state = jax.device_put(state, sharding.state_shardings(state, mesh, config.mesh.axis_rules))
    rules = config.mesh.axis_rules
    batch = {k: jax.device_put(v, sharding.batch_sharding(mesh, rules, v.ndim)) for k, v in batch.items()}

    @jax.jit
    def f(state, batch):
        with sharding.activation_sharding(mesh, rules):
            return loss_fn(nnx.merge(graphdef, state), batch)[0]

    return float(f(state, batch)), state


@pytest.mark.parametrize("scan", [True, False])
def test_sharded_loss_equals_single_device(scan):
    c = cfg.get("tiny", model__scan_layers=scan)
    batch = random_batch(c)
    single, _ = _loss_on_mesh(c, batch, (1, 1, 1))
    fsdp_tp, state = _loss_on_mesh(c, batch, (1, 4, 2))
    dp, _ = _loss_on_mesh(c, batch, (8, 1, 1))
    assert np.isfinite(single) and single > 0
    assert abs(single - fsdp_tp) <= 1e-5 and abs(single - dp) <= 1e-5
    # the fsdp x tensor run really is sharded: some parameter is split over both mesh axes (a spec entry
    # may be a tuple of axes: embed maps to ("fsdp", "context"))
    specs = [{a for e in x.sharding.spec for a in (e if isinstance(e, tuple) else (e,))} for x in jax.tree.leaves(state)]
    assert any({"fsdp", "tensor"} <= s for s in specs)


def test_context_parallel_loss_and_grads_equal_single_device():
    """context=4 x fsdp=2: each example's decoder sequence is split four ways, keys and values gathered.
    The loss and gradients equal one device's, and the compiled program really splits the sequence: the
    attention logits one device holds are (its 29 queries) x (all 116 keys), never 116 x 116."""
    c = cfg.get("tiny", data__max_segments=4, model__align__visual_token_budget=128)
    length = decoder_sequence_length(c)
    assert length == 116  # 4 segments x 17 tokens + 48 text: divisible by 4
    batch = random_batch(c, batch_size=2)

    def loss_and_grads(mesh_axes, context):
        config = c.copy_and_resolve_references()
        config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_axes
        config.mesh.context = context
        mesh = sharding.make_mesh(config.mesh, jax.devices()[:int(np.prod(mesh_axes)) * context])
        graphdef, state = nnx.split(Pegasus(config.model, rngs=nnx.Rngs(0)))
        rules = config.mesh.axis_rules
        state = jax.device_put(state, sharding.state_shardings(state, mesh, rules))
        placed = {k: jax.device_put(v, sharding.batch_sharding(mesh, rules, v.ndim)) for k, v in batch.items()}

        def f(state, batch):
            with sharding.activation_sharding(mesh, rules):
                return loss_fn(nnx.merge(graphdef, state), batch)[0]

        step = jax.jit(jax.value_and_grad(f)).lower(state, placed).compile()
        loss, grads = step(state, placed)
        return float(loss), jax.tree.map(np.asarray, grads), step.as_text()

    single, single_grads, _ = loss_and_grads((1, 1, 1), 1)
    split, split_grads, hlo = loss_and_grads((1, 2, 1), 4)
    assert np.isfinite(single) and abs(single - split) <= 1e-5
    for a, b in zip(jax.tree.leaves(single_grads), jax.tree.leaves(split_grads)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    shapes = {tuple(int(d) for d in m.split(",")) for m in re.findall(r"f32\[([\d,]+)\]", hlo)}
    block = length // 4
    assert any(s[-2:] == (block, length) for s in shapes), sorted(shapes)
    assert not any(s[-2:] == (length, length) for s in shapes)
    assert "all-gather" in hlo


def test_a_sequence_context_does_not_divide_is_a_config_error():
    from pegasus_jax.errors import ConfigError
    from pegasus_jax.train.state import TrainSpec

    c = cfg.get("tiny", mesh__data=1, mesh__context=4)  # 2 segments x 17 + 24 or 48 text: 58 and 82 tokens
    with pytest.raises(ConfigError, match=r"^config.mesh.context: 4 does not divide the decoder sequence of 58 "):
        TrainSpec.create(c, sharding.make_mesh(c.mesh, jax.devices()[:4]))


def test_padding_segments_do_not_change_an_example():
    """A one-segment video gives the same loss alone as inside a batch padded to more segments."""
    c = cfg.get("tiny")
    batch = random_batch(c, batch_size=2)
    batch["segment_mask"][0, 1:] = False
    model = Pegasus(c.model, rngs=nnx.Rngs(0))
    both = np.asarray(model(batch))[0]
    trimmed = {k: v[:1] for k, v in batch.items()}
    trimmed["frames"][0, 1:] = 255 - trimmed["frames"][0, 1:]  # padded segment content is ignored
    alone = np.asarray(model(trimmed))[0]
    np.testing.assert_allclose(both, alone, atol=1e-5)
