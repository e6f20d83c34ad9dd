"""`pegasus-jax` entry point: one subcommand per module in COMMANDS.

Each command module defines `register(subparsers)`, which adds its parser and sets `func`.
Command modules import heavy libraries inside their `run` functions so `--help` stays fast.
A UserError (bad flag, config, path or input) is printed as one line, exit code 2, no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pegasus_jax.errors import UserError
from pegasus_jax.flax_settings import configure as configure_flax

COMMANDS = (
    "data",
    "tokenizer",
    "train",
    "compile",
    "generate",
    "eval",
    "export",
    "import_hf",
    "scaling",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default prints usage + message; keep it one line
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pegasus-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"pegasus_jax.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"pegasus_jax.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def split_config_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Separate `--config.a.b=value` / `--config.a.b value` flags from the rest."""
    rest, overrides = [], {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            key = arg[len("--config."):]
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise UserError(f"{arg}: missing value")
            overrides[key] = value
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv, overrides = split_config_overrides(argv)
        args = build_parser().parse_args(argv)
        args.config_overrides = overrides
        configure_flax()  # after parsing, so --help and flag mistakes stay fast
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
