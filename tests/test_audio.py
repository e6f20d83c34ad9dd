"""Audio: log-mel parity with WhisperFeatureExtractor, encoder parity with transformers' WhisperEncoder."""
import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from transformers.audio_utils import mel_filter_bank

from pegasus_jax import config as cfg
from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import load_params, params_of
from pegasus_jax.interop.hf_audio import audio_from_hf, audio_to_hf
from pegasus_jax.models.audio import AudioEncoder
from pegasus_jax.models.posemb import sincos_table
from pegasus_jax.models.log_mel import log_mel_spectrogram, mel_filters

# Ours runs the STFT in float32; the feature extractor's torch path is float32 too and its NumPy path
# float64. The two reference paths themselves differ by up to 4e-5 on features of order 1.
LOG_MEL_TOL = 1e-4


def hf_whisper(mels=80, seed=0, positions=50):
    """A tiny random WhisperForConditionalGeneration with every bias, norm and position perturbed.

    init_std 0.2 (not 0.02) makes attention far from uniform, so a swapped projection moves the output
    by ~0.7 rather than by ~3e-4, well clear of the parity tolerance.
    """
    torch.manual_seed(seed)
    config = transformers.WhisperConfig(num_mel_bins=mels, d_model=32, encoder_layers=2, decoder_layers=1,
                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                        decoder_ffn_dim=64, max_source_positions=positions,
                                        vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                        decoder_start_token_id=1, init_std=0.2, attn_implementation="eager")
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.model.encoder.named_parameters():
            if "bias" in name or "norm" in name or "embed_positions" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def state_dict(module) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in module.state_dict().items()}


def audio_config(mels=80, positions=50):
    a = cfg.get("tiny").model.audio
    a.num_mel_bins, a.width, a.depth, a.num_heads, a.mlp_dim, a.max_source_positions = mels, 32, 2, 2, 64, positions
    return a


def encoder(acfg, scan=True):
    return AudioEncoder(acfg, dtype=jnp.float32, param_dtype=jnp.float32, scan=scan, remat="none",
                        rngs=nnx.Rngs(0))


def ours_from(sd, acfg, scan=True):
    enc = encoder(acfg, scan)
    load_params(enc, audio_from_hf(sd, acfg))
    return enc


def hf_encode(hf_encoder, mel: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return hf_encoder(input_features=torch.from_numpy(mel.transpose(0, 2, 1))).last_hidden_state.numpy()


def tone(seconds, seed=0, amplitude=1.0):
    t = np.arange(int(16000 * seconds)) / 16000
    noise = np.random.default_rng(seed).normal(0, 0.05, t.shape)
    wave = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (1000 + 500 * seed) * t) + noise
    return (amplitude * wave).astype(np.float32)


@pytest.mark.parametrize("mels", [80, 128])
def test_mel_filters_match_transformers(mels):
    ref = mel_filter_bank(num_frequency_bins=201, num_mel_filters=mels, min_frequency=0.0, max_frequency=8000.0,
                          sampling_rate=16000, norm="slaney", mel_scale="slaney")
    assert mel_filters(mels).shape == ref.shape == (201, mels)
    assert np.abs(mel_filters(mels) - ref).max() <= 1e-8


