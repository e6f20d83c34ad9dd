"""Where the texts under evaluation come from: the model (batched generation) or a JSONL file of
earlier predictions ({"id", "prediction"} per line), which lets a judge re-score without a model."""
from __future__ import annotations

import dataclasses

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.data_files import read_jsonl
from pegasus_jax.progress import Counter


@dataclasses.dataclass(frozen=True)
class Prompt:
    id: str
    video: str
    text: str


class ModelPredictor:
    def __init__(self, model, batch_size: int = 8):
        self.model, self.batch_size = model, batch_size

    def __call__(self, prompts: list[Prompt]) -> dict[str, str]:
        out = {}
        progress = Counter("eval generate", len(prompts), "videos")
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            texts = self.model.generate_batch([(p.video, p.text) for p in chunk])
            out.update({p.id: t for p, t in zip(chunk, texts)})
            progress.update(len(chunk))
        return out


class FilePredictor:
    def __init__(self, path: str):
        self.path = path
        self.by_id = {}
        for number, row in enumerate(read_jsonl(path), 1):
            if not isinstance(row.get("id"), str) or not isinstance(row.get("prediction"), str):
                raise UserError(f"{path}:{number}: needs string fields 'id' and 'prediction'")
            self.by_id[row["id"]] = row["prediction"]

    def __call__(self, prompts: list[Prompt]) -> dict[str, str]:
        missing = [p.id for p in prompts if p.id not in self.by_id]
        if missing:
            raise UserError(f"{self.path}: no prediction for id {missing[0]!r} ({len(missing)} missing)")
        return {p.id: self.by_id[p.id] for p in prompts}
