"""Pegasus 7B: CLIP-L/14 frames, Whisper-large-class audio, a Llama-3-8B-shaped decoder.

    pegasus-jax compile --config configs/pegasus_7b.py --topology v5p-64

Expected: fits: yes.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "pegasus_7b"
    v = c.model.vision
    v.kind, v.image_size, v.patch_size, v.width, v.depth, v.num_heads, v.mlp_dim = "clip", 336, 14, 1024, 24, 16, 4096
    v.temporal_depth = 4
    d = c.model.decoder
    d.vocab_size, d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 128256, 4096, 32, 32, 8, 14336
    c.model.remat_policy = "dots_with_no_batch_dims"
    c.train.batch_size = 512
    c.mesh.data, c.mesh.fsdp = 1, -1
    return c
