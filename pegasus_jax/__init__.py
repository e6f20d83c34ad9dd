"""pegasus-jax: a Pegasus-1-style video-language model in JAX / Flax NNX."""
from flax import nnx as _nnx

# Parameters carry logical axis names as metadata and are placed on a mesh explicitly by
# pegasus_jax.sharding; Flax's eager sharding would demand a mesh at construction time.
_nnx.use_eager_sharding(False)

__version__ = "0.1.0"


def __getattr__(name):
    # `from pegasus_jax import Pegasus` (the inference API) without importing JAX models on package import.
    if name == "Pegasus":
        from pegasus_jax.infer.api import Pegasus

        return Pegasus
    raise AttributeError(name)
