"""Pegasus 80B (Pegasus-1 scale): ViT-e-class frames, Whisper-large-class audio, a Llama-70B-shaped decoder.

    pegasus-jax compile --config configs/pegasus_80b.py --topology v5p-256
    pegasus-jax compile --config configs/pegasus_80b.py --topology v5p-128 --num-slices 2

Expected: ~76.8B parameters (decoder 70.6B) and the line `fits: yes`. The mesh axes below are per
slice; with several slices mesh.dcn_data (-1) makes them data-parallel replicas over DCN.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "pegasus_80b"
    v = c.model.vision
    v.kind, v.image_size, v.patch_size, v.width, v.depth, v.num_heads, v.mlp_dim = "siglip", 224, 14, 1792, 64, 16, 15360
    v.layer_norm_eps, v.temporal_depth, v.max_frames = 1e-6, 16, 16
    d = c.model.decoder
    d.vocab_size, d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 128256, 8192, 80, 64, 8, 28672
    c.model.remat_policy = "full"
    c.train.batch_size = 256
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 4
    return c
