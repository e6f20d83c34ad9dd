"""pegasus-jax: a Pegasus-1-style video-language model in JAX / Flax NNX."""

from pegasus_jax.version import __version__  # noqa: F401


def __getattr__(name):
    # `from pegasus_jax import Pegasus` (the inference API) without importing JAX on package import:
    # data workers import pegasus_jax.* and must start fast.
    if name == "Pegasus":
        from pegasus_jax.infer.api import Pegasus

        return Pegasus
    raise AttributeError(name)
