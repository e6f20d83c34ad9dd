"""The `make demo` model: the tiny architecture, widened where the synthetic task needs it.

    pegasus-jax demo --workdir runs/demo

Expected: finishes within 15 minutes on 2 CPU cores and writes runs/demo/demo_report.json with
per-attribute accuracy on held-out attribute combinations next to chance and three ablations, and
the PyTorch export's check. Measured 2026-12-02 (all 1800 steps): colour 100%, shape 95.5%, direction
99.5%, pitch 100% (chance 25-33%); audio removed: pitch 0% (no tone named; colour, shape and direction
hold); motion removed (every frame the middle one): direction 33.5% (31.5% of the held-out clips move
right); temporal layers removed: direction 89.5% (the decoder also reads direction from the order of
the pooled frames).
"""
from configs.tiny import get_config as tiny_config


def get_config():
    c = tiny_config()
    c.name = "demo"
    v = c.model.vision
    v.width, v.num_heads, v.mlp_dim, v.temporal_depth = 64, 4, 128, 1
    a = c.model.audio
    a.width, a.num_heads, a.mlp_dim = 64, 4, 128
    al = c.model.align
    al.pool_t, al.pool_h, al.pool_w, al.visual_token_budget = 2, 4, 4, 96
    d = c.model.decoder
    d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 128, 2, 4, 2, 256
    c.model.transcript_tokens = 0  # no espeak-ng by default: the synthetic clips carry no speech
    c.data.synth_clips = 2000
    # Mostly captions: every caption names all four attributes, while a QA turn's answer must first be routed
    # from its question and the chapter JSON is mostly boilerplate. With the three tasks drawn evenly
    # (kind 'video' alone) motion direction was not learned in this budget (14.5%); at 3:1 it is (99.5%).
    c.data.mixture = (("builtin", 3.0, "caption"), ("builtin", 1.0, "video"))
    c.data.cache_media_mb = 512  # ~14 epochs: decode each clip once (~300 MiB)
    c.train.steps, c.train.batch_size, c.train.checkpoint_every = 1800, 16, 600
    c.train.learning_rate, c.train.warmup_steps, c.train.log_every = 5e-4, 50, 25
    # The video encoder learns from scratch at 3x the rate: the shape word is one token of a caption, so
    # its gradient into the tower is small (held-out shape on the corpus before silent clips and centred
    # paths: 76% at 1200 steps, 82.5% at 1800, 80% with 3x at 1200, 95% with both).
    c.train.lr_mults = (("video_encoder", 3.0),)
    # Warmup-stable-decay: shape 95.5% against 89.5% with cosine decay, everything else the same.
    c.train.schedule = "wsd"
    c.train.max_seconds = 780.0  # 1800 steps take 640-690 s on 2 cores: room for a slower machine
    c.train.eval_every, c.train.eval_batches = 200, 4
    c.demo = {"eval_clips": 200}
    return c
