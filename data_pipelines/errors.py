"""The error a user can fix: the CLI prints `error: <message>` on one line and exits non-zero."""


class UserError(Exception):
    """A mistake the user can fix (bad flag, config, path or input); never shown with a traceback."""
