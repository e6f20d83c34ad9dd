"""`pegasus-jax` entry point.

Each command module (COMMANDS) defines `register(subparsers)`, which adds its parser and sets `func`.
Command modules import heavy libraries inside their `run` functions so `--help` stays fast.
A UserError (bad flag, config, path or input) is printed as one line, exit code 2, no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pegasus_jax.cli.args import Parser, split_config_overrides
from pegasus_jax.errors import UserError
from pegasus_jax.flax_settings import configure as configure_flax
from pegasus_jax.platforms import quiet_without_tpu

DESCRIPTION = """pegasus-jax: a video-language model (video and audio encoders, an alignment model and a Llama-style
decoder) in JAX. Make a corpus of video records, train a model on it, then ask it about videos:
captions, answers, summaries, chapters. Also: evaluate, export to PyTorch, import from Hugging Face,
plan TPU jobs, fit scaling laws.

first steps:
  pegasus-jax demo --workdir runs/demo           # the whole system on a built-in corpus (~15 min on a CPU)
  pegasus-jax train --config configs/tiny.py --workdir runs/tiny --config.train.steps=200
  pegasus-jax generate --checkpoint runs/tiny --video clip.mp4 --prompt "What happens?"

Run `pegasus-jax COMMAND --help` for a command's flags and their defaults; `train --help` also shows
how to set any config field with --config.SECTION.FIELD=VALUE."""

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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pegasus-jax", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"pegasus_jax.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"pegasus_jax.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_without_tpu()  # before anything imports JAX
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
