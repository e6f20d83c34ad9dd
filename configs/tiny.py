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
    v.image_size = 32
    v.patch_size = 8
    v.width = 32
    v.depth = 2
    v.num_heads = 2
    v.mlp_dim = 64
    v.temporal_depth = 1
    v.max_frames = 8
    a = c.model.audio
    a.num_mel_bins = 80
    a.width = 32
    a.depth = 2
    a.num_heads = 2
    a.mlp_dim = 64
    a.max_source_positions = 100
    al = c.model.align
    al.frames_per_segment = 4
    al.segment_seconds = 1.0
    al.pool_t = 2
    al.pool_h = 2
    al.pool_w = 2
    al.audio_tokens = 4
    al.visual_token_budget = 64
    d = c.model.decoder
    d.vocab_size = 512
    d.width = 64
    d.depth = 2
    d.num_heads = 4
    d.num_kv_heads = 2
    d.mlp_dim = 128
    d.rope_theta = 10000.0
    d.max_seq_len = 256
    c.data.max_text_len = 48
    c.data.length_buckets = (24, 48)
    c.model.transcript_tokens = 4
    c.train.steps = 200
    c.train.batch_size = 8
    c.train.checkpoint_every = 50
    c.train.learning_rate = 3e-3
    c.train.warmup_steps = 20
    c.train.log_every = 10
    return c
