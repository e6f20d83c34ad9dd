"""Peak memory of the train step with the text-only chunked loss against the full-logits loss.

The real train step of pegasus_jax/train/step.py for `--config` (default `small`) on one CPU device,
compiled ahead of time twice, alike but for the loss:
- full logits: the final norm and output projection over every text position, then log_softmax over
  fp32 (B, L, vocab) logits (models.pegasus.cross_entropy_loss, the loss before this change);
- text-only chunked: the norm and projection on the loss positions only, the cross-entropy in
  vocabulary chunks (models/text_loss.py, what step.py trains with).
XLA's `memory_analysis()` of each compiled step gives the temporaries (the step's own peak working
memory beyond its arguments and outputs), the arguments (state + batch) and the outputs. Also the
size the fp32 logits tensor alone would take at this shape. Nothing is run, only compiled; the
figures are XLA:CPU's buffer assignment (a TPU's differs in detail, not in kind).

    .venv/bin/python benchmarks/loss_memory.py [--config small] [--batch 8] [--text-len 64]

Prints one JSON object, then a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import markdown_table  # noqa: E402

MIB = 1024 ** 2


def step_memory(config, loss) -> dict:
    import jax

    from data_pipelines.contract import zeros_batch
    from pegasus_jax import sharding
    from pegasus_jax.train.state import TrainSpec
    from pegasus_jax.train.step import make_train_step

    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    spec = TrainSpec.create(config, mesh)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in zeros_batch(config, config.train.batch_size).items()}
    mem = make_train_step(spec, batch, loss=loss).lower(spec.abstract_state(), batch).compile().memory_analysis()
    return {"temp_mib": mem.temp_size_in_bytes / MIB, "argument_mib": mem.argument_size_in_bytes / MIB,
            "output_mib": mem.output_size_in_bytes / MIB}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--text-len", type=int, default=None, help="text tokens per example (default: the config's)")
    args = p.parse_args(argv)

    from pegasus_jax import config as cfg
    from pegasus_jax.flax_settings import configure
    from pegasus_jax.models.pegasus import cross_entropy_loss, loss_fn

    configure()
    overrides = {"train__batch_size": args.batch, "train__grad_accum": 1, "mesh__data": 1, "mesh__fsdp": 1,
                 "mesh__tensor": 1}
    if args.text_len:
        overrides["data__max_text_len"] = args.text_len
    config = cfg.get(args.config, **overrides)
    full = step_memory(config, lambda model, batch, pool: cross_entropy_loss(model(batch, pool), batch))
    chunked = step_memory(config, loss_fn)
    vocab, text_len = config.model.decoder.vocab_size, config.data.max_text_len
    result = {
        "config": args.config, "batch": args.batch, "text_len": text_len, "vocab": vocab,
        "dtype": config.model.dtype, "fp32_logits_tensor_mib": args.batch * text_len * vocab * 4 / MIB,
        "full_logits": full, "text_only_chunked": chunked,
        "temp_drop_mib": full["temp_mib"] - chunked["temp_mib"],
        "temp_ratio": chunked["temp_mib"] / full["temp_mib"],
    }
    print(json.dumps(result, indent=1))
    rows = [[name, f"{r['temp_mib']:.1f}", f"{r['argument_mib']:.1f}", f"{r['output_mib']:.1f}"]
            for name, r in (("full-logits loss", full), ("text-only chunked loss", chunked))]
    print(markdown_table(["train step of " + args.config, "temp MiB", "arguments MiB", "outputs MiB"], rows))
    print(f"\ntemporaries {result['temp_ratio']:.2f}x ({result['temp_drop_mib']:.1f} MiB less); the fp32 "
          f"(B={args.batch}, L={text_len}, V={vocab}) logits alone are {result['fp32_logits_tensor_mib']:.1f} MiB")
    return result


if __name__ == "__main__":
    main()
