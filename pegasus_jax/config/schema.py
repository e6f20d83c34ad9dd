"""Config schema, loading of `configs/*.py` files with `--config.a.b=value` overrides, and validation.

Every size config starts from `base_config()` and changes fields; `validate()` checks the whole tree
and raises `ConfigError` with one line naming the field at fault.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import os
import re
import sys

import ml_collections

from pegasus_jax.errors import ConfigError

# Logical axis -> mesh axes. Parameters and activations name their axes with these keys; the
# mesh axes are (data, fsdp, tensor). A mesh axis that does not divide a dimension is dropped for
# that array (see sharding.py), so tiny test models shard on any mesh.
DEFAULT_AXIS_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("layers", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("vocab", "tensor"),
    ("norm", None),
    ("conv", None),
    ("positions", None),
    ("lora_rank", None),
)

VISION_KINDS = ("clip", "siglip")
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
STAGES = ("pretrain", "align", "instruct", "instruct_lora")
LR_SCHEDULES = ("cosine", "wsd")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "base"
    c.seed = 0

    m = c.model = ml_collections.ConfigDict()
    m.dtype = "bfloat16"  # compute dtype; parameters are kept in param_dtype (fp32 master weights)
    m.param_dtype = "float32"
    m.scan_layers = True
    m.remat_policy = "none"

    v = m.vision = ml_collections.ConfigDict()
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

    a = m.audio = ml_collections.ConfigDict()
    a.enabled = True
    a.num_mel_bins = 80
    a.width = 1280
    a.depth = 32
    a.num_heads = 20
    a.mlp_dim = 5120
    a.max_source_positions = 1500  # Whisper: 30 s of audio -> 3000 mel frames -> 1500 positions
    a.layer_norm_eps = 1e-5

    al = m.align = ml_collections.ConfigDict()
    al.frames_per_segment = 16  # frames each segment is encoded from
    al.segment_seconds = 8.0  # a segment spans this much video time
    al.pool_t = 4  # PLLaVA adaptive pooling target (T', h', w') per segment
    al.pool_h = 12
    al.pool_w = 12
    al.audio_tokens = 8  # audio tokens per segment after pooling
    al.projector_hidden = 0  # 0 -> the decoder width
    al.visual_token_budget = 4096  # total video+audio tokens per sample; pooling adapts to it

    d = m.decoder = ml_collections.ConfigDict()
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

    lo = m.lora = ml_collections.ConfigDict()
    lo.rank = 0  # 0 disables LoRA
    lo.alpha = 32.0  # the delta is scaled by alpha / rank; rescale at inference to blend (PLLaVA)
    lo.targets = ("q", "v")

    dt = c.data = ml_collections.ConfigDict()
    dt.path = ml_collections.FieldReference(None, field_type=str)  # records glob; None -> synthetic corpus
    dt.eval_path = ml_collections.FieldReference(None, field_type=str)
    dt.tokenizer = ml_collections.FieldReference(None, field_type=str)  # tokenizer.model; None -> trained on the corpus
    dt.max_segments = 2
    dt.max_text_len = 64  # text tokens (prompt + answer) per example, the longest length bucket
    dt.length_buckets = (32, 64)  # text lengths batches are padded to (the smallest that fits)
    dt.transcript_tokens = 8  # speech-transcript tokens per segment (0 disables the transcript stream)
    dt.sample_rate = 16000
    dt.num_workers = 0
    dt.shuffle_seed = 0
    dt.max_bad_ratio = 0.5
    dt.decode_timeout_s = 30.0
    dt.max_pixels = 5184 * 2160  # larger videos are skipped (counted as too_large) before decoding
    dt.decoder = "pyav"  # decoder name in data_pipelines.decode.registry.DECODERS, or "module:function"
    dt.isolate_decode = True  # decode in a helper process: survives decoder crashes, enforces the timeout
    dt.cache_media_mb = 0  # keep up to this many MiB of decoded media per process for later epochs; 0 = off
    dt.mixture = ()  # ((records glob | 'builtin', weight, kind), ...); kind: video | caption | instruction | image
    dt.synth_clips = 2000

    t = c.train = ml_collections.ConfigDict()
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

    me = c.mesh = ml_collections.ConfigDict()
    # ICI axes: sizes inside one slice (on one slice, of the whole mesh). The global mesh axis is ici x dcn.
    me.data = -1  # -1 takes the devices of a slice the other axes leave
    me.fsdp = 1
    me.tensor = 1
    # DCN axes: how the slices of a multi-slice job (devices' `slice_index`) split over data and fsdp.
    # There is no dcn_tensor: tensor-parallel collectives run every layer and need ICI bandwidth.
    me.dcn_data = -1  # -1 takes the slices dcn_fsdp leaves (1 on a single slice)
    me.dcn_fsdp = 1
    # A mesh that cannot follow the physical topology is an error; True lets JAX split physical torus
    # axes between mesh axes, or else reshapes the device list, with a WARNING (sharding.make_mesh).
    me.allow_split_physical_axes = False
    me.axis_rules = DEFAULT_AXIS_RULES
    return c


def _require(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{field}: {msg}")


def _positive(cfg, path: str) -> None:
    value = cfg
    for part in path.split(".")[1:]:
        value = getattr(value, part)
    _require(isinstance(value, (int, float)) and value > 0, path, f"must be > 0, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Check cross-field consistency; raise ConfigError naming the first bad field."""
    m = config.model
    for path in (
        "config.model.vision.image_size", "config.model.vision.patch_size", "config.model.vision.width",
        "config.model.vision.depth", "config.model.vision.num_heads", "config.model.vision.mlp_dim",
        "config.model.vision.max_frames", "config.model.audio.width", "config.model.audio.depth",
        "config.model.audio.num_heads", "config.model.audio.mlp_dim", "config.model.audio.num_mel_bins",
        "config.model.audio.max_source_positions", "config.model.align.frames_per_segment",
        "config.model.align.segment_seconds", "config.model.align.pool_t", "config.model.align.pool_h",
        "config.model.align.pool_w", "config.model.align.audio_tokens", "config.model.align.visual_token_budget",
        "config.model.decoder.vocab_size", "config.model.decoder.width", "config.model.decoder.depth",
        "config.model.decoder.num_heads", "config.model.decoder.num_kv_heads", "config.model.decoder.mlp_dim",
        "config.model.decoder.rope_theta", "config.model.decoder.max_seq_len",
        "config.train.steps", "config.train.batch_size", "config.train.grad_accum",
        "config.train.checkpoint_every", "config.train.learning_rate",
    ):
        _positive(config, path)
    v, a, al, d = m.vision, m.audio, m.align, m.decoder
    _require(v.kind in VISION_KINDS, "config.model.vision.kind", f"must be one of {VISION_KINDS}, got {v.kind!r}")
    _require(v.image_size % v.patch_size == 0, "config.model.vision.patch_size",
             f"{v.patch_size} does not divide image_size {v.image_size}")
    _require(v.width % v.num_heads == 0, "config.model.vision.num_heads",
             f"{v.num_heads} heads do not divide width {v.width}")
    _require(v.temporal_depth >= 0, "config.model.vision.temporal_depth", "must be >= 0")
    _require(v.width % 4 == 0 and v.width >= 8, "config.model.vision.width",
             f"must be a multiple of 4 and >= 8 (sin and cos per grid axis in the position tables), got {v.width}")
    _require(a.width % a.num_heads == 0, "config.model.audio.num_heads",
             f"{a.num_heads} heads do not divide width {a.width}")
    _require(a.num_mel_bins in (80, 128), "config.model.audio.num_mel_bins", f"must be 80 or 128, got {a.num_mel_bins}")
    _require(d.num_heads % d.num_kv_heads == 0, "config.model.decoder.num_kv_heads",
             f"{d.num_kv_heads} KV heads do not divide {d.num_heads} query heads (GQA groups)")
    if d.head_dim == 0:
        _require(d.width % d.num_heads == 0, "config.model.decoder.num_heads",
                 f"{d.num_heads} heads do not divide width {d.width}")
    _require(head_dim(d) % 2 == 0, "config.model.decoder.head_dim", "must be even for RoPE")
    grid = v.image_size // v.patch_size
    _require(al.pool_h <= grid, "config.model.align.pool_h", f"{al.pool_h} exceeds the patch grid height {grid}")
    _require(al.pool_w <= grid, "config.model.align.pool_w", f"{al.pool_w} exceeds the patch grid width {grid}")
    _require(al.pool_t <= al.frames_per_segment, "config.model.align.pool_t",
             f"{al.pool_t} exceeds frames_per_segment {al.frames_per_segment}")
    _require(al.frames_per_segment <= v.max_frames or v.temporal_depth == 0, "config.model.align.frames_per_segment",
             f"{al.frames_per_segment} exceeds vision.max_frames {v.max_frames}")
    if a.enabled:
        _require(audio_positions(config) <= a.max_source_positions, "config.model.align.segment_seconds",
                 f"{al.segment_seconds}s of audio needs {audio_positions(config)} positions, "
                 f"more than audio.max_source_positions {a.max_source_positions}")
        _require(al.audio_tokens <= audio_positions(config), "config.model.align.audio_tokens",
                 f"{al.audio_tokens} exceeds the {audio_positions(config)} audio positions per segment")
    _require(m.remat_policy in REMAT_POLICIES, "config.model.remat_policy",
             f"must be one of {REMAT_POLICIES}, got {m.remat_policy!r}")
    _require(m.lora.rank >= 0, "config.model.lora.rank", "must be >= 0")
    _require(set(m.lora.targets) <= {"q", "k", "v", "o", "gate", "up", "down"}, "config.model.lora.targets",
             f"unknown projection in {tuple(m.lora.targets)}")
    _require(config.train.stage in STAGES, "config.train.stage", f"must be one of {STAGES}, got {config.train.stage!r}")
    _require(config.train.stage != "instruct_lora" or m.lora.rank > 0, "config.model.lora.rank",
             "stage instruct_lora needs lora.rank > 0")
    _require(config.train.nan_policy in ("skip", "stop"), "config.train.nan_policy", "must be 'skip' or 'stop'")
    _require(config.train.stop_check_every >= 1, "config.train.stop_check_every",
             f"must be >= 1, got {config.train.stop_check_every}")
    _require(config.train.batch_size % config.train.grad_accum == 0, "config.train.grad_accum",
             f"{config.train.grad_accum} does not divide batch_size {config.train.batch_size}")
    for axis in ("data", "fsdp", "tensor"):
        size = getattr(config.mesh, axis)
        _require(size == -1 or size >= 1, f"config.mesh.{axis}", f"must be -1 or >= 1, got {size}")
    _require(sum(getattr(config.mesh, ax) == -1 for ax in ("data", "fsdp", "tensor")) <= 1, "config.mesh",
             "at most one axis may be -1")
    for axis in ("dcn_data", "dcn_fsdp"):
        size = getattr(config.mesh, axis)
        _require(size == -1 or size >= 1, f"config.mesh.{axis}",
                 f"must be -1 or >= 1, got {size!r}")
    _require(not (config.mesh.dcn_data == -1 and config.mesh.dcn_fsdp == -1), "config.mesh",
             "at most one of dcn_data, dcn_fsdp may be -1")
    # Tensor parallelism over DCN is not offered: its collectives run in every layer and need ICI bandwidth.
    _require("dcn_tensor" not in config.mesh, "config.mesh.dcn_tensor",
             "tensor parallelism across slices is not offered (its per-layer collectives need ICI bandwidth)")
    _require(0.0 < config.data.max_bad_ratio <= 1.0, "config.data.max_bad_ratio", "must be in (0, 1]")
    _check_schedule(config.train)
    _check_lr_mults(config.train.lr_mults)
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


