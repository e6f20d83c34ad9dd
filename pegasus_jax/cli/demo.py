"""`pegasus-jax demo [--workdir runs/demo]`: the end-to-end demo on the built-in corpus (see pegasus_jax/demo.py)."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="generate the built-in corpus, train, evaluate, report")
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--config", default=None, help="default: configs/demo.py")
    p.set_defaults(func=run)


def run(args) -> int:
    from pegasus_jax.demo import run_demo
    from pegasus_jax.train.trainer import log_to_stderr

    log_to_stderr()
    run_demo(args.workdir, args.config, args.config_overrides)
    return 0
