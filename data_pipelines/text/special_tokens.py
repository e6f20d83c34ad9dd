"""The tokenizer interface both back ends implement, and the model's special tokens.

Special tokens (SPECIALS): pad, unk, bos, eos, `<seg>` (segment timestamp marker), `<video>`, `<audio>`,
`<speech>` (modality placeholders), chat roles `<system>`, `<user>`, `<assistant>` and `<eot>` (end of turn).

Each special is an id, never a string to find in text: `encode` turns text that merely contains
`<user>` or `<eot>` into ordinary text tokens (no caption, transcript or prompt can forge a turn), and
`decode` skips special ids. An id comes, in this order, from the back end's own token of that role
(bos/eos/pad/unk), the back end's token of that name, one of its reserved tokens (Llama 3's
`<|reserved_special_token_N|>`), or a new id appended above the back end's vocabulary (`base_size`):
`vocab_size` is then `base_size` plus the appended ids, and an imported decoder grows its embedding
by as many rows (pegasus_jax/interop/vocab_growth.py).
"""
from __future__ import annotations

import re
from typing import Iterable

from data_pipelines.errors import UserError

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>", "<seg>", "<video>", "<audio>", "<speech>",
            "<system>", "<user>", "<assistant>", "<eot>")
MARKERS = SPECIALS[4:]
# Names of tokens a tokenizer keeps free for later use (Llama 3, Gemma): markers may take them.
RESERVED = re.compile(r"reserved|unused", re.IGNORECASE)


class Tokenizer:
    """encode/decode over a back end; subclasses set `base_size` and call `_assign_specials`."""

    format: str  # the back end's name in checkpoint metadata
    base_size: int

    def _assign_specials(self, own: dict[str, int], reserved: Iterable[int]) -> None:
        """`own`: the back end's ids for some SPECIALS; `reserved`: its free tokens, in id order."""
        free = [i for i in reserved if i not in own.values()]
        ids, appended, self.on_reserved = {}, 0, []
        for piece in SPECIALS:
            if piece in own:
                ids[piece] = own[piece]
            elif free:
                ids[piece] = free.pop(0)
                self.on_reserved.append(piece)
            else:
                ids[piece], appended = self.base_size + appended, appended + 1
        self.special_ids = ids
        self.vocab_size = self.base_size + appended
        self._special_set = frozenset(ids.values())

    @property
    def appended(self) -> list[str]:
        """The specials given new ids above the back end's vocabulary, in id order."""
        return sorted((p for p, i in self.special_ids.items() if i >= self.base_size), key=self.special_ids.get)

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_bytes(self, token_id: int) -> bytes | None:
        """The bytes token `token_id` appends to the text (a grammar engine's view of the vocabulary);
        None for special ids, which no text produces."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The serialised tokenizer (checkpoint metadata, Grain workers)."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids, special and appended ids skipped."""
        return self._decode([int(i) for i in ids if int(i) not in self._special_set and 0 <= int(i) < self.base_size])

    # Grain workers receive transforms holding a tokenizer: ship its bytes, rebuild on arrival.
    def __getstate__(self):
        return {"blob": self.to_bytes()}

    def __setstate__(self, state):
        self.__init__(state["blob"])

    def check_fits(self, decoder_vocab_size: int) -> None:
        if decoder_vocab_size < self.vocab_size:
            raise UserError(f"config.model.decoder.vocab_size={decoder_vocab_size} is smaller than the tokenizer's "
                            f"{self.vocab_size} ids ({self.base_size} in its vocabulary + "
                            f"{self.vocab_size - self.base_size} appended special tokens)")

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
