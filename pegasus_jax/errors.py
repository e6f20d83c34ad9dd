"""User-facing errors: the CLI prints `error: <message>` on one line and exits non-zero."""


class UserError(Exception):
    """A mistake the user can fix (bad flag, config, path or input); never shown with a traceback."""


class ConfigError(UserError):
    """An inconsistent or unknown config field; the message starts with the field's name."""
