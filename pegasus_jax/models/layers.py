"""Building blocks shared by every tower: dense, norms, self-attention, and the scanned layer stack.

Conventions (relied on by the Hugging Face weight mapping in pegasus_jax/interop):
- a dense kernel is stored (in, out), i.e. the transpose of a torch `nn.Linear.weight`;
- every parameter carries logical axis names in its `out_sharding` metadata;
- a stack of identical layers is one module whose parameters have a leading 'layers' axis.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from pegasus_jax.models.attention import attention
from pegasus_jax.sharding import (
    ACT_ENCODER_LENGTH_EMBED, ACT_ENCODER_LENGTH_HEADS, ACT_ENCODER_LENGTH_MLP, EMBED, HEADS, LAYERS, NORM, constrain,
)
from pegasus_jax.sharding import MLP as MLP_AXIS  # the class MLP below would shadow the axis name

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]

# Fan-in scaled (LeCun normal, as MaxText's and Levanter's dense layers), not HF's normal(0.02): 0.02 is
# 1/sqrt(width) for width ~2500 and ~6x too small at the demo's widths (64-128), where it leaves every layer
# near zero at init and a from-scratch tower plateaus for hundreds of steps before shape or motion move.
default_kernel_init = nnx.initializers.lecun_normal()


def dtype_of(name: str) -> jnp.dtype:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


def param(rngs: nnx.Rngs | None, init: Initializer, shape: Sequence[int], axes: Sequence[str | None],
          dtype=jnp.float32) -> nnx.Param:
    key = rngs.params() if rngs is not None else jax.random.key(0)
    return nnx.Param(init(key, tuple(shape), dtype), out_sharding=tuple(axes))


class Dense(nnx.Module):
    """y = x @ kernel + bias, kernel (in, out) with logical axes `axes`."""

    def __init__(self, in_dim: int, out_dim: int, axes: tuple[str | None, str | None], *, use_bias: bool = True,
                 dtype=jnp.float32, param_dtype=jnp.float32, kernel_init: Initializer = default_kernel_init,
                 rngs: nnx.Rngs):
        self.kernel = param(rngs, kernel_init, (in_dim, out_dim), axes, param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (out_dim,), axes[1:], param_dtype) if use_bias else None
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class LayerNorm(nnx.Module):
    """LayerNorm with scale and bias, statistics in fp32 (matches torch.nn.LayerNorm)."""

    def __init__(self, dim: int, eps: float, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        self.scale = param(rngs, nnx.initializers.ones, (dim,), (NORM,), param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (dim,), (NORM,), param_dtype)
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(self.dtype)


class RMSNorm(nnx.Module):
    """Llama RMSNorm: normalise in fp32, cast back, then scale (as transformers' LlamaRMSNorm)."""

    def __init__(self, dim: int, eps: float, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        self.scale = param(rngs, nnx.initializers.ones, (dim,), (NORM,), param_dtype)
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * y.astype(self.dtype)


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    return {
        "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
        "gelu": lambda x: jax.nn.gelu(x, approximate=False),
        "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
        "silu": jax.nn.silu,
    }[name]


class SelfAttention(nnx.Module):
    """Bidirectional MHA with biased q/k/v/o projections (CLIP, SigLIP, Whisper encoder layout); like MLP and
    PreNormEncoderLayer, an encoder part: its batch is the encoders' (act_encoder_batch).

    `attention` names the backend (models/attention.py BACKENDS; config.model.attention)."""

    def __init__(self, width: int, num_heads: int, *, k_bias: bool = True, attention: str = "auto",
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_heads = num_heads
        self.backend = attention
        self.q = Dense(width, width, (EMBED, HEADS), **kw)
        self.k = Dense(width, width, (EMBED, HEADS), use_bias=k_bias, **kw)
        self.v = Dense(width, width, (EMBED, HEADS), **kw)
        self.o = Dense(width, width, (HEADS, EMBED), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, w = x.shape
        split = lambda y: y.reshape(b, t, self.num_heads, w // self.num_heads)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        q = constrain(q, ACT_ENCODER_LENGTH_HEADS)
        out = attention(q, k, v, causal=False, backend=self.backend, layout=ACT_ENCODER_LENGTH_HEADS)
        return self.o(out.reshape(b, t, w))


class MLP(nnx.Module):
    """fc1 -> activation -> fc2."""

    def __init__(self, width: int, hidden: int, act: str, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = Dense(width, hidden, (EMBED, MLP_AXIS), **kw)
        self.fc2 = Dense(hidden, width, (MLP_AXIS, EMBED), **kw)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        h = activation(self.act)(self.fc1(x))
        return self.fc2(constrain(h, ACT_ENCODER_LENGTH_MLP))


class PreNormEncoderLayer(nnx.Module):
    """x + attn(ln1(x)); x + mlp(ln2(x)). The CLIP/SigLIP/Whisper encoder layer."""

    def __init__(self, width: int, num_heads: int, mlp_dim: int, eps: float, act: str, *, k_bias: bool = True,
                 attention: str = "auto", dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.ln1 = LayerNorm(width, eps, **kw)
        self.attn = SelfAttention(width, num_heads, k_bias=k_bias, attention=attention, **kw)
        self.ln2 = LayerNorm(width, eps, **kw)
        self.mlp = MLP(width, mlp_dim, act, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return constrain(x, ACT_ENCODER_LENGTH_EMBED)


REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class LayerStack(nnx.Module):
    """`depth` copies of a layer held as one module with a leading 'layers' axis on every parameter.

    `scan=True` runs them with `jax.lax.scan` (one compiled layer body: fast compiles at depth 80);
    `scan=False` unrolls a Python loop over the same stacked parameters. `remat` names a policy
    from REMAT_POLICIES ("none" disables rematerialisation). Both paths compute the same thing.
    """

    def __init__(self, make_layer: Callable[[nnx.Rngs], nnx.Module], depth: int, *, scan: bool, remat: str,
                 rngs: nnx.Rngs):
        @nnx.vmap(in_axes=0, out_axes=0, axis_size=depth, transform_metadata={nnx.PARTITION_NAME: LAYERS})
        def build(r):
            return make_layer(r)

        self.layers = build(rngs.split(depth))
        self.depth = depth
        self.scan = scan
        self.remat = remat

    def __call__(self, x, *args, per_layer=None, **kwargs):
        """Apply every layer: x = layer(x, *args, **kwargs).

        `per_layer`, if given, is a pytree whose leaves have a leading `depth` axis (e.g. a KV cache);
        layer i receives its slice as `per_layer=` and must return (x, new_slice). The stacked new
        slices are returned beside x.
        """
        graphdef, state = nnx.split(self.layers)

        def body(carry, xs):
            layer_state, extra = xs
            layer = nnx.merge(graphdef, layer_state)
            if extra is None:
                return layer(carry, *args, **kwargs), None
            return layer(carry, *args, per_layer=extra, **kwargs)

        if self.remat != "none":
            body = jax.checkpoint(body, policy=REMAT_POLICIES[self.remat], prevent_cse=not self.scan)
        if self.scan:
            x, out = jax.lax.scan(body, x, (state, per_layer))
        else:
            outs = []
            for i in range(self.depth):
                sl = jax.tree.map(lambda a: a[i], (state, per_layer))
                x, o = body(x, sl)
                outs.append(o)
            out = None if per_layer is None else jax.tree.map(lambda *a: jnp.stack(a), *outs)
        return x if per_layer is None else (x, out)
