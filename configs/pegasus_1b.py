"""Pegasus 1B: SigLIP-B-class frames, Whisper-base-class audio, a 1B Llama-3.2-shaped decoder.

    pegasus-jax compile --config configs/pegasus_1b.py --topology v5p-8

Expected: fits: yes.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "pegasus_1b"
    v = c.model.vision
    v.kind, v.image_size, v.patch_size, v.width, v.depth, v.num_heads, v.mlp_dim = "siglip", 224, 16, 768, 12, 12, 3072
    v.layer_norm_eps, v.temporal_depth, v.max_frames = 1e-6, 4, 16
    a = c.model.audio
    a.width, a.depth, a.num_heads, a.mlp_dim = 512, 6, 8, 2048
    al = c.model.align
    al.pool_t, al.pool_h, al.pool_w = 4, 8, 8
    d = c.model.decoder
    d.vocab_size, d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 128256, 2048, 16, 32, 8, 8192
    d.tie_embeddings = True
    c.train.batch_size = 256
    c.mesh.data, c.mesh.fsdp = 1, -1
    return c
