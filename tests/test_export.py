"""Export to PyTorch: the decoder as a plain Llama folder and the whole model through transformers'
custom-code convention, checked against our JAX model (fp32, 1e-4): a real decoded clip through the
whole model in a process that cannot import JAX, CLIP/SigLIP x tied/untied (GQA) decoders, pooling after
the projector (PLLaVA's order), LoRA merge and PLLaVA alpha blending, greedy generation,
import(export(x)) == x, and a memory bound on streaming."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
import transformers
from flax import nnx, traverse_util

from data_pipelines.sources import synth
from data_pipelines.text.tokenizer import Tokenizer, load_tokenizer, train
from pegasus_jax import config as cfg
from pegasus_jax.cli.main import main
from pegasus_jax.infer.generate import Generator
from pegasus_jax.infer.sampling import SamplingParams
from pegasus_jax.infer.video_input import whole_video_batch
from pegasus_jax.interop.import_hf import write_checkpoint
from pegasus_jax.models.decoder import valid_positions
from pegasus_jax.models.lora import merge_lora, set_lora_alpha
from pegasus_jax.models.pegasus import Pegasus
from pegasus_jax.train.init_from import state_path

TOL = 1e-4


def read_state_on_host(workdir: str, step: int) -> dict:
    """A checkpoint's whole train state as NumPy arrays, whatever mesh it was saved from."""
    path = state_path(workdir, step)
    reader = ocp.PyTreeCheckpointer()
    meta = reader.metadata(path)
    tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return reader.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
VARIANTS = {"clip-untied": dict(model__vision__kind="clip"),
            "siglip-tied": dict(model__vision__kind="siglip", model__vision__layer_norm_eps=1e-6,
                                model__decoder__tie_embeddings=True)}


# The whole-model parity test covers PLLaVA's pooling order too (project every grid token, then pool).
PARITY_VARIANTS = {**VARIANTS, "clip-pool-after-projector": dict(model__vision__kind="clip",
                                                                 model__align__pool_after_projector=True)}


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    words = "a red green blue yellow circle square triangle star moves left right up down slowly quickly " \
            "then describe the video what colour is shape".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 8)) for _ in range(400)] + ["Describe the video."]
    return train(texts, 512, str(tmp_path_factory.mktemp("tok") / "tok"))


def random_model(config, seed=0) -> Pegasus:
    """Every parameter moved off its initial value (zero-initialised temporal outputs, LoRA B and
    norms included) so a part that is dropped or swapped shows in the logits."""
    model = Pegasus(config.model, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda x: x + rng.normal(0, 0.05, x.shape).astype(x.dtype), state))
    return model


def export_cli(ckpt, out, *flags):
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--max-shard-mb", "0.1", *flags]) == 0


@pytest.fixture(scope="module")
def variants(tokenizer_path, tmp_path_factory):
    out = {}
    for name, overrides in PARITY_VARIANTS.items():
        root = tmp_path_factory.mktemp(f"export-{name}")
        config = cfg.get("tiny", data__tokenizer=tokenizer_path, **overrides)
        model = random_model(config)
        write_checkpoint(model, config, tokenizer_path, str(root / "ckpt"))
        export_cli(root / "ckpt", root / "out")
        out[name] = {"model": model, "config": config, "ckpt": root / "ckpt", "llm": root / "out" / "llm",
                     "full": root / "out" / "full"}
    return out


@pytest.fixture(params=list(VARIANTS))
def exported(request, variants):
    return variants[request.param]


def clip_batch(config, tok: Tokenizer) -> dict[str, np.ndarray]:
    """Two rows from a real decoded 2 s clip (H.264 + AAC): the clip as it is, and the same clip with
    its second segment missing, no audio and a shorter prompt (masking and positions must agree)."""
    clip = synth.make_clip(0, "heldout", 3)
    prompt = [tok.bos_id, tok.user_id] + tok.encode("Describe the video.") + [tok.assistant_id]
    row = whole_video_batch(config, clip.video, prompt)
    assert row["segment_mask"].shape == (1, 2) and row["audio_mask"].all()
    row["transcript"][..., :] = tok.encode("red circle")[:1] * row["transcript"].shape[-1]
    row["transcript_mask"][..., :2] = True
    batch = {k: np.concatenate([v, v]) for k, v in row.items()}
    batch["segment_mask"][1, 1] = False
    batch["audio_mask"][1] = False
    length = len(prompt) + 3
    batch["tokens"] = np.zeros((2, length), np.int32)
    batch["text_mask"] = np.zeros((2, length), bool)
    for i, n in enumerate((len(prompt), len(prompt) - 2)):
        batch["tokens"][i, :n], batch["text_mask"][i, :n] = prompt[:n], True
    return batch


