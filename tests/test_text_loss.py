"""The text-only, vocabulary-chunked training loss: the plain full-logits cross-entropy's value and gradients
(fp32, 1e-5), for the bare function and for the whole model, and no (rows, vocab) logits in its program."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data_pipelines.contract import zeros_batch
from pegasus_jax import config as cfg
from pegasus_jax.models.pegasus import Pegasus, cross_entropy_loss, loss_fn
from pegasus_jax.models.text_loss import chunked_cross_entropy, gather_loss_rows, lm_loss

TOL = 1e-5


def plain_nll(h, w, targets):
    logp = jax.nn.log_softmax(jnp.dot(h, w), axis=-1)
    return -jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]


def test_chunked_cross_entropy_matches_log_softmax():
    """50 ids in chunks of 8: 7 strided chunks, the last columns padded; gradients w.r.t. h and w."""
    r = np.random.default_rng(0)
    h = jnp.asarray(r.normal(size=(12, 16)), jnp.float32)
    w = jnp.asarray(r.normal(size=(16, 50)), jnp.float32)
    targets = jnp.asarray(r.integers(0, 50, 12), jnp.int32).at[0].set(49).at[1].set(0)
    weights = jnp.asarray(r.random(12), jnp.float32)

    def weighted(nll_fn):
        return jax.jit(jax.value_and_grad(lambda h, w: (nll_fn(h, w, targets) * weights).sum(), argnums=(0, 1)))

    ours, (dh, dw) = weighted(lambda h, w, t: chunked_cross_entropy(h, w, t, chunk=8))(h, w)
    ref, (rdh, rdw) = weighted(plain_nll)(h, w)
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)
    np.testing.assert_allclose(dh, rdh, atol=TOL, rtol=0)
    np.testing.assert_allclose(dw, rdw, atol=TOL, rtol=0)


def test_gather_loss_rows_keeps_every_weighted_position_in_order():
    hidden = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
    weights = jnp.asarray([[0, 1, 1, 0, 0], [1, 0, 0, 0, 2]], jnp.float32)
    targets = jnp.arange(10).reshape(2, 5)
    rows, row_targets, row_weights = gather_loss_rows(hidden, targets, weights)
    np.testing.assert_array_equal(rows[:4], hidden.reshape(10, 3)[jnp.asarray([1, 2, 5, 9])])
    np.testing.assert_array_equal(row_targets[:4], [1, 2, 5, 9])
    np.testing.assert_array_equal(row_weights, [1, 1, 1, 2, 0, 0, 0, 0, 0, 0])


def tiny_model_and_batch(tie: bool):
    # the loss reads only the decoder's output: no audio tower or temporal layers, for a faster compile
    c = cfg.get("tiny", model__decoder__tie_embeddings=tie, model__audio__enabled=False,
                model__vision__temporal_depth=0)
    b = zeros_batch(c, 2)
    r = np.random.default_rng(1)
    b["frames"] = r.integers(0, 256, b["frames"].shape, dtype=np.uint8)
    b["segment_mask"][:, 0] = True
    b["segment_mask"][0, 1] = True
    L = b["tokens"].shape[1]
    b["tokens"] = r.integers(5, c.model.decoder.vocab_size, (2, L)).astype(np.int32)
    b["targets"] = np.roll(b["tokens"], -1, axis=1)
    b["text_mask"] = np.arange(L)[None] < np.asarray([[L - 3], [L // 2]])
    b["loss_mask"] = (b["text_mask"] & (np.arange(L)[None] >= 5)).astype(np.float32)
    return Pegasus(c.model, rngs=nnx.Rngs(0)), b


def test_model_loss_and_gradients_match_the_full_logits_loss():
    """The untied output layer in chunks of 96 ids (6 strided chunks, the last padded) through lm_loss; the
    tied one through the training loss_fn (one chunk of the tiny 512-id vocabulary)."""
    chunked = lambda m, b: lm_loss(m.decoder, m.text_hidden(b), b["targets"], b["loss_mask"], chunk=96)
    for tie, fn in ((False, chunked), (True, loss_fn)):
        model, batch = tiny_model_and_batch(tie)
        graphdef, params = nnx.split(model, nnx.Param)

        def loss_of(fn):
            return jax.jit(jax.value_and_grad(lambda p: fn(nnx.merge(graphdef, p), batch)[0]))

        ref, ref_grads = loss_of(lambda m, b: cross_entropy_loss(m(b), b))(params)
        ours, grads = loss_of(fn)(params)
        np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)
        for (path, g), rg in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads)):
            np.testing.assert_allclose(g, rg, atol=TOL, rtol=0, err_msg=jax.tree_util.keystr(path))


def _shapes(jaxpr):
    """The shape of every value a jaxpr computes, inner jaxprs (scan, custom_vjp, pjit) included."""
    for eqn in jaxpr.eqns:
        yield from (getattr(var.aval, "shape", ()) for var in eqn.outvars)
        for param in eqn.params.values():
            for p in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(p, "jaxpr", p)
                if hasattr(inner, "eqns"):
                    yield from _shapes(inner)


def test_training_loss_never_holds_full_logits():
    """Every array of the loss-and-gradient program with a vocabulary-sized axis is the (width, vocab)
    weight or a gradient of it, or a (rows, chunk) logits block: none has both a row axis and the whole
    vocabulary (the plain loss's program has (B, L, vocab))."""
    model, batch = tiny_model_and_batch(False)
    graphdef, params = nnx.split(model, nnx.Param)
    vocab, width = 512, 64

    def program(fn):
        return jax.make_jaxpr(jax.grad(lambda p: fn(nnx.merge(graphdef, p), batch)[0]))(params).jaxpr

    wide = lambda fn: {s for s in _shapes(program(fn)) if vocab in s and set(s) - {vocab, width}}
    assert wide(lambda m, b: cross_entropy_loss(m(b), b))  # the check sees the full logits when they exist
    assert not wide(lambda m, b: lm_loss(m.decoder, m.text_hidden(b), b["targets"], b["loss_mask"], chunk=128))
