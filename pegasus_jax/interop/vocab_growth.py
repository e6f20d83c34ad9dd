"""An imported LLM's vocabulary grown by the special tokens our tokenizer appends.

A real checkpoint's embedding has exactly as many rows as its tokenizer has ids (Llama 2: 32,000 and
32,000). Our tokenizer gives each special the LLM's own token where it has one (bos, eos), else a
reserved token (Llama 3's `<|reserved_special_token_N|>`: no growth), else a new id above the
vocabulary; each new id gets a new row in the embedding (and in an untied lm_head), initialised as
LLaVA-family code does (`smart_tokenizer_and_embedding_resize`): the mean of the existing rows, so
the model's outputs on the original ids are unchanged.
"""
from __future__ import annotations

import numpy as np

from pegasus_jax.errors import UserError


def grown_vocab_size(checkpoint_rows: int, tokenizer, flag: str = "--llm") -> int:
    """The decoder's vocab_size after the import: the checkpoint's rows, plus the tokenizer's appended ids
    beyond them."""
    if checkpoint_rows < tokenizer.base_size:
        raise UserError(f"{flag}: config.json's vocab_size {checkpoint_rows} is smaller than its tokenizer's "
                        f"{tokenizer.base_size} tokens")
    return max(checkpoint_rows, tokenizer.vocab_size)


def grow_decoder_vocab(nested: dict, vocab_size: int) -> int:
    """Append rows (the mean of the existing ones) to the embedding and an untied lm_head (in place)
    up to `vocab_size`; returns the number of rows added."""
    embed = nested["embed_tokens"]
    added = vocab_size - embed.shape[0]
    if added <= 0:
        return 0
    nested["embed_tokens"] = np.concatenate([embed, np.repeat(embed.mean(0, keepdims=True), added, 0)])
    if "lm_head" in nested:
        kernel = nested["lm_head"]["kernel"]  # (width, vocab)
        nested["lm_head"]["kernel"] = np.concatenate([kernel, np.repeat(kernel.mean(1, keepdims=True), added, 1)], 1)
    return added
