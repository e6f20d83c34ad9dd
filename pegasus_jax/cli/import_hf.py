"""`pegasus-jax import-hf --vision DIR --audio DIR --llm DIR --config CFG [--config.a.b=v ...] --out CKPT`,
or `--vlm DIR` (a LLaVA-NeXT-Video: vision tower, projector and LLM) in place of --vision and --llm."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("import-hf", help="new checkpoint from local Hugging Face folders (safetensors)")
    p.add_argument("--vision", help="CLIP or SigLIP (vision) model folder")
    p.add_argument("--audio", help="Whisper model folder (its encoder is used)")
    p.add_argument("--llm", help="Llama, Qwen2 or Mistral causal-LM folder with its tokenizer (SentencePiece "
                   "tokenizer.model or tokenizer.json); the vocabulary grows by the special tokens it lacks")
    p.add_argument("--vlm", help="LlavaNextVideoForConditionalGeneration folder (CLIP tower, projector, LLM) with its "
                   "tokenizer")
    p.add_argument("--full", help="a whole-model export (pegasus-jax export's OUT/full): config and tokenizer included")
    p.add_argument("--config", help="configs/<name>.py for the parts not imported (default: the base config; "
                                    "not used with --full)")
    p.add_argument("--out", required=True, help="workdir of the new checkpoint (OUT/checkpoints/0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pegasus_jax.interop.import_hf import import_hf

    print(import_hf(args.out, config_path=args.config, overrides=args.config_overrides, vision=args.vision,
                    audio=args.audio, llm=args.llm, full=args.full, vlm=args.vlm))
    return 0
