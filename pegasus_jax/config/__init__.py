"""The config: its schema with per-section checks (schema.py; the model's: model_schema.py) and the file
loader with overrides (loader.py). The names call sites use are importable from here: `from pegasus_jax import config as cfg;
cfg.get("tiny", train__steps=10)`, `load_config`, `base_config`, `validate`, ..."""
from pegasus_jax.config.loader import apply_overrides, config_path, get, load_config
from pegasus_jax.config.model_schema import (
    ATTENTION_BACKENDS, REMAT_POLICIES, VISION_KINDS, audio_positions, head_dim, qkv_bias,
)
from pegasus_jax.config.schema import LR_SCHEDULES, STAGES, base_config, validate, wsd_decay_steps

__all__ = ["ATTENTION_BACKENDS", "LR_SCHEDULES", "REMAT_POLICIES", "STAGES", "VISION_KINDS", "apply_overrides",
           "audio_positions", "base_config", "config_path", "get", "head_dim", "load_config", "qkv_bias", "validate",
           "wsd_decay_steps"]
