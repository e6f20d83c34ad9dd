"""Train-step throughput on this CPU against transformers/PyTorch, with CPU-MFU.

Side by side in one run, same batch, sequence, weights and optimizer settings:
- ours: the jitted, donated train step of pegasus_jax/train/step.py (AdamW with warmup-cosine and
  global-norm clipping from train/optimizer.py) on the decoder of `--config` (default `small`) alone,
  fed text tokens;
- transformers: the same decoder as a `LlamaForCausalLM` (built from our initial weights through the
  export mapping, SDPA attention), cross-entropy, backward, clip_grad_norm_, torch.optim.AdamW (no
  decay on vectors, as ours);
- the whole Pegasus step (video + audio + text batch) of `--pegasus-config` (default `tiny`).

    .venv/bin/python benchmarks/train_step.py [--batch 4] [--steps 5] [--warmup 1] [--dtypes float32,bfloat16]

The sequence is the decoder length of the config's own multimodal batches (386 for `small`).
Model FLOPs come from pegasus_jax/scaling/flops.py (the count the trainer's MFU uses; matmuls only,
causal attention as half the square, train = 3 x forward), not XLA's cost analysis, which counts a
scanned layer stack's body once. CPU-MFU = achieved FLOP/s / the best of 7 2048^3 matmuls timed in
the same run: jnp.dot fp32 for fp32 rows; for bf16 rows the faster of jnp.dot and torch.mm in bf16
(torch reaches the CPU's AMX units, XLA:CPU does not). bf16 rows keep fp32 master weights (ours: the
config's compute dtype; torch: autocast). The first loss of both is printed: same weights and batch
give the same loss. Medians over `--steps` timed steps after `--warmup` (and after a first step that
compiles ours), ours and torch steps alternating so that other jobs' load falls on both alike; each
row also gives its median CPU seconds per step (all threads of the process) and the cores it kept busy
(below 2 when the machine is shared), and the ratio on CPU seconds, which that load changes less.
Prints one JSON object, then markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import hf_llama, machine, markdown_table, matmul_peaks, timed, timed_alternately  # noqa: E402


def text_lm_class():
    from flax import nnx

    from pegasus_jax.models.decoder import Decoder, valid_positions
    from pegasus_jax.models.layers import dtype_of

    class TextLM(nnx.Module):
        """The Pegasus decoder alone on text, with the two methods step.py's loss uses."""

        def __init__(self, config, *, rngs: nnx.Rngs):
            m = config.model
            self.decoder = Decoder(m.decoder, m.lora, dtype=dtype_of(m.dtype), param_dtype=dtype_of(m.param_dtype),
                                   scan=m.scan_layers, remat=m.remat_policy, rngs=rngs)

        def text_hidden(self, batch, pool=None):  # `pool`: the multimodal step's argument, unused on text
            mask = batch["text_mask"]
            hidden, _ = self.decoder.hidden_states(self.decoder.embed(batch["tokens"]), valid_positions(mask), mask)
            return hidden

        def __call__(self, batch, pool=None):
            return self.decoder.logits(self.text_hidden(batch))

    return TextLM


def _split_text_lm(config, model):
    from flax import nnx

    from pegasus_jax.train.state import trainable_filter

    return nnx.split(model, trainable_filter(config), nnx.Param, ...)


def decoder_train_spec(config, mesh=None):
    """The TrainSpec of the text-only decoder: the same spec and state layout the trainer uses for the
    whole model, so step.py compiles it unchanged."""
    from flax import nnx

    from pegasus_jax.sharding import make_mesh
    from pegasus_jax.train.optimizer import make_optimizer
    from pegasus_jax.train.state import TrainSpec

    text_lm = text_lm_class()
    graphdef, *templates = _split_text_lm(config, nnx.eval_shape(lambda: text_lm(config, rngs=nnx.Rngs(config.seed))))
    return TrainSpec(config, mesh or make_mesh(config.mesh), graphdef, tuple(templates), make_optimizer(config.train))


