"""The built-in corpus: procedurally generated clips whose every caption word can be checked.

Each clip shows ONE coloured shape moving in a direction over a varying dark background while a
tone of one pitch plays (and, where `espeak-ng` is on PATH, a voice says one word). Captions come
from a small grammar that contains the attribute words verbatim; QA turns ask for single
attributes with one-word answers. A quarter of the training clips are two-part (4 s: each 2 s part
has its own shape/colour/direction/pitch) with one timed `segments` entry per part (chapter and
highlight targets naming its colour, shape and direction, `chapter_text`); every clip's metadata "gist"
names its colours, shapes and directions (`gist`).
A tenth of the training clips are silent (no audio track; pitch None, captions name no tone), as
real corpora hold silent videos: a model trained on this corpus can describe a clip without sound.

The held-out split uses (colour, shape, direction, pitch) combinations never seen in train
(HELDOUT_COMBOS: a fixed arithmetic rule, independent of the seed, that still leaves every single
attribute value in train); held-out clips are single-part so a caption scores against one combo;
`make_clip(..., num_parts=2)` makes held-out two-part clips (both parts unseen combos) for scoring
chapter and highlight times.
Clip i of a split depends only on (seed, split, i), so output is identical for any worker count.

Layout written by `generate_corpus`: OUT/train/*.array_record, OUT/heldout/*.array_record, OUT/corpus.json.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import time

import numpy as np

from data_pipelines.sources.long_video import make_long_video  # noqa: F401  (part of this module's API)

ATTRIBUTES = {
    "colour": ("red", "green", "blue", "yellow"),
    "shape": ("circle", "square", "triangle", "cross"),
    "direction": ("left", "right", "up", "down"),
    "pitch": ("low", "mid", "high"),
    "word": ("apple", "river", "seven", "hello"),  # spoken only where espeak-ng exists
}
COMBO_KEYS = ("colour", "shape", "direction", "pitch")
COLOUR_RGB = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
PITCH_HZ = {"low": 220.0, "mid": 440.0, "high": 880.0}
DIRECTION_VECTOR = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy), y grows down
SPLITS = {"train": 0, "heldout": 1}

FPS = 8
PART_SECONDS = 2.0
SAMPLE_RATE = 16000
TWO_PART_FRACTION = 0.25
SILENT_FRACTION = 0.1
TRAVEL = 0.5  # of the frame's width or height, per part
CLIPS_PER_SHARD = 250

PHRASES = (
    "a {colour} {shape} moves {direction} while a {pitch} tone plays",
    "a {pitch} tone plays as a {colour} {shape} moves {direction}",
    "the {colour} {shape} slides {direction} with a {pitch} tone",
    "a {colour} {shape} drifts {direction} over a {pitch} tone",
)
SILENT_PHRASES = (
    "a {colour} {shape} moves {direction}",
    "the {colour} {shape} slides {direction}",
    "a {colour} {shape} drifts {direction}",
)
SPEECH_PHRASE = " and a voice says {word}"
QUESTIONS = {
    "colour": ("what colour is the shape{when}?", "which colour is the moving shape{when}?"),
    "shape": ("what shape is moving{when}?", "which shape is shown{when}?"),
    "direction": ("which way does the shape move{when}?", "in which direction does the shape go{when}?"),
    "pitch": ("is the tone low, mid or high{when}?", "what pitch is the tone{when}?"),
    "word": ("what word is spoken?", "which word does the voice say?"),
}


def _is_heldout(combo: tuple[int, int, int, int]) -> bool:
    c, s, d, p = combo
    return (c + s + d + p) % 8 == 5


def _combo_indices() -> list[tuple[int, int, int, int]]:
    return list(itertools.product(*(range(len(ATTRIBUTES[k])) for k in COMBO_KEYS)))


HELDOUT_COMBOS = tuple(tuple(ATTRIBUTES[k][i] for k, i in zip(COMBO_KEYS, idx)) for idx in _combo_indices()
                       if _is_heldout(idx))
TRAIN_COMBOS = tuple(tuple(ATTRIBUTES[k][i] for k, i in zip(COMBO_KEYS, idx)) for idx in _combo_indices()
                     if not _is_heldout(idx))


def attributes_from_text(text: str) -> dict:
    """The first mention of each attribute's value in `text` (None where absent); used to score captions."""
    words = re.findall(r"[a-z]+", text.lower().replace("color", "colour"))
    found = {}
    for key, values in ATTRIBUTES.items():
        found[key] = next((w for w in words if w in values), None)
    return found


