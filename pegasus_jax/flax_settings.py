"""Process-wide Flax settings, applied once by each entry point before it builds a model: the CLI main,
the Python API's `Pegasus.load`, the tests' conftest, the benchmarks. Importing the library changes none.

Parameters carry logical axis names as metadata and are placed on a mesh explicitly by
pegasus_jax.sharding; Flax's eager sharding would demand a mesh at construction time, so it is off.
On a machine without a TPU, the CPU platform is selected before JAX starts (pegasus_jax/platforms.py).
"""


def configure() -> None:
    from pegasus_jax.platforms import quiet_without_tpu

    quiet_without_tpu()  # before Flax imports JAX (see pegasus_jax/platforms.py)
    from flax import nnx

    nnx.use_eager_sharding(False)