def decoder_train_state(config):
    """(TrainSpec, initial state) for the text-only decoder."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    spec = decoder_train_spec(config)
    _, *live = _split_text_lm(config, text_lm_class()(config, rngs=nnx.Rngs(config.seed)))
    params, frozen, rest = (s.to_pure_dict() for s in live)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "frozen": frozen, "rest": rest,
             "opt_state": spec.tx.init(params), "nan_skips": jnp.zeros((), jnp.int32)}
    return spec, jax.device_put(state, spec.shardings())


def text_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict:
    """Text only; one absent segment (no video, audio or transcript) for the step's work count."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (batch, seq + 1), dtype=np.int32)
    return {"tokens": tokens[:, :-1], "targets": tokens[:, 1:], "loss_mask": np.ones((batch, seq), np.float32),
            "text_mask": np.ones((batch, seq), bool), "segment_mask": np.zeros((batch, 1), bool),
            "audio_mask": np.zeros((batch, 1), bool), "transcript_mask": np.zeros((batch, 1, 1), bool)}


def multimodal_batch(config, batch: int, seed: int = 0) -> dict:
    """A full batch of the config's shapes: random frames, audio and tokens, every segment present."""
    import numpy as np

    from data_pipelines.contract import zeros_batch

    rng = np.random.default_rng(seed)
    out = zeros_batch(config, batch)
    vocab = config.model.decoder.vocab_size
    out["frames"] = rng.integers(0, 256, out["frames"].shape, dtype=np.uint8)
    out["audio"] = rng.standard_normal(out["audio"].shape).astype(np.float32) * 0.1
    out["segment_start"] = np.broadcast_to(np.arange(out["segment_start"].shape[1], dtype=np.float32)
                                           * config.model.align.segment_seconds, out["segment_start"].shape).copy()
    for key in ("segment_mask", "audio_mask", "transcript_mask", "text_mask"):
        out[key][:] = True
    out["loss_mask"][:] = 1.0
    for key in ("transcript", "tokens", "targets"):
        out[key] = rng.integers(0, vocab, out[key].shape, dtype=np.int32)
    return out


def jax_step_runner(spec, state, batch: dict):
    """(a call that runs one step of step.py's jitted step to completion, the loss of the first step,
    which compiles it)."""
    import jax

    from pegasus_jax.sharding import batch_sharding
    from pegasus_jax.train.step import make_train_step

    rules = spec.config.mesh.axis_rules
    batch = {k: jax.device_put(v, batch_sharding(spec.mesh, rules, v.ndim)) for k, v in batch.items()}
    step_fn = make_train_step(spec, batch)
    holder = {"state": state}

    def run():
        holder["state"], metrics = step_fn(holder["state"], batch)
        jax.block_until_ready((holder["state"], metrics))
        return metrics

    first_loss = float(run()["loss"])
    return run, first_loss


def torch_step_runner(model, batch: dict, train_cfg, autocast_bf16: bool):
    """The same for a transformers model: (a call that runs one training step, the first step's loss)."""
    import torch
    import torch.nn.functional as F

    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": train_cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=train_cfg.learning_rate, betas=(train_cfg.b1, train_cfg.b2))
    tokens = torch.from_numpy(batch["tokens"]).long()
    targets = torch.from_numpy(batch["targets"]).long()
    model.train()

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            logits = model(input_ids=tokens).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    first_loss = float(run())
    return run, first_loss


