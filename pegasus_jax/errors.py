"""User-facing errors: the CLI prints `error: <message>` on one line and exits non-zero.

UserError is defined by the data package (data_pipelines/errors.py, a leaf it can raise without
importing this library); it is re-exported here so the library's code and users catch one class.
"""
from data_pipelines.errors import UserError

__all__ = ["UserError", "ConfigError"]


class ConfigError(UserError):
    """An inconsistent or unknown config field; the message starts with the field's name."""
