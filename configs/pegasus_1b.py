"""Pegasus 1B: SigLIP-B-class frames, Whisper-base-class audio, a 1B Llama-3.2-shaped decoder.

    pegasus-jax compile --config configs/pegasus_1b.py --topology v5p-8

Expected: fits: yes.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "pegasus_1b"
    v = c.model.vision
    v.kind = "siglip"
    v.image_size = 224
    v.patch_size = 16
    v.width = 768
    v.depth = 12
    v.num_heads = 12
    v.mlp_dim = 3072
    v.layer_norm_eps = 1e-6
    v.temporal_depth = 4
    v.max_frames = 16
    a = c.model.audio
    a.width = 512
    a.depth = 6
    a.num_heads = 8
    a.mlp_dim = 2048
    al = c.model.align
    al.pool_t = 4
    al.pool_h = 8
    al.pool_w = 8
    d = c.model.decoder
    d.vocab_size = 128256  # Llama 3: --config.data.tokenizer=LLAMA3_DIR (tokenizer.json); markers take reserved ids
    d.width = 2048
    d.depth = 16
    d.num_heads = 32
    d.num_kv_heads = 8
    d.mlp_dim = 8192
    d.tie_embeddings = True
    c.train.batch_size = 256
    c.mesh.data = 1
    c.mesh.fsdp = -1
    return c
