"""Import from local Hugging Face folders: CLIP/SigLIP, Whisper and (sharded, tied or untied, GQA)
Llama folders -> a checkpoint whose parts compute what transformers computes (1e-4); bad folders are
one-line errors naming the folder and the tensor, exit code 2."""
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file
from test_export import tokenizer_path  # noqa: F401  (module fixture: a small SentencePiece model)

from conftest import cli
from pegasus_jax.cli.main import main
from pegasus_jax.infer.checkpoint_loader import load
from pegasus_jax.models.decoder import valid_positions

TOL = 1e-4
VISION = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64, attn_implementation="eager")


def perturbed(model):
    """Norms and biases away from their init so a swapped or dropped one shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def hf_folders(root, kind: str, tie: bool, tokenizer: str) -> dict:
    torch.manual_seed(0)
    if kind == "clip":
        vision = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(layer_norm_eps=1e-5, **VISION))
    else:
        vision = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(layer_norm_eps=1e-6,
                                                                                vision_use_head=False, **VISION))
    whisper = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
        num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=50, vocab_size=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, attn_implementation="eager"))
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=tie, max_position_embeddings=256, rms_norm_eps=1e-5,
        attn_implementation="eager"))
    models = {"vision": perturbed(vision), "audio": perturbed(whisper), "llm": perturbed(llama)}
    folders = {name: str(root / name) for name in models}
    for name, model in models.items():
        model.save_pretrained(folders[name], max_shard_size="100KB" if name == "llm" else "1GB")
    shutil.copyfile(tokenizer, os.path.join(folders["llm"], "tokenizer.model"))
    return {"models": models, "folders": folders}


def import_flags(folders, out):
    return ["import-hf", "--vision", folders["vision"], "--audio", folders["audio"], "--llm", folders["llm"],
            "--config", "configs/tiny.py", "--out", str(out)]


@pytest.fixture(scope="module", params=[("clip", False), ("siglip", True)], ids=["clip-untied", "siglip-tied"])
def imported(request, tokenizer_path, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("hf")
    made = hf_folders(root, *request.param, tokenizer_path)
    assert main(import_flags(made["folders"], root / "ckpt")) == 0
    return made, root


def test_imported_parts_match_transformers(imported, capsys):
    made, root = imported
    models = made["models"]
    model, config, tokenizer, step = load(str(root / "ckpt"))
    assert step == 0 and config.model.audio.max_source_positions == 50  # shapes from the folders' configs
    # an imported tower brings its HF preprocessing: the image processor's resize, Whisper's padded window
    assert config.model.vision.frame_resize == config.model.vision.kind and config.model.audio.whisper_window
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        ref = models["vision"](pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2))).last_hidden_state
    assert np.abs(np.asarray(model.video_encoder.frames(jnp.asarray(pixels))) - ref.numpy()).max() <= TOL

    mel = rng.normal(size=(2, 100, 80)).astype(np.float32)
    with torch.no_grad():
        ref = models["audio"].model.encoder(input_features=torch.from_numpy(mel.transpose(0, 2, 1))).last_hidden_state
    assert np.abs(np.asarray(model.audio_encoder(jnp.asarray(mel))) - ref.numpy()).max() <= TOL

    tokens = rng.integers(5, 512, (2, 12))
    with torch.no_grad():
        ref = models["llm"](input_ids=torch.from_numpy(tokens)).logits.numpy()
    mask = jnp.ones(tokens.shape, bool)
    ours, _ = model.decoder(model.decoder.embed(jnp.asarray(tokens)), valid_positions(mask), mask)
    assert np.abs(np.asarray(ours) - ref).max() <= TOL
    assert tokenizer.encode("a red circle") and tokenizer.eot_id < 512


def test_import_reports_loaded_and_new_tensors(tokenizer_path, tmp_path, capsys):  # noqa: F811
    made = hf_folders(tmp_path, "clip", False, tokenizer_path)
    assert main(import_flags(made["folders"], tmp_path / "ckpt")) == 0
    report = capsys.readouterr().out
    # stacked parameters: CLIP 23 + Whisper encoder 22 + untied Llama 12; the temporal layers (16 + position
    # table), the two projectors (6 each) and the marker (2) are new
    assert "loaded 57 tensors, 31 new (0 LoRA)" in report and "tokenizer from" in report


def rewrite(folder, out, change):
    """A copy of an unsharded HF folder with its tensors changed by `change(dict)`."""
    shutil.copytree(folder, out)
    path = os.path.join(out, "model.safetensors")
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})
    return str(out)


def test_bad_folders_are_one_line_errors(tokenizer_path, tmp_path, capsys):  # noqa: F811
    made = hf_folders(tmp_path, "clip", False, tokenizer_path)
    good = made["folders"]
    vision_wrong_shape = rewrite(good["vision"], tmp_path / "bad-vision", lambda t: t.update(
        {"embeddings.position_embedding.weight": t["embeddings.position_embedding.weight"][:-1]}))
    audio_missing = rewrite(good["audio"], tmp_path / "bad-audio", lambda t: t.pop("model.encoder.layers.1.fc2.weight"))
    llm_no_tokenizer = str(tmp_path / "llm-no-tok")
    shutil.copytree(good["llm"], llm_no_tokenizer)
    os.remove(os.path.join(llm_no_tokenizer, "tokenizer.model"))
    cases = [
        ({"vision": good["audio"]}, "--vision: config.json describes whisper, not a CLIP or SigLIP vision tower"),
        ({"audio": audio_missing}, f"--audio {audio_missing}: missing tensor model.encoder.layers.1.fc2.weight"),
        ({"vision": vision_wrong_shape}, f"--vision {vision_wrong_shape}: tensor position_embedding has shape (16, 32)"),
        ({"llm": llm_no_tokenizer}, f"--llm: {llm_no_tokenizer} has no tokenizer.model"),
    ]
    capsys.readouterr()  # drop save_pretrained's progress bars
    for i, (bad, message) in enumerate(cases):
        assert main(import_flags({**good, **bad}, tmp_path / f"out{i}")) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: " + message) and err.count("\n") == 1, err
    # through the real entry point: exit code 2, one line, no traceback
    run = cli(*import_flags({**good, "vision": good["audio"]}, tmp_path / "out-cli"), env=dict(
        os.environ, JAX_PLATFORMS="cpu"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if line.startswith("error:")] == ["error: " + cases[0][1]]
