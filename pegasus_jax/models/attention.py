"""Attention for every tower, one signature, several backends (config field `model.attention`).

    attention(q, k, v, *, causal, segment_ids=None, kv_segment_ids=None, mask=None, backend="xla", scale=None)

q (B, T, H, D); k, v (B, S, K, D) with K dividing H (grouped-query / multi-query attention). A query at
index i sees the key at index j when all of these hold:
- `causal`: j <= i + (S - T) (positional causality, aligned at the end so a decode chunk sees the
  whole prefix before it);
- `segment_ids` (B, T) int32 and `kv_segment_ids` (B, S) (the same array when omitted, for
  self-attention): the two ids are equal. Packed examples each have their own id, and padding has its
  own, so no token attends across examples and no query row is empty;
- `mask`, broadcastable to (B, H, T, S), True = attend: the KV-cache decode path, where validity and
  positions live in the cache ("xla" and "blockwise" only).
A query row that sees no key is undefined (a broken input, not a state the models produce).

Backends:
- "xla": the einsum path, fp32 logits of shape (B, H, T, S) materialised;
- "blockwise": plain JAX, a scan over key chunks with an online softmax and a flash-style custom VJP,
  so neither pass holds more than (B, H, T, chunk) logits (pegasus_jax/models/attention_blockwise.py);
- "splash": the Pallas TPU splash-attention kernel under shard_map over batch and heads; off TPU it
  runs in Pallas interpret mode (slow: for tests) (pegasus_jax/models/attention_splash.py);
- "cudnn": `jax.nn.dot_product_attention(implementation="cudnn")`, cuDNN flash attention on GPU;
- "auto": splash on TPU; cudnn on GPU for bf16/fp16 inputs (cuDNN has no fp32 flash kernel); xla
  elsewhere, and xla whenever `mask` is given.
The platform is the one of the mesh the step is traced for (`activation_sharding`), else JAX's default:
an ahead-of-time TPU compile from a CPU host picks splash.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from pegasus_jax.config import ATTENTION_BACKENDS as BACKENDS
from pegasus_jax.models.attention_blockwise import blockwise_attention
from pegasus_jax.models.attention_splash import LANES, splash_attention
from pegasus_jax.sharding import ACT_BATCH_LENGTH_HEADS, active_mesh

MASK_BACKENDS = ("xla", "blockwise")  # the backends that take an explicit `mask` (the KV-cache path)


def platform() -> str:
    """'tpu', 'gpu' or 'cpu': the devices of the active mesh, else JAX's default backend."""
    active = active_mesh()
    name = active[0].devices.flat[0].platform if active is not None else jax.default_backend()
    return "gpu" if name in ("gpu", "cuda", "rocm") else name


