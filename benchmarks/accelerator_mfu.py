"""Train-step tokens/s and MFU on whatever accelerator JAX sees, per attention backend.

The real jitted train step (pegasus_jax/train/step.py) of `--config` (default `pegasus_1b`, the whole
Pegasus model: video, audio and text batch) on all visible devices of the default backend, data-parallel
(mesh data=-1). With `--attention xla,cudnn` each backend's step is compiled and the steps are timed in
alternation (A B, B A, ...), so load from other jobs falls on each alike; `auto` is reported as the
backend it resolves to here (splash on TPU, cudnn on GPU in bf16, xla elsewhere).

MFU = model FLOPs per step (pegasus_jax/scaling/flops.py: the count the trainer's MFU uses, the real
content of the batch) / step time / (devices x per-chip peak). Peaks are dense bf16 from the vendors'
data sheets (PEAK_BF16 below, matched on `device_kind`); on a CPU, or a chip not in the table, the peak
is this host's measured jnp.dot matmul rate in the config's dtype, and the row says so.

    .venv/bin/python benchmarks/accelerator_mfu.py [--config pegasus_1b] [--attention xla,cudnn] [--batch 8]
    # a tiny run on CPU, to show the script works:
    .venv/bin/python benchmarks/accelerator_mfu.py --config tiny --attention xla,blockwise --batch 2 --steps 2

`--set model.decoder.depth=4` (repeatable) overrides any config field, e.g. to fit one chip.
Prints one JSON object, then a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Unlike the CPU benchmarks this one must see accelerators: no JAX_PLATFORMS default from the harness.
_PLATFORMS = os.environ.get("JAX_PLATFORMS")
from benchmarks.harness import markdown_table, matmul_peaks, timed_alternately  # noqa: E402

if _PLATFORMS is None:
    os.environ.pop("JAX_PLATFORMS", None)

# Dense bf16 peak FLOP/s per chip, by a substring of jax.Device.device_kind (first match wins).
PEAK_BF16 = (
    ("H200", 989e12),  # H200 SXM: as H100 SXM, 989 TFLOP/s dense
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # H100 SXM
    ("A100", 312e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),  # v5e
    ("TPU v5e", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),  # v5p reports "TPU v5"
    ("TPU v6 lite", 918e12),  # v6e (Trillium)
    ("TPU v6e", 918e12),
)


def chip_peak(device, dtype: str) -> tuple[float, str]:
    """(peak FLOP/s of one device, where the figure comes from)."""
    for name, peak in PEAK_BF16:
        if name.lower() in device.device_kind.lower():
            return peak, f"{name} bf16 data sheet"
    key = "jax_bfloat16" if dtype == "bfloat16" else "jax_float32"
    return matmul_peaks()[key]["best"], f"measured jnp.dot {dtype} on this {device.platform}"


def parse_sets(items: list[str]) -> dict[str, str]:
    from pegasus_jax.errors import UserError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected field=value, e.g. model.decoder.depth=4")
        out[key] = value
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="pegasus_1b", help="bundled config name or configs/*.py path")
    p.add_argument("--attention", default="auto", help="comma-separated backends, e.g. xla,cudnn")
    p.add_argument("--batch", type=int, default=8, help="global batch (examples per step)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = p.parse_args(argv)

    import jax

    from benchmarks.train_step import jax_step_runner, multimodal_batch
    from pegasus_jax import config as cfg
    from pegasus_jax.flax_settings import configure
    from pegasus_jax.models.attention import resolve_backend
    from pegasus_jax.scaling.flops import decoder_sequence_length, flops_per_step, param_counts
    from pegasus_jax.sharding import activation_sharding, make_mesh
    from pegasus_jax.train.state import TrainSpec

    configure()
    path = args.config if args.config.endswith(".py") else cfg.config_path(args.config)
    overrides = {"train.batch_size": str(args.batch), "train.grad_accum": "1", "mesh.data": "-1", "mesh.fsdp": "1",
                 "mesh.tensor": "1", **parse_sets(args.set)}
    devices = jax.devices()
    runners, rows = {}, []
    for backend in args.attention.split(","):
        config = cfg.load_config(path, {**overrides, "model.attention": backend})
        mesh = make_mesh(config.mesh, devices)
        with activation_sharding(mesh, config.mesh.axis_rules):
            resolved = resolve_backend(backend, jax.numpy.dtype(config.model.dtype))
        spec = TrainSpec.create(config, mesh)
        run, first_loss = jax_step_runner(spec, spec.init_state(config.seed), multimodal_batch(config, args.batch))
        runners[backend] = run
        rows.append({"attention": backend, "resolved": resolved, "first_loss": round(first_loss, 5)})
    timing = timed_alternately(runners, args.steps, args.warmup)

    flops = flops_per_step(config)
    tokens = args.batch * decoder_sequence_length(config)
    peak, peak_source = chip_peak(devices[0], config.model.dtype)
    for r in rows:
        t = timing[r["attention"]]
        r.update(step_s=round(t["median_s"], 4), times_s=t["times_s"], tokens_per_s=round(tokens / t["median_s"], 1),
                 mfu=round(flops / t["median_s"] / (len(devices) * peak), 4))
    result = {"benchmark": "accelerator_mfu", "config": args.config, "overrides": parse_sets(args.set),
              "device_kind": devices[0].device_kind, "platform": devices[0].platform, "devices": len(devices),
              "dtype": config.model.dtype, "batch": args.batch, "decoder_tokens_per_step": tokens,
              "params": param_counts(config)["total"], "model_flops_per_step": flops, "peak_per_chip": peak,
              "peak_source": peak_source, "rows": rows}
    print(json.dumps(result, indent=1))
    print(f"\n`{args.config}` ({result['params'] / 1e6:.1f}M parameters) on {len(devices)} x {devices[0].device_kind}, "
          f"{config.model.dtype}, batch {args.batch}, {tokens} decoder tokens/step; peak {peak / 1e12:.3g} TFLOP/s "
          f"per chip ({peak_source})\n")
    print(markdown_table(["attention", "resolved", "step s (median)", "tokens/s", "MFU", "first loss"],
                         [[r["attention"], r["resolved"], r["step_s"], r["tokens_per_s"], f"{100 * r['mfu']:.2f}%",
                           r["first_loss"]] for r in rows]))
    return result


if __name__ == "__main__":
    main()
