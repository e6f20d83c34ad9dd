"""Decode throughput on this CPU: our jitted KV-cache generation against transformers `generate`.

Side by side in one run, same weights, prompts and number of new tokens, greedy:
- ours: pegasus_jax/infer/generate.py's Generator on the `--config` (default `small`) model, text-only
  prompts (no video prefix), so only the decoder runs;
- transformers: `LlamaForCausalLM.generate(do_sample=False, use_cache=True)` on the same decoder,
  built through the export mapping (interop/hf_llama.py: the tensors `pegasus-jax export` writes).

    .venv/bin/python benchmarks/decode_speed.py [--batches 1,8] [--prompt-len 64] [--new-tokens 64] [--repeats 3]

Prefill is timed apart from decoding. Ours: the Generator's jitted prefill alone; per-token decode
time = (whole generation - prefill) / new tokens (our loop runs one decoder step per new token).
transformers: `generate` with max_new_tokens=1 is its prefill (one forward over the prompt); per-token
decode time = (whole generation - that) / (new tokens - 1). Decode tokens/s = batch / per-token time.
No stop token ends a row early on either side. Medians over `--repeats` calls after one warm-up call
(which also compiles ours; the run reports how many compilations each batch size caused). Greedy
decoding of the same weights should give the same tokens: the run reports how many match. fp32 by
default (bf16 on XLA:CPU is slower than fp32). Prints one JSON object, then a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import hf_llama, machine, markdown_table, timed  # noqa: E402


def jit_cache_sizes(generator) -> dict:
    """Compiled versions held by each jitted piece of the Generator (all instances together)."""
    return {name: getattr(type(generator), name)._cache_size() for name in ("_prefill", "_decode_chunk")}


def time_ours(generator, prompts, new_tokens: int, repeats: int) -> tuple[dict, dict, list[list[int]]]:
    """(prefill timing, whole-generation timing, generated ids) of our Generator."""
    import jax
    import jax.numpy as jnp

    from pegasus_jax.infer.generate import CHUNK, PROMPT_BUCKET
    from pegasus_jax.infer.sampling import SamplingParams

    params = SamplingParams(temperature=0.0, max_new_tokens=new_tokens)
    b, width = len(prompts), len(prompts[0])
    assert width % PROMPT_BUCKET == 0 and new_tokens % CHUNK == 0, "unpadded shapes keep the comparison exact"
    prefix = (jnp.zeros((b, 0, generator.width), generator.dtype), jnp.zeros((b, 0), bool))
    prompt = jnp.asarray(prompts, jnp.int32)
    cache_len = width + new_tokens  # the Generator's cache length for these unpadded shapes

    def prefill():
        jax.block_until_ready(generator._prefill(generator.state, *prefix, prompt, jnp.ones_like(prompt, bool),
                                                 cache_len))

    holder = {}

    def generate():  # returns host lists: every chunk's tokens are already on the host
        holder["ids"] = generator.generate_ids(prompts, None, params)

    prefill_timing = timed(prefill, repeats, 1)
    generate_timing = timed(generate, repeats, 1)
    return prefill_timing, generate_timing, holder["ids"]


def time_transformers(model, prompts, new_tokens: int, repeats: int) -> tuple[dict, dict, list[list[int]]]:
    import torch

    input_ids = torch.tensor(prompts, dtype=torch.long)
    holder = {}

    def generate(n: int):
        with torch.no_grad():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                 use_cache=True, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
        holder["ids"] = out[:, input_ids.shape[1]:].tolist()

    prefill_timing = timed(lambda: generate(1), repeats, 1)
    generate_timing = timed(lambda: generate(new_tokens), repeats, 1)
    return prefill_timing, generate_timing, holder["ids"]


def row(impl: str, batch: int, prefill: dict, whole: dict, decode_steps: int, new_tokens: int) -> dict:
    per_token = (whole["median_s"] - prefill["median_s"]) / decode_steps
    return {"impl": impl, "batch": batch, "prefill_s": round(prefill["median_s"], 4),
            "generate_s": round(whole["median_s"], 4), "per_token_ms": round(1e3 * per_token, 2),
            "decode_tokens_per_s": round(batch / per_token, 1),
            "end_to_end_tokens_per_s": round(batch * new_tokens / whole["median_s"], 1),
            "prefill_times_s": prefill["times_s"], "generate_times_s": whole["times_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small")
    parser.add_argument("--dtype", default="float32", help="compute dtype of both models")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--prompt-len", type=int, default=64, help="a multiple of generate.PROMPT_BUCKET")
    parser.add_argument("--new-tokens", type=int, default=64, help="a multiple of generate.CHUNK")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    from pegasus_jax.flax_settings import configure

    configure()  # before any model is built

    import numpy as np
    import torch
    from flax import nnx

    from pegasus_jax import config as cfg
    from pegasus_jax.infer.generate import Generator
    from pegasus_jax.models.pegasus import Pegasus
    from pegasus_jax.train.state import count_params

    torch.set_num_threads(args.threads)
    config = cfg.get(args.config, model__dtype=args.dtype)
    dcfg = config.model.decoder
    model = Pegasus(config.model, rngs=nnx.Rngs(config.seed))
    generator = Generator(model, stop_ids=(), pad_id=0)  # no stop token: every row decodes --new-tokens
    hf = hf_llama(model.decoder, dcfg, getattr(torch, args.dtype)).eval()
    decoder_params = count_params(nnx.state(model.decoder, nnx.Param).to_pure_dict())

    rng = np.random.default_rng(0)
    rows, agreement, compiled = [], [], {}
    for batch in (int(b) for b in args.batches.split(",")):
        prompts = rng.integers(4, dcfg.vocab_size, (batch, args.prompt_len)).tolist()
        before = jit_cache_sizes(generator)
        o_prefill, o_whole, o_ids = time_ours(generator, prompts, args.new_tokens, args.repeats)
        # one compilation per piece for this batch's shapes, however many calls and tokens followed
        compiled[batch] = {k: v - before[k] for k, v in jit_cache_sizes(generator).items()}
        t_prefill, t_whole, t_ids = time_transformers(hf, prompts, args.new_tokens, args.repeats)
        ours = row("pegasus-jax Generator", batch, o_prefill, o_whole, args.new_tokens, args.new_tokens)
        theirs = row("transformers generate", batch, t_prefill, t_whole, args.new_tokens - 1, args.new_tokens)
        ours["decode_ours_over_transformers"] = round(ours["decode_tokens_per_s"] / theirs["decode_tokens_per_s"], 3)
        ours["prefill_ours_over_transformers"] = round(theirs["prefill_s"] / ours["prefill_s"], 3)
        rows += [ours, theirs]
        same = np.asarray(o_ids) == np.asarray(t_ids)
        first_diff = [int(np.argmin(r)) if not r.all() else None for r in same]
        agreement.append({"batch": batch, "tokens_equal": int(same.sum()), "tokens": int(same.size),
                          "rows_identical": int(same.all(axis=1).sum()), "first_difference_per_row": first_diff})

    result = {"benchmark": "decode_speed", "machine": machine(args.threads), "config": args.config,
              "dtype": args.dtype, "decoder_params": decoder_params, "prompt_len": args.prompt_len,
              "new_tokens": args.new_tokens, "repeats": args.repeats, "greedy": True,
              "compilations_per_batch": compiled, "agreement": agreement, "rows": rows}
    print(json.dumps(result))
    print(f"\nDecoder of `{args.config}` ({decoder_params / 1e6:.1f}M parameters, {args.dtype}), greedy, prompt "
          f"{args.prompt_len} tokens, {args.new_tokens} new tokens, medians of {args.repeats}\n")
    print(markdown_table(
        ["implementation", "batch", "prefill s", "per-token ms", "decode tokens/s", "end-to-end tokens/s",
         "decode ours / HF", "same tokens"],
        [[r["impl"], r["batch"], r["prefill_s"], r["per_token_ms"], r["decode_tokens_per_s"],
          r["end_to_end_tokens_per_s"], r.get("decode_ours_over_transformers", ""),
          next(f"{a['tokens_equal']}/{a['tokens']}" for a in agreement if a["batch"] == r["batch"])]
         for r in rows]))


if __name__ == "__main__":
    main()
