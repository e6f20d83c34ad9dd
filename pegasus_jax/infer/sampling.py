"""Next-token choice from logits: greedy, temperature, top-k, top-p (nucleus), with an optional allow-mask."""
from __future__ import annotations

import dataclasses

from pegasus_jax.errors import UserError

# The one default temperature of the CLI (generate, gist, summarize) and the Python API: greedy, so a
# checkpoint answers the same way every time unless asked otherwise.
DEFAULT_TEMPERATURE = 0.0

# Each parameter's valid range: (test, what the error says).
_RANGES = {
    "temperature": (lambda v: v >= 0, "must be >= 0 (0 = greedy)"),
    "top_k": (lambda v: v >= 0, "must be >= 0 (0 = off)"),
    "top_p": (lambda v: 0 < v <= 1, "must be > 0 and <= 1 (1 = off)"),
    "max_new_tokens": (lambda v: v >= 1, "must be >= 1"),
}


def check_sampling(values: dict, names: dict[str, str] | None = None) -> None:
    """A UserError naming the first parameter outside its range (`names` maps fields to CLI flags)."""
    for field, value in values.items():
        if field not in _RANGES:
            continue
        valid, rule = _RANGES[field]
        if not valid(value):  # NaN fails every comparison, so it is refused too
            raise UserError(f"{(names or {}).get(field, field)} {value}: {rule}")


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    temperature: float = DEFAULT_TEMPERATURE  # 0 -> greedy
    top_k: int = 0  # 0 -> off
    top_p: float = 1.0  # 1 -> off
    max_new_tokens: int = 64
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        check_sampling(dataclasses.asdict(self))


def sample(logits, key, params: SamplingParams, allowed=None):
    """logits (B, V) float32 -> token ids (B,). `allowed` (B, V) bool masks out disallowed tokens first."""
    # JAX is imported here, not at the top, so the CLI checks sampling flags before loading it.
    import jax
    import jax.numpy as jnp

    neg = jnp.finfo(jnp.float32).min
    logits = logits.astype(jnp.float32)
    if allowed is not None:
        logits = jnp.where(allowed, logits, neg)
    if params.temperature <= 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / params.temperature
    if params.top_k > 0:
        kth = jax.lax.top_k(logits, params.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if params.top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least the best token)
        keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < params.top_p
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, neg)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
