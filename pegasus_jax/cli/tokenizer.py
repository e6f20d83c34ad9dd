"""`pegasus-jax tokenizer train`: a SentencePiece tokenizer with the model's special tokens."""
from __future__ import annotations

import os


def register(subparsers) -> None:
    p = subparsers.add_parser("tokenizer", help="train a SentencePiece tokenizer")
    sub = p.add_subparsers(dest="tokenizer_command", required=True, parser_class=type(p))
    t = sub.add_parser("train", help="train on a text file (one sentence a line) or on record shards' texts")
    t.add_argument("--input", required=True, help="a .txt file, or a records directory/glob (*.array_record)")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--out", required=True, help="output prefix: writes PREFIX.model and PREFIX.vocab")
    t.add_argument("--model-type", default="unigram", choices=("unigram", "bpe"))
    t.set_defaults(func=run_train)


def run_train(args) -> int:
    from data_pipelines.records.tokenizer_corpus import record_texts
    from data_pipelines.text import tokenizer

    is_shard = ".array_record" in os.path.basename(args.input)  # ours (x.array_record) and TFDS's (x.array_record-0-of-N)
    if os.path.isfile(args.input) and not is_shard:
        texts = args.input
    else:
        texts = record_texts(args.input)
    path = tokenizer.train(texts, args.vocab_size, args.out, args.model_type)
    tok = tokenizer.load_tokenizer(path)
    print(f"wrote {path}: {tok.vocab_size} ids ({len(tokenizer.SPECIALS)} special)")
    return 0
