"""Sin-cos position tables: Whisper's fixed audio table, and the initial value of the learned ones.

The video encoder's spatial and temporal tables are learned, but start as sin-cos rows of unit
amplitude (as big_vision's `sincos2d`, MAE) rather than HF's normal(0.02): a tower trained from scratch
then sees where and when a token is from the first step, where a 0.02 table leaves position ~50x
weaker than patch content and shape and motion are learned last (in the demo: not within its budget).
Pretrained weights replace the tables, so this changes nothing for imported towers.
"""
from __future__ import annotations

import numpy as np

MAX_TIMESCALE = 10000.0


def sincos_table(coords: np.ndarray, width: int) -> np.ndarray:
    """(n,) or (n, k) coordinates -> (n, width) float32: per axis width/(2k) sines, then as many cosines,
    periods spaced geometrically from 2*pi to 2*pi*MAX_TIMESCALE (Whisper's `sinusoids` for k = 1)."""
    coords = np.asarray(coords, np.float64)
    coords = coords[:, None] if coords.ndim == 1 else coords
    k = coords.shape[1]
    per = width // (2 * k)
    if per < 2 or width % (2 * k):
        raise ValueError(f"a sin-cos table over {k} axes needs a width divisible by {2 * k} and >= {4 * k}, got {width}")
    inv = np.exp(-np.log(MAX_TIMESCALE) / (per - 1) * np.arange(per))
    angles = coords[:, :, None] * inv
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1).reshape(len(coords), width).astype(np.float32)


def grid_table(grid: int, width: int) -> np.ndarray:
    """(grid*grid, width) rows for a row-major (y, x) patch grid."""
    yy, xx = np.mgrid[0:grid, 0:grid]
    return sincos_table(np.stack([yy.ravel(), xx.ravel()], axis=1), width)


def initializer(table: np.ndarray):
    """An nnx initializer that returns `table` (shape-checked) in the requested dtype."""
    import jax.numpy as jnp

    def init(key, shape, dtype):
        if tuple(shape) != table.shape:
            raise ValueError(f"position table {table.shape} does not match parameter shape {tuple(shape)}")
        return jnp.asarray(table, dtype)
    return init
