"""Configs load, overrides parse to the field's type, and inconsistent configs fail with one line naming the field."""

import pytest

from pegasus_jax import config as cfg
from pegasus_jax.errors import ConfigError

BUNDLED = ["tiny", "small", "pegasus_1b", "pegasus_7b", "pegasus_80b"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_configs_validate(name):
    c = cfg.get(name)
    assert c.name == name


def test_overrides_are_typed():
    c = cfg.load_config(cfg.config_path("tiny"), {"train.steps": "7", "train.learning_rate": "1", "model.scan_layers": "false",
                                                  "data.path": "/x/*.array_record", "data.length_buckets": "(8, 16)"})
    assert c.train.steps == 7 and isinstance(c.train.learning_rate, float) and c.model.scan_layers is False
    assert c.data.path == "/x/*.array_record" and c.data.length_buckets == (8, 16)


@pytest.mark.parametrize("override, field", [
    ({"model.vision.num_heads": "3"}, "config.model.vision.num_heads"),
    ({"model.decoder.num_kv_heads": "3"}, "config.model.decoder.num_kv_heads"),
    ({"model.decoder.num_heads": "6"}, "config.model.decoder.num_heads"),
    ({"model.align.pool_h": "9"}, "config.model.align.pool_h"),
    ({"model.align.pool_t": "9"}, "config.model.align.pool_t"),
    ({"model.vision.patch_size": "5"}, "config.model.vision.patch_size"),
    ({"model.audio.num_mel_bins": "64"}, "config.model.audio.num_mel_bins"),
    ({"model.align.segment_seconds": "9.0"}, "config.model.align.segment_seconds"),
    ({"train.stage": "warmup"}, "config.train.stage"),
    ({"train.grad_accum": "3"}, "config.train.grad_accum"),
    ({"train.steps": "0"}, "config.train.steps"),
    ({"model.remat_policy": "sometimes"}, "config.model.remat_policy"),
    ({"train.stage": "instruct_lora"}, "config.model.lora.rank"),
])
def test_inconsistent_config_names_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        cfg.load_config(cfg.config_path("tiny"), override)
    assert str(e.value).startswith(field), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("override, message", [
    ({"train.nope": "1"}, "--config.train.nope: no such config field"),
    ({"train.steps": "many"}, "--config.train.steps: expected int"),
])
def test_bad_override(override, message):
    with pytest.raises(ConfigError, match=message):
        cfg.load_config(cfg.config_path("tiny"), override)


@pytest.mark.parametrize("argv, needle", [
    (["train", "--config", "configs/missing.py", "--workdir", "/tmp/x"], "--config: no such file"),
    (["train", "--config", "configs/tiny.py", "--workdir", "/tmp/x", "--config.model.decoder.num_kv_heads=3"],
     "config.model.decoder.num_kv_heads"),
    (["train", "--config", "configs/tiny.py", "--workdir", "/tmp/x", "--config.train.bogus=1"], "--config.train.bogus"),
    (["train", "--config", "configs/tiny.py"], "--workdir"),
    (["frobnicate"], "invalid choice"),
])
def test_cli_user_errors_are_one_line(argv, needle, capsys, monkeypatch):
    """In process: any other exception than the UserError main turns into its one line propagates here."""
    from pegasus_jax.cli.main import main

    monkeypatch.chdir(cfg.config_path("tiny").rsplit("/configs/", 1)[0])
    code = main(argv)
    stderr = capsys.readouterr().err
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], stderr


def test_older_checkpoint_configs_still_load():
    """A config stored by an older release: data.transcript_tokens (now model.transcript_tokens) and the
    axis names batch/length (now act_batch/act_length) are read as today's."""
    from pegasus_jax import sharding
    from pegasus_jax.infer.checkpoint_loader import config_from_metadata

    old = cfg.get("tiny").to_dict()
    old["data"]["transcript_tokens"] = old["model"].pop("transcript_tokens") + 1
    old["mesh"]["axis_rules"] = [[{"act_batch": "batch", "act_length": "length"}.get(name, name),
                                  list(t) if isinstance(t, tuple) else t] for name, t in old["mesh"]["axis_rules"]]
    config = config_from_metadata({"config": old})
    assert config.model.transcript_tokens == cfg.get("tiny").model.transcript_tokens + 1
    assert "transcript_tokens" not in config.data
    assert tuple(config.mesh.axis_rules) == sharding.DEFAULT_AXIS_RULES
