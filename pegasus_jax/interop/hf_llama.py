"""Hugging Face `LlamaForCausalLM` <-> our Decoder: weights and config."""
from __future__ import annotations

import numpy as np

from pegasus_jax.config import head_dim
from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import stack_layers, take, unstack_layers

PREFIXES = ("", "language_model.", "model.language_model.")
_PROJECTIONS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
                "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def llama_from_hf(state_dict: dict, dcfg) -> dict:
    """Torch state dict of a LlamaForCausalLM -> nested dict of our Decoder's parameters."""
    get = lambda name: take(state_dict, name, PREFIXES)
    layers = []
    for i in range(dcfg.depth):
        p = f"model.layers.{i}."
        layer = {ours: {"kernel": get(p + theirs + ".weight").T} for ours, theirs in _PROJECTIONS.items()}
        layer["attn_norm"] = {"scale": get(p + "input_layernorm.weight")}
        layer["mlp_norm"] = {"scale": get(p + "post_attention_layernorm.weight")}
        layers.append(layer)
    out = {"embed_tokens": get("model.embed_tokens.weight"), "layers": {"layers": stack_layers(layers)},
           "norm": {"scale": get("model.norm.weight")}}
    if not dcfg.tie_embeddings:
        out["lm_head"] = {"kernel": get("lm_head.weight").T}
    return out


def llama_to_hf(params: dict, dcfg) -> dict[str, np.ndarray]:
    """Nested dict of our Decoder's parameters -> LlamaForCausalLM state dict (exact HF names)."""
    out = {"model.embed_tokens.weight": np.asarray(params["embed_tokens"]),
           "model.norm.weight": np.asarray(params["norm"]["scale"])}
    for i, layer in enumerate(unstack_layers(params["layers"]["layers"], dcfg.depth)):
        p = f"model.layers.{i}."
        for ours, theirs in _PROJECTIONS.items():
            out[p + theirs + ".weight"] = np.ascontiguousarray(np.asarray(layer[ours]["kernel"]).T)
        out[p + "input_layernorm.weight"] = np.asarray(layer["attn_norm"]["scale"])
        out[p + "post_attention_layernorm.weight"] = np.asarray(layer["mlp_norm"]["scale"])
    if not dcfg.tie_embeddings:
        out["lm_head.weight"] = np.ascontiguousarray(np.asarray(params["lm_head"]["kernel"]).T)
    return out


def llama_config_to_hf(dcfg, bos_id: int = 2, eos_id: int = 3) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": dcfg.vocab_size,
        "hidden_size": dcfg.width, "intermediate_size": dcfg.mlp_dim, "num_hidden_layers": dcfg.depth,
        "num_attention_heads": dcfg.num_heads, "num_key_value_heads": dcfg.num_kv_heads,
        "head_dim": head_dim(dcfg), "max_position_embeddings": dcfg.max_seq_len, "rms_norm_eps": dcfg.rms_norm_eps,
        "rope_theta": dcfg.rope_theta, "tie_word_embeddings": dcfg.tie_embeddings, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "bos_token_id": bos_id, "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }


def llama_config_from_hf(hf: dict) -> dict[str, object]:
    """HF config.json -> overrides of config.model.decoder (dotted keys relative to it)."""
    if hf.get("model_type") not in ("llama", "mistral", "qwen2") and "LlamaForCausalLM" not in hf.get("architectures", []):
        raise UserError(f"--llm: config.json describes {hf.get('model_type') or hf.get('architectures')}, not a Llama-family decoder")
    if hf.get("rope_scaling"):
        raise UserError("--llm: rope_scaling is not supported (plain RoPE only)")
    heads = hf["num_attention_heads"]
    return {
        "vocab_size": hf["vocab_size"], "width": hf["hidden_size"], "mlp_dim": hf["intermediate_size"],
        "depth": hf["num_hidden_layers"], "num_heads": heads, "num_kv_heads": hf.get("num_key_value_heads", heads),
        "head_dim": hf.get("head_dim") or hf["hidden_size"] // heads, "rope_theta": float(hf.get("rope_theta", 10000.0)),
        "rms_norm_eps": float(hf.get("rms_norm_eps", 1e-6)), "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "max_seq_len": hf.get("max_position_embeddings", 4096),
    }
