"""Text features of completions for the black-box two-sample tests: codepoints at fixed positions (the MMD's
input) and bags of word, first-word and Unicode-script tokens (the token-frequency test's input).

>>> encode_completions(["ab"], length=3).tolist()
[[97, 98, -1]]
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import InvalidInputError

__all__ = ["DEFAULT_LENGTH", "PAD", "encode_completions", "token_features"]

#: Completions are compared over their first ``DEFAULT_LENGTH`` codepoints (the MET paper's L = 50 characters).
DEFAULT_LENGTH = 50
#: Code used to pad completions shorter than the compared length (not a valid codepoint; pads match pads, as
#: in MET where padding is a token of its own).
PAD = -1


def encode_completions(texts: Sequence[str], *, length: int = DEFAULT_LENGTH) -> NDArray[np.int64]:
    """Codepoints of each text, truncated or padded with :data:`PAD` to ``length``.

    >>> encode_completions(["ab", "abcd"], length=3).tolist()
    [[97, 98, -1], [97, 98, 99]]
    """
    if length < 1:
        raise InvalidInputError("length", "must be >= 1", length)
    out = np.full((len(texts), length), PAD, dtype=np.int64)
    for i, text in enumerate(texts):
        codes = [ord(ch) for ch in text[:length]]
        out[i, : len(codes)] = codes
    return out


def _words(text: str) -> list[str]:
    """Runs of word characters (letters, digits, ``_`` and combining marks, so Thai vowels stay inside their word)
    and single punctuation characters; whitespace separates."""
    out: list[str] = []
    current: list[str] = []
    for ch in text:
        if ch.isalnum() or ch == "_" or unicodedata.category(ch).startswith("M"):
            current.append(ch)
            continue
        if current:
            out.append("".join(current))
            current = []
        if not ch.isspace():
            out.append(ch)
    if current:
        out.append("".join(current))
    return out


def token_features(text: str) -> Counter[str]:
    """The features :func:`token_frequency_test` counts for one completion.

    Word and punctuation tokens, the first token (prefixed ``^``) and, for every non-ASCII letter, its Unicode
    script block (prefixed ``#``, from the character's name: ``THAI``, ``CJK``...), so an injected Thai span
    adds mass to one shared feature instead of to many singletons.

    >>> sorted(token_features("Hi สวัส").items())
    [('#THAI', 3), ('^Hi', 1), ('hi', 1), ('สวัส', 1)]
    """
    tokens = _words(text)
    features: Counter[str] = Counter(tok.lower() for tok in tokens)
    if tokens:
        features["^" + tokens[0]] += 1
    for ch in text:
        if ord(ch) > 127 and ch.isalpha():
            name = unicodedata.name(ch, "UNKNOWN")
            features["#" + name.split(" ", 1)[0]] += 1
    return features
