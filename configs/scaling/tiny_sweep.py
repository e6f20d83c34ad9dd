"""A CPU-sized scaling sweep: 3 decoder widths x 2 training lengths of the tiny config.

    pegasus-jax scaling sweep --sweep configs/scaling/tiny_sweep.py --workdir runs/tiny_sweep
    pegasus-jax scaling fit runs/tiny_sweep/runs.jsonl --out runs/tiny_sweep/fit.json --plots runs/tiny_sweep

Expected: 6 points in a few minutes on 2 CPU cores; runs.jsonl with 6 rows whose loss falls with
width and steps. Six tiny runs pin down no law: this sweep exercises the machinery, the fit needs
sizes spanning orders of magnitude.
"""
import ml_collections


def get_sweep():
    s = ml_collections.ConfigDict()
    s.name = "tiny_sweep"
    s.base = "tiny"
    s.widths = (32, 64, 96)
    s.head_dim = 16  # heads = width // 16
    s.kv_group = 2  # query heads per KV head
    s.width_per_layer = 32  # depth = round(width / 32): deeper as wider, aspect ratio fixed
    s.min_depth = 1
    s.mlp_ratio = 2
    s.lr_scale = 0.024  # lr = 0.024 / sqrt(width): 3e-3 at the tiny config's width 64
    s.steps = (20, 40)
    s.warmup_fraction = 0.1
    s.loss_window = 3
    s.overrides = (("data.synth_clips", 64), ("train.log_every", 5), ("train.checkpoint_every", 1000))
    return s
