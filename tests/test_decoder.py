"""Decoder parity with transformers' LlamaForCausalLM, weight and config round trips, KV-cache decoding,
logical axes and sharded execution."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from jax.sharding import PartitionSpec as P

from pegasus_jax import config as cfg
from pegasus_jax import sharding
from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import load_params
from pegasus_jax.interop.hf_llama import llama_config_from_hf, llama_config_to_hf, llama_from_hf, llama_to_hf
from pegasus_jax.models.decoder import Decoder, valid_positions


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


def decoder_config(tie: bool = False, theta: float = 10000.0, scan: bool = True, **lora):
    c = cfg.get("tiny", model__scan_layers=scan)
    d = c.model.decoder
    d.vocab_size, d.width, d.depth, d.num_heads, d.num_kv_heads, d.mlp_dim = 128, 64, 2, 4, 2, 128
    d.rope_theta, d.tie_embeddings, d.rms_norm_eps = theta, tie, 1e-5
    for k, v in lora.items():
        setattr(c.model.lora, k, v)
    return c


def build(c, seed: int = 1, remat: str = "none") -> Decoder:
    return Decoder(c.model.decoder, c.model.lora, dtype=jnp.float32, param_dtype=jnp.float32,
                   scan=c.model.scan_layers, remat=remat, rngs=nnx.Rngs(seed))


def ours_from(hf, c, remat: str = "none") -> Decoder:
    dec = build(c, remat=remat)
    load_params(dec, llama_from_hf(hf.state_dict(), c.model.decoder))
    return dec


@nnx.jit
def forward(dec, tokens, positions, mask, cache=None):
    return dec(dec.embed(tokens), positions, mask, cache)


def full_logits(dec, tokens, mask) -> np.ndarray:
    mask = jnp.asarray(mask)
    logits, cache = forward(dec, jnp.asarray(tokens), valid_positions(mask), mask)
    assert cache is None
    return np.asarray(logits)


def padded_batch(seed: int = 0, length: int = 12):
    """Rows: full, right-padded, left-padded, padded in the middle."""
    tokens = np.random.default_rng(seed).integers(0, 128, (4, length))
    mask = np.ones((4, length), bool)
    mask[1, 8:] = False
    mask[2, :5] = False
    mask[3, 3:6] = False
    return tokens, mask


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("scan", [True, False])
@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_logits_match_transformers(tie, scan, theta):
    hf = tiny_llama(tie, theta)
    c = decoder_config(tie, theta, scan)
    dec = ours_from(hf, c)
    tokens, mask = padded_batch()
    positions = np.asarray(valid_positions(jnp.asarray(mask)))  # HF is given the same padding-skipping positions
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask.astype(np.int64)),
                 position_ids=torch.from_numpy(positions.astype(np.int64))).logits.numpy()
    ours = full_logits(dec, tokens, mask)
    assert ours.dtype == np.float32 and ours.shape == (4, 12, 128)
    assert np.abs(ours[mask] - ref[mask]).max() <= 1e-4
    # Unpadded rows equal HF's default positions (arange) too: padding truly skips nothing else.
    with torch.no_grad():
        plain = hf(input_ids=torch.from_numpy(tokens[:1])).logits.numpy()
    assert np.abs(ours[0] - plain[0]).max() <= 1e-4


def test_remat_changes_nothing():
    hf = tiny_llama(False)
    c = decoder_config()
    tokens, mask = padded_batch(1)
    plain, rematted = ours_from(hf, c), ours_from(hf, c, remat="dots")

    def loss(dec):
        m = jnp.asarray(mask)
        return jnp.sum(dec(dec.embed(jnp.asarray(tokens)), valid_positions(m), m)[0] ** 2)

    g_plain = nnx.jit(nnx.grad(loss))(plain)
    g_remat = nnx.jit(nnx.grad(loss))(rematted)
    np.testing.assert_allclose(full_logits(rematted, tokens, mask), full_logits(plain, tokens, mask), atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), g_remat, g_plain)


@pytest.mark.parametrize("tie", [False, True])
def test_weight_round_trip_is_exact_and_loads_strictly(tie):
    hf = tiny_llama(tie)
    c = decoder_config(tie)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    back = llama_to_hf(ours_from(hf, c), c.model.decoder)
    tied_head = ["lm_head.weight"] if tie else []  # a tied model's head is its embedding
    assert back.keys() == sd.keys() - set(tied_head)
    for k in back:
        assert back[k].dtype == sd[k].dtype and np.array_equal(back[k], sd[k]), k
    fresh = tiny_llama(tie, seed=1)
    result = fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=False)
    assert result.unexpected_keys == [] and result.missing_keys == tied_head
    tokens = torch.arange(10)[None]
    with torch.no_grad():
        assert torch.equal(fresh(tokens).logits, hf(tokens).logits)


def test_exported_config_and_weights_rebuild_the_same_model():
    c = decoder_config(tie=False, theta=250000.0)
    c.model.decoder.rms_norm_eps = 1e-6
    dec = build(c, seed=7)
    hf_json = llama_config_to_hf(c.model.decoder)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_json, attn_implementation="eager")).eval()
    hf.load_state_dict({k: torch.from_numpy(v) for k, v in llama_to_hf(dec, c.model.decoder).items()}, strict=True)
    tokens = np.random.default_rng(2).integers(0, 128, (1, 9))
    with torch.no_grad():
        ref = hf(torch.from_numpy(tokens)).logits.numpy()
    assert np.abs(full_logits(dec, tokens, np.ones_like(tokens, bool)) - ref).max() <= 1e-4
    back = llama_config_from_hf(hf.config.to_dict())  # transformers 5 writes rope_parameters, not rope_theta
    assert back == {k: c.model.decoder[k] for k in back} and len(back) == len(c.model.decoder)


def test_config_from_hf_refuses_what_the_decoder_cannot_run():
    good = llama_config_to_hf(decoder_config().model.decoder)
    assert llama_config_from_hf({**good, "rope_parameters": None, "rope_theta": 1234.0})["rope_theta"] == 1234.0
    bad = [({"rope_parameters": {"rope_type": "yarn", "rope_theta": 5e5, "factor": 4.0}}, "yarn"),
           ({"rope_parameters": None, "rope_scaling": {"type": "linear", "factor": 2.0}}, "linear"),
           ({"attention_bias": True}, "bias"),
           ({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "use_sliding_window": True},
            "use_sliding_window"),
           ({"model_type": "gemma", "architectures": ["GemmaForCausalLM"]}, "gemma")]
    for change, match in bad:
        with pytest.raises(UserError, match=match):
            llama_config_from_hf({**good, **change})


def test_bad_weights_name_the_tensor():
    hf = tiny_llama(False)
    sd = dict(hf.state_dict())
    c = decoder_config(False)
    c.model.decoder.mlp_dim = 96
    with pytest.raises(UserError, match="gate|up|down"):
        load_params(build(c), llama_from_hf(sd, c.model.decoder))
    c = decoder_config(False)
    with pytest.raises(UserError, match=r"unexpected tensor model\.layers\.0\.self_attn\.q_proj\.bias"):
        llama_from_hf({**sd, "model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}, c.model.decoder)
    with pytest.raises(UserError, match=r"missing tensor model\.layers\.1\.mlp\.up_proj\.weight"):
        llama_from_hf({k: v for k, v in sd.items() if k != "model.layers.1.mlp.up_proj.weight"}, c.model.decoder)
    c.model.decoder.depth = 1  # a deeper checkpoint than the config: the extra layer is not dropped silently
    with pytest.raises(UserError, match=r"unexpected tensor model\.layers\.1\."):
        llama_from_hf(sd, c.model.decoder)


def test_llava_style_prefix_loads_the_same_weights():
    hf = tiny_llama(False)
    c = decoder_config(False)
    sd = hf.state_dict()
    prefixed = {"language_model." + k: v for k, v in sd.items()} | {"vision_tower.x.weight": torch.zeros(3)}
    a, b = llama_from_hf(sd, c.model.decoder), llama_from_hf(prefixed, c.model.decoder)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), a, b)


def prefill_then_decode(dec, tokens, prompt_len, plan, width=6):
    """Prefill right-padded prompts, then feed the continuation in chunks of `plan` sizes.

    Returns per row the logits predicting each token after the prompt's last one."""
    b = len(prompt_len)
    prompt = np.zeros((b, width), np.int64)
    pmask = np.zeros((b, width), bool)
    for i, n in enumerate(prompt_len):
        prompt[i, :n], pmask[i, :n] = tokens[i, :n], True
    cache = dec.init_cache(b, width + sum(plan))
    logits, cache = forward(dec, jnp.asarray(prompt), valid_positions(jnp.asarray(pmask)), jnp.asarray(pmask), cache)
    assert int(cache["index"]) == width
    got = [np.asarray(logits)[np.arange(b), prompt_len - 1][:, None]]
    done = 0
    for size in plan:
        cols = prompt_len[:, None] + done + np.arange(size)[None]
        chunk = np.take_along_axis(tokens, cols, axis=1)
        logits, cache = forward(dec, jnp.asarray(chunk), jnp.asarray(cols, jnp.int32), jnp.ones((b, size), bool), cache)
        got.append(np.asarray(logits))
        done += size
    assert int(cache["index"]) == width + done
    return np.concatenate(got, axis=1), cache


