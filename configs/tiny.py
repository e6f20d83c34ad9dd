"""Tiny Pegasus: the test and demo size; seconds per step on one CPU core.

    pegasus-jax train --config configs/tiny.py --workdir runs/tiny --config.train.steps=50

Expected: the loss falls from ~ln(vocab) within the first 50 steps on the built-in corpus.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "tiny"
    c.model.dtype = "float32"
    v = c.model.vision
    v.image_size, v.patch_size, v.width, v.depth, v.num_heads, v.mlp_dim = 32, 8, 32, 2, 2, 64
    v.temporal_depth, v.max_frames = 1, 8
    a = c.model.audio
    a.num_mel_bins, a.width, a.depth, a.num_heads, a.mlp_dim, a.max_source_positions = 80, 32, 2, 2, 64, 100
    al = c.model.align
    al.frames_per_segment, al.segment_seconds = 4, 1.0
    al.pool_t, al.pool_h, al.pool_w, al.audio_tokens = 2, 2, 2, 4
    al.visual_token_budget = 64
    d = c.model.decoder
    d.vocab_size, d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 512, 64, 2, 4, 2, 128
    d.rope_theta, d.max_seq_len = 10000.0, 256
    c.data.max_text_len, c.data.length_buckets = 48, (24, 48)
    c.model.transcript_tokens = 4
    c.train.steps, c.train.batch_size, c.train.checkpoint_every = 200, 8, 50
    c.train.learning_rate, c.train.warmup_steps = 3e-3, 20
    c.train.log_every = 10
    return c
