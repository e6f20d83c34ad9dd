"""Our SentencePiece tokenizer as a Hugging Face tokenizer folder (tokenizer.json, no custom code).

transformers converts a `tokenizer.model` by parsing its protobuf, which fails where the protobuf
runtime is older than sentencepiece's generated code (this project's pinned set), so the fast
tokenizer is built here from the SentencePiece processor's pieces and scores instead: a Unigram model
with byte fallback, SentencePiece's whitespace handling ("▁" prepended to every word, runs of whitespace
collapsed) and our special tokens with their ids, including ids reserved above the SentencePiece
vocabulary. `tokenizer.model` is copied beside it for tools that want the original.
"""
from __future__ import annotations

import shutil

from data_pipelines.text.tokenizer import SPECIALS, Tokenizer


def write_hf_tokenizer(model_path: str, folder: str) -> None:
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as FastTokenizer
    from transformers import PreTrainedTokenizerFast

    ours = Tokenizer.load(model_path)
    sp = ours.sp
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(ours.sp_size)]
    fast = FastTokenizer(models.Unigram(vocab, unk_id=ours.unk_id, byte_fallback=True))
    fast.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"[ \t\n\r]+"), " "),
                                            normalizers.Strip()])
    fast.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    fast.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                      decoders.Strip(" ", 1, 0)])
    # In SPECIALS order: a special missing from the SentencePiece model is appended at the next id,
    # which is the id our Tokenizer reserved for it.
    names = {i: piece for piece, i in ours.special_ids.items()}
    for i in sorted(names):
        fast.add_special_tokens([AddedToken(sp.id_to_piece(i) if i < ours.sp_size else names[i], special=True,
                                            normalized=False)])
    piece = lambda name: names.get(ours.special_ids[name]) if ours.special_ids[name] >= ours.sp_size \
        else sp.id_to_piece(ours.special_ids[name])
    hf = PreTrainedTokenizerFast(tokenizer_object=fast, bos_token=piece("<s>"), eos_token=piece("</s>"),
                                 unk_token=piece("<unk>"), pad_token=piece("<pad>"),
                                 additional_special_tokens=[piece(s) for s in SPECIALS[4:]])
    hf.save_pretrained(folder)
    shutil.copyfile(model_path, f"{folder}/tokenizer.model")
