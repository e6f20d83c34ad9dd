"""A long, low-resolution test video written frame by frame (memory and sparse-decoding benchmarks).

Every frame carries its own index as a 16-bit barcode in the top rows (read back with
`frame_index`), so a test can tell exactly which frame a sampler returned; below it a square
bounces around so the content is not static. A tone plays throughout. Keyframes every 2 s.
"""
from __future__ import annotations

import numpy as np

BITS = 16  # frame indices up to 65535: 4.5 hours at 4 fps


def _barcode(index: int, size: int) -> np.ndarray:
    """Two rows of 8 blocks: bit k is white (set) or black, most significant first."""
    block = size // 8
    bits = [(index >> (BITS - 1 - k)) & 1 for k in range(BITS)]
    rows = np.array(bits, np.uint8).reshape(2, 8) * 255
    return np.repeat(np.repeat(rows, block, axis=0), block, axis=1)


def frame_index(rgb: np.ndarray) -> int:
    """Read the barcode back from a decoded frame (any size the encoder's was resized to)."""
    size = rgb.shape[1]
    block = size / 8
    grey = rgb.astype(np.float32).mean(axis=2)
    index = 0
    for k in range(BITS):
        row, col = divmod(k, 8)
        y0, x0 = int(row * block + block / 4), int(col * block + block / 4)
        cell = grey[y0:y0 + max(1, int(block / 2)), x0:x0 + max(1, int(block / 2))]
        index = index << 1 | int(cell.mean() > 127)
    return index


def make_long_video(minutes: float, size: int = 64, fps: int = 4, path: str = "long.mp4",
                    sample_rate: int = 16000) -> dict:
    """Stream-encode `minutes` of video to `path` (never more than one frame in memory); returns
    {"path", "frames", "seconds", "bytes"}."""
    import os

    from data_pipelines.sources.encode import ClipWriter

    if size % 8 or size < 32:
        raise ValueError(f"size must be a multiple of 8 and >= 32, got {size}")
    total = int(round(minutes * 60 * fps))
    if total >= 1 << BITS:
        raise ValueError(f"{minutes} minutes at {fps} fps exceeds the {BITS}-bit frame barcode")
    block = size // 8
    tone = 0.2 * np.sin(2 * np.pi * 440.0 * np.arange(sample_rate // fps) / sample_rate).astype(np.float32)
    with ClipWriter(path, fps, size, size, sample_rate, keyframe_seconds=2.0) as writer:
        for i in range(total):
            frame = np.full((size, size, 3), 40, np.uint8)
            frame[: 2 * block] = _barcode(i, size)[..., None]
            span = size - 2 * block - block * 2
            x = abs((i * 3) % (2 * (size - 2 * block)) - (size - 2 * block))
            y = 2 * block + abs((i * 2) % (2 * span) - span)
            frame[y:y + 2 * block, x:x + 2 * block] = (200, 60, 60)
            writer.add_frame(frame)
            writer.add_audio(tone)  # 440 Hz keeps the same phase every 1/fps s when fps divides 440
    return {"path": path, "frames": total, "seconds": total / fps, "bytes": os.path.getsize(path)}
