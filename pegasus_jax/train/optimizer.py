"""AdamW with linear warmup then cosine decay or warmup-stable-decay (config.train.schedule), global-norm
clipping, no decay on vectors, and optional per-parameter learning-rate multipliers (config.train.lr_mults,
as big_vision's config.lr_mults)."""
from __future__ import annotations

import re

import jax
import optax

from pegasus_jax.config import wsd_decay_steps


def learning_rate_schedule(train_cfg) -> optax.Schedule:
    """'cosine': linear warmup, then cosine decay over the rest of `steps` to min_lr_ratio x peak.
    'wsd' (warmup-stable-decay, as MiniCPM and Hagele et al. 2024): linear warmup, the peak held, then a
    linear decay to min_lr_ratio x peak over the last decay_fraction of `steps`: a short run is not spent
    at a small rate."""
    peak, warmup = train_cfg.learning_rate, max(train_cfg.warmup_steps, 1)
    end = peak * train_cfg.min_lr_ratio
    if train_cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=peak, warmup_steps=warmup,
                                                  decay_steps=max(train_cfg.steps, warmup + 1), end_value=end)
    decay = wsd_decay_steps(train_cfg)
    stable = max(0, train_cfg.steps - warmup - decay)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak),
         optax.linear_schedule(peak, end, decay)],
        boundaries=[warmup, warmup + stable])


def param_path(path) -> str:
    """'video_encoder/temporal/layers/attn/o/kernel' for a key path of the params tree."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def lr_multipliers(lr_mults, params) -> dict:
    """The params tree with each leaf's multiplier: the first (regex, multiplier) of `lr_mults` whose regex
    matches (re.search) the leaf's path, else 1."""
    rules = [(re.compile(pattern), float(mult)) for pattern, mult in lr_mults]
    return jax.tree_util.tree_map_with_path(
        lambda path, _: next((m for r, m in rules if r.search(param_path(path))), 1.0), params)


def scale_by_lr_mults(lr_mults) -> optax.GradientTransformation:
    """Multiplies each update (the step AdamW takes, weight decay included) by its parameter's multiplier."""

    def update(updates, state, params=None):
        mults = lr_multipliers(lr_mults, updates)
        return jax.tree.map(lambda u, m: u if m == 1.0 else u * m, updates, mults), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(train_cfg) -> optax.GradientTransformation:
    # Norm scales and biases (ndim < 2) are not decayed, as in Llama / MaxText.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    parts = [
        optax.clip_by_global_norm(train_cfg.grad_clip) if train_cfg.grad_clip > 0 else optax.identity(),
        optax.adamw(learning_rate_schedule(train_cfg), b1=train_cfg.b1, b2=train_cfg.b2,
                    weight_decay=train_cfg.weight_decay, mask=decay_mask),
    ]
    if train_cfg.lr_mults:
        parts.append(scale_by_lr_mults(train_cfg.lr_mults))
    return optax.chain(*parts)
