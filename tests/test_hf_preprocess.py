"""HF-exact preprocessing for imported towers: frames of a real encoded video (H.264 + AAC, non-square)
decoded by PyAV and resized the "clip" / "siglip" way are within 1/255 of what `CLIPImageProcessor` /
`SiglipImageProcessor` make of the same decoded frames (the fast "area_crop" path is not); audio in
Whisper's padded window gives `WhisperModel`'s encoder output on `WhisperFeatureExtractor` features
to 1e-4."""
import io

import av
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from data_pipelines.decode.video import decode_audio, sample_frames
from data_pipelines.sources.encode import encode_clip
from pegasus_jax import config as cfg
from pegasus_jax.interop.common import load_params
from pegasus_jax.interop.hf_audio import audio_config_from_hf, audio_from_hf
from pegasus_jax.models.audio import AudioEncoder
from pegasus_jax.models.vision import PIXEL_STATS

FPS, SIZE = 8, 32


@pytest.fixture(scope="module")
def textured_clip():
    """8 frames of 80x48 texture (detail a resize filter must get right) moving right, with a chirp."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 20, 3)).repeat(4, axis=0).repeat(4, axis=1)  # 48 x 80 blocks
    y, x = np.mgrid[:48, :80]
    frames = [np.clip(np.roll(base, 3 * i, axis=1) * 0.7 + 60 * np.sin((x + 5 * i) / 3.0 + y / 5.0)[..., None], 0, 255)
              for i in range(8)]
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t)).astype(np.float32)
    return encode_clip(np.asarray(frames, np.uint8), FPS, audio)


def decoded_frames(data: bytes) -> list[np.ndarray]:
    """Every frame as a user would hand it to an HF processor: PyAV-decoded, rgb24, full resolution."""
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_frames_match_the_hf_image_processor(textured_clip, kind):
    reference = decoded_frames(textured_clip)
    if kind == "clip":
        processor = transformers.CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size=SIZE)
    else:
        processor = transformers.SiglipImageProcessor(size={"height": SIZE, "width": SIZE})
    pixels = processor(reference, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)  # (N, H, W, 3)
    mean, std = (np.asarray(s, np.float32) for s in PIXEL_STATS[kind])
    expected = pixels * std + mean  # back to [0, 1]: the tolerance is in pixel levels
    times = [(i + 0.5) / FPS for i in range(len(reference))]
    ours, _ = sample_frames(textured_clip, times, SIZE, resize=kind)
    assert np.abs(ours / 255.0 - expected).max() <= 1 / 255 + 1e-6
    fast, _ = sample_frames(textured_clip, times, SIZE)
    assert np.abs(fast / 255.0 - expected).max() > 4 / 255  # the fast path is a different image


def test_whisper_window_matches_whisper_encoder_on_feature_extractor_features(textured_clip):
    torch.manual_seed(0)
    hf_config = transformers.WhisperConfig(
        num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=50, vocab_size=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        attn_implementation="eager")
    whisper = transformers.WhisperModel(hf_config).eval()
    # the window of a 50-position encoder is 100 mel frames = 1 s (30 s for the real 1500)
    extractor = transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=1)
    wave = decode_audio(textured_clip, 16000, 0.0, 0.6)
    features = extractor(wave, sampling_rate=16000, return_tensors="np").input_features
    assert features.shape == (1, 80, 100)
    with torch.no_grad():
        ref = whisper.encoder(input_features=torch.from_numpy(features)).last_hidden_state.numpy()

    config = cfg.get("tiny", model__dtype="float32")
    acfg = config.model.audio
    acfg.update(audio_config_from_hf(hf_config.to_dict()), whisper_window=True)
    encoder = AudioEncoder(acfg, dtype=jnp.float32, param_dtype=jnp.float32, scan=True, remat="none",
                           rngs=nnx.Rngs(0))
    load_params(encoder, audio_from_hf({k: v for k, v in whisper.state_dict().items()}, acfg))
    window = np.asarray(encoder.encode_window(jnp.asarray(wave[None])))
    assert np.abs(window - ref).max() <= 1e-4
    kept = np.asarray(encoder.encode_waveform(jnp.asarray(wave[None])))
    assert kept.shape[1] == 30 and np.array_equal(kept, window[:, :30])  # 0.6 s = 60 mel frames = 30 positions
