"""What every command shares about its arguments: the parser class (one-line errors, defaults shown in
--help), the `--config.a.b=value` override syntax and its help text, and the checks of flags that
must fail before anything heavy (model loading, compiling) starts. Imports nothing heavy."""
from __future__ import annotations

import argparse

from pegasus_jax.errors import UserError

OVERRIDES_HELP = """\
config overrides:
  Any field of the config file can be set on the command line, after the other flags:
    --config.SECTION.FIELD=VALUE   (or --config.SECTION.FIELD VALUE)
  The value is parsed to the field's type (int, float, bool, tuple, string; none for an unset field).
  An unknown field is an error naming the closest valid one.
  example:
    pegasus-jax train --config configs/tiny.py --workdir runs/tiny \\
        --config.train.steps=200 --config.train.batch_size=8 --config.train.schedule=wsd"""


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions and epilogs laid out by hand (holding line breaks) kept as written, others wrapped;
    each option's default appended to its help unless the option has none (None, False, an empty list)
    or its help already says it."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default is argparse.SUPPRESS or default is None or default is False
                or default in ("", []) or "default" in text):
            return text
        return f"{text} (default: %(default)s)".lstrip()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (a UserError, printed by main) and defaults shown in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # argparse's default prints usage + message; keep it one line
        raise UserError(message)


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


# CLI flag of each sampling parameter (pegasus_jax.infer.sampling.SamplingParams' field names).
SAMPLING_FLAGS = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
                  "max_new_tokens": "--max-new-tokens"}


def sampling_from_args(args) -> dict:
    """The sampling keyword arguments of generate/gist/summarize, checked (one-line error per bad flag)."""
    from pegasus_jax.infer.sampling import check_sampling

    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
    if args.max_tokens is not None:
        sampling["max_new_tokens"] = args.max_tokens
    check_sampling(sampling, SAMPLING_FLAGS)
    return sampling


def lora_alphas_from_args(args, sweep: bool) -> list[float]:
    """--lora-alpha as numbers: one value, or with `sweep` (eval) a comma-separated list, e.g. 0,2,4,8,16.
    Their range against the checkpoint is checked once its config is read (models/lora.py)."""
    spec = getattr(args, "lora_alpha", None)
    if spec is None:
        return []
    try:
        alphas = [float(part) for part in spec.split(",")]
    except ValueError:
        raise UserError(f"--lora-alpha {spec!r}: expected a number" + (" or numbers separated by commas, "
                        "e.g. 0,2,4,8,16" if sweep else "")) from None
    if len(alphas) > 1 and not sweep:
        raise UserError(f"--lora-alpha {spec!r}: one value here (eval sweeps a list)")
    if len(set(alphas)) != len(alphas):
        raise UserError(f"--lora-alpha {spec!r}: a value is repeated")
    return alphas
