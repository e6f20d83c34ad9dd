"""A whole LLaVA-NeXT-Video imported in one command (import-hf --vlm): CLIP tower (to its feature
layer, -2), LLaVA's projector (no input LayerNorm, its activation) and the Llama. With the temporal
layers as initialised (zero residual branches), LLaVA's time-unpooled layout (pool_t = frames) and the
segment markers set to a token's embedding, our logits on a real decoded clip equal transformers'
to 1e-4; the audio path and temporal layers start as the config initialises them."""
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from test_export import tokenizer_path  # noqa: F401  (module fixture: a small SentencePiece model)
from test_import_hf import perturbed

from data_pipelines.sources import synth
from data_pipelines.text.tokenizer import load_tokenizer
from pegasus_jax.cli.main import main
from pegasus_jax.errors import UserError
from pegasus_jax.infer.checkpoint_loader import load
from pegasus_jax.infer.video_input import whole_video_batch
from pegasus_jax.interop.hf_llava import llava_config_from_hf
from pegasus_jax.models.vision import PIXEL_STATS

TOL = 1e-4
VIDEO_TOKEN, IMAGE_TOKEN = 511, 510


def tiny_llava_config() -> transformers.LlavaNextVideoConfig:
    vision = transformers.CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3,
                                           num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-5)
    text = transformers.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                    rms_norm_eps=1e-5)
    return transformers.LlavaNextVideoConfig(vision_config=vision, text_config=text, video_token_index=VIDEO_TOKEN,
                                             image_token_index=IMAGE_TOKEN, projector_hidden_act="gelu",
                                             vision_feature_layer=-2, spatial_pool_stride=2)


def tiny_llava() -> transformers.LlavaNextVideoForConditionalGeneration:
    torch.manual_seed(0)
    config = tiny_llava_config()
    config._attn_implementation = "eager"
    return perturbed(transformers.LlavaNextVideoForConditionalGeneration(config))


def test_llava_next_video_imports_whole_and_matches_transformers(tokenizer_path, tmp_path, capsys):  # noqa: F811
    hf = tiny_llava()
    hf.save_pretrained(tmp_path / "llava")
    shutil.copyfile(tokenizer_path, tmp_path / "llava" / "tokenizer.model")
    capsys.readouterr()
    assert main(["import-hf", "--vlm", str(tmp_path / "llava"), "--config", "configs/tiny.py",
                 "--config.model.align.pool_t=4", "--out", str(tmp_path / "ckpt")]) == 0
    # CLIP to layer 2 of 3 (17 stacked tensors + 6) + projector 4 + Llama 12; the rest is ours
    assert "loaded 39 tensors" in capsys.readouterr().out
    model, config, _, _ = load(str(tmp_path / "ckpt"))
    m = config.model
    assert (m.vision.depth, m.vision.frame_resize, m.align.projector_norm, m.align.projector_act) == (2, "clip", False,
                                                                                                      "gelu")
    assert (m.align.pool_t, m.align.pool_h, m.align.pool_w) == (m.align.frames_per_segment, 2, 2)
    temporal = nnx.state(model.video_encoder.temporal).to_pure_dict()["layers"]
    assert not np.asarray(temporal["attn"]["o"]["kernel"]).any()  # zero residual branches: the image model
    assert not np.asarray(temporal["mlp"]["fc2"]["kernel"]).any()

    tok = load_tokenizer(str(tmp_path / "llava"))
    prompt = [tok.bos_id, tok.user_id] + tok.encode("Describe the video.") + [tok.assistant_id]
    clip = synth.make_clip(0, "heldout", 3)
    batch = whole_video_batch(config, clip.video, prompt)
    segments, frames = batch["frames"].shape[1:3]
    assert segments == 2
    batch["audio_mask"][:] = False  # LLaVA has no audio: its tokens are masked out of attention and positions
    batch["transcript_mask"][:] = False
    as_imported = np.asarray(model({k: jnp.asarray(v) for k, v in batch.items()}))
    # the whole-model export (LLaVA's projector, no norm) computes the same without JAX's code
    assert main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "export")]) == 0
    full = transformers.AutoModel.from_pretrained(str(tmp_path / "export" / "full"), trust_remote_code=True).eval()
    with torch.no_grad():
        exported = full(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    assert np.abs(exported - as_imported).max() <= TOL
    # each segment's marker becomes token 7's embedding, so LLaVA reads [7, <video> x 16] per segment
    marker = 7
    model.alignment.time_embed.kernel[...] = jnp.zeros_like(model.alignment.time_embed.kernel[...])
    model.alignment.time_embed.bias[...] = model.decoder.embed_tokens[...][marker]
    ours = np.asarray(model({k: jnp.asarray(v) for k, v in batch.items()}))

    mean, std = (np.asarray(s, np.float32) for s in PIXEL_STATS["clip"])
    pixels = (batch["frames"][0].astype(np.float32) / 255.0 - mean) / std  # (S, F, H, W, 3)
    per_segment = [marker] + [VIDEO_TOKEN] * (frames * 2 * 2)
    input_ids = torch.tensor([per_segment * segments + prompt])
    with torch.no_grad():
        ref = hf(input_ids=input_ids, pixel_values_videos=torch.from_numpy(pixels.transpose(0, 1, 4, 2, 3).copy())
                 ).logits.numpy()[:, -len(prompt):]
    assert np.abs(ours - ref).max() <= TOL


def test_llava_layouts_that_would_not_match_are_one_line_errors():
    good = tiny_llava_config().to_dict()
    siglip = {**good["vision_config"], "model_type": "siglip_vision_model"}
    cases = [({"model_type": "llava_onevision"}, "not a LlavaNextVideoForConditionalGeneration"),
             ({"vision_config": siglip}, "siglip vision tower is not supported"),
             ({"vision_feature_layer": [-2, -1]}, "several layers"),
             ({"spatial_pool_mode": "conv"}, "'average' only"),
             ({"spatial_pool_stride": 3}, "does not divide the 4x4 patch grid"),
             ({"projector_hidden_act": "relu"}, "projector_hidden_act 'relu'")]
    assert llava_config_from_hf(good)["vision"]["depth"] == 2  # hidden_states[-2] of 3 layers
    for change, message in cases:
        with pytest.raises(UserError, match=message):
            llava_config_from_hf({**good, **change})
