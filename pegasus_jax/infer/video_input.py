"""A video file -> the model's video-token prefix, one segment at a time.

Long videos stream: each segment is decoded (sparse seeks, only its frames and its audio), encoded
and pooled, and only the pooled tokens are kept, so host and device memory stay bounded by one
segment plus the pooled sequence, whatever the duration. Segments are planned and pooled as training
plans them (`plan_segments`): up to data.max_segments consecutive segments, or that many equal windows
over a longer video, pooled to fit the visual-token budget at that count.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data_pipelines.decode import video as video_io
from data_pipelines.decode.example import transcript_arrays
from data_pipelines.contract import dims, example_spec
from pegasus_jax.errors import UserError
from pegasus_jax.models.alignment import pool_shape, tokens_per_segment


@dataclasses.dataclass
class VideoPrefix:
    embeddings: jax.Array  # (1, P, W_dec)
    mask: jax.Array  # (1, P) bool
    duration: float
    segment_starts: list[float]


def check_video(video: video_io.Media) -> video_io.VideoInfo:
    """Stream info of a video file (path) or in-memory video; every way it can fail to be a usable
    video is a one-line UserError naming it."""
    name = video if isinstance(video, str) else "<bytes>"
    if isinstance(video, str) and not os.path.isfile(video):
        raise UserError(f"--video: no such file {video}")
    try:
        info = video_io.probe(video)
    except video_io.DecodeError as e:
        raise UserError(f"--video: {name} is not a readable video ({e.kind})") from None
    if not info.has_video:
        raise UserError(f"--video: {name} has no video stream")
    if not info.duration or info.duration <= 0:
        raise UserError(f"--video: {name} has zero duration")
    return info


def plan_segments(config, duration: float) -> tuple[list[video_io.Segment], tuple[int, int, int]]:
    """The segments and pooling of a whole video, as training builds them: the data pipeline's
    `segment_plan` with data.max_segments (consecutive segments, or that many equal windows over a longer
    video), pooled at `pool_shape` of data.max_segments, the padded count every training batch has."""
    a, segments = config.model.align, config.data.max_segments
    plan = video_io.segment_plan(duration, a.segment_seconds, a.frames_per_segment, segments)
    return plan, pool_shape(config.model, segments)


def check_num_segments(config, num_segments: int) -> None:
    """A UserError unless `num_segments` segments fit the model's visual-token budget (pooled down to
    one visual token each at most)."""
    m = config.model
    per_segment = tokens_per_segment((1, 1, 1), m.align.audio_tokens if m.audio.enabled else 0, m.transcript_tokens)
    most = m.align.visual_token_budget // per_segment
    if not 1 <= num_segments <= most:
        raise UserError(f"--num-segments {num_segments}: must be between 1 and {most} for this model "
                        f"(align.visual_token_budget={m.align.visual_token_budget}, {per_segment} tokens per "
                        f"segment at least)")


def segment_transcript(config, tokenizer, transcript: list[dict], segment: video_io.Segment) -> dict:
    """The segment's transcript tokens and mask, (1, 1, R): the speech overlapping [start, end), placed by the
    training pipeline's own `transcript_arrays`."""
    one = {"segment_mask": np.ones(1, bool), "segment_start": np.asarray([segment.start], np.float32),
           "segment_end": np.asarray([segment.end], np.float32)}
    return {k: v[None] for k, v in transcript_arrays(tokenizer, transcript, one, dims(config)["R"]).items()}


def require_transcript_stream(config, transcript) -> None:
    if transcript and config.model.transcript_tokens == 0:
        raise UserError("--transcript: this model has no transcript stream (model.transcript_tokens = 0)")


def segment_batch(config, data: video_io.Media, segment: video_io.Segment, has_audio: bool,
                  transcript: list[dict] | None = None, tokenizer=None) -> dict:
    """A one-example, one-segment batch: the segment's frames and the first segment_seconds of its audio,
    the arrays the training pipeline (data_pipelines/decode/media.py) builds for it, and the timed
    `transcript`'s tokens for the segment (`tokenizer` encodes them)."""
    spec = example_spec(config)
    v = config.model.vision
    frames, _ = video_io.sample_frames(data, segment.timestamps, v.image_size, resize=v.frame_resize)
    batch = {k: np.zeros((1, 1) + shape[1:], dtype) for k, (shape, dtype) in spec.items() if k not in
             ("tokens", "targets", "loss_mask", "text_mask")}
    batch["frames"][0, 0] = frames
    batch["segment_mask"][:] = True
    batch["segment_start"][:] = segment.start
    if has_audio and config.model.audio.enabled:
        end = segment.start + config.model.align.segment_seconds
        wave = video_io.decode_audio(data, config.data.sample_rate, segment.start, end)
        n = min(len(wave), batch["audio"].shape[-1])
        batch["audio"][0, 0, :n] = wave[:n]
        batch["audio_mask"][:] = n > 0
    if transcript:
        batch.update(segment_transcript(config, tokenizer, transcript, segment))
    return batch


