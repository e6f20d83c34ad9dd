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


class ScoredOnMain(Exception):
    """This process's predictions went to process 0, which scores and writes the report."""


class ModelPredictor:
    """Batched generation. A prompt whose input fails (a UserError: unreadable video, ...) gets the empty
    prediction and its message in `errors`; the others go on.

    In a multi-process job each process is one data-parallel group (a whole replica on its own
    devices): it generates for every process_count-th prompt, and process 0 gets every prediction in
    input order (the others raise ScoredOnMain once their share is sent: they take no part in scoring).
    """

    def __init__(self, model, batch_size: int = 8, sampling: dict | None = None, transcript=None):
        """`sampling`: SamplingParams fields for every generation (default: greedy, 96 new tokens);
        `transcript`: video path -> its timed transcript or None (default: none)."""
        self.model, self.batch_size, self.sampling = model, batch_size, sampling or {}
        self.transcript = transcript or (lambda video: None)
        self.errors: dict[str, str] = {}

    def __call__(self, prompts: list[Prompt]) -> dict[str, str]:
        import jax

        from pegasus_jax.train.distributed import gather_json

        local = self._predict(prompts[jax.process_index()::jax.process_count()])
        shares = gather_json(local)
        if shares is None:
            raise ScoredOnMain
        out = {}
        for share in shares:
            for pid, text, error in share:
                out[pid] = text
                if error is not None:
                    self.errors[pid] = error
        return {p.id: out[p.id] for p in prompts}

    def _predict(self, prompts: list[Prompt]) -> list[tuple[str, str, str | None]]:
        """(id, prediction, error or None) per prompt."""
        rows = []
        progress = Counter("eval generate", len(prompts), "videos")
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            try:
                texts = self.model.generate_batch([(p.video, p.text) for p in chunk], **self.sampling,
                                                  **self._transcripts(chunk))
                rows += [(p.id, t, None) for p, t in zip(chunk, texts)]
            except UserError:  # one bad input fails its batch: the prompts one by one find which
                rows += [self._one(p) for p in chunk]
            progress.update(len(chunk))
        return rows

    def _transcripts(self, chunk: list[Prompt]) -> dict:
        """generate_batch's `transcripts` where any prompt has one (models without the keyword still work)."""
        transcripts = [self.transcript(p.video) for p in chunk]
        return {"transcripts": transcripts} if any(t is not None for t in transcripts) else {}

    def _one(self, p: Prompt) -> tuple[str, str, str | None]:
        try:
            return p.id, self.model.generate_batch([(p.video, p.text)], **self.sampling, **self._transcripts([p]))[0], None
        except UserError as e:
            return p.id, "", str(e)


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
