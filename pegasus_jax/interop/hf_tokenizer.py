"""Our tokenizer as a Hugging Face tokenizer folder (tokenizer.json, no custom code) that chats.

tokenizer.json comes from a maintained converter, never built here: a SentencePiece model goes through
transformers' Llama slow-to-fast converter (exact for Llama-style models: identity normalisation,
whitespace kept, byte fallback, which is what `tokenizer train` writes and Llama 2 ships); an imported
`tokenizers` tokenizer is copied. The specials appended above the vocabulary are added as special
tokens at their ids; a post-processor puts BOS first as training does, and tokenizer_config.json
carries the training chat format as a Jinja `chat_template`:

    [bos] <user> prompt <assistant> answer <eot> <user> prompt <assistant> ...
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

from data_pipelines.text.hf_tokenizer import HFTokenizer
from data_pipelines.text.sentencepiece_tokenizer import SentencePieceTokenizer, model_pb2
from data_pipelines.text.special_tokens import MARKERS, Tokenizer

CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{ USER + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}{{ ASSISTANT + message['content'] + EOT }}"
    "{%- else %}{{ raise_exception('the chat format has user and assistant turns only, not ' + message['role']) }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ ASSISTANT }}{%- endif %}")


def chat_template(token: dict[str, str]) -> str:
    """The template with our role tokens' strings in place (a reserved token keeps its own name)."""
    return (CHAT_TEMPLATE.replace("USER", repr(token["<user>"])).replace("ASSISTANT", repr(token["<assistant>"]))
            .replace("EOT", repr(token["<eot>"])))


def _converted_sentencepiece(tok: SentencePieceTokenizer, model_path: str):
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import LlamaConverter, SentencePieceExtractor
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    class BPEExtractor(SentencePieceExtractor):
        """transformers 5.23's SpmConverter calls the extractor with the pre-5 signature (scores ->
        vocab, merges); this adapts the call to the current `extract(model_type)`."""

        def extract(self, vocab_scores):
            found = super().extract(BPE)
            return found["vocab"], found["merges"]

    class Converter(LlamaConverter):
        SpmExtractor = BPEExtractor

    proto = model_pb2().ModelProto()  # importing it first lets transformers' own import succeed
    proto.ParseFromString(tok.to_bytes())
    spec = proto.normalizer_spec
    if spec.name != "identity" or spec.remove_extra_whitespaces:
        logging.warning("tokenizer.model normalises text (%s, remove_extra_whitespaces=%s): the Llama converter "
                        "does not, so the exported tokenizer.json may split such text differently",
                        spec.name, spec.remove_extra_whitespaces)
    return Converter(SentencePieceBackend(vocab_file=model_path, legacy=True, add_prefix_space=True)).converted()


def _unk_never_matched(backend, unk_id: int):
    """A Unigram model whose unknown piece no text spells. HF's Unigram has no piece types: its Viterbi
    matches the literal text "<unk>" to the unknown piece, which SentencePiece never does, and no score
    fixes that (the fallback for an unknown character is scored from the lowest piece score). So the
    unknown piece is renamed with a U+FFFF prefix, a Unicode noncharacter (reserved for such internal
    use): the export's unk_token is "\uffff<unk>", and unknown characters still map to its id (the
    model's unk_id)."""
    import json

    from tokenizers import Tokenizer as Backend

    data = json.loads(backend.to_str())
    if data["model"]["type"] != "Unigram":
        return backend
    data["model"]["vocab"][unk_id][0] = "\uffff" + data["model"]["vocab"][unk_id][0]
    return Backend.from_str(json.dumps(data))


def write_hf_tokenizer(tok: Tokenizer, folder: str) -> None:
    from tokenizers import AddedToken, processors
    from tokenizers import Tokenizer as Backend
    from transformers import PreTrainedTokenizerFast

    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(tok, SentencePieceTokenizer):
            model_path = os.path.join(tmp, "tokenizer.model")
            with open(model_path, "wb") as f:
                f.write(tok.to_bytes())
            backend = _converted_sentencepiece(tok, model_path)
            shutil.copyfile(model_path, os.path.join(folder, "tokenizer.model"))  # for tools that want the original
        elif isinstance(tok, HFTokenizer):
            backend = Backend.from_str(tok.tokenizer_json)
        else:
            raise TypeError(f"no Hugging Face export for {type(tok).__name__}")
    for piece in tok.appended:  # in id order: each lands on the id our tokenizer appended for it
        backend.add_special_tokens([AddedToken(piece, special=True, normalized=False)])
        assert backend.token_to_id(piece) == tok.special_ids[piece], piece
    if isinstance(tok, SentencePieceTokenizer):
        backend = _unk_never_matched(backend, tok.unk_id)
    token = {piece: backend.id_to_token(i) for piece, i in tok.special_ids.items()}
    backend.post_processor = processors.TemplateProcessing(
        single=f"{token['<s>']} $A", pair=f"{token['<s>']} $A {token['<s>']} $B",
        special_tokens=[(token["<s>"], tok.bos_id)])
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=token["<s>"], eos_token=token["</s>"],
                                 unk_token=token["<unk>"], pad_token=token["<pad>"],
                                 additional_special_tokens=[token[m] for m in MARKERS],
                                 chat_template=chat_template(token))
    hf.save_pretrained(folder)