def test_full_model_without_jax_matches_ours_on_a_real_clip(variants, tmp_path):
    """Every variant in one subprocess (torch + transformers start once)."""
    args, expected = [], {}
    for name, v in variants.items():
        batch = clip_batch(v["config"], load_tokenizer(v["config"].data.tokenizer))
        np.savez(tmp_path / f"{name}.npz", **batch)
        args += [str(v["full"]), str(tmp_path / f"{name}.npz"), str(tmp_path / f"{name}.out.npz")]
        forward = nnx.jit(lambda m, b: m(b))
        expected[name] = (np.asarray(forward(v["model"], {k: jnp.asarray(x) for k, x in batch.items()})),
                          batch["text_mask"])
    run = subprocess.run([sys.executable, "-m", "pegasus_jax.interop.torch_check", *args], capture_output=True,
                         text=True, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("PegasusModel torch.float32") == len(variants)
    for name, (ours, valid) in expected.items():
        theirs = np.load(tmp_path / f"{name}.out.npz")["logits"]
        assert theirs.shape == ours.shape
        assert np.abs(theirs - ours)[valid].max() <= TOL, name
        # the two rows differ (missing segment and audio): the comparison is not of two copies
        assert np.abs(ours[0, :4] - ours[1, :4]).max() > 1e-3


def test_llm_folder_is_a_plain_llama_with_our_tokenizer(exported):
    config, model = exported["config"], exported["model"]
    files = sorted(os.listdir(exported["llm"]))
    assert {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer.model", "tokenizer_config.json", "pegasus_export.json"} <= set(files)
    assert not any(f.endswith(".py") for f in files) and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    hf = transformers.LlamaForCausalLM.from_pretrained(exported["llm"]).eval()
    assert hf.config.tie_word_embeddings == config.model.decoder.tie_embeddings
    assert hf.config.num_key_value_heads < hf.config.num_attention_heads  # GQA
    tokens = np.random.default_rng(0).integers(5, config.model.decoder.vocab_size, (2, 12))
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(tokens)).logits.numpy()
    mask = jnp.ones(tokens.shape, bool)
    ours, _ = model.decoder(model.decoder.embed(jnp.asarray(tokens)), valid_positions(mask), mask)
    assert np.abs(np.asarray(ours) - ref).max() <= TOL

    hf_tok = transformers.AutoTokenizer.from_pretrained(exported["llm"])
    tok = load_tokenizer(config.data.tokenizer)
    text = "a red circle moves to the left"
    assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text)
    assert hf_tok.convert_tokens_to_ids(["<eot>", "<user>"]) == [tok.eot_id, tok.user_id]
    assert (hf_tok.bos_token_id, hf_tok.eos_token_id) == (tok.bos_id, tok.eos_id)


def test_export_records_its_source_and_shards(exported):
    for folder in (exported["llm"], exported["full"]):
        record = json.loads((folder / "pegasus_export.json").read_text())
        assert record["step"] == 0 and record["config"]["model"]["vision"]["kind"] == exported["config"].model.vision.kind
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        shards = set(index["weight_map"].values())
        assert len(shards) >= 2 and all(os.path.isfile(folder / s) for s in shards)  # --max-shard-mb 0.1


def test_import_of_export_is_bit_identical(exported, tmp_path):
    assert main(["import-hf", "--full", str(exported["full"]), "--out", str(tmp_path / "back")]) == 0
    original = read_state_on_host(str(exported["ckpt"]), 0)
    back = read_state_on_host(str(tmp_path / "back"), 0)
    flat = lambda s: {**traverse_util.flatten_dict(s["params"]), **traverse_util.flatten_dict(s["frozen"])}
    a, b = flat(original), flat(back)
    assert a.keys() == b.keys() and len(a) > 50
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


def test_greedy_generation_from_the_exported_decoder_equals_ours(exported):
    config, model = exported["config"], exported["model"]
    tok = load_tokenizer(config.data.tokenizer)
    prompt = [tok.bos_id, tok.user_id] + tok.encode("Describe the video.") + [tok.assistant_id]
    stops = (tok.eot_id, tok.eos_id)
    ours = Generator(model, stop_ids=stops, pad_id=tok.pad_id).generate_ids(
        [prompt], None, SamplingParams(max_new_tokens=16))[0]
    hf = transformers.LlamaForCausalLM.from_pretrained(exported["llm"]).eval()
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=list(stops),
                      pad_token_id=tok.pad_id)[0, len(prompt):].tolist()
    theirs = out[:next((i for i, t in enumerate(out) if t in stops), len(out))]
    assert theirs == ours and len(ours) >= 4


