"""The config schema: every section's fields with their defaults, and next to each section its checks.

Every size config starts from `base_config()` and changes fields; `validate()` runs each section's
check and raises `ConfigError` with one line naming the field at fault. The model is built from
`config.model` alone, so everything the model reads lives there (e.g. model.transcript_tokens).
Loading files and parsing overrides: config/loader.py.
"""
from __future__ import annotations

import math
import re

import ml_collections

from data_pipelines.decode.video import FRAME_RESIZES
from pegasus_jax.errors import ConfigError
from pegasus_jax.sharding import DEFAULT_AXIS_RULES, MESH_AXES

VISION_KINDS = ("clip", "siglip")
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
ATTENTION_BACKENDS = ("auto", "xla", "blockwise", "splash", "cudnn")  # pegasus_jax/models/attention.py
STAGES = ("pretrain", "align", "instruct", "instruct_lora")
LR_SCHEDULES = ("cosine", "wsd")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
DECODER_FAMILIES = ("llama", "qwen2", "mistral")  # the HF causal-LM layouts import reads and export writes
ROPE_TYPES = ("default", "llama3")
PROJECTOR_ACTS = ("gelu", "gelu_tanh", "quick_gelu", "silu")


def _require(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{field}: {msg}")


def _positive(section, prefix: str, *fields: str) -> None:
    for name in fields:
        value = section[name]
        _require(isinstance(value, (int, float)) and value > 0, f"{prefix}.{name}", f"must be > 0, got {value!r}")


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
    _positive(v, f, "image_size", "patch_size", "width", "depth", "num_heads", "mlp_dim", "max_frames")
    _require(v.kind in VISION_KINDS, f"{f}.kind", f"must be one of {VISION_KINDS}, got {v.kind!r}")
    _require(v.image_size % v.patch_size == 0, f"{f}.patch_size", f"{v.patch_size} does not divide image_size {v.image_size}")
    _require(v.width % v.num_heads == 0, f"{f}.num_heads", f"{v.num_heads} heads do not divide width {v.width}")
    _require(v.temporal_depth >= 0, f"{f}.temporal_depth", "must be >= 0")
    _require(v.width % 4 == 0 and v.width >= 8, f"{f}.width",
             f"must be a multiple of 4 and >= 8 (sin and cos per grid axis in the position tables), got {v.width}")
    _require(v.frame_resize in FRAME_RESIZES, f"{f}.frame_resize",
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
    _positive(a, f, "width", "depth", "num_heads", "mlp_dim", "num_mel_bins", "max_source_positions")
    _require(a.width % a.num_heads == 0, f"{f}.num_heads", f"{a.num_heads} heads do not divide width {a.width}")
    _require(a.num_mel_bins in (80, 128), f"{f}.num_mel_bins", f"must be 80 or 128, got {a.num_mel_bins}")


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
    return al


def check_align(m) -> None:
    """The alignment section against the encoders it pools (takes the whole model section)."""
    f, al, v, a = "config.model.align", m.align, m.vision, m.audio
    _positive(al, f, "frames_per_segment", "segment_seconds", "pool_t", "pool_h", "pool_w", "audio_tokens",
              "visual_token_budget")
    grid = v.image_size // v.patch_size
    _require(al.pool_h <= grid, f"{f}.pool_h", f"{al.pool_h} exceeds the patch grid height {grid}")
    _require(al.pool_w <= grid, f"{f}.pool_w", f"{al.pool_w} exceeds the patch grid width {grid}")
    _require(al.projector_act in PROJECTOR_ACTS, f"{f}.projector_act", f"must be one of {PROJECTOR_ACTS}")
    _require(al.pool_t <= al.frames_per_segment, f"{f}.pool_t",
             f"{al.pool_t} exceeds frames_per_segment {al.frames_per_segment}")
    _require(al.frames_per_segment <= v.max_frames or v.temporal_depth == 0, f"{f}.frames_per_segment",
             f"{al.frames_per_segment} exceeds vision.max_frames {v.max_frames}")
    if a.enabled:
        positions = audio_positions(m)
        _require(positions <= a.max_source_positions, f"{f}.segment_seconds",
                 f"{al.segment_seconds}s of audio needs {positions} positions, "
                 f"more than audio.max_source_positions {a.max_source_positions}")
        _require(al.audio_tokens <= positions, f"{f}.audio_tokens",
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
    _positive(d, f, "vocab_size", "width", "depth", "num_heads", "num_kv_heads", "mlp_dim", "rope_theta", "max_seq_len")
    _require(d.num_heads % d.num_kv_heads == 0, f"{f}.num_kv_heads",
             f"{d.num_kv_heads} KV heads do not divide {d.num_heads} query heads (GQA groups)")
    if d.head_dim == 0:
        _require(d.width % d.num_heads == 0, f"{f}.num_heads", f"{d.num_heads} heads do not divide width {d.width}")
    _require(head_dim(d) % 2 == 0, f"{f}.head_dim", "must be even for RoPE")
    _require(d.family in DECODER_FAMILIES, f"{f}.family", f"must be one of {DECODER_FAMILIES}, got {d.family!r}")
    _require(d.rope_type in ROPE_TYPES, f"{f}.rope_type", f"must be one of {ROPE_TYPES}, got {d.rope_type!r}")
    _require(d.sliding_window == 0 or (d.family == "mistral" and d.sliding_window > 0), f"{f}.sliding_window",
             f"must be 0, or > 0 with family 'mistral' (the HF layout that has one), got {d.sliding_window}")


# ---- model.lora --------------------------------------------------------------------------------

def lora_config() -> ml_collections.ConfigDict:
    lo = ml_collections.ConfigDict()
    lo.rank = 0  # 0 disables LoRA
    lo.alpha = 32.0  # the delta is scaled by alpha / rank; rescale at inference to blend (PLLaVA)
    lo.targets = ("q", "v")
    return lo


def check_lora(lo) -> None:
    _require(lo.rank >= 0, "config.model.lora.rank", "must be >= 0")
    _require(set(lo.targets) <= set(LORA_TARGETS), "config.model.lora.targets",
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
    _require(m.remat_policy in REMAT_POLICIES, "config.model.remat_policy",
             f"must be one of {REMAT_POLICIES}, got {m.remat_policy!r}")
    _require(m.attention in ATTENTION_BACKENDS, "config.model.attention",
             f"must be one of {ATTENTION_BACKENDS}, got {m.attention!r}")
    _require(m.transcript_tokens >= 0, "config.model.transcript_tokens", f"must be >= 0, got {m.transcript_tokens}")


# ---- data --------------------------------------------------------------------------------------

def data_config() -> ml_collections.ConfigDict:
    dt = ml_collections.ConfigDict()
    dt.path = ml_collections.FieldReference(None, field_type=str)  # records glob; None -> synthetic corpus
    dt.eval_path = ml_collections.FieldReference(None, field_type=str)
    # a SentencePiece tokenizer.model, or a tokenizer.json (or its folder); None -> one trained on the corpus
    dt.tokenizer = ml_collections.FieldReference(None, field_type=str)
    dt.max_segments = 2
    dt.max_text_len = 64  # text tokens (prompt + answer) per example, the longest length bucket
    dt.length_buckets = (32, 64)  # text lengths batches are padded to (the smallest that fits)
    dt.sample_rate = 16000
    dt.num_workers = 0
    dt.shuffle_seed = 0
    # Share of bad records (media/format errors) that aborts the run; a bug in the decode path is never
    # counted here: it stops the run with its traceback (data_pipelines/decode/registry.py).
    dt.max_bad_ratio = 0.05
    dt.decode_timeout_s = 30.0
    dt.max_pixels = 5184 * 2160  # larger videos are skipped (counted as too_large) before decoding
    dt.decoder = "pyav"  # decoder name in data_pipelines.decode.registry.DECODERS, or "module:function"
    dt.isolate_decode = True  # decode in a helper process: survives decoder crashes, enforces the timeout
    dt.cache_media_mb = 0  # keep up to this many MiB of decoded media per process for later epochs; 0 = off
    dt.mixture = ()  # ((records glob | 'builtin', weight, kind), ...); kind: video | caption | instruction | image
    dt.synth_clips = 2000
    # Sequence packing of training batches (data_pipelines/batch/packing.py; evaluation never packs): each
    # batch row is one decoder sequence of pack_tokens positions and pack_segments segment slots holding
    # several whole examples (0: room for one longest example); best fit over a window of pack_window
    # decoded examples held in host memory (0: twice the rows of a step times pack_segments / max_segments).
    dt.packing = True
    dt.pack_tokens = 0
    dt.pack_segments = 0
    dt.pack_window = 0
    return dt


def check_data(dt) -> None:
    _require(0.0 < dt.max_bad_ratio <= 1.0, "config.data.max_bad_ratio", "must be in (0, 1]")
    for field in ("pack_tokens", "pack_segments", "pack_window"):
        _require(dt[field] >= 0, f"config.data.{field}", f"must be >= 0 (0 = derived), got {dt[field]}")
    _require(dt.pack_segments == 0 or dt.pack_segments >= dt.max_segments, "config.data.pack_segments",
             f"{dt.pack_segments} cannot hold one example of config.data.max_segments={dt.max_segments} segments")


# ---- train -------------------------------------------------------------------------------------

def train_config() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.stage = "pretrain"
    t.steps = 1000
    t.max_seconds = 0.0  # stop (with a checkpoint) once training has run this long; 0 = no limit
    # Steps between the processes' agreements on stopping (SIGTERM on one host, max_seconds on one clock):
    # one tiny all-reduce per check, read one check later so the host never waits on it.
    t.stop_check_every = 1
    t.compilation_cache_dir = ml_collections.FieldReference(None, field_type=str)  # XLA's persistent cache; gs:// ok
    t.batch_size = 8
    t.grad_accum = 1
    t.learning_rate = 3e-4
    t.warmup_steps = 100
    t.schedule = "cosine"  # or "wsd": warmup-stable-decay, the peak held, then a linear decay
    t.decay_fraction = 0.2  # wsd: the share of `steps` spent in that decay
    t.min_lr_ratio = 0.1
    t.weight_decay = 0.1
    t.b1 = 0.9
    t.b2 = 0.95
    t.grad_clip = 1.0
    t.lr_mults = ()  # ((regex on parameter paths like 'video_encoder/temporal/...', multiplier), ...); first match
    t.nan_policy = "skip"  # skip | stop
    t.checkpoint_every = 200
    t.keep_checkpoints = 3
    t.keep_every = 0  # also keep every K-th step's checkpoint forever; 0 disables
    t.log_every = 10
    t.eval_every = 0
    t.eval_batches = 4
    t.profile_steps = ()  # (start, stop) window traced by jax.profiler
    t.init_from = ml_collections.FieldReference(None, field_type=str)  # another run's checkpoint
    t.peak_flops = 0.0  # per-device peak FLOP/s for MFU; 0 -> chip table or measured CPU matmul peak
    return t


def check_train(t, lora_rank: int) -> None:
    f = "config.train"
    _positive(t, f, "steps", "batch_size", "grad_accum", "checkpoint_every", "learning_rate")
    _require(t.stage in STAGES, f"{f}.stage", f"must be one of {STAGES}, got {t.stage!r}")
    _require(t.stage != "instruct_lora" or lora_rank > 0, "config.model.lora.rank",
             "stage instruct_lora needs lora.rank > 0")
    _require(t.nan_policy in ("skip", "stop"), f"{f}.nan_policy", "must be 'skip' or 'stop'")
    _require(t.stop_check_every >= 1, f"{f}.stop_check_every", f"must be >= 1, got {t.stop_check_every}")
    _require(t.batch_size % t.grad_accum == 0, f"{f}.grad_accum",
             f"{t.grad_accum} does not divide batch_size {t.batch_size}")
    _check_schedule(t)
    _check_lr_mults(t.lr_mults)


# ---- mesh --------------------------------------------------------------------------------------

def mesh_config() -> ml_collections.ConfigDict:
    me = ml_collections.ConfigDict()
    # ICI axes: sizes inside one slice (on one slice, of the whole mesh). The global mesh axis is ici x dcn.
    me.data = -1  # -1 takes the devices of a slice the other axes leave
    me.fsdp = 1
    me.tensor = 1
    # Context parallelism: each example's decoder sequence split over this many chips (sharding.py says how).
    me.context = 1
    # DCN axes: how the slices of a multi-slice job (devices' `slice_index`) split over data and fsdp.
    # There is no dcn_tensor: tensor-parallel collectives run every layer and need ICI bandwidth.
    me.dcn_data = -1  # -1 takes the slices dcn_fsdp leaves (1 on a single slice)
    me.dcn_fsdp = 1
    # A mesh that cannot follow the physical topology is an error; True lets JAX split physical torus
    # axes between mesh axes, or else reshapes the device list, with a WARNING (sharding.make_mesh).
    me.allow_split_physical_axes = False
    me.axis_rules = DEFAULT_AXIS_RULES
    return me


def check_mesh(me) -> None:
    for axis in MESH_AXES:
        size = me[axis]
        _require(size == -1 or size >= 1, f"config.mesh.{axis}", f"must be -1 or >= 1, got {size}")
    _require(sum(me[ax] == -1 for ax in MESH_AXES) <= 1, "config.mesh", "at most one axis may be -1")
    for axis in ("dcn_data", "dcn_fsdp"):
        size = me[axis]
        _require(size == -1 or size >= 1, f"config.mesh.{axis}", f"must be -1 or >= 1, got {size!r}")
    _require(not (me.dcn_data == -1 and me.dcn_fsdp == -1), "config.mesh", "at most one of dcn_data, dcn_fsdp may be -1")
    # Tensor parallelism over DCN is not offered: its collectives run in every layer and need ICI bandwidth.
    _require("dcn_tensor" not in me, "config.mesh.dcn_tensor",
             "tensor parallelism across slices is not offered (its per-layer collectives need ICI bandwidth)")
    _require("dcn_context" not in me, "config.mesh.dcn_context",
             "context parallelism across slices is not offered (its per-layer collectives need ICI bandwidth)")


# ---- the whole config --------------------------------------------------------------------------

def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "base"
    c.seed = 0
    c.model = model_config()
    c.data = data_config()
    c.train = train_config()
    c.mesh = mesh_config()
    return c


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Check every section; raise ConfigError naming the first bad field."""
    check_model(config.model)
    check_train(config.train, config.model.lora.rank)
    check_mesh(config.mesh)
    check_data(config.data)
    return config


def _check_schedule(train_cfg) -> None:
    _require(train_cfg.schedule in LR_SCHEDULES, "config.train.schedule",
             f"must be one of {LR_SCHEDULES}, got {train_cfg.schedule!r}")
    if train_cfg.schedule == "wsd":
        _require(0.0 < train_cfg.decay_fraction <= 1.0, "config.train.decay_fraction",
                 f"must be in (0, 1], got {train_cfg.decay_fraction}")
        decay = wsd_decay_steps(train_cfg)
        _require(train_cfg.warmup_steps + decay <= train_cfg.steps, "config.train.decay_fraction",
                 f"warmup_steps {train_cfg.warmup_steps} + {decay} decay steps exceed steps {train_cfg.steps}")


def _check_lr_mults(lr_mults) -> None:
    for entry in lr_mults:
        ok = isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
        ok = ok and isinstance(entry[1], (int, float)) and entry[1] > 0
        _require(ok, "config.train.lr_mults", f"entries are (regex, multiplier > 0), got {entry!r}")
        try:
            re.compile(entry[0])
        except re.error as e:
            raise ConfigError(f"config.train.lr_mults: {entry[0]!r} is not a regular expression ({e})") from None


def wsd_decay_steps(train_cfg) -> int:
    """Steps of the final linear decay of the warmup-stable-decay schedule (train/optimizer.py)."""
    return max(1, round(train_cfg.decay_fraction * train_cfg.steps))


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