def audio_positions(config) -> int:
    """Audio encoder positions per segment: 100 mel frames per second, halved by the stride-2 conv."""
    mel_frames = int(round(config.model.align.segment_seconds * 100))
    return math.ceil(mel_frames / 2)


def _parse_value(text: str, current):
    if isinstance(current, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(current, str) or current is None:
        if current is None and text.lower() in ("none", "null"):
            return None
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if current is not None and not isinstance(value, type(current)):
        raise ValueError(f"expected {type(current).__name__}, got {text!r}")
    return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]) -> ml_collections.ConfigDict:
    """Apply `{"train.steps": "10"}`-style overrides (values parsed to the field's type)."""
    for dotted, text in overrides.items():
        node = config
        parts = dotted.split(".")
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise ConfigError(f"--config.{dotted}: no such config field")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"--config.{dotted}: no such config field")
        current = node[parts[-1]]
        try:
            node[parts[-1]] = _parse_value(text, current)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--config.{dotted}: {e}") from None
    return config


def load_config(path: str, overrides: dict[str, str] | None = None) -> ml_collections.ConfigDict:
    """Load `get_config()` from a Python file, apply overrides, validate."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such file {path!r}")
    # Config files may build on each other (`from configs.tiny import get_config`), a user's own file
    # outside this checkout included: the folders holding its configs/ and the bundled configs/ are importable.
    bundled_root = os.path.dirname(os.path.dirname(config_path("tiny")))
    for root in (bundled_root, os.path.dirname(os.path.dirname(os.path.abspath(path)))):
        if root not in sys.path:
            sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(f"pegasus_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken config file is a user mistake: name it
        raise ConfigError(f"--config: {path} failed to load: {type(e).__name__}: {e}") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {path} has no get_config()")
    config = module.get_config()
    apply_overrides(config, overrides or {})
    return validate(config)


def config_path(name: str) -> str:
    """Path of a bundled config by short name (`tiny`, `pegasus_80b`, ...)."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    return os.path.join(root, f"{name}.py")


def get(name: str, **overrides) -> ml_collections.ConfigDict:
    """Bundled config by short name, with keyword overrides written `train__steps=10`."""
    return load_config(config_path(name), {k.replace("__", "."): str(v) for k, v in overrides.items()})
