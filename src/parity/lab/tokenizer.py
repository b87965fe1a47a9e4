"""The lab tokenizer: byte-level BPE (Hugging Face ``tokenizers``) with chat special tokens.

Byte-level means every string round-trips, whatever its script; a single token may hold part of a UTF-8
character, so :meth:`Tokenizer.token_text` of such a token shows U+FFFD for the missing bytes.

>>> tok = Tokenizer.load()
>>> tok.vocab_size
16384
>>> ids = tok.encode("def add(a, b):")
>>> tok.decode(ids)
'def add(a, b):'
>>> tok.encode("<|end|>") == [tok.special_id("<|end|>")]
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from parity._exceptions import InvalidInputError
from parity._optional import import_optional
from parity.lab._corpus import SPECIAL_TOKENS
from parity.lab.chat import LAB_CHAT, ChatFormat

#: the committed weights directory (tokenizer.json, config.json, model.safetensors, MODEL_CARD.md).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: vocabulary size of the lab tokenizer: >= 16384 so that ids >= 10240 exist (the incident's top-k repro).
VOCAB_SIZE = 16384


class Tokenizer:
    """A thin typed wrapper over a ``tokenizers.Tokenizer`` with its special tokens and chat format.

    ``special_tokens`` default to the lab's (:data:`parity.lab._corpus.SPECIAL_TOKENS`), ``chat`` to the lab's
    chat format; a checkpoint with another vocabulary (SmolLM2) passes its own.
    """

    def __init__(
        self, backend: Any, *, special_tokens: Sequence[str] = SPECIAL_TOKENS, chat: ChatFormat = LAB_CHAT
    ) -> None:
        self._backend = backend
        self.vocab_size: int = int(backend.get_vocab_size(with_added_tokens=True))
        self.chat = chat
        self._special: dict[str, int] = {}
        for token in special_tokens:
            token_id = backend.token_to_id(token)
            if token_id is None:
                raise InvalidInputError("special_tokens", "must all be in the vocabulary", token)
            self._special[token] = int(token_id)
        missing = [token for token in chat.stop_tokens if token not in self._special]
        if missing:
            raise InvalidInputError("chat", "stop tokens must be special tokens of the tokenizer", missing)

    @classmethod
    def load(cls, path: Path | None = None) -> Tokenizer:
        """Load ``tokenizer.json`` (a file or a weights directory; default: the committed weights)."""
        tokenizers = import_optional("tokenizers", extra="lab")
        path = WEIGHTS_DIR if path is None else Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise InvalidInputError("path", "must be a tokenizer.json file or a directory holding one", str(path))
        return cls(tokenizers.Tokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        """Write ``tokenizer.json`` to ``path``."""
        self._backend.save(str(path))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens written in the text become their single ids."""
        return list(self._backend.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts at once (parallel in the Rust backend)."""
        return [list(enc.ids) for enc in self._backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (special tokens included as written)."""
        return str(self._backend.decode(list(ids), skip_special_tokens=False))

    def token_text(self, token_id: int) -> str:
        """The text of one token (partial UTF-8 characters show as U+FFFD)."""
        if not 0 <= token_id < self.vocab_size:
            raise InvalidInputError("token_id", f"must be in [0, {self.vocab_size})", token_id)
        return self.decode([token_id])

    @property
    def stop_ids(self) -> frozenset[int]:
        """Ids of the chat format's stop tokens (a generation ends at any of them)."""
        return frozenset(self._special[token] for token in self.chat.stop_tokens)

    def token_texts(self) -> list[str]:
        """The text of every token id, in id order (one batched decode)."""
        ids = [[i] for i in range(self.vocab_size)]
        return [str(text) for text in self._backend.decode_batch(ids, skip_special_tokens=False)]

    def special_id(self, token: str) -> int:
        """The id of one of the tokenizer's special tokens (the lab's: :data:`parity.lab._corpus.SPECIAL_TOKENS`)."""
        if token not in self._special:
            raise InvalidInputError("token", f"must be one of {list(self._special)}", token)
        return self._special[token]


def train_tokenizer(texts: Iterator[str], *, vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Train a byte-level BPE tokenizer with the lab's special tokens (ids 0..4) on ``texts``."""
    tokenizers = import_optional("tokenizers", extra="lab")
    if vocab_size < 512:
        raise InvalidInputError("vocab_size", "must be >= 512", vocab_size)
    backend = tokenizers.Tokenizer(tokenizers.models.BPE())
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        min_frequency=2,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(backend)
