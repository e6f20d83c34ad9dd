"""The model: Flax NNX modules, one concept per file."""
from flax import nnx as _nnx

# Parameters carry logical axis names as metadata and are placed on a mesh explicitly by
# pegasus_jax.sharding; Flax's eager sharding would demand a mesh at construction time.
_nnx.use_eager_sharding(False)
