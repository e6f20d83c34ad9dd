"""The model section of the config schema: config.model's fields with their defaults, each part's
checks beside it, and the derived quantities the model reads (head_dim, qkv_bias, audio_positions).
The rest of the config, `base_config()` and `validate()`: config/schema.py.
"""
from __future__ import annotations

import math

import ml_collections

from data_pipelines.decode.video import FRAME_RESIZES
from pegasus_jax.errors import ConfigError

VISION_KINDS = ("clip", "siglip")
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
ATTENTION_BACKENDS = ("auto", "xla", "blockwise", "splash", "cudnn")  # pegasus_jax/models/attention.py
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
DECODER_FAMILIES = ("llama", "qwen2", "mistral")  # the HF causal-LM layouts import reads and export writes
ROPE_TYPES = ("default", "llama3")
PROJECTOR_ACTS = ("gelu", "gelu_tanh", "quick_gelu", "silu")


def require(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{field}: {msg}")


def positive(section, prefix: str, *fields: str) -> None:
    for name in fields:
        value = section[name]
        require(isinstance(value, (int, float)) and value > 0, f"{prefix}.{name}", f"must be > 0, got {value!r}")


# ---- model.vision ------------------------------------------------------------------------------

def vision_config() -> ml_collections.ConfigDict:
    v = ml_collections.ConfigDict()
    v.kind = "clip"  # clip | siglip: which HF vision tower the per-frame ViT mirrors
    v.image_size = 224
    v.patch_size = 14
    v.width = 1024
    v.depth = 24
    v.num_heads = 16
    v.mlp_dim = 4096
    v.layer_norm_eps = 1e-5
    v.temporal_depth = 4  # factorised temporal layers, residual branches zero-initialised
    v.max_frames = 16  # length of the learned temporal position embedding (interpolated otherwise)
    # "area_crop": fast (area filter, centre crop); "clip"/"siglip": as the HF image processor (set by import-hf)
    v.frame_resize = "area_crop"
    return v


def check_vision(v) -> None:
    f = "config.model.vision"
    positive(v, f, "image_size", "patch_size", "width", "depth", "num_heads", "mlp_dim", "max_frames")
    require(v.kind in VISION_KINDS, f"{f}.kind", f"must be one of {VISION_KINDS}, got {v.kind!r}")
    require(v.image_size % v.patch_size == 0, f"{f}.patch_size", f"{v.patch_size} does not divide image_size {v.image_size}")
    require(v.width % v.num_heads == 0, f"{f}.num_heads", f"{v.num_heads} heads do not divide width {v.width}")
    require(v.temporal_depth >= 0, f"{f}.temporal_depth", "must be >= 0")
    require(v.width % 4 == 0 and v.width >= 8, f"{f}.width",
             f"must be a multiple of 4 and >= 8 (sin and cos per grid axis in the position tables), got {v.width}")
    require(v.frame_resize in FRAME_RESIZES, f"{f}.frame_resize",
             f"must be one of {FRAME_RESIZES}, got {v.frame_resize!r}")


# ---- model.audio -------------------------------------------------------------------------------

def audio_config() -> ml_collections.ConfigDict:
    a = ml_collections.ConfigDict()
    a.enabled = True
    a.num_mel_bins = 80
    a.width = 1280
    a.depth = 32
    a.num_heads = 20
    a.mlp_dim = 5120
    a.max_source_positions = 1500  # Whisper: 30 s of audio -> 3000 mel frames -> 1500 positions
    a.layer_norm_eps = 1e-5
    # Encode each segment in Whisper's padded 30 s window, as pretrained Whisper saw it (set by import-hf)
    a.whisper_window = False
    return a


def check_audio(a) -> None:
    f = "config.model.audio"
    positive(a, f, "width", "depth", "num_heads", "mlp_dim", "num_mel_bins", "max_source_positions")
    require(a.width % a.num_heads == 0, f"{f}.num_heads", f"{a.num_heads} heads do not divide width {a.width}")
    require(a.num_mel_bins in (80, 128), f"{f}.num_mel_bins", f"must be 80 or 128, got {a.num_mel_bins}")


# ---- model.align -------------------------------------------------------------------------------

def align_config() -> ml_collections.ConfigDict:
    al = ml_collections.ConfigDict()
    al.frames_per_segment = 16  # frames each segment is encoded from
    al.segment_seconds = 8.0  # a segment spans this much video time
    al.pool_t = 4  # PLLaVA adaptive pooling target (T', h', w') per segment
    al.pool_h = 12
    al.pool_w = 12
    al.audio_tokens = 8  # audio tokens per segment after pooling
    al.projector_hidden = 0  # 0 -> the decoder width
    al.projector_norm = True  # an input LayerNorm; False is LLaVA's projector (linear, act, linear)
    al.projector_act = "gelu"
    al.visual_token_budget = 4096  # total video+audio tokens per sample; pooling adapts to it
    # False: pool the encoder's grid, then project T'h'w' tokens (cheap for long videos); True: project all
    # T*g*g grid tokens, then pool (PLLaVA's order). Same token count either way.
    al.pool_after_projector = False
    return al


def check_align(m) -> None:
    """The alignment section against the encoders it pools (takes the whole model section)."""
    f, al, v, a = "config.model.align", m.align, m.vision, m.audio
    positive(al, f, "frames_per_segment", "segment_seconds", "pool_t", "pool_h", "pool_w", "audio_tokens",
              "visual_token_budget")
    grid = v.image_size // v.patch_size
    require(al.pool_h <= grid, f"{f}.pool_h", f"{al.pool_h} exceeds the patch grid height {grid}")
    require(al.pool_w <= grid, f"{f}.pool_w", f"{al.pool_w} exceeds the patch grid width {grid}")
    require(al.projector_act in PROJECTOR_ACTS, f"{f}.projector_act", f"must be one of {PROJECTOR_ACTS}")
    require(al.pool_t <= al.frames_per_segment, f"{f}.pool_t",
             f"{al.pool_t} exceeds frames_per_segment {al.frames_per_segment}")
    require(al.frames_per_segment <= v.max_frames or v.temporal_depth == 0, f"{f}.frames_per_segment",
             f"{al.frames_per_segment} exceeds vision.max_frames {v.max_frames}")
    if a.enabled:
        positions = audio_positions(m)
        require(positions <= a.max_source_positions, f"{f}.segment_seconds",
                 f"{al.segment_seconds}s of audio needs {positions} positions, "
                 f"more than audio.max_source_positions {a.max_source_positions}")
        require(al.audio_tokens <= positions, f"{f}.audio_tokens",
                 f"{al.audio_tokens} exceeds the {positions} audio positions per segment")


# ---- model.decoder -----------------------------------------------------------------------------

def decoder_config() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.vocab_size = 32000
    d.width = 4096
    d.depth = 32
    d.num_heads = 32
    d.num_kv_heads = 8
    d.head_dim = 0  # 0 -> width // num_heads
    d.mlp_dim = 14336
    d.rope_theta = 500000.0
    d.rms_norm_eps = 1e-5
    d.tie_embeddings = False
    d.max_seq_len = 8192
    d.family = "llama"  # llama | qwen2 (q/k/v biases) | mistral: the HF architecture export writes
    d.sliding_window = 0  # a query sees only the last N keys (Mistral); 0: all
    d.rope_type = "default"  # default | llama3: Llama 3.1's frequency scaling with the fields below
    d.rope_factor, d.rope_low_freq_factor, d.rope_high_freq_factor, d.rope_original_max_len = 8.0, 1.0, 4.0, 8192
    return d


def check_decoder(d) -> None:
    f = "config.model.decoder"
    positive(d, f, "vocab_size", "width", "depth", "num_heads", "num_kv_heads", "mlp_dim", "rope_theta", "max_seq_len")
    require(d.num_heads % d.num_kv_heads == 0, f"{f}.num_kv_heads",
             f"{d.num_kv_heads} KV heads do not divide {d.num_heads} query heads (GQA groups)")
    if d.head_dim == 0:
        require(d.width % d.num_heads == 0, f"{f}.num_heads", f"{d.num_heads} heads do not divide width {d.width}")
    require(head_dim(d) % 2 == 0, f"{f}.head_dim", "must be even for RoPE")
    require(d.family in DECODER_FAMILIES, f"{f}.family", f"must be one of {DECODER_FAMILIES}, got {d.family!r}")
    require(d.rope_type in ROPE_TYPES, f"{f}.rope_type", f"must be one of {ROPE_TYPES}, got {d.rope_type!r}")
    require(d.sliding_window == 0 or (d.family == "mistral" and d.sliding_window > 0), f"{f}.sliding_window",
             f"must be 0, or > 0 with family 'mistral' (the HF layout that has one), got {d.sliding_window}")


# ---- model.lora --------------------------------------------------------------------------------

def lora_config() -> ml_collections.ConfigDict:
    lo = ml_collections.ConfigDict()
    lo.rank = 0  # 0 disables LoRA
    lo.alpha = 32.0  # the delta is scaled by alpha / rank; rescale at inference to blend (PLLaVA)
    lo.targets = ("q", "v")
    # The instruct_lora stage trains the alignment projectors with the adapters, as PLLaVA does (its LoRA
    # stage tunes the projector too); False trains the adapters alone.
    lo.train_projector = True
    return lo


def check_lora(lo) -> None:
    require(lo.rank >= 0, "config.model.lora.rank", "must be >= 0")
    require(set(lo.targets) <= set(LORA_TARGETS), "config.model.lora.targets",
             f"unknown projection in {tuple(lo.targets)}")


# ---- model -------------------------------------------------------------------------------------

def model_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.dtype = "bfloat16"  # compute dtype; parameters are kept in param_dtype (fp32 master weights)
    m.param_dtype = "float32"
    m.scan_layers = True
    m.remat_policy = "none"
    m.attention = "auto"  # attention backend of the decoder and the encoders: one of ATTENTION_BACKENDS
    m.transcript_tokens = 8  # speech-transcript tokens per segment (0 disables the transcript stream)
    m.vision = vision_config()
    m.audio = audio_config()
    m.align = align_config()
    m.decoder = decoder_config()
    m.lora = lora_config()
    return m


def check_model(m) -> None:
    check_vision(m.vision)
    check_audio(m.audio)
    check_align(m)
    check_decoder(m.decoder)
    check_lora(m.lora)
    require(m.remat_policy in REMAT_POLICIES, "config.model.remat_policy",
             f"must be one of {REMAT_POLICIES}, got {m.remat_policy!r}")
    require(m.attention in ATTENTION_BACKENDS, "config.model.attention",
             f"must be one of {ATTENTION_BACKENDS}, got {m.attention!r}")
    require(m.transcript_tokens >= 0, "config.model.transcript_tokens", f"must be >= 0, got {m.transcript_tokens}")


def head_dim(decoder_cfg) -> int:
    return decoder_cfg.head_dim or decoder_cfg.width // decoder_cfg.num_heads


def qkv_bias(decoder_cfg) -> bool:
    """Whether q/k/v projections have biases: Qwen2's layout (o and the MLP stay bias-free)."""
    return decoder_cfg.family == "qwen2"


def audio_positions(config) -> int:
    """Audio encoder positions per segment: 100 mel frames per second, halved by the stride-2 conv.
    `config`: the whole config or its model section."""
    model = config.model if "model" in config else config
    mel_frames = int(round(model.align.segment_seconds * 100))
    return math.ceil(mel_frames / 2)
