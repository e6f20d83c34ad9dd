"""AdamW with linear warmup + cosine decay, global-norm clipping, and no decay on vectors."""
from __future__ import annotations

import jax
import optax


def learning_rate_schedule(train_cfg) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train_cfg.learning_rate,
        warmup_steps=max(train_cfg.warmup_steps, 1),
        decay_steps=max(train_cfg.steps, train_cfg.warmup_steps + 1),
        end_value=train_cfg.learning_rate * train_cfg.min_lr_ratio,
    )


def make_optimizer(train_cfg) -> optax.GradientTransformation:
    # Norm scales and biases (ndim < 2) are not decayed, as in Llama / MaxText.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    return optax.chain(
        optax.clip_by_global_norm(train_cfg.grad_clip) if train_cfg.grad_clip > 0 else optax.identity(),
        optax.adamw(learning_rate_schedule(train_cfg), b1=train_cfg.b1, b2=train_cfg.b2,
                    weight_decay=train_cfg.weight_decay, mask=decay_mask),
    )
