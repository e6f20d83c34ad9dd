"""The Hugging Face `tokenizers` back end: a `tokenizer.json` folder (Llama 3, Qwen2, Mistral, ...).

The roles bos/eos/pad/unk are the tokens `tokenizer_config.json` names, where it names them. The
tokenizer's own special tokens (`<|begin_of_text|>`, `<|im_start|>`, ...) are encoded as ordinary text
too (`encode_special_tokens`), as `AutoTokenizer(..., split_special_tokens=True)` does, so text cannot
forge them either; markers it does not have take its reserved tokens, else appended ids.
"""
from __future__ import annotations

import json
import os

from data_pipelines.errors import UserError
from data_pipelines.text.special_tokens import RESERVED, SPECIALS, Tokenizer

FORMAT = "tokenizers"
TOKENIZER_JSON, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"
# tokenizer_config.json's fields for the roles of SPECIALS
ROLE_FIELDS = {"<pad>": "pad_token", "<unk>": "unk_token", "<s>": "bos_token", "</s>": "eos_token"}


def _bytes_of_byte_level_chars() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class HFTokenizer(Tokenizer):
    format = FORMAT

    def __init__(self, blob: bytes):
        """`blob`: {"tokenizer.json": its text, "roles": {SPECIALS piece: token}} as JSON bytes."""
        from tokenizers import Tokenizer as Backend

        spec = json.loads(blob)
        self._spec = spec
        self.backend = Backend.from_str(spec[TOKENIZER_JSON])
        self.backend.encode_special_tokens = True
        self.backend.no_padding()
        self.backend.no_truncation()
        self.base_size = self.backend.get_vocab_size(with_added_tokens=True)
        named = {piece: spec["roles"].get(piece, piece) for piece in SPECIALS}
        own = {piece: self.backend.token_to_id(name) for piece, name in named.items()
               if self.backend.token_to_id(name) is not None}
        self._added = self.backend.get_added_tokens_decoder()
        reserved = [i for i in sorted(self._added) if self._added[i].special and RESERVED.search(self._added[i].content)]
        self._assign_specials(own, reserved)
        decoder = json.loads(spec[TOKENIZER_JSON]).get("decoder") or {}
        self._byte_of = _bytes_of_byte_level_chars() if decoder.get("type") == "ByteLevel" else None

    @classmethod
    def load(cls, path: str) -> "HFTokenizer":
        """A folder with tokenizer.json (and tokenizer_config.json), or a tokenizer.json file."""
        folder, file = (path, os.path.join(path, TOKENIZER_JSON)) if os.path.isdir(path) else \
            (os.path.dirname(path), path)
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
            config = {}
            if os.path.isfile(os.path.join(folder, TOKENIZER_CONFIG)):
                with open(os.path.join(folder, TOKENIZER_CONFIG), encoding="utf-8") as f:
                    config = json.load(f)
            roles = {}
            for piece, field in ROLE_FIELDS.items():
                token = config.get(field)
                token = token.get("content") if isinstance(token, dict) else token
                if token:
                    roles[piece] = token
            return cls(json.dumps({TOKENIZER_JSON: text, "roles": roles}).encode())
        except Exception as e:  # OSError, JSON errors, and the plain Exception `tokenizers` raises
            raise UserError(f"tokenizer: {path} is not a Hugging Face tokenizer.json folder ({e})") from None

    def to_bytes(self) -> bytes:
        return json.dumps(self._spec).encode()

    @property
    def tokenizer_json(self) -> str:
        return self._spec[TOKENIZER_JSON]

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def _decode(self, ids: list[int]) -> str:
        return self.backend.decode(ids, skip_special_tokens=True)

    def token_bytes(self, token_id: int) -> bytes | None:
        i = int(token_id)
        if i in self._special_set or not 0 <= i < self.base_size or (i in self._added and self._added[i].special):
            return None
        token = self.backend.id_to_token(i)
        if i in self._added:
            return token.encode()
        if self._byte_of is not None:
            return bytes(self._byte_of[c] for c in token)
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):  # byte fallback
            return bytes([int(token[3:5], 16)])
        return token.replace("\u2581", " ").encode()
