"""Audio: log-mel parity with WhisperFeatureExtractor, encoder parity with transformers' WhisperEncoder."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from pegasus_jax import config as cfg
from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import load_params, params_of
from pegasus_jax.interop.hf_audio import audio_from_hf, audio_to_hf
from pegasus_jax.models.audio import AudioEncoder
from pegasus_jax.models.log_mel import log_mel_spectrogram


def hf_encoder(mels=80, seed=0):
    torch.manual_seed(seed)
    config = transformers.WhisperConfig(num_mel_bins=mels, d_model=32, encoder_layers=2, decoder_layers=1,
                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                        decoder_ffn_dim=64, max_source_positions=50, attn_implementation="eager")
    encoder = transformers.WhisperModel(config).encoder.eval()
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return encoder


def audio_config(mels=80, scan=True):
    c = cfg.get("tiny", model__scan_layers=scan)
    a = c.model.audio
    a.num_mel_bins, a.width, a.depth, a.num_heads, a.mlp_dim, a.max_source_positions = mels, 32, 2, 2, 64, 50
    return c


def ours_from(hf, c):
    enc = AudioEncoder(c.model.audio, dtype=jnp.float32, param_dtype=jnp.float32, scan=c.model.scan_layers,
                       remat="none", rngs=nnx.Rngs(0))
    load_params(enc, audio_from_hf({k: v.numpy() for k, v in hf.state_dict().items()}, c.model.audio))
    return enc


def tone(seconds, seed=0):
    t = np.arange(int(16000 * seconds)) / 16000
    noise = np.random.default_rng(seed).normal(0, 0.05, t.shape)
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t) + noise).astype(np.float32)


@pytest.mark.parametrize("mels", [80, 128])
def test_log_mel_matches_whisper_feature_extractor(mels):
    fe = transformers.WhisperFeatureExtractor(feature_size=mels)
    wave = tone(30.0)
    ref = fe(wave, sampling_rate=16000, return_tensors="np").input_features[0].T  # (3000, mels)
    ours = np.asarray(log_mel_spectrogram(jnp.asarray(wave), mels))
    assert ours.shape == ref.shape
    # fp32 STFT (ours) vs fp64 (NumPy): agreement to ~1e-4 on features of order 1
    assert np.abs(ours - ref).max() <= 2e-4


@pytest.mark.parametrize("mels", [80, 128])
@pytest.mark.parametrize("scan", [True, False])
def test_encoder_matches_transformers(mels, scan):
    hf = hf_encoder(mels)
    enc = ours_from(hf, audio_config(mels, scan))
    mel = np.random.default_rng(0).normal(size=(2, 100, mels)).astype(np.float32)
    with torch.no_grad():
        ref = hf(input_features=torch.from_numpy(mel.transpose(0, 2, 1))).last_hidden_state.numpy()
    ours = np.asarray(enc(jnp.asarray(mel)))
    assert ours.shape == ref.shape == (2, 50, 32) and np.abs(ours - ref).max() <= 1e-4


def test_shorter_input_uses_the_first_positions():
    enc = AudioEncoder(audio_config().model.audio, dtype=jnp.float32, param_dtype=jnp.float32, scan=True,
                       remat="none", rngs=nnx.Rngs(0))
    assert enc(jnp.zeros((1, 60, 80))).shape == (1, 30, 32)
    assert enc.encode_waveform(jnp.asarray(tone(0.5))[None]).shape == (1, 25, 32)


def test_weight_round_trip_is_exact():
    hf = hf_encoder()
    c = audio_config()
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    back = audio_to_hf(params_of(ours_from(hf, c)), c.model.audio)
    assert back.keys() == sd.keys() and all(np.array_equal(back[k], sd[k]) for k in sd)
    hf_encoder(seed=1).load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_mismatched_shape_is_a_clear_error():
    c = audio_config()
    c.model.audio.max_source_positions = 40
    with pytest.raises(UserError, match="embed_positions"):
        ours_from(hf_encoder(), c)
