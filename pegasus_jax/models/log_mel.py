"""Whisper's log-mel front end in JAX: 16 kHz mono -> (frames, 80 | 128) features, 100 frames/s.

Same math as transformers' `WhisperFeatureExtractor`: 400-sample periodic Hann window, hop 160,
centred reflect-padded STFT, power spectrum, Slaney mel filters (0-8 kHz), log10 with a 1e-10
floor, the last frame dropped, values clamped to (max - 8) and mapped by (x + 4) / 4. The clamp's
max is taken per example over its whole input (all frames and bins), as Whisper does per utterance;
the pipeline feeds one segment per example, so the dynamic range is per segment. Every waveform
along the leading axes is its own example: for (B, S, samples) the max runs over each (b, s)'s
(frames, bins), never across B or S.

The STFT runs in float32: features agree with the extractor's float32 torch path and its float64
NumPy path to about 5e-5 (the two references differ from each other by 4e-5).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pegasus_jax.errors import UserError

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160


def _hz_to_mel(f):
    f = np.asarray(f, np.float64)
    logstep = 27.0 / np.log(6.4)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * logstep, 3.0 * f / 200.0)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), 200.0 * m / 3.0)


@functools.lru_cache(maxsize=None)
def mel_filters(num_mel_bins: int) -> np.ndarray:
    """(N_FFT // 2 + 1, num_mel_bins) Slaney-normalised triangular filters over 0-8 kHz."""
    fft_freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(8000.0), num_mel_bins + 2))
    slopes = edges[None, :] - fft_freqs[:, None]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return (filters * (2.0 / (edges[2:] - edges[:-2]))[None]).astype(np.float32)


def log_mel_spectrogram(waveform: jax.Array, num_mel_bins: int = 80) -> jax.Array:
    """(..., samples) float32 at 16 kHz -> (..., samples // 160, num_mel_bins); jit with num_mel_bins static."""
    if waveform.shape[-1] <= N_FFT // 2:  # reflect padding needs more samples than it pads (as torch.stft)
        raise UserError(f"audio of {waveform.shape[-1]} samples is too short for a log-mel spectrogram "
                        f"(at least {N_FFT // 2 + 1} samples at {SAMPLE_RATE} Hz)")
    pad = [(0, 0)] * (waveform.ndim - 1) + [(N_FFT // 2, N_FFT // 2)]
    x = jnp.pad(waveform.astype(jnp.float32), pad, mode="reflect")
    n_frames = 1 + waveform.shape[-1] // HOP
    index = np.arange(n_frames)[:, None] * HOP + np.arange(N_FFT)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    frames = x[..., index] * window.astype(np.float32)
    power = jnp.abs(jnp.fft.rfft(frames, n=N_FFT, axis=-1)) ** 2
    mel = jnp.einsum("...tf,fm->...tm", power, mel_filters(num_mel_bins), precision=jax.lax.Precision.HIGHEST)
    log_spec = jnp.log10(jnp.maximum(mel, 1e-10))[..., :-1, :]
    peak = jnp.max(log_spec, axis=(-2, -1), keepdims=True)
    return (jnp.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
