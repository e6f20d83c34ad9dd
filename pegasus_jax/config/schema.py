"""The config schema: every section's fields with their defaults, and next to each section its checks.

Every size config starts from `base_config()` and changes fields; `validate()` runs each section's
check and raises `ConfigError` with one line naming the field at fault. The model is built from
`config.model` alone, so everything the model reads lives there (e.g. model.transcript_tokens).
The model section's fields and checks: config/model_schema.py. Loading files and parsing overrides:
config/loader.py.
"""
from __future__ import annotations

import re

import ml_collections

from pegasus_jax.config.model_schema import check_model, model_config, positive, require
from pegasus_jax.errors import ConfigError
from pegasus_jax.sharding import DEFAULT_AXIS_RULES, MESH_AXES

STAGES = ("pretrain", "align", "instruct", "instruct_lora")
LR_SCHEDULES = ("cosine", "wsd")


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
    dt.mixture = ()  # ((records glob | 'builtin', weight, kind), ...); kind: video|caption|instruction|image|tasks
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
    require(0.0 < dt.max_bad_ratio <= 1.0, "config.data.max_bad_ratio", "must be in (0, 1]")
    for field in ("pack_tokens", "pack_segments", "pack_window"):
        require(dt[field] >= 0, f"config.data.{field}", f"must be >= 0 (0 = derived), got {dt[field]}")
    require(dt.pack_segments == 0 or dt.pack_segments >= dt.max_segments, "config.data.pack_segments",
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
    positive(t, f, "steps", "batch_size", "grad_accum", "checkpoint_every", "learning_rate")
    require(t.stage in STAGES, f"{f}.stage", f"must be one of {STAGES}, got {t.stage!r}")
    require(t.stage != "instruct_lora" or lora_rank > 0, "config.model.lora.rank",
             "stage instruct_lora needs lora.rank > 0")
    require(t.nan_policy in ("skip", "stop"), f"{f}.nan_policy", "must be 'skip' or 'stop'")
    require(t.stop_check_every >= 1, f"{f}.stop_check_every", f"must be >= 1, got {t.stop_check_every}")
    require(t.batch_size % t.grad_accum == 0, f"{f}.grad_accum",
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
        require(size == -1 or size >= 1, f"config.mesh.{axis}", f"must be -1 or >= 1, got {size}")
    require(sum(me[ax] == -1 for ax in MESH_AXES) <= 1, "config.mesh", "at most one axis may be -1")
    for axis in ("dcn_data", "dcn_fsdp"):
        size = me[axis]
        require(size == -1 or size >= 1, f"config.mesh.{axis}", f"must be -1 or >= 1, got {size!r}")
    require(not (me.dcn_data == -1 and me.dcn_fsdp == -1), "config.mesh", "at most one of dcn_data, dcn_fsdp may be -1")
    # Tensor parallelism over DCN is not offered: its collectives run in every layer and need ICI bandwidth.
    require("dcn_tensor" not in me, "config.mesh.dcn_tensor",
             "tensor parallelism across slices is not offered (its per-layer collectives need ICI bandwidth)")
    require("dcn_context" not in me, "config.mesh.dcn_context",
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
    require(train_cfg.schedule in LR_SCHEDULES, "config.train.schedule",
             f"must be one of {LR_SCHEDULES}, got {train_cfg.schedule!r}")
    if train_cfg.schedule == "wsd":
        require(0.0 < train_cfg.decay_fraction <= 1.0, "config.train.decay_fraction",
                 f"must be in (0, 1], got {train_cfg.decay_fraction}")
        decay = wsd_decay_steps(train_cfg)
        require(train_cfg.warmup_steps + decay <= train_cfg.steps, "config.train.decay_fraction",
                 f"warmup_steps {train_cfg.warmup_steps} + {decay} decay steps exceed steps {train_cfg.steps}")


def _check_lr_mults(lr_mults) -> None:
    for entry in lr_mults:
        ok = isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
        ok = ok and isinstance(entry[1], (int, float)) and entry[1] > 0
        require(ok, "config.train.lr_mults", f"entries are (regex, multiplier > 0), got {entry!r}")
        try:
            re.compile(entry[0])
        except re.error as e:
            raise ConfigError(f"config.train.lr_mults: {entry[0]!r} is not a regular expression ({e})") from None


def wsd_decay_steps(train_cfg) -> int:
    """Steps of the final linear decay of the warmup-stable-decay schedule (train/optimizer.py)."""
    return max(1, round(train_cfg.decay_fraction * train_cfg.steps))