def whole_video_batch(config, data: video_io.Media, prompt_ids: list[int], transcript: list[dict] | None = None,
                      tokenizer=None) -> dict:
    """One example with every planned segment of the video and `prompt_ids` as its text: the input of a
    single full forward pass (what an exported model is checked on). Only for videos whose segments fit
    the configured pooling target, where this pass and segment-wise encoding agree."""
    info = check_video(data)
    plan, pool = plan_segments(config, info.duration)
    if pool_shape(config.model, len(plan)) != pool:
        raise UserError(f"--video: its {len(plan)} segments pool to {pool_shape(config.model, len(plan))} in one "
                        f"forward, not to {pool} as data.max_segments={config.data.max_segments} are")
    require_transcript_stream(config, transcript)
    segments = [segment_batch(config, data, segment, info.has_audio, transcript, tokenizer) for segment in plan]
    batch = {k: np.concatenate([s[k] for s in segments], axis=1) for k in segments[0]}
    batch["tokens"] = np.asarray([prompt_ids], np.int32)
    batch["text_mask"] = np.ones_like(batch["tokens"], bool)
    return batch


class SegmentEncoder:
    """Jitted one-segment prefix encoder (compiled once per pooling target).

    Ablations: `use_audio=False` encodes every segment as if the video had no audio track;
    `still=True` shows every frame of every segment as the video's middle frame (no motion; the middle,
    because an object's position there is the same whichever way it moves, where the first frame's
    position already hints at where it is going).
    """

    def __init__(self, model, config, use_audio: bool = True, still: bool = False, tokenizer=None):
        """`config`: the whole config (segment layout and sample rate; the model holds config.model only);
        `tokenizer`: the checkpoint's, for timed transcripts."""
        self.graphdef, self.state = nnx.split(model)
        self.config, self.tokenizer = config, tokenizer
        self.use_audio = use_audio
        self.still = still

    @functools.partial(jax.jit, static_argnums=(0, 3))
    def _encode(self, state, batch, pool):
        return nnx.merge(self.graphdef, state).prefix(batch, pool)

    def encode_file(self, path: str, transcript: list[dict] | None = None) -> VideoPrefix:
        """A video file, read from disk as each segment needs it (never whole), with its timed `transcript`
        ([{"start", "end", "text"}] in seconds, as records hold it) in each segment's transcript slots."""
        return self._encode_media(path, transcript)

    def encode_bytes(self, data: bytes, transcript: list[dict] | None = None) -> VideoPrefix:
        return self._encode_media(data, transcript)

    def _encode_media(self, data: video_io.Media, transcript: list[dict] | None) -> VideoPrefix:
        require_transcript_stream(self.config, transcript)
        info = check_video(data)
        plan, pool = plan_segments(self.config, info.duration)
        parts, masks = [], []
        has_audio = info.has_audio and self.use_audio
        if self.still:
            v = self.config.model.vision
            still_frame = video_io.sample_frames(data, [info.duration / 2], v.image_size, resize=v.frame_resize)[0][0]
        for segment in plan:
            try:
                batch = segment_batch(self.config, data, segment, has_audio, transcript, self.tokenizer)
            except video_io.DecodeError as e:  # the header was fine but the stream is not, e.g. cut short
                name = data if isinstance(data, str) else "<bytes>"
                raise UserError(f"--video: {name} fails to decode at {segment.start:.1f}s ({e})") from None
            if self.still:
                batch["frames"][0, 0] = still_frame
            emb, mask = self._encode(self.state, batch, pool)
            parts.append(emb)
            masks.append(mask)
        return VideoPrefix(jnp.concatenate(parts, axis=1), jnp.concatenate(masks, axis=1), info.duration,
                           [segment.start for segment in plan])
