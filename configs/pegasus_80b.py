"""Pegasus 80B (Pegasus-1 scale): ViT-e-class frames, Whisper-large-class audio, a Llama-70B-shaped decoder.

    pegasus-jax compile --config configs/pegasus_80b.py --topology v5p-256
    pegasus-jax compile --config configs/pegasus_80b.py --topology v5p-128 --num-slices 2

Expected: ~76.8B parameters (decoder 70.6B) and the line `fits: yes`. The mesh axes below are per
slice; with several slices mesh.dcn_data (-1) makes them data-parallel replicas over DCN.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "pegasus_80b"
    v = c.model.vision
    v.kind = "siglip"
    v.image_size = 224
    v.patch_size = 14
    v.width = 1792
    v.depth = 64
    v.num_heads = 16
    v.mlp_dim = 15360
    v.layer_norm_eps = 1e-6
    v.temporal_depth = 16
    v.max_frames = 16
    d = c.model.decoder
    d.vocab_size = 128256  # Llama 3: --config.data.tokenizer=LLAMA3_DIR (tokenizer.json); markers take reserved ids
    d.width = 8192
    d.depth = 80
    d.num_heads = 64
    d.num_kv_heads = 8
    d.mlp_dim = 28672
    c.model.remat_policy = "full"
    c.train.batch_size = 256
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 4
    return c
