"""The model: Flax NNX modules, one concept per file. Built from config.model alone; the process-wide
Flax settings it needs are applied by the entry points (pegasus_jax/flax_settings.py)."""
