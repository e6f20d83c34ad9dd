"""Hugging Face `LlamaForCausalLM`, `Qwen2ForCausalLM`, `MistralForCausalLM` <-> our Decoder: weights and config.

The three share one layout; config.model.decoder.family records which one a decoder is, so export
writes it back as that architecture: Qwen2 adds q/k/v biases, Mistral a sliding window; any of them
may carry Llama 3's RoPE scaling. Weights: our dense kernels are (in, out), the transpose of
`nn.Linear.weight`, and the layers are one stack with a leading layer axis. A state dict may hold the
model under a LLaVA-style prefix ("language_model."). Every tensor under that prefix must be used:
a bias or an extra projection the family does not have is an error, not silently dropped.
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from pegasus_jax.config import head_dim, qkv_bias
from pegasus_jax.config.model_schema import decoder_config
from pegasus_jax.errors import UserError
from pegasus_jax.interop.common import layer_items, params_of, stack_layers, to_numpy

PREFIXES = ("", "language_model.")
_PROJECTIONS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
                "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
_NORMS = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
# Buffers some older checkpoints saved beside the weights; recomputed from the config here.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def _llama_prefix(state_dict: dict) -> str:
    for prefix in PREFIXES:
        if prefix + "model.embed_tokens.weight" in state_dict:
            return prefix
    raise UserError("missing tensor model.embed_tokens.weight in the Hugging Face weights (not a causal LM?)")


def llama_from_hf(state_dict: dict, dcfg) -> dict:
    """Torch state dict (tensors or arrays) of the family's *ForCausalLM -> nested dict of our Decoder's parameters."""
    prefix = _llama_prefix(state_dict)
    used = set()

    def get(name: str) -> np.ndarray:
        if prefix + name not in state_dict:
            raise UserError(f"missing tensor {prefix + name} in the Hugging Face weights")
        used.add(prefix + name)
        return to_numpy(state_dict[prefix + name])

    layers = []
    for i in range(dcfg.depth):
        p = f"model.layers.{i}."
        layer = {ours: {"kernel": get(p + theirs + ".weight").T} for ours, theirs in _PROJECTIONS.items()}
        layer.update({ours: {"scale": get(p + theirs + ".weight")} for ours, theirs in _NORMS.items()})
        if qkv_bias(dcfg):
            for ours in "qkv":
                layer[ours]["bias"] = get(p + _PROJECTIONS[ours] + ".bias")
        layers.append(layer)
    out = {"embed_tokens": get("model.embed_tokens.weight"), "layers": {"layers": stack_layers(layers)},
           "norm": {"scale": get("model.norm.weight")}}
    if dcfg.tie_embeddings:
        used.add(prefix + "lm_head.weight")  # HF lists the tied head too; it is the embedding
    else:
        out["lm_head"] = {"kernel": get("lm_head.weight").T}
    llama_keys = (prefix + "model.", prefix + "lm_head.")
    unused = sorted(k for k in state_dict
                    if k.startswith(llama_keys) and k not in used and not k.endswith(_IGNORED_SUFFIXES))
    if unused:
        raise UserError(f"unexpected tensor {unused[0]} in the Hugging Face weights ({len(unused)} unused): "
                        f"the checkpoint is not a {dcfg.family} of this config (depth, biases, tied head?)")
    return out


def llama_to_hf(module: nnx.Module | dict, dcfg) -> dict[str, np.ndarray]:
    """Our Decoder (or the nested dict of its parameters) -> the family's *ForCausalLM state dict, exact HF names.

    LoRA adapters are not exported: merge them first (`merge_lora`). A tied model has no lm_head.weight.
    """
    return dict(llama_hf_items(params_of(module) if isinstance(module, nnx.Module) else module, dcfg))


def _owned(x) -> np.ndarray:
    """A writable array of `x`: a lazy leaf's read is one already (copying it would hold a 1 GB embedding
    twice), a JAX array's view is copied."""
    a = np.asarray(x)
    return a if a.flags.writeable else a.copy()


def llama_hf_items(params: dict, dcfg, prefix: str = ""):
    """(HF name, array) pairs of `llama_to_hf`, one at a time: leaves may be lazy (a TensorStore or any
    array-like indexable by layer), so a streaming export holds one tensor at a time."""
    yield prefix + "model.embed_tokens.weight", _owned(params["embed_tokens"])
    yield prefix + "model.norm.weight", _owned(params["norm"]["scale"])
    names = {(ours,): theirs for ours, theirs in (_PROJECTIONS | _NORMS).items()}
    yield from layer_items(params["layers"]["layers"], dcfg.depth, prefix + "model.layers.", names)
    if not dcfg.tie_embeddings:
        yield prefix + "lm_head.weight", np.ascontiguousarray(np.asarray(params["lm_head"]["kernel"]).T)


ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}


