"""The seeds' "Whisper + ChatGPT-3.5" baseline (`eval --baseline asr-llm`): each video's speech, transcribed by a
local Whisper folder (infer/asr.py, the whole audio in 30 s windows), is given as text with the benchmark's
prompt to any OpenAI-compatible text LLM, through the judge's client, retries and answer cache; the answers are
the predictions, scored by the benchmark's own code. The LLM never sees the frames: what it gets right, speech
alone gives."""
from __future__ import annotations

import json
import os

from pegasus_jax.errors import UserError
from pegasus_jax.evaluate.judge_session import JudgeSession
from pegasus_jax.evaluate.predictions import Prompt

SYSTEM = ("You answer questions about a video you cannot see. You are given the transcript of its speech, "
          "made by automatic speech recognition. Answer as if you had watched the video.")
NO_SPEECH = "(no speech was recognised)"


def baseline_messages(transcript: list[dict], prompt: str) -> list[dict]:
    speech = "\n".join(f"[{item['start']:.1f}-{item['end']:.1f} s] {item['text']}" for item in transcript) or NO_SPEECH
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Transcript of the video's speech:\n{speech}\n\n{prompt}"}]


def _answer(reply: str) -> str:
    text = reply.strip()
    if not text:
        raise ValueError("empty answer")
    return text


class AsrLlmPredictor:
    """Predictions for `run_benchmark`: transcript (once per video) -> LLM answer per prompt. A prompt whose
    LLM request fails every attempt gets the empty prediction and its message in `errors`; `written` is the
    JSONL of {id, prediction} (reusable with `eval --predictions`)."""

    def __init__(self, transcriber, session: JudgeSession, out_dir: str):
        self.transcriber, self.session = transcriber, session
        self.errors: dict[str, str] = {}
        self.written = os.path.join(out_dir, "asr_llm_predictions.jsonl")
        self.transcripts: dict[str, list[dict]] = {}

    def __call__(self, prompts: list[Prompt]) -> dict[str, str]:
        for p in prompts:
            if p.video not in self.transcripts:
                try:
                    self.transcripts[p.video] = self.transcriber.transcribe_all(p.video)
                except UserError as e:  # an unreadable video fails its prompts, the others go on
                    self.transcripts[p.video] = str(e)
        heard = [p for p in prompts if isinstance(self.transcripts[p.video], list)]
        answers = self.session.map(
            lambda p: self.session.ask(baseline_messages(self.transcripts[p.video], p.text), _answer), heard)
        out = {p.id: "" for p in prompts}
        for p in prompts:
            if not isinstance(self.transcripts[p.video], list):
                self.errors[p.id] = self.transcripts[p.video]
        for p, answer in zip(heard, answers):
            out[p.id] = answer.value if answer.ok else ""
            if not answer.ok:
                self.errors[p.id] = f"baseline LLM: {answer.error}"
        os.makedirs(os.path.dirname(os.path.abspath(self.written)), exist_ok=True)
        with open(self.written, "w", encoding="utf-8") as f:
            for p in prompts:
                f.write(json.dumps({"id": p.id, "prediction": out[p.id]}, ensure_ascii=False) + "\n")
        return out