@pytest.fixture(scope="module")
def lora_checkpoint(tokenizer_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    config = cfg.get("tiny", data__tokenizer=tokenizer_path, model__lora__rank=4, model__lora__alpha=32.0,
                     model__lora__targets="('q', 'v', 'down')", train__stage="instruct_lora")
    model = random_model(config, seed=3)
    write_checkpoint(model, config, tokenizer_path, str(root / "ckpt"))
    return config, root


def llm_logits(folder, tokens) -> np.ndarray:
    hf = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return hf(input_ids=torch.from_numpy(tokens)).logits.numpy()


def jax_logits(model, tokens) -> np.ndarray:
    mask = jnp.ones(tokens.shape, bool)
    logits, _ = model.decoder(model.decoder.embed(jnp.asarray(tokens)), valid_positions(mask), mask)
    return np.asarray(logits)


def test_merge_lora_equals_the_merged_model_and_alpha_blends(lora_checkpoint, capsys):
    config, root = lora_checkpoint
    tokens = np.random.default_rng(1).integers(5, config.model.decoder.vocab_size, (2, 10))
    assert main(["export", "--checkpoint", str(root / "ckpt"), "--out", str(root / "plain")]) == 2
    assert "--merge-lora" in capsys.readouterr().err
    export_cli(root / "ckpt", root / "merged", "--merge-lora")
    export_cli(root / "ckpt", root / "blend", "--merge-lora", "--lora-alpha", "4")
    trained = random_model(config, seed=3)
    unmerged = jax_logits(trained, tokens)
    merged = jax_logits(merge_lora(random_model(config, seed=3)), tokens)
    blended = jax_logits(set_lora_alpha(random_model(config, seed=3), 4.0), tokens)
    assert np.abs(llm_logits(root / "merged" / "llm", tokens) - merged).max() <= TOL
    assert np.abs(merged - unmerged).max() <= TOL
    assert np.abs(llm_logits(root / "blend" / "llm", tokens) - blended).max() <= TOL
    assert np.abs(blended - merged).max() > 1e-2  # the alpha really changed the weights


def test_bf16_export_halves_the_bytes(exported, tmp_path):
    export_cli(exported["ckpt"], tmp_path / "bf16", "--dtype", "bf16")
    size = lambda d: json.loads((d / "model.safetensors.index.json").read_text())["metadata"]["total_size"]
    assert size(tmp_path / "bf16" / "llm") * 2 == size(exported["llm"])
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "bf16" / "llm")
    assert hf.dtype == torch.bfloat16


def test_checkpoint_without_tokenizer_is_a_one_line_error(tmp_path):
    config = cfg.get("tiny")
    write_checkpoint(Pegasus(config.model, rngs=nnx.Rngs(0)), config, None, str(tmp_path / "ckpt"))
    run = subprocess.run([sys.executable, "-m", "pegasus_jax.cli.main", "export", "--checkpoint",
                          str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=os.path.dirname(os.path.dirname(__file__)))
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert lines == ["error: --checkpoint: this checkpoint has no tokenizer in its metadata"], run.stderr[-2000:]
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


# Peak RSS of the export itself: the libraries are imported first, then the kernel's high-water mark
# is reset (clear_refs 5) so import-time peaks do not hide the export's; prints before and peak bytes.
PEAK_RSS_SCRIPT = r"""
import re, sys
import pegasus_jax.interop.export, pegasus_jax.interop.hf_tokenizer, transformers
from pegasus_jax.cli.main import main
status = lambda key: int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
rc = main(sys.argv[1:])
print(before, status("VmHWM"))
sys.exit(rc)
"""
# Extra peak memory of the export as a fraction of the model's bytes. The model has 7 equal stacked
# decoder tensors of 1/8 of its size each; reading one costs ~3 copies of it (zstd bytes, decoded
# chunk, array) plus a 16 MiB shard, so streaming needs ~0.45; holding the model needs > 1.
STREAMING_BOUND = 0.6


def export_extra_rss(ckpt, out) -> int:
    run = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, "export", "--checkpoint", str(ckpt), "--out",
                          str(out), "--max-shard-mb", "16"], capture_output=True, text=True,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=os.path.dirname(os.path.dirname(__file__)))
    assert run.returncode == 0, run.stderr[-2000:]
    before, peak = map(int, run.stdout.split()[-2:])
    return peak - before


def test_export_streams_with_bounded_memory(variants, tokenizer_path, tmp_path):
    """A ~340 MiB model exports with far less extra memory than its size: tensors are read one at a time
    and shards are written as they fill (stage 'align' keeps the checkpoint's optimizer state small)."""
    config = cfg.get("tiny", data__tokenizer=tokenizer_path, train__stage="align", model__decoder__vocab_size=4096,
                     model__decoder__width=1024, model__decoder__depth=10, model__decoder__num_heads=16,
                     model__decoder__num_kv_heads=16, model__decoder__mlp_dim=1024)
    model = Pegasus(config.model, rngs=nnx.Rngs(0))
    model_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    write_checkpoint(model, config, tokenizer_path, str(tmp_path / "big"))
    del model
    baseline = export_extra_rss(variants["clip-untied"]["ckpt"], tmp_path / "small-out")  # same code, tiny tensors
    extra = export_extra_rss(tmp_path / "big", tmp_path / "big-out") - baseline
    print(f"model {model_bytes / 2**20:.0f} MiB; export peak RSS above its start: tiny model "
          f"{baseline / 2**20:.0f} MiB, this model {(extra + baseline) / 2**20:.0f} MiB; "
          f"difference {extra / 2**20:.0f} MiB = {extra / model_bytes:.2f} of the model")
    assert model_bytes > 300 * 2**20
    assert extra < STREAMING_BOUND * model_bytes
    index = json.loads((tmp_path / "big-out" / "full" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == model_bytes  # every parameter written
    assert len(set(index["weight_map"].values())) >= model_bytes // (16 * 2**20)
