"""Pegasus 80B at a long-video shape: 24 segments (3 minutes at 8 s each) and 1,024 text tokens,
8,344 decoder tokens per example (24 x (1 marker + 2x12x12 visual + 8 audio + 8 transcript) + 1,024).

    pegasus-jax compile --config configs/pegasus_80b_long.py --topology v5p-256

Measured 2026-12-03 (libtpu, splash attention): fits: yes, 50.14 GiB per chip of 95 (53%; arguments 6.82
GiB, outputs 6.75 GiB, temporaries 43.14 GiB), mesh fsdp 32 x tensor 4.
The model is configs/pegasus_80b.py unchanged; only the data shapes and the batch differ. The global
batch is 32 examples (267k decoder tokens a step, against 320k for pegasus_80b's 256 x 1,250): each
example sends 384 frames through the 64-layer ViT, so the frames, not the decoder, set the memory.
"""
from configs.pegasus_80b import get_config as pegasus_80b_config


def get_config():
    c = pegasus_80b_config()
    c.name = "pegasus_80b_long"
    c.data.max_segments = 24
    c.data.max_text_len = 1024
    c.data.length_buckets = (256, 1024)
    c.model.align.pool_t = 2
    c.model.align.pool_h = 12
    c.model.align.pool_w = 12
    c.model.align.visual_token_budget = 24 * (1 + 2 * 12 * 12 + 8 + 8)
    c.model.decoder.max_seq_len = 8192 + 1024
    c.train.batch_size = 32
    return c
