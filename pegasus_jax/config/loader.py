"""Loading a config: `configs/*.py` files (their `get_config()`), `--config.a.b=value` overrides parsed
to each field's type, bundled configs by short name; the result is validated (config/schema.py)."""
from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys

import ml_collections

from pegasus_jax.config.schema import validate
from pegasus_jax.errors import ConfigError


def _parse_value(text: str, current):
    if isinstance(current, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(current, str) or current is None:
        if current is None and text.lower() in ("none", "null"):
            return None
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if current is not None and not isinstance(value, type(current)):
        raise ValueError(f"expected {type(current).__name__}, got {text!r}")
    return value


def field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted field path of `config` (`train.steps`, `model.decoder.width`, ...)."""
    names = []
    for key, value in config.items():
        names.append(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            names.extend(field_names(value, f"{prefix}{key}."))
    return names


def unknown_field(config: ml_collections.ConfigDict, dotted: str) -> ConfigError:
    close = difflib.get_close_matches(dotted, field_names(config), n=1, cutoff=0.6)
    hint = f"; did you mean --config.{close[0]}?" if close else ""
    return ConfigError(f"--config.{dotted}: no such config field{hint}")


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]) -> ml_collections.ConfigDict:
    """Apply `{"train.steps": "10"}`-style overrides (values parsed to the field's type)."""
    for dotted, text in overrides.items():
        node = config
        parts = dotted.split(".")
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise unknown_field(config, dotted)
            node = node[part]
        if parts[-1] not in node:
            raise unknown_field(config, dotted)
        current = node[parts[-1]]
        try:
            node[parts[-1]] = _parse_value(text, current)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--config.{dotted}: {e}") from None
    return config


def make_configs_importable(path: str) -> None:
    """Config files may build on each other (`from configs.tiny import get_config`), a user's own file
    outside this checkout included: the folders holding its configs/ and the bundled configs/ are importable."""
    bundled_root = os.path.dirname(os.path.dirname(config_path("tiny")))
    for root in (bundled_root, os.path.dirname(os.path.dirname(os.path.abspath(path)))):
        if root not in sys.path:
            sys.path.insert(0, root)


def load_config(path: str, overrides: dict[str, str] | None = None) -> ml_collections.ConfigDict:
    """Load `get_config()` from a Python file, apply overrides, validate."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such file {path!r}")
    if not path.endswith(".py"):
        raise ConfigError(f"--config: {path} is not a Python file (expected configs/<name>.py defining get_config())")
    make_configs_importable(path)
    spec = importlib.util.spec_from_file_location(f"pegasus_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken config file is a user mistake: name it
        raise ConfigError(f"--config: {path} failed to load: {type(e).__name__}: {e}") from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"--config: {path} has no get_config()")
    try:
        config = module.get_config()
    except Exception as e:  # the user's function: name it, no traceback
        raise ConfigError(f"--config: {path}: get_config() failed: {type(e).__name__}: {e}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"--config: {path}: get_config() returned {type(config).__name__}, not a ConfigDict")
    apply_overrides(config, overrides or {})
    return validate(config)


def config_path(name: str) -> str:
    """Path of a bundled config by short name (`tiny`, `pegasus_80b`, ...)."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
    return os.path.join(root, f"{name}.py")


def get(name: str, **overrides) -> ml_collections.ConfigDict:
    """Bundled config by short name, with keyword overrides written `train__steps=10`."""
    return load_config(config_path(name), {k.replace("__", "."): str(v) for k, v in overrides.items()})