@pytest.mark.parametrize("scan", [True, False])
def test_kv_cache_decoding_equals_full_forward(scan):
    c = decoder_config(scan=scan)
    dec = build(c, seed=3)
    tokens = np.random.default_rng(1).integers(0, 128, (2, 16))
    prompt_len = np.array([5, 3])  # rows of different prompt lengths share one right-padded prefill
    plan = [1, 1, 1, 1, 3, 1, 1]  # single-token steps and a multi-token chunk (a later turn) on a full cache
    got, cache = prefill_then_decode(dec, tokens, prompt_len, plan)
    assert cache["k"].shape == (2, 2, 6 + sum(plan), 2, 16) and cache["index"].dtype == jnp.int32
    total = prompt_len + sum(plan)  # the whole sequences, right-padded into one full forward
    ref = full_logits(dec, tokens, np.arange(tokens.shape[1])[None] < total[:, None])
    for i, n in enumerate(prompt_len):
        assert np.abs(got[i] - ref[i, n - 1:total[i]]).max() <= 1e-5


def test_decode_step_compiles_once_under_jit():
    c = decoder_config()
    dec = build(c, seed=3)
    graphdef, state = nnx.split(dec)
    traces = []

    @jax.jit
    def step(state, cache, token, position):
        traces.append(1)
        model = nnx.merge(graphdef, state)
        logits, cache = model(model.embed(token[:, None]), position[:, None], jnp.ones((token.shape[0], 1), bool),
                              cache)
        return logits[:, 0], cache

    tokens = np.random.default_rng(4).integers(0, 128, (2, 6))
    cache = dec.init_cache(2, 8)
    got = []
    for s in range(6):
        logits, cache = step(state, cache, jnp.asarray(tokens[:, s]), jnp.full((2,), s, jnp.int32))
        got.append(np.asarray(logits))
    assert len(traces) == 1
    assert np.abs(np.stack(got, 1) - full_logits(dec, tokens, np.ones_like(tokens, bool))).max() <= 1e-5


