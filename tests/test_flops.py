"""The analytic FLOP count equals a hand count for the tiny config, term by term."""
from pegasus_jax import config as cfg
from pegasus_jax.scaling.flops import decoder_sequence_length, flops_per_example, flops_per_step, param_counts


def test_tiny_flops_match_hand_count():
    c = cfg.get("tiny")
    # vision: 2 segments x 4 frames = 8 images of 32x32 px, 8 px patches -> 16 patches + CLIP class token = 17
    patch_embed = 8 * 16 * (8 * 8 * 3) * 32
    vision_layer = 4 * 17 * 32 * 32 + 2 * 17 * 17 * 32 + 2 * 17 * 32 * 64
    vision = patch_embed + 8 * 2 * vision_layer
    # temporal: 1 layer over 4 frames at each of 2 segments x 16 locations
    temporal = 32 * (4 * 4 * 32 * 32 + 2 * 4 * 4 * 32 + 2 * 4 * 32 * 64)
    # audio: 1 s -> 100 mel frames -> 50 positions, 2 segments, 2 layers
    stem = 100 * 3 * 80 * 32 + 50 * 3 * 32 * 32
    audio_layer = 4 * 50 * 32 * 32 + 2 * 50 * 50 * 32 + 2 * 50 * 32 * 64
    audio = 2 * stem + 2 * 2 * audio_layer
    # alignment: 8 pooled visual tokens and 4 audio tokens per segment, projector hidden = decoder width 64
    align = 2 * 8 * (32 * 64 + 64 * 64) + 2 * 64 * 64 + 2 * 4 * (32 * 64 + 64 * 64)
    # decoder: 2 x (1 marker + 8 visual + 4 audio + 4 transcript) + 48 text = 82 positions
    t = 82
    decoder_layer = t * 64 * (2 * 64 + 2 * 32) + 3 * t * 64 * 128 + (2 * t * t * 64) // 2  # causal: half
    decoder = 2 * decoder_layer
    lm_head = t * 64 * 512
    forward = 2 * (vision + temporal + audio + align + decoder + lm_head)
    assert decoder_sequence_length(c) == t
    got = flops_per_example(c)
    assert got["vision"] == 2 * vision and got["decoder"] == 2 * decoder and got["audio"] == 2 * audio
    assert got["total_forward"] == forward == 36_525_056
    assert got["total_train"] == 3 * forward
    assert flops_per_step(c) == 8 * 3 * forward


def test_siglip_without_audio_hand_count():
    c = cfg.get("tiny", model__vision__kind="siglip", model__audio__enabled=False)
    # siglip: no class token -> 16 tokens per frame
    vision = 8 * 16 * (8 * 8 * 3) * 32 + 8 * 2 * (4 * 16 * 32 * 32 + 2 * 16 * 16 * 32 + 2 * 16 * 32 * 64)
    # no audio tokens: 2 x (1 + 8 + 4) + 48 = 74 positions
    t = 74
    decoder = 2 * (t * 64 * (2 * 64 + 2 * 32) + 3 * t * 64 * 128 + t * t * 64)  # causal: half of 2 t^2 64
    got = flops_per_example(c)
    assert decoder_sequence_length(c) == t
    assert got["audio"] == 0 and got["vision"] == 2 * vision and got["decoder"] == 2 * decoder
    assert got["align"] == 2 * (2 * 8 * (32 * 64 + 64 * 64) + 2 * 64 * 64)


def test_param_counts_split_embedding_from_n():
    counts = param_counts(cfg.get("tiny"))
    assert counts["embedding"] == 2 * 512 * 64  # token embedding + untied lm_head
    assert counts["non_embedding"] == counts["total"] - counts["embedding"] > 0


def test_pool_after_projector_projects_every_grid_token_and_keeps_the_token_count():
    c = cfg.get("tiny", model__align__pool_after_projector=True)
    before = flops_per_example(cfg.get("tiny"))
    got = flops_per_example(c)
    # PLLaVA's order: 2 segments x 4 frames x 16 grid tokens through the projector, then pooled to 8
    align = 2 * 4 * 16 * (32 * 64 + 64 * 64) + 2 * 64 * 64 + 2 * 4 * (32 * 64 + 64 * 64)
    assert got["align"] == 2 * align
    assert decoder_sequence_length(c) == 82  # the decoder sees as many tokens as pooling first
    assert {k: v for k, v in got.items() if not k.startswith(("align", "total"))} == \
        {k: v for k, v in before.items() if not k.startswith(("align", "total"))}
