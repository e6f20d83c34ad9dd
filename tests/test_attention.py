"""Attention backends against the XLA path (fp32, 1e-5, outputs and gradients w.r.t. q, k, v): blockwise,
splash in Pallas interpret mode (alone and under shard_map over batch and heads), the cuDNN argument
mapping, the backend choice, and the decoder on each backend."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from pegasus_jax import config as cfg
from pegasus_jax import sharding
from pegasus_jax.errors import ConfigError
from pegasus_jax.models.attention import attention, cudnn_attention, resolve_backend, visibility, xla_attention
from pegasus_jax.models.attention_blockwise import blockwise_attention

TOL = 1e-5


def qkv(b=2, t=20, s=None, h=4, kv=2, d=8, seed=0):
    r = np.random.default_rng(seed)
    s = t if s is None else s
    return (jnp.asarray(r.normal(size=(b, t, h, d)), jnp.float32), jnp.asarray(r.normal(size=(b, s, kv, d)), jnp.float32),
            jnp.asarray(r.normal(size=(b, s, kv, d)), jnp.float32))


def packed_ids(t=20):
    """Row 0: two packed examples then a padded tail with its own id; row 1: one example filling the row."""
    return jnp.asarray([[1] * 8 + [2] * (t - 11) + [0] * 3, [5] * t], jnp.int32)


def value_and_grads(fn, q, k, v):
    """The output and d/d(q, k, v) of a fixed random projection of it (all query rows well defined), one jit."""
    w = jnp.asarray(np.random.default_rng(9).normal(size=q.shape), jnp.float32)

    def both(q, k, v):
        out, pullback = jax.vjp(fn, q, k, v)
        return out, pullback(w)

    return jax.jit(both)(q, k, v)


def assert_matches(fn, ref, q, k, v):
    out, grads = value_and_grads(fn, q, k, v)
    ref_out, ref_grads = value_and_grads(ref, q, k, v)
    np.testing.assert_allclose(out, ref_out, atol=TOL, rtol=0)
    for name, g, rg in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(g, rg, atol=TOL, rtol=0, err_msg=f"d/d{name}")


@pytest.mark.parametrize("causal,kv_heads,segments", [(True, 2, True), (False, 4, False), (True, 1, False)])
def test_blockwise_matches_xla(causal, kv_heads, segments):
    """Chunks of 6 keys over 20: three full chunks and a padded last one, so the online softmax spans chunks.
    GQA with packed segments and a padded tail; full attention (MHA); causal MQA."""
    q, k, v = qkv(kv=kv_heads)
    ids = packed_ids() if segments else None
    ref = lambda q, k, v: attention(q, k, v, causal=causal, segment_ids=ids, backend="xla")
    ours = lambda q, k, v: blockwise_attention(q, k, v, causal=causal, segment_ids=ids, kv_segment_ids=ids,
                                               scale=8 ** -0.5, chunk=6)
    assert_matches(ours, ref, q, k, v)


def test_blockwise_decode_mask_and_offset_causality():
    """The KV-cache shapes: 3 queries over 20 keys, an explicit (B, 1, T, S) mask (invalid cache slots), and
    causality aligned at the end (query i sees keys j <= i + 17)."""
    q, k, v = qkv(t=3, s=20)
    mask = jnp.asarray(np.random.default_rng(3).random((2, 1, 3, 20)) > 0.3).at[..., 0].set(True)
    for causal, m in ((True, None), (True, mask)):
        ref = lambda q, k, v: attention(q, k, v, causal=causal, mask=m, backend="xla")
        ours = lambda q, k, v: blockwise_attention(q, k, v, causal=causal, mask=m, scale=8 ** -0.5, chunk=8)
        assert_matches(ours, ref, q, k, v)


@pytest.mark.parametrize("causal,kv_heads,segments", [(True, 2, True), (False, 4, False)])
def test_splash_interpret_matches_xla(causal, kv_heads, segments):
    """Splash in Pallas interpret mode (the CPU stand-in for the TPU kernel): 20 tokens, padded inside to the
    kernel's 128-token blocks with a reserved segment id; GQA with packed segments and a padded tail
    (causal), and full attention without segment ids. Every case the kernel is used for runs here."""
    q, k, v = qkv(kv=kv_heads)
    ids = packed_ids() if segments else None
    ref = lambda q, k, v: attention(q, k, v, causal=causal, segment_ids=ids, backend="xla")
    ours = lambda q, k, v: attention(q, k, v, causal=causal, segment_ids=ids, backend="splash")
    assert_matches(ours, ref, q, k, v)


def test_splash_under_shard_map_matches_xla():
    """Inside an activation_sharding mesh (data=2 x tensor=2 of the simulated devices) splash runs under
    shard_map, batch over data and heads over tensor; with 2 KV heads over tensor=2 each device keeps its own."""
    q, k, v = qkv(kv=2)
    ids = packed_ids()
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 1, 1, 2), sharding.MESH_AXES)

    def under_mesh(backend):
        def fn(q, k, v):
            with sharding.activation_sharding(mesh, sharding.DEFAULT_AXIS_RULES):
                return attention(q, k, v, causal=True, segment_ids=ids, backend=backend)
        return fn

    lowered = jax.jit(under_mesh("splash")).lower(q, k, v).as_text()
    assert "shard_map" in lowered or "sdy.manual_computation" in lowered
    assert_matches(under_mesh("splash"), under_mesh("xla"), q, k, v)


def test_cudnn_argument_mapping():
    """The arguments cudnn_attention hands jax.nn.dot_product_attention (native causal flag, segment ids as a
    mask, an offset causal mask for T != S, GQA), run through its XLA implementation on CPU: the cuDNN kernel
    itself needs a GPU, none is here."""
    q, k, v = qkv(kv=2)
    ids = packed_ids()
    for causal, seg in ((True, ids), (False, ids), (True, None)):
        ref = lambda q, k, v: attention(q, k, v, causal=causal, segment_ids=seg, backend="xla")
        ours = lambda q, k, v: cudnn_attention(q, k, v, causal=causal, segment_ids=seg, kv_segment_ids=seg,
                                               scale=8 ** -0.5, implementation="xla")
        assert_matches(ours, ref, q, k, v)
    q, k, v = qkv(t=3, s=20)
    ref = lambda q, k, v: attention(q, k, v, causal=True, backend="xla")
    ours = lambda q, k, v: cudnn_attention(q, k, v, causal=True, segment_ids=None, kv_segment_ids=None,
                                           scale=8 ** -0.5, implementation="xla")
    assert_matches(ours, ref, q, k, v)


def test_xla_path_is_the_plain_softmax():
    """The reference itself against a hand-written softmax(q k^T / sqrt(d)) v with a causal, packed mask."""
    q, k, v = qkv(kv=1)
    ids = packed_ids()
    vis = np.asarray(visibility(20, 20, True, ids, ids, None))  # (B, 1, T, S)
    kk, vv = np.repeat(np.asarray(k), 4, axis=2), np.repeat(np.asarray(v), 4, axis=2)
    logits = np.einsum("bthd,bshd->bhts", np.asarray(q), kk) / np.sqrt(8)
    logits = np.where(vis, logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    expected = np.einsum("bhts,bshd->bthd", p, vv)
    np.testing.assert_allclose(xla_attention(q, k, v, jnp.asarray(vis), 8 ** -0.5), expected, atol=TOL)


def test_backend_choice_and_errors():
    assert resolve_backend("auto", jnp.bfloat16) == "xla"  # CPU
    assert resolve_backend("auto", jnp.bfloat16, has_mask=True) == "xla"
    assert resolve_backend("blockwise", jnp.float32) == "blockwise"
    q, k, v = qkv()
    with pytest.raises(ValueError, match="must be one of"):
        attention(q, k, v, causal=True, backend="flash")
    with pytest.raises(ValueError, match="explicit mask"):
        attention(q, k, v, causal=False, mask=jnp.ones((2, 1, 20, 20), bool), backend="splash")
    with pytest.raises(ValueError, match="K dividing H"):
        attention(q, k[:, :, :1].repeat(3, axis=2), v[:, :, :1].repeat(3, axis=2), causal=True)
    with pytest.raises(ConfigError, match="config.model.attention"):
        cfg.get("tiny", model__attention="flash")
