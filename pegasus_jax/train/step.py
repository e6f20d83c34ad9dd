"""The jitted, donated train step and the eval step.

Gradient accumulation splits the per-step batch into `grad_accum` micro-batches and sums their
gradients in a `lax.scan`, weighting each by its answer-token count so the result equals one big
batch. A non-finite loss or gradient skips the update (params and moments unchanged) and counts it.

metrics["work"] holds the real content of the whole step batch (all micro-batches), global sums
computed on device (pegasus_jax.scaling.flops.work_of_batch): what MFU and tokens/s count.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from pegasus_jax.models.alignment import pool_shape
from pegasus_jax.models.pegasus import loss_fn
from pegasus_jax.scaling.flops import work_of_batch
from pegasus_jax.sharding import activation_sharding, batch_sharding
from pegasus_jax.train.optimizer import learning_rate_schedule
from pegasus_jax.train.state import TrainSpec


def _micro_batches(batch: dict, n: int) -> dict:
    return jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), batch)


def make_train_step(spec: TrainSpec, batch_shapes: dict, loss=loss_fn):
    """Compile-ready train step: (state, batch) -> (state, metrics). `batch_shapes` fixes the input ranks.
    `loss` (model, batch, pool) -> (mean loss, {"loss_tokens": ...}): the text-only chunked loss; the memory
    benchmark (benchmarks/loss_memory.py) passes the full-logits one to compare."""
    accum = spec.config.train.grad_accum
    rules = spec.config.mesh.axis_rules
    pool = example_pool(spec)

    def summed_loss(params, frozen, rest, micro):
        model = spec.model(params, frozen, rest)
        mean, aux = loss(model, micro, pool)
        return mean * aux["loss_tokens"], aux["loss_tokens"]

    grad_fn = jax.value_and_grad(summed_loss, has_aux=True)

    def step(state, batch):
        with activation_sharding(spec.mesh, rules):
            def body(carry, micro):
                (loss_sum, tokens), grads = grad_fn(state["params"], state["frozen"], state["rest"], micro)
                acc_loss, acc_tokens, acc_grads = carry
                return (acc_loss + loss_sum, acc_tokens + tokens, jax.tree.map(jnp.add, acc_grads, grads)), None

            zeros = jax.tree.map(jnp.zeros_like, state["params"])
            init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros)
            (loss_sum, tokens, grads), _ = jax.lax.scan(body, init, _micro_batches(batch, accum))
        denom = jnp.maximum(tokens, 1.0)
        loss = loss_sum / denom
        grads = jax.tree.map(lambda g: g / denom, grads)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = spec.tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = dict(state, step=state["step"] + 1, params=keep(params, state["params"]),
                         opt_state=keep(opt_state, state["opt_state"]),
                         nan_skips=state["nan_skips"] + (~finite).astype(jnp.int32))
        metrics = {"loss": loss, "grad_norm": grad_norm, "loss_tokens": tokens, "finite": finite,
                   "learning_rate": _current_lr(spec, state["step"]), "work": work_of_batch(spec.config, batch)}
        return new_state, metrics

    state_sh = spec.shardings()
    batch_sh = {k: batch_sharding(spec.mesh, rules, len(v.shape)) for k, v in batch_shapes.items()}
    return jax.jit(step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None), donate_argnums=0)


def example_pool(spec: TrainSpec) -> tuple[int, int, int]:
    """The pooling of one example's segments (a packed batch's slot count says nothing about it)."""
    return pool_shape(spec.config.model, spec.config.data.max_segments)


def _current_lr(spec: TrainSpec, step):
    return learning_rate_schedule(spec.config.train)(step)


def make_eval_step(spec: TrainSpec, batch_shapes: dict):
    """(state, batch) -> (summed nll, token count), for held-out loss and perplexity."""
    rules = spec.config.mesh.axis_rules
    pool = example_pool(spec)

    def step(state, batch):
        with activation_sharding(spec.mesh, rules):
            loss, aux = loss_fn(spec.model(state["params"], state["frozen"], state["rest"]), batch, pool)
        return loss * aux["loss_tokens"], aux["loss_tokens"]

    batch_sh = {k: batch_sharding(spec.mesh, rules, len(v.shape)) for k, v in batch_shapes.items()}
    return jax.jit(step, in_shardings=(spec.shardings(), batch_sh))

