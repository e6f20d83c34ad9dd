"""Frame encoder parity with transformers' CLIP and SigLIP vision towers; the video encoder at init."""
import jax
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
from pegasus_jax.models.vision import FrameEncoder, normalize_pixels

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


def ours_from(hf, c, remat="none", prefix=""):
    enc = FrameEncoder(c.model.vision, dtype=jnp.float32, param_dtype=jnp.float32, scan=c.model.scan_layers,
                       remat=remat, rngs=nnx.Rngs(0))
    load_params(enc, vision_from_hf({prefix + k: v.numpy() for k, v in hf.state_dict().items()}, c.model.vision))
    return enc


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@pytest.mark.parametrize("scan,remat", [(True, "none"), (False, "none"), (True, "dots")])
def test_frame_encoder_matches_transformers(kind, scan, remat):
    hf = hf_tower(kind)
    c = vision_config(kind, scan)
    enc = ours_from(hf, c, remat)
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
    enc = ours_from(hf, c)
    back = vision_to_hf(params_of(enc), c.model.vision)
    assert back.keys() == sd.keys()
    assert all(back[k].dtype == sd[k].dtype and np.array_equal(back[k], sd[k]) for k in sd)
    hf_tower(kind, seed=1).load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    from_module = vision_to_hf(enc, c.model.vision)  # a module is accepted in place of its params
    assert all(np.array_equal(from_module[k], sd[k]) for k in sd)


def test_prefixed_state_dict_loads_the_same():
    hf = hf_tower("clip")
    c = vision_config("clip")
    plain = params_of(ours_from(hf, c))
    prefixed = params_of(ours_from(hf, c, prefix="vision_model."))  # CLIPModel / older transformers naming
    assert jax.tree.all(jax.tree.map(np.array_equal, plain, prefixed))


def test_missing_tensor_is_named():
    sd = {k: v.numpy() for k, v in hf_tower("siglip").state_dict().items()}
    del sd["encoder.layers.1.mlp.fc2.bias"]
    with pytest.raises(UserError, match=r"encoder\.layers\.1\.mlp\.fc2\.bias"):
        vision_from_hf(sd, vision_config("siglip").model.vision)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_normalize_pixels_matches_the_hf_image_processor(kind):
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    proc_cls = transformers.CLIPImageProcessorPil if kind == "clip" else transformers.SiglipImageProcessorPil
    proc = proc_cls(do_resize=False, do_center_crop=False)
    ref = proc(images=list(frames), return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(normalize_pixels(jnp.asarray(frames), kind)), ref, atol=1e-5)


def test_mismatched_shape_is_a_clear_error():
    hf = hf_tower("clip")
    c = vision_config("clip")
    c.model.vision.mlp_dim = 48
    with pytest.raises(UserError, match="fc1|fc2"):
        ours_from(hf, c)


def max_diff(a, b) -> float:
    return float(jnp.abs(a - b).max())


encode = nnx.jit(lambda video, frames: video(frames))  # one compile per shape; reruns see edited params
patch_grid = nnx.jit(lambda encoder, pixels: encoder.patch_grid(pixels))


@pytest.mark.parametrize("kind,scan,frames_n", [("clip", True, 4), ("siglip", False, 4), ("clip", True, 8)])
def test_video_encoder_equals_image_model_at_init(kind, scan, frames_n):
    c = vision_config(kind, scan, temporal_depth=2)  # frames_n 4: interpolated positions; 8 == max_frames
    video = VideoEncoder(c.model.vision, dtype=jnp.float32, param_dtype=jnp.float32, scan=scan, remat="none",
                         rngs=nnx.Rngs(0))
    frames = jnp.asarray(np.random.default_rng(1).normal(size=(2, frames_n, 32, 32, 3)).astype(np.float32))
    per_frame = patch_grid(video.frames, frames.reshape(2 * frames_n, 32, 32, 3)).reshape(2, frames_n, 4, 4, -1)
    out = encode(video, frames)
    assert out.shape == (2, frames_n, 4, 4, 32) and max_diff(out, per_frame) <= 1e-6
    pos = video.temporal_position
    pos[...] = pos[...] + 1.0  # enters only inside the zeroed residual branches: still the image model
    assert max_diff(encode(video, frames), per_frame) <= 1e-6
    video.temporal.layers.attn.o.kernel[...] = video.temporal.layers.attn.o.kernel[...] + 0.1
    live = encode(video, frames)
    assert max_diff(live, per_frame) > 1e-3  # the temporal branch is live
    pos[...] = pos[...] - 1.0
    assert max_diff(encode(video, frames), live) > 1e-3  # and the temporal positions reach it


