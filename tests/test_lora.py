"""LoRA: fresh adapters change nothing, trained ones do, merging keeps the logits, alpha rescales the delta,
and adapters stay out of the pretrained (Hugging Face) weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pegasus_jax import config as cfg
from pegasus_jax.interop.common import load_params, params_of
from pegasus_jax.interop.hf_llama import llama_to_hf
from pegasus_jax.models import param_count
from pegasus_jax.models.decoder import Decoder, valid_positions
from pegasus_jax.models.lora import LoRADense, LoRAParam, merge_lora, set_lora_alpha

ALL_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


def config(rank: int, targets=ALL_TARGETS, alpha: float = 16.0, scan: bool = True):
    c = cfg.get("tiny", model__scan_layers=scan)
    d = c.model.decoder
    d.vocab_size, d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 128, 64, 2, 4, 2, 128
    c.model.lora.rank, c.model.lora.targets, c.model.lora.alpha = rank, tuple(targets), alpha
    return c


def build(c, seed: int = 0) -> Decoder:
    return Decoder(c.model.decoder, c.model.lora, dtype=jnp.float32, param_dtype=jnp.float32,
                   scan=c.model.scan_layers, remat="none", rngs=nnx.Rngs(seed))


def base_and_adapted(rank: int = 4, targets=ALL_TARGETS, scan: bool = True):
    """A plain decoder and a LoRA one holding the same pretrained weights."""
    base = build(config(0, scan=scan))
    adapted = build(config(rank, targets, scan=scan), seed=1)
    load_params(adapted, params_of(base))
    return base, adapted


def randomize_b(model: nnx.Module, seed: int = 0) -> None:
    """Stand-in for training: B away from its zero init."""
    key = jax.random.key(seed)
    for _, m in nnx.iter_graph(model):
        if isinstance(m, LoRADense):
            key, sub = jax.random.split(key)
            m.lora_b.set_value(0.05 * jax.random.normal(sub, m.lora_b[...].shape))


TOKENS = np.random.default_rng(0).integers(0, 128, (2, 10))
MASK = np.arange(10)[None] < np.array([[10], [7]])


@nnx.jit
def _logits(dec, tokens, mask):
    return dec(dec.embed(tokens), valid_positions(mask), mask)[0]


def logits(dec) -> np.ndarray:
    return np.asarray(_logits(dec, jnp.asarray(TOKENS), jnp.asarray(MASK)))[MASK]


@pytest.mark.parametrize("scan", [True, False])
def test_fresh_adapters_change_nothing(scan):
    base, adapted = base_and_adapted(scan=scan)
    np.testing.assert_array_equal(logits(adapted), logits(base))


def test_only_targets_get_adapters_and_counts_match():
    c = config(3, ("q", "v", "down"))
    dec = build(c)
    layer = dec.layers.layers
    assert {n for n in ALL_TARGETS if isinstance(getattr(layer, n), LoRADense)} == {"q", "v", "down"}
    adapters = nnx.state(dec, LoRAParam)
    assert sum(x.size for x in jax.tree.leaves(adapters)) == param_count.lora(c) > 0
    a = layer.q.lora_a[...]
    assert a.shape == (2, 64, 3) and np.abs(a).max() <= 64 ** -0.5  # kaiming-uniform bound 1/sqrt(fan_in)
    assert not np.any(np.asarray(layer.q.lora_b[...]))
    # The pretrained view (HF export, load_params) holds no adapter; the filter holds nothing else.
    assert not any("lora" in k for k in llama_to_hf(dec, c.model.decoder))
    assert all(p[-1] in ("lora_a", "lora_b") for p, _ in nnx.to_flat_state(adapters))


def test_trained_adapters_change_logits_and_merge_keeps_them():
    base, adapted = base_and_adapted()
    randomize_b(adapted)
    want = logits(adapted)
    assert np.abs(want - logits(base)).max() > 1e-3
    merged = merge_lora(adapted)
    assert all(not np.any(np.asarray(v)) for p, v in nnx.to_flat_state(nnx.state(merged, LoRAParam))
               if p[-1] == "lora_b")
    assert np.abs(logits(merged) - want).max() <= 1e-5
    # The merged base kernels are a plain Llama: exported into a LoRA-free decoder they give the same logits.
    plain = build(config(0), seed=2)
    load_params(plain, params_of(merged))
    assert np.abs(logits(plain) - want).max() <= 1e-5


def test_alpha_rescales_the_delta():
    dense = LoRADense(8, 5, ("embed", "heads"), rank=2, alpha=16.0, rngs=nnx.Rngs(0))
    dense.lora_b.set_value(jax.random.normal(jax.random.key(1), (2, 5)))
    x = jax.random.normal(jax.random.key(2), (3, 8))
    base = jnp.dot(x, dense.kernel[...])
    delta16 = dense(x) - base
    assert np.abs(delta16).max() > 1e-2
    np.testing.assert_allclose(set_lora_alpha(dense, 4.0)(x) - base, delta16 / 4, rtol=1e-5, atol=1e-6)

    base_model, adapted = base_and_adapted()
    randomize_b(adapted)
    set_lora_alpha(adapted, 0.0)  # PLLaVA blending at its extreme: the original model
    np.testing.assert_array_equal(logits(adapted), logits(base_model))
    set_lora_alpha(adapted, 8.0)
    halfway = logits(adapted)
    set_lora_alpha(adapted, 16.0)
    full = logits(adapted)
    merge_lora(set_lora_alpha(adapted, 8.0))  # merging uses the alpha in force
    assert np.abs(logits(adapted) - halfway).max() <= 1e-5 and np.abs(halfway - full).max() > 1e-4
