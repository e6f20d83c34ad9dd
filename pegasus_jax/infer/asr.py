"""Speech recognition for inference: a local Whisper folder, run with transformers, gives a video's timed transcript.

`--asr-model DIR` (generate, gist, summarize, eval) transcribes each planned segment's window on its own, one
entry {start, end, text} per window, because the transcript stream is per segment anyway: an entry spanning
exactly its segment's window lands in that segment and no other (`transcript_arrays` places an item in every
segment it overlaps, so Whisper's own timestamped phrases, which cross segment boundaries, would be placed
twice), and every segment gets the speech heard during it. Windows longer than Whisper's 30 s input are split
into 30 s pieces. The asr-llm baseline transcribes the whole audio in consecutive 30 s windows (`windows`).
Silent windows (or a video without audio) give no entry. Decoding is greedy, without timestamps, in the
language the checkpoint's generation config sets (a multilingual Whisper detects it).
"""
from __future__ import annotations

import json
import os

import numpy as np

from data_pipelines.decode import video as video_io
from pegasus_jax.errors import UserError

SAMPLE_RATE = 16000
WHISPER_SECONDS = 30.0
SILENCE_RMS = 1e-4  # digital silence (and a missing track): nothing to transcribe


def check_whisper_folder(folder: str) -> None:
    """A folder transformers loads as a Whisper model with its processor, or a one-line UserError."""
    config = os.path.join(folder, "config.json")
    if not os.path.isdir(folder) or not os.path.isfile(config):
        raise UserError(f"--asr-model: {folder} is not a model folder (no config.json)")
    try:
        with open(config) as f:
            model_type = json.load(f).get("model_type")
    except ValueError:
        raise UserError(f"--asr-model: {config} is not JSON") from None
    if model_type != "whisper":
        raise UserError(f"--asr-model: {folder} is a {model_type!r} model, not Whisper")
    if not any(os.path.isfile(os.path.join(folder, name)) for name in ("tokenizer.json", "vocab.json")):
        raise UserError(f"--asr-model: {folder} has no tokenizer (save the WhisperProcessor with the model)")


def windows(start: float, end: float, seconds: float = WHISPER_SECONDS) -> list[tuple[float, float]]:
    """[start, end) cut into consecutive pieces of at most `seconds`."""
    edges = list(np.arange(start, end, seconds)) + [end]
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class WhisperTranscriber:
    def __init__(self, folder: str, max_new_tokens: int | None = None):
        """`max_new_tokens`: per 30 s window; default (and at most) what the decoder's positions hold after
        Whisper's up to 4 start tokens (444 for the released models)."""
        import torch
        import transformers

        check_whisper_folder(folder)
        self.torch = torch
        self.processor = transformers.WhisperProcessor.from_pretrained(folder)
        self.model = transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval()
        room = self.model.config.max_target_positions - 4
        self.max_new_tokens = min(max_new_tokens or room, room)
        self.folder = folder

    def transcribe_windows(self, video: video_io.Media, spans: list[tuple[float, float]]) -> list[dict]:
        """One {start, end, text} per span (cut to 30 s pieces) whose audio is not silent and whose text is not
        empty, in time order."""
        pieces, waves = [], []
        if not video_io.probe(video).has_audio:
            return []
        for start, end in spans:
            for a, b in windows(start, end):
                wave = video_io.decode_audio(video, SAMPLE_RATE, a, b)
                if wave.size and float(np.sqrt(np.mean(np.square(wave)))) > SILENCE_RMS:
                    pieces.append((a, b))
                    waves.append(wave.astype(np.float32))
        if not waves:
            return []
        features = self.processor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with self.torch.no_grad():
            ids = self.model.generate(features, max_new_tokens=self.max_new_tokens, do_sample=False)
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [{"start": a, "end": b, "text": " ".join(t.split())} for (a, b), t in zip(pieces, texts) if t.strip()]

    def transcribe_segments(self, video: video_io.Media, config) -> list[dict]:
        """The transcript of the segments the model sees (`plan_segments`), one entry per segment window."""
        from pegasus_jax.infer.video_input import check_video, plan_segments

        plan, _ = plan_segments(config, check_video(video).duration)
        return self.transcribe_windows(video, [(s.start, s.end) for s in plan])

    def transcribe_all(self, video: video_io.Media) -> list[dict]:
        """The whole audio track in consecutive 30 s windows (the asr-llm baseline's transcript)."""
        from pegasus_jax.infer.video_input import check_video

        return self.transcribe_windows(video, [(0.0, check_video(video).duration)])
