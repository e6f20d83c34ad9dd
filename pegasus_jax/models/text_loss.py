"""The training loss on text only, without the full logits tensor.

The decoder's last hidden states are gathered at the positions that carry a loss (a static budget
of rows), and only those rows go through the final norm and the output projection. The
cross-entropy over the vocabulary is a scan over vocabulary chunks with a running logsumexp
(`chunked_cross_entropy`), whose custom VJP recomputes each chunk's logits in the backward pass: at
most (rows, chunk) fp32 logits exist at a time, never (B, T, vocab). Inference keeps the plain
logits path (Decoder.__call__ / Decoder.logits).

Chunks are strided: chunk j holds the vocabulary ids i * n + j (n chunks). Viewing the (W, V)
weights as (W, V / n, n) keeps the vocabulary's tensor sharding on the major axis, so every chunk is
split over the tensor devices like the whole matrix and no chunk lives on one device.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

VOCAB_CHUNK = 8192  # vocabulary ids per chunk: (rows, 8192) fp32 logits at a time


def _strided(w: jax.Array, n: int) -> jax.Array:
    """(W, V) -> (W, ceil(V / n), n), zero columns past V (masked wherever logits are taken)."""
    per = -(-w.shape[1] // n)
    w = jnp.pad(w, [(0, 0), (0, per * n - w.shape[1])]) if per * n != w.shape[1] else w
    return w.reshape(w.shape[0], per, n)


def _chunk_logits(h, w_strided, j, vocab: int):
    """Logits of chunk j, (N, V / n) fp32, -inf on the padded columns; and the columns' vocabulary ids."""
    n = w_strided.shape[2]
    w_c = jax.lax.dynamic_index_in_dim(w_strided, j, axis=2, keepdims=False)
    ids = jnp.arange(w_strided.shape[1]) * n + j
    logits = jnp.dot(h, w_c, preferred_element_type=jnp.float32)
    return jnp.where(ids < vocab, logits, -jnp.inf), ids


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _nll(h, w, targets, chunks: int):
    return _nll_fwd(h, w, targets, chunks)[0]


def _nll_fwd(h, w, targets, chunks: int):
    vocab = w.shape[1]
    w_strided = _strided(w, chunks)

    def body(carry, j):
        lse, target_logit = carry
        logits, ids = _chunk_logits(h, w_strided, j, vocab)
        lse = jnp.logaddexp(lse, jax.nn.logsumexp(logits, axis=-1))
        hit = (ids[None, :] == targets[:, None])
        return (lse, target_logit + jnp.where(hit, logits, 0.0).sum(-1)), None

    init = (jnp.full(h.shape[:1], -jnp.inf, jnp.float32), jnp.zeros(h.shape[:1], jnp.float32))
    (lse, target_logit), _ = jax.lax.scan(body, init, jnp.arange(chunks))
    return lse - target_logit, (h, w, targets, lse)


def _nll_bwd(chunks: int, residuals, g):
    h, w, targets, lse = residuals
    vocab = w.shape[1]
    w_strided = _strided(w, chunks)

    def body(carry, j):
        dh, dw = carry
        logits, ids = _chunk_logits(h, w_strided, j, vocab)
        # d nll / d logits = softmax - onehot(target), per row scaled by the incoming cotangent
        dlogits = (jnp.exp(logits - lse[:, None]) - (ids[None, :] == targets[:, None])) * g[:, None]
        dlogits = dlogits.astype(h.dtype)  # the matmuls in the compute dtype, accumulated in fp32
        w_c = jax.lax.dynamic_index_in_dim(w_strided, j, axis=2, keepdims=False)
        dh = dh + jnp.dot(dlogits, w_c.T, preferred_element_type=jnp.float32)
        dw_c = jnp.dot(h.T, dlogits, preferred_element_type=jnp.float32)
        return (dh, jax.lax.dynamic_update_index_in_dim(dw, dw_c.astype(dw.dtype), j, axis=2)), None

    # each column of dw is written once, by its chunk, so it is kept in w's dtype (dh sums over chunks: fp32)
    init = (jnp.zeros(h.shape, jnp.float32), jnp.zeros(w_strided.shape, w.dtype))
    (dh, dw), _ = jax.lax.scan(body, init, jnp.arange(chunks))
    return dh.astype(h.dtype), dw.reshape(w.shape[0], -1)[:, :vocab], None


_nll.defvjp(_nll_fwd, _nll_bwd)


def chunked_cross_entropy(h: jax.Array, w: jax.Array, targets: jax.Array, chunk: int = VOCAB_CHUNK) -> jax.Array:
    """Per-row negative log-likelihood -log softmax(h @ w)[target], (N,) fp32, for h (N, W), w (W, V),
    targets (N,) int, computed `chunk` vocabulary ids at a time."""
    return _nll(h, w, targets.astype(jnp.int32), -(-w.shape[1] // chunk))


def gather_loss_rows(hidden: jax.Array, targets: jax.Array, weights: jax.Array, budget: int | None = None):
    """The rows of hidden (B, T, W) whose weight (B, T) is nonzero, in order, packed into `budget` rows
    (static; default B * T, which never drops one). Returns (rows (budget, W), their targets and weights);
    unused rows have weight 0. A budget smaller than the number of weighted positions drops the last ones:
    the caller's budget must cover them (the text positions of a batch do)."""
    b, t, w = hidden.shape
    budget = b * t if budget is None else budget
    flat_weights = jnp.asarray(weights).reshape(-1)
    (idx,) = jnp.nonzero(flat_weights != 0, size=budget, fill_value=-1)
    used = idx >= 0
    idx = jnp.where(used, idx, 0)
    rows = jnp.take(hidden.reshape(b * t, w), idx, axis=0)
    return rows, jnp.asarray(targets).reshape(-1)[idx], jnp.where(used, flat_weights[idx], 0).astype(jnp.float32)


def lm_loss(decoder, hidden: jax.Array, targets: jax.Array, weights: jax.Array, budget: int | None = None,
            chunk: int = VOCAB_CHUNK) -> tuple[jax.Array, dict]:
    """Weighted mean next-token cross-entropy from the decoder's last hidden states (before its final norm).

    hidden (B, T, W), targets and weights (B, T). The final norm and output projection run only on the
    gathered loss rows. Returns (loss, {"loss_tokens": sum of weights}), as models.pegasus.cross_entropy_loss.
    """
    rows, row_targets, row_weights = gather_loss_rows(hidden, targets, weights, budget)
    nll = chunked_cross_entropy(decoder.norm(rows), decoder.output_weights(), row_targets, chunk)
    tokens = weights.astype(jnp.float32).sum()
    return (nll * row_weights).sum() / jnp.maximum(tokens, 1.0), {"loss_tokens": tokens}