def resolve_backend(backend: str, dtype, has_mask: bool = False, key_length: int | None = None) -> str:
    """The concrete backend "auto" stands for here (others are returned as given).

    On TPU, keys shorter than one 128-lane splash block (the temporal layers' few frames) go to xla:
    splash pads both sequences to 128, and at 4 frames that is 32x32 the logits (measured: 72 GiB
    buffers per chip in pegasus_7b_long)."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if has_mask:
        return "xla"
    where = platform()
    if where == "tpu":
        return "xla" if key_length is not None and key_length < LANES else "splash"
    if where == "gpu" and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return "cudnn"
    return "xla"


def decode_backend(backend: str) -> str:
    """The backend of the KV-cache path (an explicit mask): blockwise when chosen, else xla."""
    return backend if backend in MASK_BACKENDS else "xla"


def visibility(t: int, s: int, causal: bool, segment_ids, kv_segment_ids, mask) -> jax.Array | None:
    """The boolean (B|1, H|1, T, S) matrix of which query sees which key; None when all see all."""
    parts = []
    if causal:
        parts.append((jnp.arange(s)[None, :] <= jnp.arange(t)[:, None] + (s - t))[None, None])
    if segment_ids is not None:
        parts.append((segment_ids[:, :, None] == kv_segment_ids[:, None, :])[:, None])
    if mask is not None:
        parts.append(mask)
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out & p
    return out


def xla_attention(q, k, v, visible: jax.Array | None, scale: float) -> jax.Array:
    """Einsum attention with fp32 logits and softmax; `visible` broadcastable to (B, H, T, S)."""
    b, t, h, d = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, t, kv, h // kv, d)
    logits = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    if visible is not None:
        m = jnp.broadcast_to(visible, (b, h, t, k.shape[1])).reshape(b, kv, h // kv, t, k.shape[1])
        logits = jnp.where(m, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(b, t, h, d)


def cudnn_attention(q, k, v, *, causal: bool, segment_ids, kv_segment_ids, scale: float,
                    implementation: str = "cudnn") -> jax.Array:
    """`jax.nn.dot_product_attention` with causality and segment ids mapped onto its arguments.

    Self-attention causality is cuDNN's own causal mask (its kernel skips the upper triangle); an
    offset causal mask (T != S) and segment ids travel as a boolean mask. `implementation="xla"`
    runs the same arguments through JAX's reference path, which is how CPU tests check the mapping.
    """
    t, s = q.shape[1], k.shape[1]
    native_causal = causal and t == s
    visible = visibility(t, s, causal and not native_causal, segment_ids, kv_segment_ids, None)
    return jax.nn.dot_product_attention(q, k, v, mask=visible, scale=scale, is_causal=native_causal,
                                        implementation=implementation)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, causal: bool, segment_ids: jax.Array | None = None,
              kv_segment_ids: jax.Array | None = None, mask: jax.Array | None = None, backend: str = "xla",
              scale: float | None = None, layout: tuple = ACT_BATCH_LENGTH_HEADS) -> jax.Array:
    """Multi-head attention (see the module docstring). Returns (B, T, H, D) in q's dtype.

    `layout`: q's logical axes, which splash's shard_map splits by: the decoder's (batch = examples), or
    sharding.ACT_ENCODER_LENGTH_HEADS in the encoders (batch = segments, split over context too)."""
    b, t, h, d = q.shape
    if k.ndim != 4 or k.shape != v.shape or k.shape[0] != b or k.shape[3] != d or h % k.shape[2]:
        raise ValueError(f"attention: q {q.shape} needs k, v (B, S, K, D) with K dividing H; got {k.shape}, {v.shape}")
    if kv_segment_ids is None and segment_ids is not None:
        if k.shape[1] != t:
            raise ValueError("attention: kv_segment_ids are needed when the key length differs from the query's")
        kv_segment_ids = segment_ids
    if (segment_ids is None) != (kv_segment_ids is None):
        raise ValueError("attention: kv_segment_ids without segment_ids")
    scale = d ** -0.5 if scale is None else scale
    backend = resolve_backend(backend, q.dtype, mask is not None, k.shape[1])
    if mask is not None and backend not in MASK_BACKENDS:
        raise ValueError(f"attention: an explicit mask is taken by {MASK_BACKENDS}, not {backend!r}")
    if backend == "xla":
        return xla_attention(q, k, v, visibility(t, k.shape[1], causal, segment_ids, kv_segment_ids, mask), scale)
    if backend == "blockwise":
        return blockwise_attention(q, k, v, causal=causal, segment_ids=segment_ids, kv_segment_ids=kv_segment_ids,
                                   mask=mask, scale=scale)
    if backend == "splash":
        return splash_attention(q, k, v, causal=causal, segment_ids=segment_ids, kv_segment_ids=kv_segment_ids,
                                scale=scale, interpret=platform() != "tpu", layout=layout)
    return cudnn_attention(q, k, v, causal=causal, segment_ids=segment_ids, kv_segment_ids=kv_segment_ids,
                           scale=scale)
