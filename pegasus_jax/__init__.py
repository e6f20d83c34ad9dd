"""pegasus-jax: a Pegasus-1-style video-language model in JAX / Flax NNX."""
from flax import nnx as _nnx

# Parameters carry logical axis names as metadata and are placed on a mesh explicitly by
# pegasus_jax.sharding; Flax's eager sharding would demand a mesh at construction time.
_nnx.use_eager_sharding(False)

__version__ = "0.1.0"
