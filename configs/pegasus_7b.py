"""Pegasus 7B: CLIP-L/14 frames, Whisper-large-class audio, a Llama-3-8B-shaped decoder.

    pegasus-jax compile --config configs/pegasus_7b.py --topology v5p-64

Expected: fits: yes.
"""
from pegasus_jax.config import base_config


def get_config():
    c = base_config()
    c.name = "pegasus_7b"
    v = c.model.vision
    v.kind = "clip"
    v.image_size = 336
    v.patch_size = 14
    v.width = 1024
    v.depth = 24
    v.num_heads = 16
    v.mlp_dim = 4096
    v.temporal_depth = 4
    d = c.model.decoder
    d.vocab_size = 128256  # Llama 3: --config.data.tokenizer=LLAMA3_DIR (tokenizer.json); markers take reserved ids
    d.width = 4096
    d.depth = 32
    d.num_heads = 32
    d.num_kv_heads = 8
    d.mlp_dim = 14336
    c.model.remat_policy = "dots_with_no_batch_dims"
    c.train.batch_size = 512
    c.mesh.data = 1
    c.mesh.fsdp = -1
    return c
