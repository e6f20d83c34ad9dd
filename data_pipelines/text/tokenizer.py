"""SentencePiece tokenizer with the model's special tokens.

Special tokens (SPECIALS): pad, unk, bos, eos, `<seg>` (segment timestamp marker), `<video>`,
`<audio>`, `<speech>` (modality placeholders), chat roles `<system>`, `<user>`, `<assistant>` and
`<eot>` (end of turn).

A tokenizer trained here (`train`) has them all inside the SentencePiece vocabulary: pad=0, unk=1,
bos=2, eos=3, then the others as user-defined symbols. Byte fallback is on, so any text encodes.

A loaded foreign model (e.g. a Llama `tokenizer.model`) uses every special it already has (Llama:
unk=0, bos=1, eos=2) and maps each missing one to a reserved id above the SentencePiece vocabulary,
in SPECIALS order: `vocab_size` grows by the number of missing specials and the decoder's embedding
must have at least that many rows (`check_fits` raises UserError naming
config.model.decoder.vocab_size otherwise). The reserved ids never come out of `encode`.

The chat template that renders conversations with these tokens: text/chat.py.
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterable

from data_pipelines.errors import UserError

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>", "<seg>", "<video>", "<audio>", "<speech>",
            "<system>", "<user>", "<assistant>", "<eot>")
USER_DEFINED = SPECIALS[4:]


class Tokenizer:
    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self._proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.sp_size = self.sp.get_piece_size()
        ids, extra = {}, 0
        builtin = {"<pad>": self.sp.pad_id(), "<unk>": self.sp.unk_id(), "<s>": self.sp.bos_id(),
                   "</s>": self.sp.eos_id()}
        for piece in SPECIALS:
            found = builtin.get(piece, -1)
            if found < 0:
                pid = self.sp.piece_to_id(piece)
                found = pid if pid != self.sp.unk_id() and self.sp.id_to_piece(pid) == piece else -1
            if found < 0:  # missing from the model: reserve an id above the SentencePiece vocabulary
                found, extra = self.sp_size + extra, extra + 1
            ids[piece] = found
        self.special_ids = ids
        self.vocab_size = self.sp_size + extra
        self._special_set = frozenset(ids.values())

    @classmethod
    def load(cls, path) -> "Tokenizer":
        from etils import epath

        p = epath.Path(path)
        if not p.exists():
            raise UserError(f"tokenizer: no such file {path}")
        try:
            return cls(p.read_bytes())
        except (RuntimeError, OSError) as e:
            raise UserError(f"tokenizer: {path} is not a SentencePiece model ({e})") from None

    # Grain workers receive transforms holding a tokenizer: ship the model bytes, rebuild on arrival.
    def __getstate__(self):
        return {"model_proto": self._proto}

    def __setstate__(self, state):
        self.__init__(state["model_proto"])

    @property
    def pad_id(self) -> int:
        return self.special_ids["<pad>"]

    @property
    def unk_id(self) -> int:
        return self.special_ids["<unk>"]

    @property
    def bos_id(self) -> int:
        return self.special_ids["<s>"]

    @property
    def eos_id(self) -> int:
        return self.special_ids["</s>"]

    @property
    def seg_id(self) -> int:
        return self.special_ids["<seg>"]

    @property
    def video_id(self) -> int:
        return self.special_ids["<video>"]

    @property
    def audio_id(self) -> int:
        return self.special_ids["<audio>"]

    @property
    def speech_id(self) -> int:
        return self.special_ids["<speech>"]

    @property
    def system_id(self) -> int:
        return self.special_ids["<system>"]

    @property
    def user_id(self) -> int:
        return self.special_ids["<user>"]

    @property
    def assistant_id(self) -> int:
        return self.special_ids["<assistant>"]

    @property
    def eot_id(self) -> int:
        return self.special_ids["<eot>"]

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids, special and reserved ids skipped."""
        return self.sp.decode([int(i) for i in ids if int(i) not in self._special_set and 0 <= int(i) < self.sp_size])

    def token_bytes(self) -> list[bytes | None]:
        """Each id's bytes as decoding appends them, for grammar engines' token tries: a piece with '▁' as a
        space, a byte-fallback piece its byte; None for special, control, unknown and reserved ids."""
        out: list[bytes | None] = []
        for i in range(self.vocab_size):
            if i >= self.sp_size or i in self._special_set or self.sp.is_control(i) or self.sp.is_unknown(i):
                out.append(None)
            elif self.sp.is_byte(i):
                out.append(bytes([int(self.sp.id_to_piece(i)[3:5], 16)]))
            else:
                out.append(self.sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        return out

    def check_fits(self, decoder_vocab_size: int) -> None:
        if decoder_vocab_size < self.vocab_size:
            raise UserError(f"config.model.decoder.vocab_size={decoder_vocab_size} is smaller than the tokenizer's "
                            f"{self.vocab_size} ids ({self.sp_size} SentencePiece + "
                            f"{self.vocab_size - self.sp_size} reserved special tokens)")


def train(texts: Iterable[str] | str, vocab_size: int, out_prefix: str, model_type: str = "unigram") -> str:
    """Train a SentencePiece model on `texts` (strings, or the path of a text file, one sentence a line);
    returns the path `out_prefix + ".model"`. The vocabulary may come out smaller than `vocab_size`
    on a tiny corpus (never larger)."""
    import sentencepiece as spm

    reserved = len(SPECIALS) + 256  # specials + byte-fallback pieces
    if vocab_size <= reserved:
        raise UserError(f"--vocab-size {vocab_size}: must exceed the {reserved} reserved pieces (specials + 256 bytes)")
    out_dir = os.path.dirname(os.path.abspath(out_prefix))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        if isinstance(texts, str):
            corpus = texts
        else:
            corpus = os.path.join(tmp, "corpus.txt")
            with open(corpus, "w", encoding="utf-8") as f:
                for line in texts:
                    line = " ".join(line.split())
                    if line:
                        f.write(line + "\n")
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=out_prefix, vocab_size=vocab_size, model_type=model_type,
            byte_fallback=True, hard_vocab_limit=False, character_coverage=1.0,
            pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>",
            eos_piece="</s>", user_defined_symbols=list(USER_DEFINED), num_threads=2,
            minloglevel=2, input_sentence_size=2_000_000, shuffle_input_sentence=True)
    return out_prefix + ".model"
