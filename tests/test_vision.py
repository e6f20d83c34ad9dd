"""Frame encoder parity with transformers' CLIP and SigLIP vision towers; the video encoder at init."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from pegasus_jax import config as cfg
from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import load_params, params_of
from pegasus_jax.interop.hf_vision import vision_from_hf, vision_to_hf
from pegasus_jax.models.video_encoder import VideoEncoder, interpolate_positions
from pegasus_jax.models.vision import FrameEncoder

KW = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
          intermediate_size=64, num_channels=3, attn_implementation="eager")


def hf_tower(kind, seed=0):
    torch.manual_seed(seed)
    if kind == "clip":
        model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(layer_norm_eps=1e-5, **KW))
    else:
        model = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(layer_norm_eps=1e-6,
                                                                               vision_use_head=False, **KW))
    with torch.no_grad():  # LayerNorms away from identity so a swapped norm would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def vision_config(kind, scan=True, temporal_depth=1):
    c = cfg.get("tiny", model__scan_layers=scan)
    v = c.model.vision
    v.kind, v.layer_norm_eps, v.temporal_depth = kind, 1e-5 if kind == "clip" else 1e-6, temporal_depth
    return c


def ours_from(hf, c):
    enc = FrameEncoder(c.model.vision, dtype=jnp.float32, param_dtype=jnp.float32, scan=c.model.scan_layers,
                       remat="none", rngs=nnx.Rngs(0))
    load_params(enc, vision_from_hf({k: v.numpy() for k, v in hf.state_dict().items()}, c.model.vision))
    return enc


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@pytest.mark.parametrize("scan", [True, False])
def test_frame_encoder_matches_transformers(kind, scan):
    hf = hf_tower(kind)
    c = vision_config(kind, scan)
    enc = ours_from(hf, c)
    pixels = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        ref = hf(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2))).last_hidden_state.numpy()
    ours = np.asarray(enc(jnp.asarray(pixels)))
    assert ours.shape == ref.shape and np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_weight_round_trip_is_exact(kind):
    hf = hf_tower(kind)
    c = vision_config(kind)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    back = vision_to_hf(params_of(ours_from(hf, c)), c.model.vision)
    assert back.keys() == sd.keys()
    assert all(np.array_equal(back[k], sd[k]) for k in sd)
    hf_tower(kind, seed=1).load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_mismatched_shape_is_a_clear_error():
    hf = hf_tower("clip")
    c = vision_config("clip")
    c.model.vision.mlp_dim = 48
    with pytest.raises(UserError, match="fc1|fc2"):
        ours_from(hf, c)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_video_encoder_equals_image_model_at_init(kind):
    c = vision_config(kind, temporal_depth=2)
    video = VideoEncoder(c.model.vision, dtype=jnp.float32, param_dtype=jnp.float32, scan=True, remat="none",
                         rngs=nnx.Rngs(0))
    frames = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 32, 32, 3)).astype(np.float32))
    per_frame = video.frames.patch_grid(frames.reshape(8, 32, 32, 3)).reshape(2, 4, 4, 4, -1)
    out = video(frames)
    assert out.shape == (2, 4, 4, 4, 32) and float(jnp.abs(out - per_frame).max()) <= 1e-6
    video.temporal.layers.attn.o.kernel[...] = video.temporal.layers.attn.o.kernel[...] + 0.1
    assert float(jnp.abs(video(frames) - per_frame).max()) > 1e-3  # the temporal branch is live


def test_temporal_positions_interpolate():
    table = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    assert np.array_equal(np.asarray(interpolate_positions(table, 8)), np.asarray(table))
    half = np.asarray(interpolate_positions(table, 15))
    np.testing.assert_allclose(half[::2], np.asarray(table), atol=1e-6)  # old rows kept, new ones in between
    np.testing.assert_allclose(half[1], (np.asarray(table)[0] + np.asarray(table)[1]) / 2, atol=1e-6)