def _rope_parameters(dcfg) -> dict:
    rope = {"rope_type": dcfg.rope_type, "rope_theta": dcfg.rope_theta}
    if dcfg.rope_type == "llama3":
        rope.update(factor=dcfg.rope_factor, low_freq_factor=dcfg.rope_low_freq_factor,
                    high_freq_factor=dcfg.rope_high_freq_factor,
                    original_max_position_embeddings=dcfg.rope_original_max_len)
    return rope


def llama_config_to_hf(dcfg, bos_id: int = 2, eos_id: int = 3) -> dict:
    """config.json of the family's architecture for our decoder. RoPE is written both ways: transformers
    >= 5 reads `rope_parameters`, older versions `rope_theta` and `rope_scaling`."""
    rope = _rope_parameters(dcfg)
    hf = {
        "architectures": [ARCHITECTURES[dcfg.family]], "model_type": dcfg.family, "vocab_size": dcfg.vocab_size,
        "hidden_size": dcfg.width, "intermediate_size": dcfg.mlp_dim, "num_hidden_layers": dcfg.depth,
        "num_attention_heads": dcfg.num_heads, "num_key_value_heads": dcfg.num_kv_heads,
        "head_dim": head_dim(dcfg), "max_position_embeddings": dcfg.max_seq_len, "rms_norm_eps": dcfg.rms_norm_eps,
        "rope_theta": dcfg.rope_theta, "rope_parameters": rope,
        "rope_scaling": rope if dcfg.rope_type != "default" else None,
        "tie_word_embeddings": dcfg.tie_embeddings, "hidden_act": "silu", "bos_token_id": bos_id,
        "eos_token_id": eos_id, "torch_dtype": "float32",
    }
    if dcfg.family == "llama":
        hf.update(attention_bias=False, mlp_bias=False)
    elif dcfg.family == "qwen2":
        hf.update(use_sliding_window=False, sliding_window=None, max_window_layers=dcfg.depth)
    else:
        hf["sliding_window"] = dcfg.sliding_window or None
    return hf


_ROPE_LLAMA3 = {"factor": "rope_factor", "low_freq_factor": "rope_low_freq_factor",
                "high_freq_factor": "rope_high_freq_factor",
                "original_max_position_embeddings": "rope_original_max_len"}


def _rope_from_hf(hf: dict) -> dict:
    """RoPE fields from either config layout: plain or Llama 3 scaling; any other (yarn, dynamic, ...) is refused.
    Every RoPE field is set (the schema's defaults where unscaled), so nothing of --config's RoPE remains."""
    rope = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "llama3"):
        raise UserError(f"--llm: RoPE type {kind!r} is not supported (plain RoPE or Llama 3's 'llama3')")
    out = {"rope_type": kind, "rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))}
    out.update({ours: decoder_config()[ours] for ours in _ROPE_LLAMA3.values()})
    if kind == "llama3":
        out.update({ours: float(rope[theirs]) for theirs, ours in _ROPE_LLAMA3.items()})
        out["rope_original_max_len"] = int(out["rope_original_max_len"])
    return out


def _family(hf: dict) -> str:
    for family, architecture in ARCHITECTURES.items():
        if hf.get("model_type") == family or architecture in (hf.get("architectures") or []):
            return family
    raise UserError(f"--llm: config.json describes {hf.get('model_type') or hf.get('architectures')}, "
                    f"not one of {', '.join(ARCHITECTURES.values())}")


def llama_config_from_hf(hf: dict) -> dict[str, object]:
    """HF config.json of a Llama, Qwen2 or Mistral -> overrides of config.model.decoder (keys relative to it)."""
    family = _family(hf)
    if family == "llama" and (hf.get("attention_bias") or hf.get("mlp_bias")):
        raise UserError("--llm: a Llama with attention_bias or mlp_bias is not supported (bias-free Llama only)")
    if family == "qwen2" and hf.get("use_sliding_window"):
        raise UserError("--llm: Qwen2 with use_sliding_window=true is not supported (its window covers only some "
                        "layers); use a checkpoint with full attention")
    if hf.get("hidden_act", "silu") != "silu":
        raise UserError(f"--llm: hidden_act {hf['hidden_act']!r} is not supported (SwiGLU with silu only)")
    heads = hf["num_attention_heads"]
    hd = hf.get("head_dim") or hf["hidden_size"] // heads
    return {
        "family": family, "vocab_size": hf["vocab_size"], "width": hf["hidden_size"],
        "mlp_dim": hf["intermediate_size"], "depth": hf["num_hidden_layers"], "num_heads": heads,
        "num_kv_heads": hf.get("num_key_value_heads") or heads,
        "head_dim": 0 if hd * heads == hf["hidden_size"] else hd,  # 0: the default, width // heads
        "rms_norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "max_seq_len": hf.get("max_position_embeddings", 4096),
        "sliding_window": (hf.get("sliding_window") or 0) if family == "mistral" else 0,
        **_rope_from_hf(hf),
    }