def test_video_encoder_without_temporal_layers_is_the_image_model():
    c = vision_config("siglip", temporal_depth=0)
    video = VideoEncoder(c.model.vision, dtype=jnp.float32, param_dtype=jnp.float32, scan=True, remat="none",
                         rngs=nnx.Rngs(0))
    assert not any("temporal" in "/".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(video)))
    frames = jnp.asarray(np.random.default_rng(2).normal(size=(1, 3, 32, 32, 3)).astype(np.float32))
    assert max_diff(encode(video, frames)[0], patch_grid(video.frames, frames[0])) <= 1e-6


def test_temporal_positions_interpolate():
    table = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    assert np.array_equal(np.asarray(interpolate_positions(table, 8)), np.asarray(table))
    half = np.asarray(interpolate_positions(table, 15))
    np.testing.assert_allclose(half[::2], np.asarray(table), atol=1e-6)  # old rows kept, new ones in between
    np.testing.assert_allclose(half[1], (np.asarray(table)[0] + np.asarray(table)[1]) / 2, atol=1e-6)


def test_position_tables_start_as_sincos_and_kernels_scale_with_fan_in():
    """From-scratch towers start with positions as strong as content and unit-variance layers (models/posemb.py,
    layers.default_kernel_init); a normal(0.02) table or kernel would fail every check here."""
    from pegasus_jax.models.posemb import grid_table, sincos_table

    c = vision_config("clip", temporal_depth=1)
    video = VideoEncoder(c.model.vision, dtype=jnp.float32, param_dtype=jnp.float32, scan=True, remat="none",
                         rngs=nnx.Rngs(0))
    spatial = np.asarray(video.frames.position_embedding[...])
    assert np.array_equal(spatial[0], np.zeros(32)) and np.array_equal(spatial[1:], grid_table(4, 32))
    rms = np.sqrt((grid_table(4, 32) ** 2).mean(axis=1))
    np.testing.assert_allclose(rms, np.sqrt(0.5), atol=1e-6)  # every row: half sines, half cosines
    # the rows of neighbouring patches differ, and more so for patches further apart
    d = lambda a, b: np.linalg.norm(spatial[1 + a] - spatial[1 + b])  # noqa: E731
    assert 0.3 < d(0, 1) < d(0, 2) and d(0, 4) == pytest.approx(d(0, 1))  # (y, x) symmetric
    np.testing.assert_array_equal(np.asarray(video.temporal_position[...]), sincos_table(np.arange(8), 32))
    # kernels: std 1/sqrt(fan_in), per layer of the scanned stack (width 32 -> 0.177; mlp 64 -> 0.125)
    fc1, fc2 = (np.asarray(k[...]) for k in (video.frames.layers.layers.mlp.fc1.kernel,
                                             video.frames.layers.layers.mlp.fc2.kernel))
    assert fc1.shape == (2, 32, 64) and fc2.shape == (2, 64, 32)
    assert fc1.std() == pytest.approx(1 / np.sqrt(32), rel=0.1) and fc2.std() == pytest.approx(1 / np.sqrt(64), rel=0.1)
    with pytest.raises(ValueError, match="width divisible by 4"):
        grid_table(4, 30)
