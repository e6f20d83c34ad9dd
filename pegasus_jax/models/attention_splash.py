"""Pallas splash attention (TPU), with segment ids and a causal or full mask, under shard_map.

The kernel (`jax.experimental.pallas.ops.tpu.splash_attention`) works on one example's (H, T, D)
queries and (K, S, D) keys; it is vmapped over the batch and, inside an `activation_sharding` mesh,
run under `shard_map` with the batch and heads split as the rules split activations (the sequence
stays whole on each device). Its blocks are multiples of 128 along both sequences, so shorter or
ragged sequences are padded at the tail with a segment id no real token uses (PAD_SEGMENT): padded
keys are invisible to real queries, padded queries see only padded keys, and their rows are dropped.
The kernel does not scale the logits: q is scaled first. Off TPU the kernel runs in Pallas interpret
mode (same numerics, far slower: for tests only).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.sharding import PartitionSpec

from pegasus_jax.sharding import ACT_BATCH_LENGTH_HEADS, active_mesh, logical_to_spec

LANES = 128  # splash blocks are multiples of the TPU lane width along both sequences
PAD_SEGMENT = jnp.iinfo(jnp.int32).min  # reserved: the segment id of the padded tail


def _block(length: int) -> int:
    """The largest of 512, 256, 128 dividing the (padded) length."""
    return next(b for b in (512, 256, LANES) if length % b == 0)


@functools.lru_cache(maxsize=64)
def _kernel(heads: int, t: int, s: int, causal: bool, offset: int, interpret: bool):
    """A splash kernel for (heads, t) queries over s keys (query i sees keys j <= i + offset when causal);
    cached, as building its mask info runs numpy. Built as concrete arrays even when first asked for inside
    a trace, so the cached kernel holds no tracer of that trace."""
    with jax.ensure_compile_time_eval():
        return _build_kernel(heads, t, s, causal, offset, interpret)


def _build_kernel(heads: int, t: int, s: int, causal: bool, offset: int, interpret: bool):
    one = splash.CausalMask((t, s), offset=offset) if causal else splash.FullMask((t, s))
    bq, bkv = _block(t), _block(s)
    sizes = splash.BlockSizes(block_q=bq, block_kv=bkv, block_kv_compute=bkv, block_q_dkv=bq, block_kv_dkv=bkv,
                              block_kv_dkv_compute=bkv, block_q_dq=bq, block_kv_dq=bkv)
    return splash.make_splash_mha(splash.MultiHeadMask([one] * heads), block_sizes=sizes, head_shards=1,
                                  q_seq_shards=1, interpret=interpret)


def _pad(x, length: int, value):
    return jnp.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2), constant_values=value)


def _local(q, k, v, q_seg, kv_seg, *, causal: bool, offset: int, interpret: bool):
    """Splash on this device's block: q (b, T, h, D), k, v (b, S, kv, D), segment ids (b, T), (b, S)."""
    t, s = q.shape[1], k.shape[1]
    kernel = _kernel(q.shape[2], t, s, causal, offset, interpret)
    heads_major = lambda x: x.transpose(0, 2, 1, 3)
    one = lambda q1, k1, v1, qs, ks: kernel(q1, k1, v1, splash.SegmentIds(q=qs, kv=ks))
    out = jax.vmap(one)(heads_major(q), heads_major(k), heads_major(v), q_seg, kv_seg)
    return heads_major(out)


def splash_attention(q, k, v, *, causal: bool, segment_ids=None, kv_segment_ids=None, scale: float,
                     interpret: bool, layout=ACT_BATCH_LENGTH_HEADS) -> jax.Array:
    """Arguments as models.attention.attention; `interpret` runs the kernel in Pallas interpret mode.

    Under context parallelism the decoder's queries arrive split along the sequence; the shard_map takes
    them whole (the kernel's causal mask is built for the whole sequence), so each context chip runs the
    kernel on every query: correct, memory-light, but its attention FLOPs are not divided by `context`."""
    b, t, h, d = q.shape
    s, kv = k.shape[1], k.shape[2]
    tp, sp = -(-t // LANES) * LANES, -(-s // LANES) * LANES
    if segment_ids is None:
        segment_ids, kv_segment_ids = jnp.zeros((b, t), jnp.int32), jnp.zeros((b, s), jnp.int32)
    q_seg = _pad(segment_ids.astype(jnp.int32), tp, PAD_SEGMENT)
    kv_seg = _pad(kv_segment_ids.astype(jnp.int32), sp, PAD_SEGMENT)
    # Padding at the tails keeps the causal offset: a real query i still sees keys j <= i + (s - t).
    q = _pad(q * jnp.asarray(scale, q.dtype), tp, 0)
    k, v = _pad(k, sp, 0), _pad(v, sp, 0)
    run = functools.partial(_local, causal=causal, offset=s - t, interpret=interpret)
    active = active_mesh()
    if active is not None:
        mesh, rules = active
        q_spec = logical_to_spec(layout, q.shape, mesh, rules)
        batch, heads = q_spec[0], q_spec[2]
        head_axes = () if heads is None else (heads,) if isinstance(heads, str) else heads
        if kv % math.prod(mesh.shape[a] for a in head_axes):
            # The heads split in more groups than there are KV heads: each device gets its q heads' KV copies.
            k, v = jnp.repeat(k, h // kv, axis=2), jnp.repeat(v, h // kv, axis=2)
        x_spec, seg_spec = PartitionSpec(batch, None, heads, None), PartitionSpec(batch, None)
        run = jax.shard_map(run, mesh=mesh, in_specs=(x_spec, x_spec, x_spec, seg_spec, seg_spec),
                            out_specs=x_spec, check_vma=False)
    return run(q, k, v, q_seg, kv_seg)[:, :t]

