"""The `caption` benchmark: generate one caption per video, score BLEU-4 / ROUGE-L / CIDEr-D
(optionally METEOR) against all its references."""
from __future__ import annotations

from data_pipelines.text import prompts
from pegasus_jax.evaluate.caption_data import CaptionItem
from pegasus_jax.evaluate.caption_metrics import caption_scores
from pegasus_jax.evaluate.predictions import Prompt

DEFAULT_CAPTION_PROMPT = prompts.DESCRIBE  # the prompt captions are trained with


def run_caption(items: list[CaptionItem], predict, prompt: str = DEFAULT_CAPTION_PROMPT,
                meteor: bool = False) -> tuple[dict, list[dict]]:
    predictions = predict([Prompt(item.id, item.video, prompt) for item in items])
    texts = [predictions[item.id] for item in items]
    scores = caption_scores([item.references for item in items], texts, meteor=meteor)
    rows = [{"id": item.id, "prediction": text, "references": item.references, **row}
            for item, text, row in zip(items, texts, scores["per_item"])]
    return {**scores["aggregate"], "items": len(items)}, rows
