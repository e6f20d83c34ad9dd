"""Pegasus 7B, long-video stage: up to 512 segments of 8 s (68 minutes at full density) and 4,096 text
tokens, 32,768 decoder tokens per example, split over 4 chips by context parallelism.

    pegasus-jax compile --config configs/pegasus_7b_long.py --topology v5p-128

Measured 2026-12-03 (libtpu, splash attention; xla for the 4-frame temporal layers): fits: yes, 40.92 GiB
per chip of 95 (43%; arguments 2.48, outputs 1.59, temporaries 38.24 GiB). The model is
configs/pegasus_7b.py; this stage changes what an example holds. Each 8 s segment becomes 56 decoder tokens: a timestamp marker, 5x5
pooled visual tokens from 4 frames (one every 2 s, averaged over time to 1x5x5), 6 audio tokens and 24 transcript tokens (speech at ~3 tokens/s). 512 x 56 = 28,672 visual tokens
(the budget) + 4,096 text = 32,768. A one-hour video is 450 consecutive segments, every 8 s of it seen.

Training and inference plan segments the same way: both call data_pipelines' `segment_plan` with
data.max_segments and pool at `pool_shape(model, data.max_segments)` (pegasus_jax/infer/video_input.py),
so a video up to 68 minutes is cut into consecutive 8 s segments and a longer one into 512 equal windows,
4 frames spread over each, in both. They differ only where the result cannot: training pads every
example to 512 segments (masked out, skipped by the RoPE positions) in one static shape, while inference
encodes just the segments the video has, one at a time, to keep device memory at one segment.

The mesh is fsdp 16 x context 4 on v5p-128: each example's 32,768 tokens are 8,192 per chip, and its
segments are encoded on the 4 chips that hold their tokens. Global batch 16 (524k tokens a step).
"""
from configs.pegasus_7b import get_config as pegasus_7b_config


def get_config():
    c = pegasus_7b_config()
    c.name = "pegasus_7b_long"
    al = c.model.align
    al.segment_seconds = 8.0
    al.frames_per_segment = 4
    al.pool_t = 1
    al.pool_h = 5
    al.pool_w = 5
    al.audio_tokens = 6
    c.model.transcript_tokens = 24
    c.data.max_segments = 512
    al.visual_token_budget = 512 * (1 + 1 * 5 * 5 + 6 + 24)
    c.data.max_text_len = 4096
    c.data.length_buckets = (512, 1024, 2048, 4096)
    c.model.decoder.max_seq_len = 32768
    c.model.remat_policy = "full"
    c.train.batch_size = 16
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.context = 4
    return c