def test_every_parameter_has_logical_axes():
    c = decoder_config(tie=False, rank=2, targets=("q", "k", "v", "o", "gate", "up", "down"))
    dec = build(c)
    known = {name for name, _ in c.mesh.axis_rules}
    for path, var in nnx.to_flat_state(nnx.state(dec, nnx.Param)):
        names = var.get_metadata().get("out_sharding")
        value = var.get_value()
        assert names is not None and len(names) == value.ndim and set(names) <= known, (path, names)
        assert (names[0] == "layers") == ("layers" in path), (path, names)
    flat = dict(nnx.to_flat_state(nnx.state(dec, nnx.Param)))
    axes = lambda *p: flat[p].get_metadata()["out_sharding"]
    assert axes("embed_tokens") == ("vocab", "embed") and axes("lm_head", "kernel") == ("embed", "vocab")
    assert axes("layers", "layers", "k", "kernel") == ("layers", "embed", "kv_heads")
    assert axes("layers", "layers", "down", "lora_b") == ("layers", "lora_rank", "embed")


def test_sharded_over_8_devices_matches_one_device():
    c = decoder_config()
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, 2, 2
    dec = build(c, seed=5)
    tokens, mask = padded_batch(3)
    mesh = sharding.make_mesh(c.mesh)
    graphdef, state = nnx.split(dec)
    state = jax.device_put(state, sharding.state_shardings(state, mesh, c.mesh.axis_rules))
    assert state["layers"]["layers"]["q"]["kernel"].get_value().sharding.spec == P(None, ("fsdp", "context"), "tensor")

    @jax.jit
    def prefill(state, tokens, mask):
        with sharding.activation_sharding(mesh, c.mesh.axis_rules):
            model = nnx.merge(graphdef, state)
            cache = model.init_cache(tokens.shape[0], tokens.shape[1] + 2)
            return model(model.embed(tokens), valid_positions(mask), mask, cache)

    logits, cache = prefill(state, jnp.asarray(tokens), jnp.asarray(mask))
    assert logits.sharding.spec[0] == ("data", "fsdp") and cache["k"].sharding.spec[1] == ("data", "fsdp")
    ref = full_logits(dec, tokens, mask)
    assert np.abs(np.asarray(logits)[mask] - ref[mask]).max() <= 1e-5