# ---- rendering -------------------------------------------------------------------------------

def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "triangle":  # apex up; widens linearly to the base
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) * 0.5)
    if shape == "cross":
        arm = r * 0.3
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise ValueError(shape)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark grey level + a gentle gradient + static noise: varies per clip, never looks like a shape colour."""
    level = rng.uniform(15, 80)
    ramp = np.linspace(-1, 1, size)[None, :, None] * rng.uniform(-12, 12)
    if rng.random() < 0.5:
        ramp = ramp.transpose(1, 0, 2)
    noise = rng.normal(0, 5, (size, size, 1))
    tint = rng.uniform(0.85, 1.15, 3)[None, None, :]
    return np.clip((level + ramp + noise) * tint, 0, 255)


def _render_part(rng, attrs: dict, background: np.ndarray, size: int, frames: int) -> np.ndarray:
    """The shape travels TRAVEL of the frame through a midpoint drawn alike in x and y, reached exactly at the
    part's middle (frame `frames // 2`): that frame is the same whichever way the shape moves."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = size * rng.uniform(0.22, 0.28)
    dx, dy = DIRECTION_VECTOR[attrs["direction"]]
    mid_x, mid_y = rng.uniform(0.4, 0.6, 2) * size
    colour = np.array(COLOUR_RGB[attrs["colour"]], np.float32)
    out = np.empty((frames, size, size, 3), np.uint8)
    for f in range(frames):
        # position is a function of the frame's time f / FPS: -TRAVEL/2 at the part's start, 0 at its middle
        offset = (f / frames - 0.5) * TRAVEL * size
        cx, cy = mid_x + dx * offset, mid_y + dy * offset
        frame = background.copy()
        frame[_shape_mask(attrs["shape"], xx, yy, cx, cy, r)] = colour
        out[f] = frame.astype(np.uint8)
    return out


