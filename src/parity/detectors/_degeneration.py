"""Degeneration: repetition loops, n-gram repetition, truncation mid-character, replacement characters, mojibake.

These are the symptoms users of serving stacks report when a deployment silently breaks (vLLM #9409 repetition
loops, #35718 gibberish after hours of uptime, #54739 corrupted Thai). Order of operations, for every response:

1. Truncation mid-character: the served tokens end in raw byte tokens (``bytes:\\xe0\\xb8``) whose bytes do not
   complete a UTF-8 character, though the answer did not stop at ``max_tokens``. An answer that did
   (``finish_reason`` ``"length"``) may end inside a character on any correct server: that cut, and up to three
   U+FFFD at the very end of its text, are not judged.
2. Tail loop: the response ends with one unit (at least one letter) repeated :data:`MIN_LOOP_REPEATS`
   times or more over :data:`MIN_LOOP_CHARS` characters or more: the model looped until ``max_tokens``. Found by
   searching earlier occurrences of the last :data:`LOOP_ANCHOR` characters (one ``str.rfind`` in clean text).
3. Non-ASCII only: U+FFFD replacement characters (a detokenizer cut a multi-byte character, or bytes were not
   UTF-8), mojibake (UTF-8 decoded as cp1252/Latin-1: "Ã©", "â€™"), combining marks with no base character
   (a diacritic or Thai vowel after a space or at the start) or the same mark doubled on one base ("บีี"), as
   corrupted Thai looks; a lone surrogate at the end (a cut character).
4. Repetition, fenced code left out (code repeats by nature): the share of repeated word 4-grams (character
   6-grams for text written without spaces) once there are :data:`MIN_NGRAMS`. Above :data:`MAX_NGRAM_REPEAT_RATE`
   it is degenerate by itself; above :data:`LOOP_GATE_RATE` the detector looks for a loop in the middle: a unit
   repeated :data:`MIN_INNER_REPEATS` times back to back over :data:`MIN_INNER_LOOP_WORDS` words or more.

Score: 1.0 for hard evidence (a loop, a replacement character, mojibake, an orphan mark, a cut character),
else the n-gram repetition rate (0 for varied text, approaching 1 for a loop). The evidence is the offending
span (the loop's repeated region, the first replacement or mojibake sequence).

>>> det = DegenerationDetector()
>>> obs = det.score(ResponseContext("Sure! The answer is 42. " + "I am sorry, I cannot. " * 6))
>>> obs.flagged, obs.evidence.count("I am sorry")
(True, 6)
>>> det.score(ResponseContext("The caf\\u00c3\\u00a9 opens at nine.")).evidence
'Ã©'
>>> det.score(ResponseContext("A plain, varied answer about sampling and temperature.")).flagged
False
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import regex

from parity._exceptions import InvalidInputError
from parity.detectors._base import Observation, ResponseContext

__all__ = [
    "LOOP_ANCHOR",
    "LOOP_GATE_RATE",
    "MAX_NGRAM_REPEAT_RATE",
    "MIN_INNER_LOOP_WORDS",
    "MIN_INNER_REPEATS",
    "MIN_LOOP_CHARS",
    "MIN_LOOP_REPEATS",
    "MIN_NGRAMS",
    "DegenerationDetector",
    "ngram_repeat_rate",
]

#: Characters at the end of the response whose earlier occurrences propose loop periods.
LOOP_ANCHOR = 8
#: Longest loop unit looked for, in characters (a repeated paragraph longer than this is caught by n-grams).
MAX_LOOP_PERIOD = 1000
#: A tail loop needs this many copies of its unit...
MIN_LOOP_REPEATS = 3
#: ...covering this many characters: "hahaha" or a repeated "=" rule is not a loop; 50 characters of the same
#: unit repeated three times is, in any prose or code measured (benchmarks/results/detectors.md).
MIN_LOOP_CHARS = 50
#: Repeated word 4-grams (character 6-grams for unspaced text) above this share make the detector look for a
#: loop in the middle of the text (a cheap gate: about 5% of clean prose passes it, see the results file).
LOOP_GATE_RATE = 0.2
#: A unit of words (characters for unspaced text) repeated back to back this many times...
MIN_INNER_REPEATS = 4
#: ...over this many words (or 4x as many characters) is a loop, wherever it sits.
MIN_INNER_LOOP_WORDS = 24
#: Longest unit, in words, looked for in the middle of the text.
MAX_INNER_PERIOD = 200
#: The middle-loop search reads at most this many units (the last ones: a loop runs to the end more often than
#: not), so a long repetitive document costs at most MAX_INNER_PERIOD x this many comparisons.
MAX_INNER_UNITS = 4000
#: Repetition rate that is degenerate by itself. Clean prose measured on this machine peaks at 0.77 (5,000
#: pieces of docs; 99.9th percentile about 0.5); fenced code is left out of the rate (code repeats by nature).
MAX_NGRAM_REPEAT_RATE = 0.85
#: N-grams needed before the repetition rate is judged (short answers repeat by chance).
MIN_NGRAMS = 40
#: Word and character n-gram sizes.
WORD_NGRAM = 4
CHAR_NGRAM = 6

_cont = "".join(sorted(set(bytes(range(0x80, 0xC0)).decode("cp1252", errors="replace")) - {"\ufffd"}))
_cont += "".join(chr(c) for c in range(0x80, 0xA0))  # Latin-1 decoding keeps C1 controls
_C = "[" + regex.escape(_cont) + "]"
_MOJIBAKE = regex.compile(f"[\u00c2-\u00df]{_C}|[\u00e0-\u00ef]{_C}{{2}}|[\u00f0-\u00f4]{_C}{{3}}")
#: a combining mark with no base character (after a space, punctuation or the start), or the same combining mark
#: twice in a row on one base ("บีี"): how corrupted Thai and Devanagari look (vLLM #54739)
_ORPHAN_MARK = regex.compile(r"(?:^|(?<=[\s\p{P}]))\p{Mn}+|(\p{Mn})\1")
_HAS_LETTER = regex.compile(r"\p{L}")
#: whitespace-separated tokens with at least one letter: numbers, rules and ASCII art ("****", "0 0 0") are
#: not language and repeat legitimately in tables and banners.
_WORD = re.compile(r"\S*[^\W\d_]\S*")
_FENCED = re.compile(r"^[ \t]*```.*?(?:^[ \t]*```|\Z)", re.MULTILINE | re.DOTALL)


def ngram_repeat_rate(text: str, *, letters_only: bool = False) -> tuple[float, int]:
    """Share of repeated n-grams and the n-gram count: whitespace-separated word 4-grams, or character 6-grams
    for non-ASCII text written without spaces. ``letters_only`` drops tokens without a letter first (numbers,
    rules, ASCII art: slower, used to confirm).

    >>> ngram_repeat_rate("a b c d a b c d a b c d")
    (0.555..., 9)
    >>> ngram_repeat_rate("* * * * * * * 0 0 0 0 0 0 0", letters_only=True)
    (0.0, 0)
    """
    words = _WORD.findall(text) if letters_only else text.split()
    if text.isascii() or len(words) * 20 >= len(text):
        n = len(words) - WORD_NGRAM + 1
        if n <= 0:
            return 0.0, 0
        grams: set[object] = set(zip(words, words[1:], words[2:], words[3:], strict=False))
    else:
        n = len(text) - CHAR_NGRAM + 1
        if n <= 0:
            return 0.0, 0
        grams = {text[i : i + CHAR_NGRAM] for i in range(n)}
    return 1.0 - len(grams) / n, n


def _tail_loop(text: str) -> tuple[int, int] | None:
    """The ``(start, end)`` of a repeated unit at the end of ``text``, or ``None``."""
    n = len(text)
    if n < MIN_LOOP_CHARS:
        return None
    anchor = text[-LOOP_ANCHOR:]
    lo = max(0, n - MAX_LOOP_PERIOD - LOOP_ANCHOR)
    hi = n - 1
    while True:
        i = text.rfind(anchor, lo, hi)
        if i < 0:
            return None
        period = n - LOOP_ANCHOR - i
        unit = text[n - period :]
        if _HAS_LETTER.search(unit):
            start = n - period
            step = period  # extend backwards by whole periods, doubling while the text keeps repeating
            while True:
                if start - step >= 0 and text[start - step : start] == text[start : start + step]:
                    start -= step
                    step = min(2 * step, n - start)
                    step -= step % period
                elif step > period:
                    step = max(period, step // 2 - (step // 2) % period)
                else:
                    break
            # a partial copy before the first full one still belongs to the loop
            copies = (n - start) // period
            if copies >= MIN_LOOP_REPEATS and n - start >= MIN_LOOP_CHARS:
                return start, n
        hi = i + LOOP_ANCHOR - 1


_BYTE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _cut_character(tokens: Sequence[str]) -> bool:
    """Whether the trailing ``bytes:`` tokens (OpenAI's form for tokens that are not valid UTF-8 alone) end in
    an incomplete UTF-8 character.

    >>> _cut_character(["a", r"bytes:\\xe0\\xb8"]), _cut_character([r"bytes:\\xe0\\xb8", r"bytes:\\x81"])
    (True, False)
    """
    data = b""
    for token in reversed(tokens):
        if not token.startswith("bytes:"):
            break
        data = bytes(int(h, 16) for h in _BYTE.findall(token)) + data
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.reason == "unexpected end of data"
    return False


def _inner_loop(units: list[str], min_units: int) -> tuple[int, int] | None:
    """``(first, last + 1)`` unit indices of a unit sequence repeated back to back, or ``None``."""
    n = len(units)
    for period in range(1, min(MAX_INNER_PERIOD, n // MIN_INNER_REPEATS) + 1):
        run = 0
        for i in range(n - period):
            if units[i] == units[i + period]:
                run += 1
                if run >= (MIN_INNER_REPEATS - 1) * period and run + period >= min_units:
                    end = i + period + 1
                    while end < n and units[end] == units[end - period]:
                        end += 1
                    return end - run - period, end
            else:
                run = 0
    return None


class DegenerationDetector:
    """Flags loops, heavy n-gram repetition, replacement characters, mojibake and cut characters.

    ``max_ngram_repeat_rate`` and ``min_ngrams`` default to the module constants.

    >>> DegenerationDetector(max_ngram_repeat_rate=1.5)
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `max_ngram_repeat_rate` must be in (0, 1), got 1.5
    """

    name = "degeneration"

    def __init__(self, *, max_ngram_repeat_rate: float = MAX_NGRAM_REPEAT_RATE, min_ngrams: int = MIN_NGRAMS) -> None:
        if not (0 < max_ngram_repeat_rate < 1):
            raise InvalidInputError("max_ngram_repeat_rate", "must be in (0, 1)", max_ngram_repeat_rate)
        if isinstance(min_ngrams, bool) or not isinstance(min_ngrams, int) or min_ngrams < 1:
            raise InvalidInputError("min_ngrams", "must be an int >= 1", min_ngrams)
        self.max_ngram_repeat_rate = max_ngram_repeat_rate
        self.min_ngrams = min_ngrams

    def _hard(self, text: str, span: tuple[int, int]) -> Observation:
        return Observation(self.name, True, 1.0, evidence=text[span[0] : span[1]], span=span)

    def score(self, ctx: ResponseContext) -> Observation:
        text = ctx.response
        if ctx.finish_reason == "length":
            # max_tokens may end the answer inside a multi-byte character (Thai, CJK: 3 bytes, often one token
            # each): any correct server does that; the cut shows as byte tokens that do not complete a character,
            # or as U+FFFD at the very end of the text. Only that end is forgiven; the rest is judged as usual.
            cut = len(text) - len(text.rstrip("\ufffd"))
            if cut <= 3:
                text = text[: len(text) - cut]
        elif ctx.tokens and ctx.tokens[-1].startswith("bytes:") and _cut_character(ctx.tokens):
            return Observation(self.name, True, 1.0, evidence=ctx.tokens[-1], span=(len(text), len(text)))
        loop = _tail_loop(text.rstrip())
        if loop is not None:
            return self._hard(text, loop)
        if not text.isascii():
            bad = text.find("\ufffd")
            if bad >= 0:
                return self._hard(text, (bad, bad + 1))
            m = _MOJIBAKE.search(text)
            if m is not None:
                return self._hard(text, m.span())
            m = _ORPHAN_MARK.search(text)
            if m is not None:
                return self._hard(text, m.span())
            if "\ud800" <= text[-1] <= "\udfff":
                return self._hard(text, (len(text) - 1, len(text)))
        prose = _FENCED.sub(" ", text) if "```" in text else text
        rate, count = ngram_repeat_rate(prose)
        if count < self.min_ngrams or rate <= LOOP_GATE_RATE:
            return Observation(self.name, False, rate)
        rate, count = ngram_repeat_rate(prose, letters_only=True)
        if count >= self.min_ngrams and rate > self.max_ngram_repeat_rate:
            return Observation(self.name, True, rate, evidence=prose[:200])
        if count >= self.min_ngrams and rate > LOOP_GATE_RATE:
            words = _WORD.findall(prose)
            spaced = prose.isascii() or len(words) * 20 >= len(prose)
            units = (words if spaced else list(prose))[-MAX_INNER_UNITS:]
            found = _inner_loop(units, MIN_INNER_LOOP_WORDS if spaced else 4 * MIN_INNER_LOOP_WORDS)
            if found is not None:
                piece = " ".join(units[found[0] : found[1]]) if spaced else "".join(units[found[0] : found[1]])
                return Observation(self.name, True, 1.0, evidence=piece)
        return Observation(self.name, False, rate)
