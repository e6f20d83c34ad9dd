"""Schema-constrained against free decoding: tokens/s of our Generator at batch 1 and 8, side by side.

Same model (`--config`, default `small`, random init), prompts, seed and sampling (temperature 1) on
both sides; text-only prompts (no video prefix), so only the decoder runs:
- free: the Generator's jitted chunks of CHUNK steps (`lax.scan`), no mask;
- constrained: the Generator under a GrammarConstraint for `--schema` (default: the chapters task's
  schema), in the same chunks, the device calling the host's llguidance engine after each token for the
  next bitmask; a document the budget cuts short is closed by the engine (those tokens are counted apart).

The engine's vocabulary comes from a SentencePiece model of `--vocab-size` pieces trained with the
project's `tokenizer.train` on the ASCII lines of the Python standard library's sources (cached in `--workdir`), so
masks are computed over a real trie of the decoder's vocabulary size.

    .venv/bin/python benchmarks/constrained_decode.py [--batches 1,8] [--new-tokens 64] [--repeats 3]

Decode tokens/s = tokens decoded (all rows; the engine's closing tokens, which take no decoder step,
are counted apart) / (whole generation - prefill), medians over `--repeats`
calls after one warm-up call, the two sides called in alternation (harness.timed_alternately). Also
reported: the host's time per mask (median over the constrained run's steps, batch rows together), and
tokens per CPU second of this process (all threads; on a machine shared with other jobs, wall time
mostly measures their load, CPU time far less).
Prints one JSON object, then a markdown table.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import sysconfig
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import markdown_table, timed, timed_alternately  # noqa: E402


def tokenizer_for(workdir: str, vocab_size: int):
    """The project tokenizer trained on the standard library's sources (made once per workdir)."""
    from data_pipelines.text.tokenizer import load_tokenizer, train

    path = os.path.join(workdir, f"stdlib_{vocab_size}.model")
    if not os.path.exists(path):
        os.makedirs(workdir, exist_ok=True)
        files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
        lines = (line for f in files for line in open(f, encoding="utf-8", errors="ignore") if line.isascii())
        train(lines, vocab_size, path[:-len(".model")])
    return load_tokenizer(path)