def row(impl: str, dtype: str, timing: dict, tokens: int, flops: float, peak: float, first_loss: float) -> dict:
    achieved = flops / timing["median_s"]
    return {"impl": impl, "dtype": dtype, "step_s": round(timing["median_s"], 3), "times_s": timing["times_s"],
            "cpu_s": round(timing["cpu_s"], 3), "cores_busy": timing["cores_busy"],
            "tokens_per_s": round(tokens / timing["median_s"], 1),
            "achieved_flops": achieved, "cpu_mfu": round(achieved / peak, 4), "first_loss": round(first_loss, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="config whose decoder is compared with transformers")
    parser.add_argument("--pegasus-config", default="tiny", help="config of the whole-model step ('' skips it)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--pegasus-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first (compiling) one")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    from pegasus_jax.flax_settings import configure

    configure()  # before any model is built

    import torch

    from pegasus_jax import config as cfg
    from pegasus_jax.scaling.flops import decoder_sequence_length, flops_per_example, flops_per_step, param_counts
    from pegasus_jax.train.state import count_params

    torch.set_num_threads(args.threads)
    peaks = matmul_peaks()
    peak = {"float32": peaks["jax_float32"]["best"],
            "bfloat16": max(peaks["jax_bfloat16"]["best"], peaks["torch_bfloat16"]["best"])}

    base = cfg.get(args.config)
    seq = decoder_sequence_length(base)
    per_example = flops_per_example(base)
    step_flops = args.batch * 3 * (per_example["decoder"] + per_example["lm_head"])
    rows = []
    for dtype in args.dtypes.split(","):
        config = cfg.get(args.config, model__dtype=dtype, train__batch_size=args.batch)
        spec, state = decoder_train_state(config)
        n_params = count_params(state["params"])
        hf = hf_llama(state["params"]["decoder"], config.model.decoder)
        batch = text_batch(args.batch, seq, config.model.decoder.vocab_size)
        run_ours, ours_loss = jax_step_runner(spec, state, batch)
        del state  # donated
        run_theirs, theirs_loss = torch_step_runner(hf, batch, config.train, dtype == "bfloat16")
        timing = timed_alternately({"ours": run_ours, "torch": run_theirs}, args.steps, args.warmup)
        ours, theirs = timing["ours"], timing["torch"]
        del run_ours, run_theirs, hf
        tokens = args.batch * seq
        rows.append(row("pegasus-jax step.py", dtype, ours, tokens, step_flops, peak[dtype], ours_loss))
        rows.append(row("transformers LlamaForCausalLM", dtype, theirs, tokens, step_flops, peak[dtype], theirs_loss))
        rows[-2]["ours_over_torch"] = round(theirs["median_s"] / ours["median_s"], 3)
        rows[-2]["ours_over_torch_cpu_s"] = round(theirs["cpu_s"] / ours["cpu_s"], 3)

    result = {"benchmark": "train_step", "machine": machine(args.threads), "matmul_peaks_2048": peaks,
              "peak_used": peak, "flops_source": "pegasus_jax/scaling/flops.py (decoder + lm_head, train = 3 x forward)",
              "decoder": {"config": args.config, "batch": args.batch, "seq": seq, "params": n_params,
                          "model_flops_per_step": step_flops, "steps": args.steps, "warmup": args.warmup,
                          "rows": rows}}
    if args.pegasus_config:
        config = cfg.get(args.pegasus_config, train__batch_size=args.pegasus_batch)
        from pegasus_jax.sharding import make_mesh
        from pegasus_jax.train.state import TrainSpec

        spec = TrainSpec.create(config, make_mesh(config.mesh))
        state = spec.init_state(config.seed)
        run, loss = jax_step_runner(spec, state, multimodal_batch(config, args.pegasus_batch))
        timing = timed(run, args.steps, args.warmup)
        pseq = decoder_sequence_length(config)
        result["pegasus"] = {"config": args.pegasus_config, "batch": args.pegasus_batch, "decoder_seq": pseq,
                             "params": param_counts(config)["total"], "model_flops_per_step": flops_per_step(config),
                             "row": row("pegasus-jax step.py, whole model", config.model.dtype, timing,
                                        args.pegasus_batch * pseq, flops_per_step(config),
                                        peak[config.model.dtype], loss)}
    print(json.dumps(result))
    d = result["decoder"]
    print(f"\nDecoder of `{args.config}` ({d['params'] / 1e6:.1f}M parameters), batch {args.batch} x {seq} tokens, "
          f"{step_flops:.3e} model FLOPs/step; peaks: fp32 {peak['float32'] / 1e9:.0f} GFLOP/s (jnp.dot), "
          f"bf16 {peak['bfloat16'] / 1e9:.0f} GFLOP/s\n")
    print(markdown_table(
        ["implementation", "dtype", "step s (median)", "tokens/s", "GFLOP/s", "CPU-MFU", "CPU s/step", "cores busy",
         "first loss", "ours / torch (wall)", "ours / torch (CPU s)"],
        [[r["impl"], r["dtype"], r["step_s"], r["tokens_per_s"], round(r["achieved_flops"] / 1e9, 1),
          f"{100 * r['cpu_mfu']:.1f}%", r["cpu_s"], r["cores_busy"], r["first_loss"], r.get("ours_over_torch", ""),
          r.get("ours_over_torch_cpu_s", "")] for r in rows]))
    if "pegasus" in result:
        p = result["pegasus"]
        r = p["row"]
        print(f"\nWhole Pegasus step, `{p['config']}` ({p['params'] / 1e6:.2f}M parameters), batch {p['batch']}, "
              f"decoder length {p['decoder_seq']}\n")
        print(markdown_table(["dtype", "step s (median)", "decoder tokens/s", "GFLOP/s", "CPU-MFU", "cores busy"],
                             [[r["dtype"], r["step_s"], r["tokens_per_s"], round(r["achieved_flops"] / 1e9, 2),
                               f"{100 * r['cpu_mfu']:.2f}%", r["cores_busy"]]]))


if __name__ == "__main__":
    main()
