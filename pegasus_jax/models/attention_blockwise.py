"""Memory-efficient attention in plain JAX: a scan over key chunks with an online softmax.

The forward pass keeps a running max, normaliser and weighted sum per query (FlashAttention's online
softmax) and saves only the output and the per-query logsumexp. The backward pass (a custom VJP)
scans the key chunks again, recomputing each chunk's probabilities from the logsumexp, carrying dq
and emitting each chunk's dk, dv. Neither pass holds more than (B, H, T, chunk) logits, so memory is
linear in the key length; it runs on every backend and matches the XLA path to float rounding.

Layout inside: q (B, T, K, G, D) with G = H / K query heads per KV head, logits (B, K, G, T, C).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

DEFAULT_CHUNK = 512


def _chunk_visibility(t: int, s: int, causal: bool, q_seg, kv_seg_c, kv_valid_c, kv_index_c, mask_c):
    """(B|1, K|1, G|1, T, C) bool: which query sees which key of this chunk."""
    vis = kv_valid_c[:, None, None, None, :]
    if causal:
        vis = vis & (kv_index_c[None, :] <= jnp.arange(t)[:, None] + (s - t))[None, None, None]
    if q_seg is not None:
        vis = vis & (q_seg[:, :, None] == kv_seg_c[:, None, :])[:, None, None]
    if mask_c is not None:
        vis = vis & mask_c
    return vis


def _logits(qg, k_c, scale):
    return jnp.einsum("btkgd,bckd->bkgtc", qg, k_c, preferred_element_type=jnp.float32) * scale


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9))
def _flash(qg, k_chunks, v_chunks, q_seg, kv_seg_chunks, kv_valid_chunks, mask_chunks, causal, scale, s):
    return _flash_fwd(qg, k_chunks, v_chunks, q_seg, kv_seg_chunks, kv_valid_chunks, mask_chunks, causal, scale,
                      s)[0]


def _flash_fwd(qg, k_chunks, v_chunks, q_seg, kv_seg_chunks, kv_valid_chunks, mask_chunks, causal, scale, s):
    b, t, kv, g, d = qg.shape
    n, c = k_chunks.shape[0], k_chunks.shape[2]

    def body(carry, xs):
        m, l, acc = carry
        k_c, v_c, seg_c, valid_c, mask_c, j = xs
        vis = _chunk_visibility(t, s, causal, q_seg, seg_c, valid_c, j * c + jnp.arange(c), mask_c)
        logits = jnp.where(vis, _logits(qg, k_c, scale), -jnp.inf)
        m_new = jnp.maximum(m, logits.max(-1))
        m_safe = jnp.where(jnp.isneginf(m_new), 0.0, m_new)  # a row with nothing visible yet stays at zero
        p = jnp.exp(logits - m_safe[..., None])
        correction = jnp.exp(m - m_safe)
        l = l * correction + p.sum(-1)
        pv = jnp.einsum("bkgtc,bckd->bkgtd", p.astype(v_c.dtype), v_c, preferred_element_type=jnp.float32)
        return (m_new, l, acc * correction[..., None] + pv), None

    init = (jnp.full((b, kv, g, t), -jnp.inf, jnp.float32), jnp.zeros((b, kv, g, t), jnp.float32),
            jnp.zeros((b, kv, g, t, d), jnp.float32))
    xs = (k_chunks, v_chunks, kv_seg_chunks, kv_valid_chunks, mask_chunks, jnp.arange(n))
    (m, l, acc), _ = jax.lax.scan(body, init, xs)
    empty = l == 0
    out = (acc / jnp.where(empty, 1.0, l)[..., None]).transpose(0, 3, 1, 2, 4).astype(qg.dtype)  # (B, T, K, G, D)
    # +inf for an empty row makes every recomputed probability exp(-inf) = 0 in the backward pass.
    lse = jnp.where(empty, jnp.inf, jnp.where(jnp.isneginf(m), 0.0, m) + jnp.log(jnp.where(empty, 1.0, l)))
    return out, (qg, k_chunks, v_chunks, q_seg, kv_seg_chunks, kv_valid_chunks, mask_chunks, out, lse)


def _flash_bwd(causal, scale, s, residuals, d_out):
    qg, k_chunks, v_chunks, q_seg, kv_seg_chunks, kv_valid_chunks, mask_chunks, out, lse = residuals
    t = qg.shape[1]
    n, c = k_chunks.shape[0], k_chunks.shape[2]
    do = d_out.transpose(0, 2, 3, 1, 4).astype(jnp.float32)  # (B, K, G, T, D)
    delta = (do * out.transpose(0, 2, 3, 1, 4).astype(jnp.float32)).sum(-1)  # rowsum(dO * O)

    def body(dq, xs):
        k_c, v_c, seg_c, valid_c, mask_c, j = xs
        vis = _chunk_visibility(t, s, causal, q_seg, seg_c, valid_c, j * c + jnp.arange(c), mask_c)
        p = jnp.where(vis, jnp.exp(_logits(qg, k_c, scale) - lse[..., None]), 0.0)
        dv_c = jnp.einsum("bkgtc,bkgtd->bckd", p, do)
        dp = jnp.einsum("bkgtd,bckd->bkgtc", do, v_c.astype(jnp.float32))
        ds = p * (dp - delta[..., None]) * scale
        dq = dq + jnp.einsum("bkgtc,bckd->btkgd", ds, k_c.astype(jnp.float32))
        dk_c = jnp.einsum("bkgtc,btkgd->bckd", ds, qg.astype(jnp.float32))
        return dq, (dk_c.astype(k_c.dtype), dv_c.astype(v_c.dtype))

    xs = (k_chunks, v_chunks, kv_seg_chunks, kv_valid_chunks, mask_chunks, jnp.arange(n))
    dq, (dk, dv) = jax.lax.scan(body, jnp.zeros(qg.shape, jnp.float32), xs)
    return dq.astype(qg.dtype), dk, dv, None, None, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def _split(x, n: int, c: int, pad_value):
    """(B, S, ...) -> (n, B, C, ...) with the tail padded to n * C keys."""
    pad = n * c - x.shape[1]
    if pad:
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2), constant_values=pad_value)
    return jnp.moveaxis(x.reshape((x.shape[0], n, c) + x.shape[2:]), 1, 0)


def blockwise_attention(q, k, v, *, causal: bool, segment_ids=None, kv_segment_ids=None, mask=None,
                        scale: float, chunk: int = DEFAULT_CHUNK) -> jax.Array:
    """Attention over key chunks of `chunk` (the last one padded); arguments as models.attention.attention."""
    b, t, h, d = q.shape
    s, kv = k.shape[1], k.shape[2]
    g = h // kv
    c = min(chunk, s)
    n = -(-s // c)
    kv_valid = jnp.ones((b, s), bool)
    mask_chunks = None
    if mask is not None:  # (B|1, H|1, T, S) -> (n, B|1, K|1, G|1, T, C)
        mask = jnp.asarray(mask, bool)
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
        mb, mh = mask.shape[:2]
        mask = jnp.broadcast_to(mask, (mb, mh, t, s)).reshape((mb,) + ((kv, g) if mh == h else (1, 1)) + (t, s))
        mask = jnp.pad(mask, [(0, 0)] * 4 + [(0, n * c - s)], constant_values=False)
        mask_chunks = jnp.moveaxis(mask.reshape(mask.shape[:-1] + (n, c)), -2, 0)
    out = _flash(q.reshape(b, t, kv, g, d), _split(k, n, c, 0), _split(v, n, c, 0),
                 None if segment_ids is None else segment_ids.astype(jnp.int32),
                 None if segment_ids is None else _split(kv_segment_ids.astype(jnp.int32), n, c, 0),
                 _split(kv_valid, n, c, False), mask_chunks, causal, scale, s)
    return out.reshape(b, t, h, d)
