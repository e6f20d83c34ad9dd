"""The `make demo` model: the tiny architecture, widened where the synthetic task needs it.

    pegasus-jax demo --workdir runs/demo

Expected: finishes within 15 minutes on 2 CPU cores and writes runs/demo/demo_report.json with
per-attribute accuracy on held-out attribute combinations next to chance and three ablations, and
the PyTorch export's check. Measured 2026-12-02 (1200 steps, 519 s in all): colour 100%, shape 76%,
direction 99.5%, pitch 100% (chance 25-33%); audio removed: pitch 30%; motion removed (every frame
the middle one): direction 15.5%; temporal layers removed: direction 98.5% (the decoder reads
direction from the order of the pooled frames, not from the temporal layers). Shape is short of the
90% target (82.5% with --config.train.steps=1800 --config.train.max_seconds=700, 721 s).
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
    c.data.transcript_tokens = 0  # no espeak-ng by default: the synthetic clips carry no speech
    c.data.synth_clips = 2000
    # Mostly captions: every caption names all four attributes, while a QA turn's answer must first be routed
    # from its question and the chapter JSON is mostly boilerplate. With the three tasks drawn evenly
    # (kind 'video' alone) motion direction was not learned in this budget (14.5%); at 3:1 it is (99.5%).
    c.data.mixture = (("builtin", 3.0, "caption"), ("builtin", 1.0, "video"))
    c.data.cache_media_mb = 512  # ~8 epochs: decode each clip once (~300 MiB)
    c.train.steps, c.train.batch_size, c.train.checkpoint_every = 1200, 16, 400
    c.train.learning_rate, c.train.warmup_steps, c.train.log_every = 5e-4, 50, 25
    c.train.max_seconds = 420.0
    c.train.eval_every, c.train.eval_batches = 200, 4
    c.demo = {"eval_clips": 200}
    return c
