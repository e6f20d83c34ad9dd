"""`pegasus-jax export --checkpoint DIR --out DIR [--dtype bf16|fp32] [--merge-lora [--lora-alpha A]]`."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to Hugging Face / PyTorch folders (OUT/llm, OUT/full)")
    p.add_argument("--checkpoint", required=True, help="a training workdir (its latest checkpoint) or one step's folder")
    p.add_argument("--out", required=True, help="writes OUT/llm (plain Llama) and OUT/full (whole model)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--merge-lora", action="store_true", help="fold LoRA adapters into the decoder's weights")
    p.add_argument("--lora-alpha", type=float, default=None,
                   help="alpha for the merge (default: the trained one; smaller blends toward the base, as PLLaVA)")
    p.add_argument("--max-shard-mb", type=float, default=2048, help="largest safetensors shard, MiB")
    p.set_defaults(func=run)


def run(args) -> int:
    from pegasus_jax.errors import UserError
    from pegasus_jax.interop.export import export

    if args.lora_alpha is not None and not args.merge_lora:
        raise UserError("--lora-alpha needs --merge-lora")
    if args.max_shard_mb <= 0:
        raise UserError(f"--max-shard-mb {args.max_shard_mb}: must be positive")
    result = export(args.checkpoint, args.out, dtype=args.dtype, merge_lora=args.merge_lora,
                    lora_alpha=args.lora_alpha, max_shard_bytes=int(args.max_shard_mb * 2 ** 20))
    print(f"exported step {result['step']}: {result['llm']} ({result['tensors']['llm']} tensors), "
          f"{result['full']} ({result['tensors']['full']} tensors)")
    return 0
