"""Decoder parity with transformers' LlamaForCausalLM, weight round trip, and KV-cache decoding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from pegasus_jax import config as cfg
from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import load_params, params_of
from pegasus_jax.interop.hf_llama import llama_from_hf, llama_to_hf
from pegasus_jax.models.decoder import Decoder
from pegasus_jax.models.decoder import valid_positions


def tiny_llama(tie: bool, theta: float = 10000.0, seed: int = 0):
    torch.manual_seed(seed)
    hf_cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, rope_theta=theta,
                                      tie_word_embeddings=tie, max_position_embeddings=128, rms_norm_eps=1e-5,
                                      attn_implementation="eager")
    model = transformers.LlamaForCausalLM(hf_cfg).eval()
    with torch.no_grad():  # norms away from 1 so a swapped norm would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def decoder_config(tie: bool, theta: float = 10000.0, scan: bool = True, **lora):
    c = cfg.get("tiny", model__scan_layers=scan)
    d = c.model.decoder
    d.vocab_size, d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 128, 64, 2, 4, 2, 128
    d.rope_theta, d.tie_embeddings, d.rms_norm_eps = theta, tie, 1e-5
    for k, v in lora.items():
        setattr(c.model.lora, k, v)
    return c


def ours_from(hf, c):
    dec = Decoder(c.model.decoder, c.model.lora, dtype=jnp.float32, param_dtype=jnp.float32,
                  scan=c.model.scan_layers, remat="none", rngs=nnx.Rngs(1))
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    load_params(dec, llama_from_hf(sd, c.model.decoder))
    return dec


def full_logits(dec, tokens, mask):
    x = dec.embed(jnp.asarray(tokens))
    logits, _ = dec(x, valid_positions(jnp.asarray(mask)), jnp.asarray(mask))
    return np.asarray(logits)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("scan", [True, False])
@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_logits_match_transformers(tie, scan, theta):
    hf = tiny_llama(tie, theta)
    c = decoder_config(tie, theta, scan)
    dec = ours_from(hf, c)
    tokens = np.random.default_rng(0).integers(0, 128, (2, 12))
    mask = np.ones((2, 12), bool)
    mask[1, 8:] = False  # right padding
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask.astype(np.int64))).logits.numpy()
    ours = full_logits(dec, tokens, mask)
    assert np.abs(ours[mask] - ref[mask]).max() <= 1e-4


@pytest.mark.parametrize("tie", [False, True])
def test_weight_round_trip_is_exact(tie):
    hf = tiny_llama(tie)
    c = decoder_config(tie)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    back = llama_to_hf(params_of(ours_from(hf, c)), c.model.decoder)
    expected = {k: v for k, v in sd.items() if not (tie and k == "lm_head.weight")}
    assert back.keys() == expected.keys()
    assert all(np.array_equal(back[k], expected[k]) for k in back)
    fresh = tiny_llama(tie, seed=1)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=not tie)
    tokens = torch.arange(10)[None]
    with torch.no_grad():
        assert torch.equal(fresh(tokens).logits, hf(tokens).logits)


def test_shape_mismatch_names_the_tensor():
    hf = tiny_llama(False)
    c = decoder_config(False)
    c.model.decoder.mlp_dim = 96
    with pytest.raises(UserError, match="mlp|gate|up|down"):
        ours_from(hf, c)


def test_kv_cache_decoding_equals_full_forward():
    c = decoder_config(False)
    dec = Decoder(c.model.decoder, c.model.lora, dtype=jnp.float32, param_dtype=jnp.float32, scan=True,
                  remat="none", rngs=nnx.Rngs(3))
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 128, (2, 14))
    prompt_len = np.array([5, 3])  # rows of different prompt lengths share one right-padded prefill
    width = 6
    prompt = np.zeros((2, width), np.int64)
    pmask = np.zeros((2, width), bool)
    for i, n in enumerate(prompt_len):
        prompt[i, :n], pmask[i, :n] = tokens[i, :n], True
    cache = dec.init_cache(2, width + 10)
    logits, cache = dec(dec.embed(jnp.asarray(prompt)), valid_positions(jnp.asarray(pmask)), jnp.asarray(pmask), cache)
    step_logits = [np.asarray(logits)[np.arange(2), prompt_len - 1]]
    position = prompt_len.copy()
    for s in range(8):
        nxt = tokens[np.arange(2), prompt_len + s]
        logits, cache = dec(dec.embed(jnp.asarray(nxt[:, None])), jnp.asarray(position[:, None]),
                            jnp.ones((2, 1), bool), cache)
        step_logits.append(np.asarray(logits)[:, 0])
        position += 1
    for i, n in enumerate(prompt_len):
        seq = tokens[i:i + 1, :n + 8]
        ref = full_logits(dec, seq, np.ones_like(seq, bool))[0]
        got = np.stack([sl[i] for sl in step_logits])
        assert np.abs(got - ref[n - 1:n + 8]).max() <= 1e-5
