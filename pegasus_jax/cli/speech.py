"""Where a video's timed speech comes from at inference: `--transcript FILE|DIR` (generate, gist, summarize),
`--transcripts DIR` (eval) or `--asr-model DIR` (a local Whisper folder). Files are checked before the model
loads: a file that does not parse, a cue that ends before it starts, a single video's cue past its end, a
checkpoint without a transcript stream and a folder that is not Whisper are each one `error:` line."""
from __future__ import annotations

import os

from data_pipelines.text.transcript_files import FORMATS, check_against_duration, read_transcript
from pegasus_jax.errors import UserError

FOLDER_HELP = ("a folder of per-video transcripts named after the video: <video stem>.srt, .vtt or .json (a list of "
               "{start, end, text} in seconds); a video without one gets no transcript")
ASR_HELP = ("transcribe each video's speech with this local Whisper folder (transformers "
            "WhisperForConditionalGeneration + WhisperProcessor), one entry per segment window")


def add_transcript_flags(p, per_video_folder: bool) -> None:
    group = p.add_mutually_exclusive_group()
    if per_video_folder:
        group.add_argument("--transcripts", metavar="DIR", help=FOLDER_HELP)
    else:
        group.add_argument("--transcript", metavar="FILE|DIR",
                           help="the video's timed speech, fed to the model's transcript stream: .srt, .vtt or .json "
                                "(a list of {start, end, text} in seconds); for a folder or list of videos, "
                                + FOLDER_HELP)
    group.add_argument("--asr-model", metavar="DIR", help=ASR_HELP)


class TranscriptSource:
    """The transcript of each video: from one file, a folder of files by video stem, or Whisper."""

    def __init__(self, spec: str | None, asr_model: str | None, flag: str):
        self.flag, self.asr_model, self._asr = flag, asr_model, None
        self._transcribed: dict[tuple[str, int], list[dict]] = {}  # each video transcribed once per segment plan
        self.file, self.by_stem = None, {}
        if spec and os.path.isdir(spec):
            for name in sorted(os.listdir(spec)):
                stem, ext = os.path.splitext(name)
                if ext.lower() in FORMATS:
                    if stem in self.by_stem:
                        raise UserError(f"{flag}: two transcripts for {stem!r} in {spec}")
                    self.by_stem[stem] = read_transcript(os.path.join(spec, name))
            if not self.by_stem:
                raise UserError(f"{flag}: no .srt, .vtt or .json transcript in {spec}")
        elif spec:
            self.file = read_transcript(spec)
            self.name = spec
        if asr_model:
            from pegasus_jax.infer.asr import check_whisper_folder

            check_whisper_folder(asr_model)

    @classmethod
    def from_args(cls, args) -> "TranscriptSource | None":
        flag = "--transcripts" if hasattr(args, "transcripts") else "--transcript"
        spec = getattr(args, flag[2:])
        if not spec and not args.asr_model:
            return None
        return cls(spec, args.asr_model, flag)

    @property
    def single_file(self) -> bool:
        return self.file is not None

    def check_model(self, config, checkpoint: str) -> None:
        """The checkpoint's model (`config`, from its metadata) reads transcripts."""
        if config.model.transcript_tokens == 0:
            flag = "--asr-model" if self.asr_model else self.flag
            raise UserError(f"{flag}: the model in {checkpoint} has no transcript stream (model.transcript_tokens = 0)")

    def check_video(self, duration: float) -> None:
        """A single file against its single video."""
        if self.file is not None:
            check_against_duration(self.file, duration, self.name)

    def for_video(self, path: str, config) -> list[dict] | None:
        if self.file is not None:
            return self.file
        if self.by_stem:
            return self.by_stem.get(os.path.splitext(os.path.basename(path))[0])
        if self._asr is None:
            from pegasus_jax.infer.asr import WhisperTranscriber

            self._asr = WhisperTranscriber(self.asr_model)
        key = (path, config.data.max_segments)  # QA files ask several questions of one video
        if key not in self._transcribed:
            self._transcribed[key] = self._asr.transcribe_segments(path, config)
        return self._transcribed[key]
