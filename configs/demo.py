"""The `make demo` model: the tiny architecture, widened where the synthetic task needs it.

    pegasus-jax demo --workdir runs/demo

Expected: finishes within 15 minutes on 2 CPU cores and writes runs/demo/demo_report.json with
per-attribute accuracy on held-out attribute combinations next to chance, the ablations, the API tasks on
held-out clips, and the PyTorch export's check. Measured 2026-12-03 (all 1650 steps, 667 s in the demo,
11 min 12 s for the command, speech on with espeak-ng): colour 100%, shape 92.5%, direction 96.0%, pitch 100%,
spoken word 100% (chance 25-33%); transcript removed: word 24.5%; audio removed: pitch 0% (no tone named);
motion removed (every frame the middle one): direction 29.5%; temporal layers removed: direction 83.0%.
API tasks (greedy, constrained decoding): gist title naming colour and shape 93.8% of 64 clips; chapter and
highlight times within one segment 100% of 64 two-part clips.
"""
from configs.tiny import get_config as tiny_config


def get_config():
    c = tiny_config()
    c.name = "demo"
    v = c.model.vision
    v.width = 64
    v.num_heads = 4
    v.mlp_dim = 128
    v.temporal_depth = 1
    a = c.model.audio
    a.width = 64
    a.num_heads = 4
    a.mlp_dim = 128
    al = c.model.align
    al.pool_t = 2
    al.pool_h = 4
    al.pool_w = 4
    al.visual_token_budget = 96
    d = c.model.decoder
    d.width = 128
    d.depth = 2
    d.num_heads = 4
    d.num_kv_heads = 2
    d.mlp_dim = 256
    # The spoken word (espeak-ng) reaches the model as its transcript: one word, one or two tokens, in the
    # segment(s) it is spoken in. Without espeak-ng the clips carry no speech and the slots stay masked.
    c.model.transcript_tokens = 2
    c.data.synth_clips = 2000
    # Mostly captions: every caption names all four attributes, while a QA turn's answer must first be routed
    # from its question and the chapter JSON is mostly boilerplate. With the three tasks drawn evenly
    # (kind 'video' alone) motion direction was not learned in this budget (14.5%); at 3:1 it is (99.5%).
    # The API tasks (gist, summary, chapters, highlights; kind 'tasks') at the video kind's weight. With them,
    # 1800 steps took 779 s in the demo (direction 99.5%, shape 98.5%), 1500 took 649 s (85.0%, 91.0%).
    c.data.mixture = (("builtin", 3.0, "caption"), ("builtin", 1.0, "video"), ("builtin", 1.0, "tasks"))
    # Room for the longest task answer (a two-part clip's chapters: 57 tokens with the prompt and markers).
    c.data.max_text_len = 64
    c.data.length_buckets = (40, 64)
    c.data.cache_media_mb = 512  # ~14 epochs: decode each clip once (~300 MiB)
    c.train.steps = 1650
    c.train.batch_size = 16
    c.train.checkpoint_every = 550
    c.train.learning_rate = 5e-4
    c.train.warmup_steps = 50
    c.train.log_every = 25
    # The video encoder learns from scratch at 3x the rate: the shape word is one token of a caption, so
    # its gradient into the tower is small (held-out shape on the corpus before silent clips and centred
    # paths: 76% at 1200 steps, 82.5% at 1800, 80% with 3x at 1200, 95% with both).
    c.train.lr_mults = (("video_encoder", 3.0),)
    # Warmup-stable-decay: shape 95.5% against 89.5% with cosine decay, everything else the same.
    c.train.schedule = "wsd"
    c.train.max_seconds = 780.0  # 1650 steps take ~575 s on 2 cores: room for a slower machine
    c.train.eval_every = 275
    c.train.eval_batches = 4
    c.demo = {"eval_clips": 200, "task_clips": 64}
    return c
