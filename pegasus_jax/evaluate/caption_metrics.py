"""Corpus-level caption metrics (BLEU-4, ROUGE-L, CIDEr-D, optional METEOR) via pycocoevalcap's scorers.

coco-caption tokenizes with Stanford's PTBTokenizer, which needs Java. We use a documented pure-Python
tokenizer instead (lowercase, punctuation removed, whitespace split), so scores can differ slightly from
PTB-tokenized numbers on text with contractions or hyphens, but runs need no JVM.
"""
from __future__ import annotations

import re
import string

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def tokenize_caption(text: str) -> str:
    """Lowercase, replace every ASCII punctuation character by a space, collapse whitespace."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def caption_scores(references: list[list[str]], predictions: list[str], meteor: bool = False) -> dict:
    """Corpus scores of `predictions[i]` against `references[i]` (one or more each).

    Returns {"aggregate": {"bleu4", "rouge_l", "cider"[, "meteor"]}, "per_item": [{...}, ...]}.
    BLEU-4 is corpus BLEU (counts pooled, closest reference length); ROUGE-L, CIDEr-D and METEOR
    are means of per-item scores, as coco-caption reports them.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} reference lists for {len(predictions)} predictions")
    if not predictions:
        raise ValueError("no items to score")
    gts = {i: [tokenize_caption(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [tokenize_caption(p)] for i, p in enumerate(predictions)}
    for i, refs in gts.items():
        if not refs:
            raise ValueError(f"item {i} has no reference caption")

    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_items = Rouge().compute_score(gts, res)
    cider, cider_items = Cider().compute_score(gts, res)
    aggregate = {"bleu4": float(bleu[3]), "rouge_l": float(rouge), "cider": float(cider)}
    per_item = [{"bleu4": float(bleu_items[3][i]), "rouge_l": float(rouge_items[i]), "cider": float(cider_items[i])}
                for i in range(len(predictions))]
    if meteor:
        from pegasus_jax.evaluate.meteor import meteor_score

        aggregate["meteor"], meteor_items = meteor_score(gts, res)
        for row, value in zip(per_item, meteor_items):
            row["meteor"] = value
    return {"aggregate": aggregate, "per_item": per_item}
