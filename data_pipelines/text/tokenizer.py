"""The tokenizer: one interface (special_tokens.Tokenizer), two back ends.

    load_tokenizer("tok.model")            SentencePiece (sentencepiece_tokenizer.py)
    load_tokenizer("Meta-Llama-3-8B/")     Hugging Face tokenizers, a tokenizer.json folder (hf_tokenizer.py)

The chat template that renders conversations with the special tokens: text/chat.py.
"""
from __future__ import annotations

import os

from data_pipelines.errors import UserError
from data_pipelines.text import hf_tokenizer, sentencepiece_tokenizer
from data_pipelines.text.special_tokens import MARKERS, SPECIALS, Tokenizer
from data_pipelines.text.sentencepiece_tokenizer import train

__all__ = ["MARKERS", "SPECIALS", "Tokenizer", "from_bytes", "load_tokenizer", "train"]
BACKENDS = {sentencepiece_tokenizer.FORMAT: sentencepiece_tokenizer.SentencePieceTokenizer,
            hf_tokenizer.FORMAT: hf_tokenizer.HFTokenizer}


def load_tokenizer(path) -> Tokenizer:
    """A SentencePiece `.model` file, a tokenizer.json file, or a folder holding either (tokenizer.model
    first: where a folder has both, e.g. Llama 2's, it is the original the json was converted from)."""
    from etils import epath

    p = epath.Path(path)
    if not p.exists():
        raise UserError(f"tokenizer: no such file {path}")
    if p.is_dir():
        if (p / "tokenizer.model").exists():
            return sentencepiece_tokenizer.SentencePieceTokenizer.load(p / "tokenizer.model")
        if (p / hf_tokenizer.TOKENIZER_JSON).exists():
            return hf_tokenizer.HFTokenizer.load(str(p))
        raise UserError(f"tokenizer: {path} has neither tokenizer.json nor tokenizer.model")
    if os.path.basename(str(p)).endswith(".json"):
        return hf_tokenizer.HFTokenizer.load(str(p))
    return sentencepiece_tokenizer.SentencePieceTokenizer.load(p)


def from_bytes(blob: bytes, format: str) -> Tokenizer:
    """The inverse of `Tokenizer.to_bytes` (checkpoint metadata)."""
    if format not in BACKENDS:
        raise UserError(f"tokenizer: unknown format {format!r} in the checkpoint (expected one of {sorted(BACKENDS)})")
    return BACKENDS[format](blob)
