"""Peak memory of the train step with the text-only chunked loss against the full-logits loss.

The real train step of pegasus_jax/train/step.py for `--config` (default `small`) on one CPU device,
compiled ahead of time twice, alike but for the loss:
- full logits: the final norm and output projection over every text position, then log_softmax over
  fp32 (B, L, vocab) logits (models.pegasus.cross_entropy_loss, the loss before this change);
- text-only chunked: the norm and projection on the loss positions only, the cross-entropy in
  vocabulary chunks (models/text_loss.py, what step.py trains with).
Two steps: the config's decoder alone on text (benchmarks/train_step.py's TextLM) at the config's
decoder sequence length (`--seq`, default: that of its multimodal batches), where the output layer
weighs; and, with `--whole-model`, the whole Pegasus step on the config's multimodal batch, whose
text is `data.max_text_len` tokens after the video. XLA's `memory_analysis()` of each compiled step
gives the temporaries (the step's working memory beyond its arguments and outputs), the arguments
(state + batch) and the outputs; also printed: the size of the fp32 logits tensor alone. Nothing is
run, only compiled; the figures are XLA:CPU's buffer assignment.

    .venv/bin/python benchmarks/loss_memory.py [--config small] [--batch 8] [--seq N] [--whole-model]

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


def step_memory(spec, batch_shapes: dict, loss) -> dict:
    from pegasus_jax.train.step import make_train_step

    step = make_train_step(spec, batch_shapes, loss=loss)
    mem = step.lower(spec.abstract_state(), batch_shapes).compile().memory_analysis()
    return {"temp_mib": mem.temp_size_in_bytes / MIB, "argument_mib": mem.argument_size_in_bytes / MIB,
            "output_mib": mem.output_size_in_bytes / MIB}


def compare(name: str, spec, batch: dict, text_positions: int) -> dict:
    import jax

    from pegasus_jax.models.pegasus import cross_entropy_loss, loss_fn

    shapes = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
    full = step_memory(spec, shapes, lambda model, b, pool: cross_entropy_loss(model(b, pool), b))
    chunked = step_memory(spec, shapes, loss_fn)
    vocab = spec.config.model.decoder.vocab_size
    return {"step": name, "text_positions": text_positions, "fp32_logits_mib": text_positions * vocab * 4 / MIB,
            "full_logits": full, "text_only_chunked": chunked,
            "temp_drop_mib": full["temp_mib"] - chunked["temp_mib"], "temp_ratio": chunked["temp_mib"] / full["temp_mib"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=None, help="decoder-only step: tokens per example")
    p.add_argument("--whole-model", action="store_true", help="also the whole Pegasus step")
    args = p.parse_args(argv)

    import jax

    from benchmarks.train_step import decoder_train_spec, text_batch
    from data_pipelines.contract import zeros_batch
    from pegasus_jax import config as cfg
    from pegasus_jax import sharding
    from pegasus_jax.flax_settings import configure
    from pegasus_jax.scaling.flops import decoder_sequence_length
    from pegasus_jax.train.state import TrainSpec

    configure()
    config = cfg.get(args.config, train__batch_size=args.batch, train__grad_accum=1, mesh__data=1, mesh__fsdp=1,
                     mesh__tensor=1)
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    seq = args.seq or decoder_sequence_length(config)
    vocab = config.model.decoder.vocab_size
    results = [compare(f"decoder of {args.config} on text, batch {args.batch} x {seq}", decoder_train_spec(config, mesh),
                       text_batch(args.batch, seq, vocab), args.batch * seq)]
    if args.whole_model:
        results.append(compare(f"whole {args.config} model, batch {args.batch}, text {config.data.max_text_len}",
                               TrainSpec.create(config, mesh), zeros_batch(config, args.batch),
                               args.batch * config.data.max_text_len))
    result = {"benchmark": "loss_memory", "config": args.config, "dtype": config.model.dtype, "vocab": vocab,
              "rows": results}
    print(json.dumps(result, indent=1))
    table = []
    for r in results:
        for name in ("full_logits", "text_only_chunked"):
            m = r[name]
            table.append([r["step"], name.replace("_", " "), f"{m['temp_mib']:.1f}", f"{m['argument_mib']:.1f}",
                          f"{r['fp32_logits_mib']:.1f}"])
    print(markdown_table(["train step", "loss", "temp MiB", "arguments MiB", "fp32 logits alone MiB"], table))
    for r in results:
        print(f"{r['step']}: temporaries x{r['temp_ratio']:.3f} ({r['temp_drop_mib']:.1f} MiB less)")
    return result


if __name__ == "__main__":
    main()
