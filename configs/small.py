"""Small Pegasus (~100M parameters): single-host experiments and the CPU benchmarks.

    pegasus-jax train --config configs/small.py --workdir runs/small

Expected: `pegasus-jax train` logs "params: ~1.0e8" at start.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "small"
    v = c.model.vision
    v.kind = "siglip"
    v.image_size = 224
    v.patch_size = 16
    v.width = 384
    v.depth = 6
    v.num_heads = 6
    v.mlp_dim = 1536
    v.temporal_depth = 2
    v.max_frames = 16
    a = c.model.audio
    a.num_mel_bins = 80
    a.width = 384
    a.depth = 4
    a.num_heads = 6
    a.mlp_dim = 1536
    a.max_source_positions = 1500
    al = c.model.align
    al.frames_per_segment = 8
    al.segment_seconds = 4.0
    al.pool_t = 4
    al.pool_h = 6
    al.pool_w = 6
    al.audio_tokens = 8
    al.visual_token_budget = 1024
    d = c.model.decoder
    d.vocab_size = 32000
    d.width = 640
    d.depth = 12
    d.num_heads = 10
    d.num_kv_heads = 5
    d.mlp_dim = 1792
    d.rope_theta = 10000.0
    d.max_seq_len = 2048
    d.tie_embeddings = True
    c.train.batch_size = 32
    c.train.steps = 20000
    return c