class TimedMasks:
    """The constraint, with the wall time of each `masks` call (the host's share of a step) recorded."""

    def __init__(self, constraint):
        self.constraint, self.mask_s = constraint, []

    def masks(self, finished):
        start = time.perf_counter()
        out = self.constraint.masks(finished)
        self.mask_s.append(time.perf_counter() - start)
        return out

    def __getattr__(self, name):
        return getattr(self.constraint, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--prompt-len", type=int, default=32, help="a multiple of generate.PROMPT_BUCKET")
    parser.add_argument("--new-tokens", type=int, default=64, help="a multiple of generate.CHUNK")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure")
    parser.add_argument("--vocab-size", type=int, default=32000, help="SentencePiece pieces (<= the decoder's)")
    parser.add_argument("--schema", help="JSON schema file (default: the chapters task's schema for 60 s)")
    parser.add_argument("--workdir", default="/tmp/pegasus-jax-constrained-decode")
    args = parser.parse_args()
    from pegasus_jax.flax_settings import configure

    configure()  # before any model is built

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from pegasus_jax import config as cfg
    from pegasus_jax.infer import grammar, schemas
    from pegasus_jax.infer.generate import Generator
    from pegasus_jax.infer.sampling import SamplingParams
    from pegasus_jax.models.pegasus import Pegasus

    config = cfg.get(args.config)
    tokenizer = tokenizer_for(args.workdir, args.vocab_size)
    tokenizer.check_fits(config.model.decoder.vocab_size)
    schema = json.load(open(args.schema)) if args.schema else schemas.chapters(60.0)
    rule = grammar.json_grammar(schema)
    vocabulary = grammar.Vocabulary(tokenizer, tokenizer.eot_id, config.model.decoder.vocab_size)
    model = Pegasus(config.model, rngs=nnx.Rngs(config.seed))
    generator = Generator(model, stop_ids=(tokenizer.eot_id, tokenizer.eos_id), pad_id=tokenizer.pad_id)
    params = SamplingParams(temperature=1.0, max_new_tokens=args.new_tokens, seed=0)

    rng = np.random.default_rng(0)
    rows, mask_us = [], {}
    for batch in (int(b) for b in args.batches.split(",")):
        prompts = rng.integers(len(tokenizer.special_ids), tokenizer.base_size, (batch, args.prompt_len)).tolist()
        prompt = jnp.asarray(prompts, jnp.int32)
        empty = (jnp.zeros((batch, 0, generator.width), generator.dtype), jnp.zeros((batch, 0), bool))
        cache_len = args.prompt_len + args.new_tokens
        prefill = timed(lambda: jax.block_until_ready(generator._prefill(
            generator.state, *empty, prompt, jnp.ones_like(prompt, bool), cache_len)), args.repeats, 1)
        produced, constraints = {}, []

        def free():
            produced["free"] = generator.generate_ids(prompts, None, params)

        def constrained():
            constraints.append(TimedMasks(grammar.GrammarConstraint(vocabulary, rule, batch)))
            produced["constrained"] = generator.generate_ids(prompts, None, params, constraint=constraints[-1])

        timing = timed_alternately({"free": free, "constrained": constrained}, args.repeats, 1)
        for text in (vocabulary.text(ids) for ids in produced["constrained"]):
            json.loads(text)  # every constrained answer is a JSON document (the schema's checks are tested)
        steps = [t for c in constraints[1:] for t in c.mask_s]  # the timed calls, warm-up left out
        mask_us[batch] = round(1e6 * statistics.median(steps), 1)
        by_side = {}
        # decoded tokens: a row cut by the budget decoded new_tokens, the engine's closing tokens after them
        # cost no decoder step and are reported apart
        closing = sum(max(0, len(ids) - args.new_tokens) for ids in produced["constrained"])
        for side in ("free", "constrained"):
            tokens = sum(min(len(ids), args.new_tokens) for ids in produced[side])
            decode_s = timing[side]["median_s"] - prefill["median_s"]
            by_side[side] = {"impl": side, "batch": batch, "tokens": tokens, "prefill_s": round(prefill["median_s"], 4),
                             "generate_s": round(timing[side]["median_s"], 4),
                             "decode_tokens_per_s": round(tokens / decode_s, 1),
                             "generate_cpu_s": round(timing[side]["cpu_s"], 3),
                             "tokens_per_cpu_s": round(tokens / timing[side]["cpu_s"], 1),
                             "generate_times_s": timing[side]["times_s"], "cores_busy": timing[side]["cores_busy"]}
        ratio = by_side["constrained"]["decode_tokens_per_s"] / by_side["free"]["decode_tokens_per_s"]
        by_side["constrained"]["constrained_over_free"] = round(ratio, 3)
        cpu_ratio = by_side["constrained"]["tokens_per_cpu_s"] / by_side["free"]["tokens_per_cpu_s"]
        by_side["constrained"]["constrained_over_free_cpu"] = round(cpu_ratio, 3)
        by_side["constrained"]["host_mask_us_median"] = mask_us[batch]
        by_side["constrained"]["closing_tokens"] = closing
        rows += [by_side["free"], by_side["constrained"]]

    import llguidance

    host = {"cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2), "jax": jax.__version__,
            "device": str(jax.devices()[0].device_kind), "llguidance": llguidance.__version__}
    result = {"benchmark": "constrained_decode", "machine": host, "config": args.config,
              "vocab_size": tokenizer.vocab_size, "decoder_vocab_size": config.model.decoder.vocab_size,
              "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "repeats": args.repeats,
              "temperature": params.temperature, "schema": schema, "rows": rows}
    print(json.dumps(result))
    print(f"\nDecoder of `{args.config}`, {tokenizer.vocab_size}-id SentencePiece vocabulary, temperature 1, "
          f"prompt {args.prompt_len} tokens, up to {args.new_tokens} new tokens, medians of {args.repeats}\n")
    print(markdown_table(
        ["decode", "batch", "tokens decoded", "closing tokens", "generate s", "decode tokens/s", "constrained / free",
         "tokens per CPU s", "constrained / free (CPU)", "host mask us", "cores busy"],
        [[r["impl"], r["batch"], r["tokens"], r.get("closing_tokens", ""), r["generate_s"], r["decode_tokens_per_s"],
          r.get("constrained_over_free", ""), r["tokens_per_cpu_s"], r.get("constrained_over_free_cpu", ""),
          r.get("host_mask_us_median", ""), r["cores_busy"]] for r in rows]))


if __name__ == "__main__":
    main()
