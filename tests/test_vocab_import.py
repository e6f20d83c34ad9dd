"""Real-shaped vocabularies: a random HF Llama whose embedding has exactly as many rows as its tokenizer
has ids imports (with and without --config), its vocabulary grown by the specials the tokenizer lacks
(new rows at the mean of the existing ones), or not grown where a tokenizer.json has reserved tokens
for them; the export's logits on the original ids equal the source's (1e-4) and its tokenizer knows
the added tokens."""
import shutil

import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers
from test_tokenizer_parity import byte_level_folder, corpus

from pegasus_jax.cli.main import main
from pegasus_jax.infer.checkpoint_loader import load

TOL = 1e-4
LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256, rms_norm_eps=1e-5, attn_implementation="eager")
# without --config: the base config, its towers shrunk so the test stays small
SMALL_TOWERS = ["--config.model.vision.width=32", "--config.model.vision.depth=1", "--config.model.vision.num_heads=2",
                "--config.model.vision.mlp_dim=64", "--config.model.vision.image_size=32",
                "--config.model.vision.patch_size=8", "--config.model.align.pool_h=4", "--config.model.align.pool_w=4",
                "--config.model.audio.enabled=False"]


def llama_folder(root, tokenizer_files: dict, vocab_size: int, tie: bool):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=tie,
                                                                   **LLAMA)).eval()
    model.save_pretrained(root)
    for name, path in tokenizer_files.items():
        shutil.copyfile(path, root / name)
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.numpy()


@pytest.fixture(scope="module")
def llama2_like(tmp_path_factory):
    """Llama 2's shape: a SentencePiece BPE model with unk/bos/eos at 0/1/2 and no pad or markers, an
    untied head and exactly as many embedding rows as the model has pieces."""
    root = tmp_path_factory.mktemp("llama2")
    text = root / "corpus.txt"
    text.write_text("\n".join(corpus()))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(root / "sp"), vocab_size=400, model_type="bpe",
                                   byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False)
    size = spm.SentencePieceProcessor(model_file=str(root / "sp.model")).get_piece_size()
    (root / "hf").mkdir()
    model = llama_folder(root / "hf", {"tokenizer.model": root / "sp.model"}, size, tie=False)
    return root, model, size


@pytest.mark.parametrize("with_config", [True, False], ids=["config", "no-config"])
def test_sentencepiece_llama_imports_grown_and_exports(llama2_like, with_config, capsys):
    root, source, size = llama2_like
    out = root / f"ckpt-{with_config}"
    flags = ["--config", "configs/tiny.py"] if with_config else SMALL_TOWERS
    assert main(["import-hf", "--llm", str(root / "hf"), "--out", str(out), *flags]) == 0
    report = capsys.readouterr().out
    assert f"vocabulary {size + 9}: 9 rows added" in report and "<pad>, <seg>" in report, report
    model, config, tok, _ = load(str(out))
    assert config.model.decoder.vocab_size == tok.vocab_size == size + 9 and tok.bos_id == 1
    embed = np.asarray(model.decoder.embed_tokens[...])
    src = source.model.embed_tokens.weight.detach().numpy()
    assert np.array_equal(embed[:size], src) and np.allclose(embed[size:], src.mean(0), atol=1e-6)
    if not with_config:
        return
    assert main(["export", "--checkpoint", str(out), "--out", str(root / "export")]) == 0
    exported = transformers.LlamaForCausalLM.from_pretrained(root / "export" / "llm").eval()
    ids = np.random.default_rng(0).integers(3, size, (2, 10)).tolist()
    ours = logits(exported, ids)
    assert ours.shape[-1] == size + 9 and np.abs(ours[..., :size] - logits(source, ids)).max() <= TOL
    hf_tok = transformers.AutoTokenizer.from_pretrained(root / "export" / "llm")
    assert hf_tok.convert_tokens_to_ids(["<pad>", "<user>", "<eot>"]) == [tok.pad_id, tok.user_id, tok.eot_id]
    assert hf_tok.encode("a red circle", add_special_tokens=False) == tok.encode("a red circle")


def test_tokenizer_json_with_reserved_tokens_imports_without_growth(tmp_path, capsys):
    folder = tmp_path / "hf"
    byte_level_folder(folder)
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    source = llama_folder(folder, {}, len(hf_tok), tie=True)
    assert main(["import-hf", "--llm", str(folder), "--config", "configs/tiny.py", "--out", str(tmp_path / "ckpt")]) == 0
    report = capsys.readouterr().out
    assert f"vocabulary {len(hf_tok)}: 0 rows added" in report and "<user>" in report and "reserved" in report, report
    assert main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "export")]) == 0
    exported = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "export" / "llm").eval()
    ids = np.random.default_rng(0).integers(0, len(hf_tok), (2, 10)).tolist()
    assert np.abs(logits(exported, ids) - logits(source, ids)).max() <= TOL
    _, _, tok, _ = load(str(tmp_path / "ckpt"))
    chat = transformers.AutoTokenizer.from_pretrained(tmp_path / "export" / "llm")
    rendered = chat.apply_chat_template([{"role": "user", "content": "red circle?"}], add_generation_prompt=True,
                                        tokenize=False)
    assert rendered == "<|begin_of_text|><|reserved_special_token_7|>red circle?<|reserved_special_token_8|>"
    assert [tok.user_id, tok.assistant_id] == chat.convert_tokens_to_ids(
        ["<|reserved_special_token_7|>", "<|reserved_special_token_8|>"])
