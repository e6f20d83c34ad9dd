"""Decoder families through import-hf --llm and export: Llama 3 (llama3 RoPE scaling, explicit head_dim
that is not width / heads, one KV head), Qwen2 (q/k/v biases, tied; the other two are untied) and Mistral (a sliding
window shorter than the sequence). Per family: logits within 1e-4 of transformers (fp32), with and
without the KV cache; the export's weights equal the source's bit for bit; the export is written as
the family's own architecture and `AutoModelForCausalLM.from_pretrained` loads it with no custom code;
the whole-model export's decoder computes the same logits."""
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file
from test_export import tokenizer_path  # noqa: F401  (module fixture: a small SentencePiece model)
from test_import_hf import perturbed

from pegasus_jax.cli.main import main
from pegasus_jax.infer.checkpoint_loader import load
from pegasus_jax.models.decoder import valid_positions

TOL = 1e-4
COMMON = dict(vocab_size=512, max_position_embeddings=256, rms_norm_eps=1e-5, attn_implementation="eager")
FAMILIES = {
    "llama3-mqa": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(
        hidden_size=60, intermediate_size=100, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        head_dim=24, tie_word_embeddings=False, rope_parameters=dict(
            rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=16))),
    "qwen2-tied": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, dict(
        hidden_size=56, intermediate_size=88, num_hidden_layers=2, num_attention_heads=7, num_key_value_heads=1,
        tie_word_embeddings=True)),
    "mistral-window": (transformers.MistralConfig, transformers.MistralForCausalLM, dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, sliding_window=5, tie_word_embeddings=False)),
}
LENGTH = 14  # > the Mistral window, > Llama 3's original_max_position_embeddings


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tokenizer_path, tmp_path_factory):  # noqa: F811
    config_cls, model_cls, fields = FAMILIES[request.param]
    torch.manual_seed(0)
    hf = perturbed(model_cls(config_cls(**COMMON, **fields)))
    root = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(root / "hf")
    shutil.copyfile(tokenizer_path, root / "hf" / "tokenizer.model")
    assert main(["import-hf", "--llm", str(root / "hf"), "--config", "configs/tiny.py",
                 "--out", str(root / "ckpt")]) == 0
    assert main(["export", "--checkpoint", str(root / "ckpt"), "--out", str(root / "export")]) == 0
    return request.param, hf, root


def test_logits_match_transformers_with_and_without_cache(family):
    name, hf, root = family
    model, config, _, _ = load(str(root / "ckpt"))
    d = config.model.decoder
    assert d.family == name.split("-")[0].rstrip("3")
    tokens = np.random.default_rng(0).integers(5, 512, (2, LENGTH))
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(tokens)).logits.numpy()
    mask = jnp.ones(tokens.shape, bool)
    x = model.decoder.embed(jnp.asarray(tokens))
    ours, _ = model.decoder(x, valid_positions(mask), mask)
    assert np.abs(np.asarray(ours) - ref).max() <= TOL
    # prefill 12 tokens, then one at a time: the window and the scaled RoPE hold in the cache too
    cache = model.decoder.init_cache(2, LENGTH, jnp.float32)
    positions = valid_positions(mask)
    steps = [slice(0, 12)] + [slice(i, i + 1) for i in range(12, LENGTH)]
    cached = []
    for s in steps:
        logits, cache = model.decoder(x[:, s], positions[:, s], mask[:, s], cache)
        cached.append(np.asarray(logits))
    assert np.abs(np.concatenate(cached, axis=1) - ref).max() <= TOL


def test_export_is_the_family_bit_exact_and_loads_without_custom_code(family):
    name, hf, root = family
    folder = root / "export" / "llm"
    exported = {}
    for file in os.listdir(folder):
        if file.endswith(".safetensors"):
            exported.update(load_file(str(folder / file)))
    source = {k: v.numpy() for k, v in hf.state_dict().items()}
    if hf.config.tie_word_embeddings:
        source.pop("lm_head.weight")
    assert sorted(exported) == sorted(source)
    for key, value in source.items():
        assert exported[key].dtype == value.dtype and np.array_equal(exported[key], value), key
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=False,
                                                               attn_implementation="eager").eval()
    assert type(loaded) is type(hf)
    assert getattr(loaded.config, "sliding_window", None) == getattr(hf.config, "sliding_window", None)
    tokens = torch.from_numpy(np.random.default_rng(1).integers(5, 512, (1, LENGTH)))
    with torch.no_grad():
        expected = hf(input_ids=tokens).logits
        assert (loaded(input_ids=tokens).logits - expected).abs().max() <= 1e-6
    # the whole-model export builds the same family (window included) inside its own code
    full = transformers.AutoModel.from_pretrained(str(root / "export" / "full"), trust_remote_code=True).eval()
    with torch.no_grad():
        logits = full.decode(full.embed(tokens), torch.ones_like(tokens, dtype=torch.bool))
    assert (logits - expected).abs().max() <= TOL
