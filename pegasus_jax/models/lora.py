"""LoRA adapters on the decoder's projections, with PLLaVA-style alpha rescaling and merging.

A `LoRADense` keeps the base kernel exactly as a `Dense` (so Hugging Face weights map unchanged) and
adds delta = x @ A @ B * (alpha / rank), B zero-initialised so a fresh adapter changes nothing.
Adapters are `LoRAParam`s, a Param subtype, so a trainer selects them with a type filter.
PLLaVA's post-training optimisation evaluates with a smaller alpha than trained (e.g. 32 -> 4),
blending the tuned and the original weights: `set_lora_alpha(model, alpha)`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pegasus_jax.errors import UserError
from pegasus_jax.models.layers import Dense
from pegasus_jax.sharding import LORA_RANK


class LoRAParam(nnx.Param):
    """A LoRA adapter matrix (trained in the instruct_lora stage)."""


class LoRADense(Dense):
    def __init__(self, in_dim: int, out_dim: int, axes, *, rank: int, alpha: float, use_bias: bool = False,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(in_dim, out_dim, axes, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # Kaiming-uniform over fan-in (bound 1/sqrt(in_dim), as PEFT): x @ A keeps x's scale at any width.
        kaiming_uniform = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
        a = kaiming_uniform(rngs.params(), (in_dim, rank), param_dtype)
        self.lora_a = LoRAParam(a, out_sharding=(axes[0], LORA_RANK))
        self.lora_b = LoRAParam(jnp.zeros((rank, out_dim), param_dtype), out_sharding=(LORA_RANK, axes[1]))
        self.rank = rank
        self.alpha = alpha

    def __call__(self, x: jax.Array) -> jax.Array:
        base = super().__call__(x)
        if self.alpha == 0:  # static: alpha 0 is the base model's computation itself, not base + 0 * delta
            return base
        delta = jnp.dot(jnp.dot(x.astype(self.dtype), self.lora_a[...].astype(self.dtype)),
                        self.lora_b[...].astype(self.dtype))
        return base + delta * (self.alpha / self.rank)


def projection(in_dim: int, out_dim: int, axes, name: str, lora_cfg, *, use_bias: bool = False, dtype, param_dtype,
               rngs) -> Dense:
    """A projection (bias-free unless `use_bias`), with a LoRA adapter when `name` is a configured target."""
    if lora_cfg.rank > 0 and name in tuple(lora_cfg.targets):
        return LoRADense(in_dim, out_dim, axes, rank=lora_cfg.rank, alpha=lora_cfg.alpha, use_bias=use_bias,
                         dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    return Dense(in_dim, out_dim, axes, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def _lora_modules(model: nnx.Module):
    return [m for _, m in nnx.iter_graph(model) if isinstance(m, LoRADense)]


def check_lora_alpha(config, alpha: float) -> None:
    """A UserError (naming the flag) unless the model has LoRA adapters and `alpha` is a finite number >= 0."""
    if config.model.lora.rank == 0:
        raise UserError("--lora-alpha: this checkpoint has no LoRA adapters (model.lora.rank is 0)")
    if not 0 <= alpha < float("inf"):  # NaN fails the comparison too
        raise UserError(f"--lora-alpha {alpha}: must be a finite number >= 0 (0 = the base model)")


def set_lora_alpha(model: nnx.Module, alpha: float) -> nnx.Module:
    """Rescale every adapter's delta (PLLaVA post-training blending). In place; returns the model.
    Alpha is static (part of the graph, not of the state): programs traced from the model retrace."""
    for m in _lora_modules(model):
        m.alpha = alpha
    return model


def merge_lora(model: nnx.Module) -> nnx.Module:
    """Fold alpha/rank * A @ B into the base kernels and zero the adapters: same outputs, plain weights."""
    for m in _lora_modules(model):
        delta = jnp.einsum("...ir,...ro->...io", m.lora_a[...], m.lora_b[...]) * (m.alpha / m.rank)
        m.kernel.set_value((m.kernel[...] + delta).astype(m.kernel[...].dtype))
        m.lora_b.set_value(jnp.zeros_like(m.lora_b[...]))
    return model