@pytest.mark.parametrize("mels", [80, 128])
@pytest.mark.parametrize("seconds,padding", [(30.0, "max_length"), (1.0, "longest"), (1.37, "do_not_pad")])
def test_log_mel_matches_whisper_feature_extractor(mels, seconds, padding):
    fe = transformers.WhisperFeatureExtractor(feature_size=mels)
    wave = tone(seconds)
    ref_torch = fe(wave, sampling_rate=16000, return_tensors="np", padding=padding).input_features[0].T
    ref_numpy = fe._np_extract_fbank_features(wave[None], "cpu")[0].T
    ours = np.asarray(log_mel_spectrogram(jnp.asarray(wave), mels))
    assert ours.shape == ref_torch.shape == ref_numpy.shape == (int(16000 * seconds) // 160, mels)
    assert np.abs(ours - ref_torch).max() <= LOG_MEL_TOL
    assert np.abs(ours - ref_numpy).max() <= LOG_MEL_TOL


def test_log_mel_is_batched_jitted_and_clamped_per_example():
    quiet, loud = tone(1.0, seed=1, amplitude=1e-3), tone(1.0, seed=2)
    batch = np.stack([quiet, loud])
    ours = np.asarray(jax.jit(log_mel_spectrogram, static_argnums=1)(jnp.asarray(batch), 80))
    alone = np.stack([np.asarray(log_mel_spectrogram(jnp.asarray(w), 80)) for w in batch])
    np.testing.assert_allclose(ours, alone, atol=1e-6)
    # the quiet example's dynamic range is set by its own peak, not by the loud one's
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    ref = fe(list(batch), sampling_rate=16000, return_tensors="np", padding="longest").input_features
    assert np.abs(ours - ref.transpose(0, 2, 1)).max() <= LOG_MEL_TOL
    # the floor is 8 log10 units (2.0 after scaling) under the example's own peak; a floor shared across
    # the batch (the loud example's) would have raised the quiet example's low values
    assert all(example.min() >= example.max() - 2.0 - 1e-6 for example in ours)
    assert ours[0].min() < ours[1].max() - 2.5


def test_position_table_initialises_as_whisper():
    hf = hf_whisper().model.encoder
    torch.manual_seed(0)
    hf = type(hf)(hf.config)  # a freshly initialised one: the table is not perturbed
    ours = np.asarray(encoder(audio_config()).embed_positions[...])
    # ours is computed in float64, HF's in float32: angles up to 49 rad round differently by ~1e-6
    assert np.abs(ours - hf.embed_positions.weight.detach().numpy()).max() <= 5e-6
    assert np.abs(ours - sincos_table(np.arange(50), 32)).max() == 0.0


@pytest.mark.parametrize("mels", [80, 128])
@pytest.mark.parametrize("scan", [True, False])
def test_encoder_matches_transformers(mels, scan):
    hf = hf_whisper(mels).model.encoder
    enc = ours_from(state_dict(hf), audio_config(mels), scan)
    mel = np.random.default_rng(0).normal(size=(2, 100, mels)).astype(np.float32)
    ref = hf_encode(hf, mel)
    ours = np.asarray(enc(jnp.asarray(mel)))
    assert ours.shape == ref.shape == (2, 50, 32)
    assert np.abs(ours - ref).max() <= 1e-4


def test_shorter_input_equals_whisper_with_the_first_positions():
    # HF only takes exactly 2 * max_source_positions frames: a 30-position Whisper holding the first 30
    # rows of the table is the reference for our 50-position encoder on 60 frames.
    hf = hf_whisper().model.encoder
    sd = state_dict(hf)
    enc = ours_from(sd, audio_config())
    short_config = copy.deepcopy(hf.config)
    short_config.max_source_positions = 30
    short = type(hf)(short_config)
    short.load_state_dict({**{k: torch.from_numpy(v) for k, v in sd.items()},
                                   "embed_positions.weight": torch.from_numpy(sd["embed_positions.weight"][:30])})
    mel = np.random.default_rng(1).normal(size=(2, 60, 80)).astype(np.float32)
    ours = np.asarray(enc(jnp.asarray(mel)))
    ref = hf_encode(short.eval(), mel)
    assert ours.shape == ref.shape == (2, 30, 32)
    assert np.abs(ours - ref).max() <= 1e-4
    assert jax.eval_shape(enc, jax.ShapeDtypeStruct((1, 61, 80), jnp.float32)).shape == (1, 31, 32)  # ceil(f / 2)
    with pytest.raises(UserError, match="101 mel frames"):
        enc(jnp.zeros((1, 101, 80)))


def test_encode_waveform_matches_feature_extractor_then_whisper():
    hf = hf_whisper().model.encoder
    enc = ours_from(state_dict(hf), audio_config())
    waves = np.stack([tone(1.0, seed=3), tone(1.0, seed=4, amplitude=0.1)])
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    mel = fe(list(waves), sampling_rate=16000, return_tensors="np", padding="longest").input_features
    ref = hf_encode(hf, mel.transpose(0, 2, 1))
    ours = np.asarray(enc.encode_waveform(jnp.asarray(waves)))
    assert ours.shape == ref.shape == (2, 50, 32)
    assert np.abs(ours - ref).max() <= 1e-4  # measured 7e-6: the log-mel differences barely propagate


def test_weight_round_trip_is_exact_and_loads_strictly():
    hf = hf_whisper().model.encoder
    acfg = audio_config()
    sd = state_dict(hf)
    enc = ours_from(sd, acfg)
    back = audio_to_hf(enc, acfg)
    assert back.keys() == sd.keys() and all(np.array_equal(back[k], sd[k]) for k in sd)
    assert all(np.array_equal(back[k], v) for k, v in audio_to_hf(params_of(enc), acfg).items())
    hf_whisper(seed=1).model.encoder.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


@pytest.mark.parametrize("prefix,part", [("encoder.", lambda m: m.model), ("model.encoder.", lambda m: m)])
def test_whole_whisper_checkpoints_load_their_encoder(prefix, part):
    whole = hf_whisper()
    acfg = audio_config()
    sd = state_dict(part(whole))
    ours = audio_from_hf(sd, acfg)
    alone = audio_from_hf(state_dict(whole.model.encoder), acfg)
    assert jax.tree.all(jax.tree.map(np.array_equal, ours, alone))
    back = audio_to_hf(ours, acfg, prefix=prefix)
    assert back.keys() == {k for k in sd if k.startswith(prefix)}
    assert all(np.array_equal(v, sd[k]) for k, v in back.items())


def test_mismatched_weights_are_clear_errors():
    sd = state_dict(hf_whisper().model.encoder)
    with pytest.raises(UserError, match="embed_positions"):
        ours_from(sd, audio_config(positions=40))
    with pytest.raises(UserError, match="conv1"):
        ours_from(sd, audio_config(mels=128))
    shallow = audio_config()
    shallow.depth = 1
    with pytest.raises(UserError, match=r"unexpected tensor layers\.1\."):
        audio_from_hf(sd, shallow)
    deep = audio_config()
    deep.depth = 3
    with pytest.raises(UserError, match=r"missing tensor layers\.2\."):
        audio_from_hf(sd, deep)
    with pytest.raises(UserError, match="no Whisper encoder"):
        audio_from_hf({"decoder.embed_tokens.weight": np.zeros((4, 4))}, audio_config())


def test_too_short_audio_is_a_clear_error():
    with pytest.raises(UserError, match="200 samples is too short"):
        log_mel_spectrogram(jnp.zeros((2, 200)), 80)
    assert log_mel_spectrogram(jnp.zeros((2, 3, 201)), 80).shape == (2, 3, 1, 80)
