"""Small Pegasus (~100M parameters): single-host experiments and the CPU benchmarks.

    pegasus-jax train --config configs/small.py --workdir runs/small

Expected: `pegasus-jax train` logs "params: ~1.0e8" at start.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "small"
    v = c.model.vision
    v.kind, v.image_size, v.patch_size, v.width, v.depth, v.num_heads, v.mlp_dim = "siglip", 224, 16, 384, 6, 6, 1536
    v.temporal_depth, v.max_frames = 2, 16
    a = c.model.audio
    a.num_mel_bins, a.width, a.depth, a.num_heads, a.mlp_dim, a.max_source_positions = 80, 384, 4, 6, 1536, 1500
    al = c.model.align
    al.frames_per_segment, al.segment_seconds = 8, 4.0
    al.pool_t, al.pool_h, al.pool_w, al.audio_tokens = 4, 6, 6, 8
    al.visual_token_budget = 1024
    d = c.model.decoder
    d.vocab_size, d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 32000, 640, 12, 10, 5, 1792
    d.rope_theta, d.max_seq_len, d.tie_embeddings = 10000.0, 2048, True
    c.train.batch_size, c.train.steps = 32, 20000
    return c
