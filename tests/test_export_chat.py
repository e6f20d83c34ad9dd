"""Exports that chat: on the trained tiny checkpoint, transformers' `apply_chat_template` renders
exactly the ids training and inference use (BOS first, one and several turns), and HF `generate` from
the exported decoder gives the same tokens as our generator."""
import torch
import transformers

from data_pipelines.text.chat import prompt_ids, render_chat
from pegasus_jax.cli.main import main
from pegasus_jax.infer.checkpoint_loader import load
from pegasus_jax.infer.generate import Generator
from pegasus_jax.infer.sampling import SamplingParams


def test_apply_chat_template_and_generate_match_ours(reference, tmp_path):
    assert main(["export", "--checkpoint", str(reference), "--out", str(tmp_path / "export")]) == 0
    model, _, tok, _ = load(str(reference))
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "export" / "llm")
    prompt = "Describe the video."
    ids = hf_tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)["input_ids"]
    assert ids == prompt_ids(tok, prompt)
    turns = [{"role": "user", "text": "What colour is the shape?"}, {"role": "assistant", "text": "red"},
             {"role": "user", "text": prompt}, {"role": "assistant", "text": "a red circle moves left"}]
    rendered = hf_tok.apply_chat_template([{"role": t["role"], "content": t["text"]} for t in turns])["input_ids"]
    assert rendered == render_chat(tok, turns, 256)[0]

    ours = Generator(model, stop_ids=(tok.eot_id, tok.eos_id), pad_id=tok.pad_id).generate_ids(
        [ids], None, SamplingParams(max_new_tokens=12))[0]
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "export" / "llm").eval()
    with torch.no_grad():  # eos and pad come from the export's generation_config.json
        out = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids):].tolist()
    theirs = out[:next((i for i, t in enumerate(out) if t in (tok.eot_id, tok.eos_id)), len(out))]
    assert theirs == ours and ours, (ours, theirs)
    # The tiny model may end its answer within a few tokens: past the stop ids too, all 12 tokens agree.
    ours = Generator(model, stop_ids=(), pad_id=tok.pad_id).generate_ids([ids], None, SamplingParams(max_new_tokens=12))[0]
    hf.generation_config.eos_token_id = None
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids):].tolist()
    assert theirs == ours and len(ours) == 12, (ours, theirs)
