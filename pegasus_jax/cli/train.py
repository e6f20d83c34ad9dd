"""`pegasus-jax train --config configs/<name>.py --workdir DIR [--config.a.b=value ...]`."""
from __future__ import annotations


from pegasus_jax.cli.args import OVERRIDES_HELP


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model (any stage) on a corpus", epilog=OVERRIDES_HELP,
        description="Train the model a config file describes. Progress: one line per logging step on stderr "
                    "(step, loss, tokens/s, step time, MFU, ETA) and WORKDIR/metrics.jsonl; a rerun with the "
                    "same workdir resumes from its latest checkpoint.")
    p.add_argument("--config", required=True, help="configs/<name>.py (a get_config() file)")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, tensorboard, tokenizer")
    p.set_defaults(func=run)


def run(args) -> int:
    from pegasus_jax.config import load_config

    config = load_config(args.config, args.config_overrides)
    from pegasus_jax.train.trainer import log_to_stderr, train

    log_to_stderr()
    result = train(config, args.workdir)
    print(f"trained to step {result['final_step']}: loss {result.get('loss', float('nan')):.4f}")
    return 0
