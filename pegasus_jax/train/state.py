"""The train state: which parameters train in this stage, where every array lives, and its creation.

The state is a plain pytree of arrays (pickle-free, Orbax-friendly):
    {"step", "params" (trainable), "frozen", "rest" (non-parameter variables), "opt_state", "nan_skips"}
Frozen parameters have no optimizer state: stage 1 (align) holds Adam moments for the projector only.
The model is rebuilt from these arrays inside the jitted step with `TrainSpec.model(...)`.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pegasus_jax.models.pegasus import Pegasus
from pegasus_jax.scaling.flops import decoder_sequence_length
from pegasus_jax.sharding import state_shardings
from pegasus_jax.errors import ConfigError
from pegasus_jax.train.optimizer import make_optimizer, param_path


def trainable_filter(config):
    """Which parameters config.train.stage trains (SPEC 5): pretrain all; align the projector; instruct
    alignment + decoder (encoders frozen); instruct_lora the LoRA adapters, and the alignment model with
    them when config.model.lora.train_projector (PLLaVA)."""
    stage = config.train.stage
    if stage == "pretrain":
        return nnx.Param
    if stage == "align":
        return nnx.All(nnx.Param, nnx.PathContains("alignment"))
    if stage == "instruct":
        return nnx.All(nnx.Param, nnx.Any(nnx.PathContains("alignment"), nnx.PathContains("decoder")))
    if stage == "instruct_lora":
        from pegasus_jax.models.lora import LoRAParam
        if config.model.lora.train_projector:
            return nnx.Any(LoRAParam, nnx.All(nnx.Param, nnx.PathContains("alignment")))
        return LoRAParam
    raise ValueError(stage)


def _fill(template: nnx.State, pure: dict) -> nnx.State:
    state = jax.tree.map(lambda x: x, template)
    nnx.replace_by_pure_dict(state, pure)
    return state


def _check_lr_mults_match(lr_mults, params: dict) -> None:
    """A pattern that matches no trainable parameter is a typo (or names a frozen part): say so."""
    paths = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for pattern, _ in lr_mults:
        if not any(re.search(pattern, p) for p in paths):
            raise ConfigError(f"config.train.lr_mults: {pattern!r} matches no trainable parameter "
                              f"(paths look like {paths[0]!r})")


def _check_context_split(config, context: int) -> None:
    """Context parallelism splits every decoder sequence evenly over the context axis; a length it does not
    divide would stay whole on every chip (logical_to_spec drops the axis), so that is a config error."""
    video = decoder_sequence_length(config) - config.data.max_text_len
    for text in sorted({*config.data.length_buckets, config.data.max_text_len}):
        if (video + text) % context:
            raise ConfigError(f"config.mesh.context: {context} does not divide the decoder sequence of {video + text} "
                              f"tokens ({video} video + {text} text, a data.length_buckets length)")


@dataclasses.dataclass
class TrainSpec:
    """Everything static about a run's state: structure, optimizer and shardings."""

    config: Any
    mesh: Mesh
    graphdef: Any
    templates: tuple[nnx.State, nnx.State, nnx.State]  # trainable, frozen, rest (abstract)
    tx: optax.GradientTransformation

    @classmethod
    def create(cls, config, mesh: Mesh) -> "TrainSpec":
        abstract = nnx.eval_shape(lambda: Pegasus(config.model, rngs=nnx.Rngs(config.seed)))
        graphdef, trainable, frozen, rest = nnx.split(abstract, trainable_filter(config), nnx.Param, ...)
        _check_lr_mults_match(config.train.lr_mults, trainable.to_pure_dict())
        _check_context_split(config, mesh.shape.get("context", 1))
        return cls(config, mesh, graphdef, (trainable, frozen, rest), make_optimizer(config.train))

    def model(self, params: dict, frozen: dict, rest: dict) -> Pegasus:
        return nnx.merge(self.graphdef, *(_fill(t, p) for t, p in zip(self.templates, (params, frozen, rest))))

    def abstract_state(self) -> dict:
        """ShapeDtypeStructs of the train state, each carrying its NamedSharding."""
        params, frozen, rest = (t.to_pure_dict() for t in self.templates)
        shapes = {
            "step": jax.ShapeDtypeStruct((), jnp.int32),
            "params": params,
            "frozen": frozen,
            "rest": rest,
            "opt_state": jax.eval_shape(self.tx.init, params),
            "nan_skips": jax.ShapeDtypeStruct((), jnp.int32),
        }
        return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self.shardings())

    def shardings(self) -> dict:
        mesh, rules = self.mesh, self.config.mesh.axis_rules
        params, frozen, rest = (state_shardings(t, mesh, rules).to_pure_dict() for t in self.templates)
        replicated = NamedSharding(mesh, PartitionSpec())
        opt_shapes = jax.eval_shape(self.tx.init, self.templates[0].to_pure_dict())
        # Adam moments mirror the parameters; counters and other non-parameter leaves are replicated.
        opt = optax.tree_map_params(self.tx, lambda _, s: s, opt_shapes, params,
                                    transform_non_params=lambda _: replicated)
        return {"step": replicated, "params": params, "frozen": frozen, "rest": rest, "opt_state": opt,
                "nan_skips": replicated}

    def init_state(self, seed: int) -> dict:
        """Materialise a fresh state directly in its shardings (never the whole model on one host)."""

        def init():
            model = Pegasus(self.config.model, rngs=nnx.Rngs(seed))
            _, trainable, frozen, rest = nnx.split(model, trainable_filter(self.config), nnx.Param, ...)
            params = trainable.to_pure_dict()
            return {"step": jnp.zeros((), jnp.int32), "params": params, "frozen": frozen.to_pure_dict(),
                    "rest": rest.to_pure_dict(), "opt_state": self.tx.init(params),
                    "nan_skips": jnp.zeros((), jnp.int32)}

        return jax.jit(init, out_shardings=self.shardings())()


def count_params(tree) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(tree))
