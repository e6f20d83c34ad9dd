"""A video file -> the model's video-token prefix, one segment at a time.

Long videos stream: each segment is decoded (sparse seeks, only its frames and its audio), encoded
and pooled, and only the pooled tokens are kept, so host and device memory stay bounded by one
segment plus the pooled sequence, whatever the duration. The visual-token budget decides how many
segments are encoded (spread uniformly over the video when the budget cannot hold all of them) and
how hard each is pooled.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data_pipelines.decode import video as video_io
from data_pipelines.contract import example_spec
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


def plan_segments(config, duration: float) -> tuple[list[float], tuple[int, int, int]]:
    """Segment start times and the pooling target for a whole video within the token budget."""
    seg = config.model.align.segment_seconds
    wanted = max(1, math.ceil(duration / seg))
    audio = config.model.align.audio_tokens if config.model.audio.enabled else 0
    smallest = tokens_per_segment((1, 1, 1), audio, config.model.transcript_tokens)
    count = min(wanted, config.model.align.visual_token_budget // smallest)
    if count < wanted:  # spread the segments we can afford over the whole video
        starts = [i * (duration - seg) / max(count - 1, 1) for i in range(count)]
    else:
        starts = [i * seg for i in range(count)]
    return starts, pool_shape(config.model, count)


def segment_batch(config, data: video_io.Media, start: float, has_audio: bool) -> dict:
    """A one-example, one-segment batch (frames + audio of [start, start + segment_seconds))."""
    spec = example_spec(config)
    seg = config.model.align.segment_seconds
    f = config.model.align.frames_per_segment
    times = [start + (i + 0.5) * seg / f for i in range(f)]
    v = config.model.vision
    frames, _ = video_io.sample_frames(data, times, v.image_size, resize=v.frame_resize)
    batch = {k: np.zeros((1, 1) + shape[1:], dtype) for k, (shape, dtype) in spec.items() if k not in
             ("tokens", "targets", "loss_mask", "text_mask")}
    batch["frames"][0, 0] = frames
    batch["segment_mask"][:] = True
    batch["segment_start"][:] = start
    if has_audio and config.model.audio.enabled:
        wave = video_io.decode_audio(data, config.data.sample_rate, start, start + seg)
        n = min(len(wave), batch["audio"].shape[-1])
        batch["audio"][0, 0, :n] = wave[:n]
        batch["audio_mask"][:] = n > 0
    return batch


def whole_video_batch(config, data: video_io.Media, prompt_ids: list[int]) -> dict:
    """One example with every planned segment of the video and `prompt_ids` as its text: the input of a
    single full forward pass (what an exported model is checked on). Only for videos whose segments fit
    the configured pooling target, where this pass and segment-wise encoding agree."""
    info = check_video(data)
    starts, pool = plan_segments(config, info.duration)
    a = config.model.align
    if pool != (a.pool_t, a.pool_h, a.pool_w):
        raise UserError(f"--video: {info.duration:.0f} s needs pooling {pool} to fit the token budget; a whole-video "
                        f"forward pools to the configured ({a.pool_t}, {a.pool_h}, {a.pool_w})")
    segments = [segment_batch(config, data, start, info.has_audio) for start in starts]
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

    def __init__(self, model, config, use_audio: bool = True, still: bool = False):
        """`config`: the whole config (segment layout and sample rate; the model holds config.model only)."""
        self.graphdef, self.state = nnx.split(model)
        self.config = config
        self.use_audio = use_audio
        self.still = still

    @functools.partial(jax.jit, static_argnums=(0, 3))
    def _encode(self, state, batch, pool):
        return nnx.merge(self.graphdef, state).prefix(batch, pool)

    def encode_file(self, path: str) -> VideoPrefix:
        """A video file, read from disk as each segment needs it (never whole)."""
        return self._encode_media(path)

    def encode_bytes(self, data: bytes) -> VideoPrefix:
        return self._encode_media(data)

    def _encode_media(self, data: video_io.Media) -> VideoPrefix:
        info = check_video(data)
        starts, pool = plan_segments(self.config, info.duration)
        parts, masks = [], []
        has_audio = info.has_audio and self.use_audio
        if self.still:
            v = self.config.model.vision
            still_frame = video_io.sample_frames(data, [info.duration / 2], v.image_size, resize=v.frame_resize)[0][0]
        for start in starts:
            try:
                batch = segment_batch(self.config, data, start, has_audio)
            except video_io.DecodeError as e:  # the header was fine but the stream is not, e.g. cut short
                name = data if isinstance(data, str) else "<bytes>"
                raise UserError(f"--video: {name} fails to decode at {start:.1f}s ({e})") from None
            if self.still:
                batch["frames"][0, 0] = still_frame
            emb, mask = self._encode(self.state, batch, pool)
            parts.append(emb)
            masks.append(mask)
        return VideoPrefix(jnp.concatenate(parts, axis=1), jnp.concatenate(masks, axis=1), info.duration, starts)