def _tone(rng, pitch: str, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = rng.uniform(0.15, 0.3) * np.sin(2 * np.pi * PITCH_HZ[pitch] * t + rng.uniform(0, 2 * np.pi))
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)  # 10 ms ramps avoid clicks between parts
    return (wave * fade).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _spoken(word: str) -> np.ndarray | None:
    """espeak-ng's rendering of `word` at SAMPLE_RATE, or None when espeak-ng is missing or fails."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    try:
        wav = subprocess.run([exe, "--stdout", "-s", "170", word], capture_output=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    from data_pipelines.decode.video import decode_audio

    samples = decode_audio(wav, SAMPLE_RATE)
    return samples if samples.size else None


def speech_available() -> bool:
    return _spoken(ATTRIBUTES["word"][0]) is not None


# ---- one clip ----------------------------------------------------------------------------------

def _caption(rng, attrs: dict) -> str:
    phrases = PHRASES if attrs["pitch"] else SILENT_PHRASES
    text = phrases[rng.integers(len(phrases))].format(**attrs)
    if attrs.get("word"):
        text += SPEECH_PHRASE.format(word=attrs["word"])
    return text


def chapter_text(attrs: dict) -> str:
    """A part's timed-segment text (chapter and highlight titles and summaries): what is seen, in a few words,
    so a two-part clip's chapter JSON stays within the demo's text budget (the caption also names the tone
    and the spoken word)."""
    return f"{attrs['colour']} {attrs['shape']} moving {attrs['direction']}"


def multiple_choice(parts: list[dict]) -> list[dict]:
    """One multiple-choice question per attribute each part has (the records' metadata "mcq", which
    `data export-eval` writes out for the `mcq` benchmark); the task is the attribute."""
    items = []
    for p, attrs in enumerate(parts):
        when = "" if len(parts) == 1 else (" at the start" if p == 0 else " at the end")
        items += [{"question": QUESTIONS[k][0].format(when=when), "options": list(ATTRIBUTES[k]), "answer": attrs[k],
                   "task": k} for k in ATTRIBUTES if attrs.get(k)]
    return items


def _turns(rng, parts: list[dict]) -> list[dict]:
    turns = []
    for p, attrs in enumerate(parts):
        when = "" if len(parts) == 1 else (" at the start" if p == 0 else " at the end")
        keys = [k for k in ATTRIBUTES if attrs.get(k)]
        for k in rng.permutation(keys):
            question = QUESTIONS[k][rng.integers(2)].format(when=when)
            turns += [{"role": "user", "text": question}, {"role": "assistant", "text": attrs[k]}]
    return turns


def gist(parts: list[dict]) -> dict:
    """The gist of a clip in the API's shape (infer/schemas.GIST): the title names each part's colour and
    shape (and a single part's direction), topics the shapes and motions, hashtags colours and shapes."""
    shapes = list(dict.fromkeys(f"{p['colour']} {p['shape']}" for p in parts))
    motions = list(dict.fromkeys(f"moving {p['direction']}" for p in parts))
    title = " then ".join(f"{p['colour']} {p['shape']}" for p in parts)
    if len(parts) == 1:
        title += f" {motions[0]}"
    tags = list(dict.fromkeys(f"#{p[k]}" for k in ("colour", "shape") for p in parts))
    return {"title": title, "topics": (shapes + motions)[:3], "hashtags": tags[:4]}


def make_clip(seed: int, split: str, index: int, size: int = 64, speech: bool | None = None,
              num_parts: int | None = None):
    """Clip `index` of `split`: a VideoExample holding MP4 bytes (H.264, + AAC unless silent) and its texts.
    `num_parts` (1 or 2) fixes the number of parts (a separate stream of clips); by default train clips are
    two-part with probability TWO_PART_FRACTION and held-out clips single-part."""
    from data_pipelines.sources.encode import encode_clip
    from data_pipelines.records.format import VideoExample

    fixed = num_parts
    rng = np.random.default_rng([seed, SPLITS[split], index] + ([fixed] if fixed else []))
    combos = HELDOUT_COMBOS if split == "heldout" else TRAIN_COMBOS
    num_parts = fixed or (2 if split == "train" and rng.random() < TWO_PART_FRACTION else 1)
    silent = split == "train" and rng.random() < SILENT_FRACTION
    picks = rng.choice(len(combos), size=num_parts, replace=False)
    speech = speech_available() if speech is None else speech
    parts = []
    for pick in picks:
        attrs = dict(zip(COMBO_KEYS, combos[pick]))
        attrs["word"] = str(rng.choice(ATTRIBUTES["word"])) if speech and not silent else None
        if silent:
            attrs["pitch"] = None
        parts.append(attrs)

    background = _background(rng, size)
    frames_per_part = int(PART_SECONDS * FPS)
    video, audio, transcript, segments, captions = [], [], [], [], []
    for p, attrs in enumerate(parts):
        start = p * PART_SECONDS
        video.append(_render_part(rng, attrs, background, size, frames_per_part))
        captions.append(_caption(rng, attrs))
        segments.append({"start": start, "end": start + PART_SECONDS, "text": chapter_text(attrs)})
        if silent:
            continue
        wave = _tone(rng, attrs["pitch"], PART_SECONDS)
        spoken = _spoken(attrs["word"]) if attrs["word"] else None
        if spoken is not None:
            spoken = spoken[: len(wave) // 2]
            at = int(rng.integers(0, len(wave) - len(spoken) + 1))
            wave[at:at + len(spoken)] += 0.8 * spoken
            transcript.append({"start": start + at / SAMPLE_RATE, "end": start + (at + len(spoken)) / SAMPLE_RATE,
                               "text": attrs["word"]})
        audio.append(wave)

    caption = ", then ".join(captions)
    sound = np.clip(np.concatenate(audio), -1, 1) if audio else None
    data = encode_clip(np.concatenate(video), FPS, sound, SAMPLE_RATE)
    return VideoExample(
        id=f"synth-{split}-{index:06d}" + (f"-{fixed}part" if fixed else ""),
        video=data,
        fps=float(FPS),
        duration=num_parts * PART_SECONDS,
        captions=[caption],
        turns=_turns(rng, parts),
        transcript=transcript,
        segments=segments,
        metadata={"source": "synth", "split": split, "attributes": parts[0], "parts": parts, "mcq": multiple_choice(parts),
                  "gist": gist(parts),
                  "two_part": num_parts == 2, "silent": silent, "speech": any(p["word"] for p in parts),
                  "seed": seed, "index": index},
    )


# ---- the corpus --------------------------------------------------------------------------------

def _write_shard(task: tuple) -> tuple[str, int]:
    from data_pipelines.records.format import serialize
    from data_pipelines.records.shards import write_records

    split, path, start, stop, seed, size, speech = task
    count = write_records((serialize(make_clip(seed, split, i, size, speech)) for i in range(start, stop)), path)
    return split, count


def _tasks(out_dir: str, split: str, count: int, seed: int, size: int, speech: bool) -> list[tuple]:
    from data_pipelines.records.shards import shard_name

    shards = max(1, math.ceil(count / CLIPS_PER_SHARD))
    bounds = np.linspace(0, count, shards + 1).astype(int)
    return [(split, os.path.join(out_dir, split, shard_name("data", i, shards)), int(bounds[i]), int(bounds[i + 1]),
             seed, size, speech) for i in range(shards) if count > 0]


def generate_corpus(out_dir: str, num: int = 2000, heldout: int = 200, seed: int = 0, size: int = 64,
                    workers: int = 2) -> dict:
    """Write the corpus (see the module docstring) and return the corpus.json contents."""
    import multiprocessing

    started = time.perf_counter()
    speech = speech_available()
    tasks = _tasks(out_dir, "train", num, seed, size, speech) + _tasks(out_dir, "heldout", heldout, seed, size, speech)
    for split in SPLITS:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    counts = {split: 0 for split in SPLITS}
    if workers > 1 and len(tasks) > 1:
        # spawn: the parent may hold JAX/XLA threads, which fork would copy in a broken state.
        with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
            results = pool.map(_write_shard, tasks, chunksize=1)
    else:
        results = [_write_shard(t) for t in tasks]
    for split, count in results:
        counts[split] += count
    info = {
        "format": "pegasus-jax synthetic corpus",
        "seed": seed,
        "counts": counts,
        "size": size,
        "fps": FPS,
        "part_seconds": PART_SECONDS,
        "sample_rate": SAMPLE_RATE,
        "two_part_fraction": TWO_PART_FRACTION,
        "silent_fraction": SILENT_FRACTION,
        "speech": speech,
        "attributes": {k: list(v) for k, v in ATTRIBUTES.items()},
        "heldout_combos": [dict(zip(COMBO_KEYS, c)) for c in HELDOUT_COMBOS],
        "shards": {split: sorted(os.path.relpath(t[1], out_dir) for t in tasks if t[0] == split) for split in SPLITS},
        "seconds": round(time.perf_counter() - started, 2),
    }
    with open(os.path.join(out_dir, "corpus.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info
