"""Unexpected script: characters of a writing system that nothing in the conversation leads one to expect.

The incident's output corruption put Thai or Chinese characters into English answers ("สวัสดี" mid-sentence).
The detector builds a Unicode script histogram of the response with the ``regex`` module's script properties
(``\\p{sc=Thai}``, ``\\p{sc=Han}``...) and compares it with the scripts the prompt and conversation make
expected: scripts present in them, and scripts of languages they name ("in Thai", "translate to Chinese").

Order of operations, for every response:

1. An ASCII response has no script to question: return at once (the common case costs one ``str.isascii``).
2. Find the runs of characters outside Latin, Common (punctuation, digits, symbols, emoji) and Inherited
   (combining marks); classify each character's script (cached per character).
3. Compute the expected scripts from the conversation (cached per conversation text): scripts present,
   widened to their writing family (Han implies kana and Bopomofo may follow, Hangul implies Han), plus scripts
   of languages named, plus every script when the conversation asks for many languages. With no conversation
   at all, the scripts that write at least :data:`DOMINANT_SHARE` of the response are its language.
4. Unexpected runs separated by at most :data:`MERGE_GAP` characters merge into one span; spans that are a
   parenthesised or quoted gloss ("Tokyo (東京)") are tolerated up to :data:`MAX_GLOSS_CHARS` characters;
   short Greek runs (math symbols: "α = 0.05") are tolerated up to :data:`MAX_GREEK_SYMBOL_RUN` letters.
   Inside a fenced code block, brackets and quotes are syntax, not glosses: there a span is tolerated only when
   it is *data* - a string literal or a one-line markup element whose text has no Latin word (an i18n table
   entry ``"th": "สวัสดี"``, a test fixture, a translated ``<comment xml:lang="sr">``). Comments, docstrings
   and string literals written in English are English text: a Thai or CJK word inside them is flagged.
5. Flag when at least :data:`MIN_FLAG_CHARS` unexpected characters remain; the score is the share of the
   response's characters that are unexpected; the evidence is the longest unexpected span.

>>> det = UnexpectedScriptDetector()
>>> obs = det.score(ResponseContext("The capital is Paris. สวัสดี It has 2 million people.", prompt="Capital of France?"))
>>> obs.flagged, obs.evidence, obs.span
(True, 'สวัสดี', (22, 28))
>>> det.score(ResponseContext("สวัสดีครับ", prompt="How do I say hello in Thai?")).flagged
False
>>> det.score(ResponseContext("Tokyo (東京) is the capital.", prompt="Tell me about Tokyo.")).flagged
False
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import regex

from parity._exceptions import InvalidInputError
from parity.detectors._base import Observation, ResponseContext

__all__ = [
    "DOMINANT_SHARE",
    "LANGUAGE_SCRIPTS",
    "MAX_GLOSS_CHARS",
    "MAX_GREEK_SYMBOL_RUN",
    "MERGE_GAP",
    "MIN_FLAG_CHARS",
    "SCRIPTS",
    "UnexpectedScriptDetector",
    "expected_scripts",
    "script_histogram",
]

#: Scripts the histogram names; any other non-Latin, non-Common script is counted as ``"Other"``.
SCRIPTS: tuple[str, ...] = (
    "Thai", "Han", "Hiragana", "Katakana", "Hangul", "Bopomofo", "Cyrillic", "Greek", "Arabic", "Hebrew",
    "Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala",
    "Lao", "Khmer", "Myanmar", "Tibetan", "Georgian", "Armenian", "Ethiopic", "Mongolian", "Thaana",
)  # fmt: skip

#: Scripts that are never unexpected: Latin carries code, names and units in every language.
ALWAYS_EXPECTED: frozenset[str] = frozenset({"Latin", "Common", "Inherited"})

#: A script present in the conversation makes its whole writing family expected.
SCRIPT_FAMILIES: dict[str, frozenset[str]] = {
    "Han": frozenset({"Han", "Hiragana", "Katakana", "Bopomofo"}),
    "Hiragana": frozenset({"Han", "Hiragana", "Katakana"}),
    "Katakana": frozenset({"Han", "Hiragana", "Katakana"}),
    "Hangul": frozenset({"Hangul", "Han"}),
    "Bopomofo": frozenset({"Han", "Bopomofo"}),
}

#: Language (or script) names, as a regular expression, and the scripts asking for them makes expected.
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    r"thai": frozenset({"Thai"}),
    r"chinese|mandarin|cantonese|hanzi|kanji|pinyin|chinese characters": frozenset({"Han", "Bopomofo"}),
    r"japanese|hiragana|katakana|kana": frozenset({"Han", "Hiragana", "Katakana"}),
    r"korean|hangul|hanja": frozenset({"Hangul", "Han"}),
    r"cjk": frozenset({"Han", "Hiragana", "Katakana", "Hangul", "Bopomofo"}),
    r"russian|ukrainian|belarusian|bulgarian|serbian|macedonian|kazakh|kyrgyz|tajik|cyrillic": frozenset({"Cyrillic"}),
    r"mongolian": frozenset({"Cyrillic", "Mongolian"}),
    r"greek": frozenset({"Greek"}),
    r"arabic|persian|farsi|urdu|pashto|dari|uyghur": frozenset({"Arabic"}),
    r"hebrew|yiddish": frozenset({"Hebrew"}),
    r"hindi|marathi|nepali|sanskrit|devanagari|konkani": frozenset({"Devanagari"}),
    r"bengali|bangla|assamese": frozenset({"Bengali"}),
    r"punjabi|gurmukhi": frozenset({"Gurmukhi", "Arabic"}),
    r"gujarati": frozenset({"Gujarati"}),
    r"tamil": frozenset({"Tamil"}),
    r"telugu": frozenset({"Telugu"}),
    r"kannada": frozenset({"Kannada"}),
    r"malayalam": frozenset({"Malayalam"}),
    r"sinhala|sinhalese": frozenset({"Sinhala"}),
    r"lao|laotian": frozenset({"Lao"}),
    r"khmer|cambodian": frozenset({"Khmer"}),
    r"burmese|myanmar": frozenset({"Myanmar"}),
    r"tibetan|dzongkha": frozenset({"Tibetan"}),
    r"georgian": frozenset({"Georgian"}),
    r"armenian": frozenset({"Armenian"}),
    r"amharic|tigrinya|ethiopic|ge'ez": frozenset({"Ethiopic"}),
    r"dhivehi|maldivian|thaana": frozenset({"Thaana"}),
}

#: Phrases that ask for many languages or for arbitrary characters: every script becomes expected.
ANY_SCRIPT_PATTERN = (
    r"(?:every|all|many|several|different|other|multiple|various|foreign|\d+)\s+languages|multilingual|"
    r"unicode|non-ascii|non-latin|writing systems?|scripts? of the world|emoji"
)

#: Unexpected runs at most this many characters apart (spaces, punctuation) count as one span.
MERGE_GAP = 3
#: A parenthesised or quoted run this short is a gloss ("Tokyo (東京)", 'called "ramen" (ラーメン)'), not an
#: intrusion: an LLM legitimately writes a native name beside its translation.
MAX_GLOSS_CHARS = 12
#: Greek runs this short are math or unit symbols ("α = 0.05", "Δt", "μs"), ubiquitous in technical English.
MAX_GREEK_SYMBOL_RUN = 2
#: Unexpected characters needed to flag. One is enough: a single Thai or Han character in an English answer is
#: already what the incident looked like, and glosses and symbols are excused before counting.
MIN_FLAG_CHARS = 1

_NON_LATIN_RUN = regex.compile(r"[^\p{sc=Latin}\p{sc=Common}\p{sc=Inherited}]+")
_SCRIPT_OF = regex.compile("|".join(rf"(?P<{s}>\p{{sc={s}}})" for s in SCRIPTS))
_LANGUAGE_NAMES = regex.compile(
    r"\b(?:" + "|".join(f"(?P<L{i}>{p})" for i, p in enumerate(LANGUAGE_SCRIPTS)) + r")\b", regex.IGNORECASE
)
_LANGUAGE_SETS = list(LANGUAGE_SCRIPTS.values())
_ANY_SCRIPT = regex.compile(ANY_SCRIPT_PATTERN, regex.IGNORECASE)
_OPENERS = {"(": ")", "[": "]", '"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "「": "」", "『": "』", "（": "）"}
ALL_SCRIPTS: frozenset[str] = frozenset((*SCRIPTS, "Other"))


@lru_cache(maxsize=65536)
def _script_of(char: str) -> str:
    m = _SCRIPT_OF.match(char)
    return m.lastgroup if m is not None and m.lastgroup is not None else "Other"


def script_histogram(text: str) -> Counter[str]:
    """Characters per script, for the scripts other than Latin, Common and Inherited.

    >>> sorted(script_histogram("Hello สวัสดี 世界 мир").items())
    [('Cyrillic', 3), ('Han', 2), ('Thai', 6)]
    """
    counts: Counter[str] = Counter()
    if text.isascii():
        return counts
    for m in _NON_LATIN_RUN.finditer(text):
        for ch in m.group():
            counts[_script_of(ch)] += 1
    return counts


#: Conversations up to this many characters have their expected scripts cached (system prompts and chat
#: histories repeat); longer ones are recomputed, so the cache never holds more than 1024 x this much text.
CACHED_CONVERSATION_CHARS = 8192
#: With no conversation at all (a bare completion), a script writing at least this share of the response is its
#: language, hence expected: a Japanese answer is not flagged, six Thai characters in English text are.
DOMINANT_SHARE = 0.3


def expected_scripts(conversation: str) -> frozenset[str]:
    """Scripts the conversation leads one to expect in the answer (Latin, Common and Inherited always).

    >>> sorted(expected_scripts("Translate 'good morning' into Japanese"))
    ['Common', 'Han', 'Hiragana', 'Inherited', 'Katakana', 'Latin']
    >>> sorted(expected_scripts("Что это?") - ALWAYS_EXPECTED)
    ['Cyrillic']
    """
    if len(conversation) <= CACHED_CONVERSATION_CHARS:
        return _expected_cached(conversation)
    return _expected(conversation)


@lru_cache(maxsize=1024)
def _expected_cached(conversation: str) -> frozenset[str]:
    return _expected(conversation)


def _dominant_scripts(text: str, histogram: Counter[str]) -> set[str]:
    """Scripts writing at least :data:`DOMINANT_SHARE` of ``text``, widened to their families."""
    out: set[str] = set()
    for script, count in histogram.items():
        if count >= DOMINANT_SHARE * len(text):
            out.update(SCRIPT_FAMILIES.get(script, (script,)))
    return out


def _expected(conversation: str) -> frozenset[str]:
    expected = set(ALWAYS_EXPECTED)
    for script in script_histogram(conversation):
        expected.update(SCRIPT_FAMILIES.get(script, (script,)))
    if _ANY_SCRIPT.search(conversation):
        return ALL_SCRIPTS | ALWAYS_EXPECTED
    for m in _LANGUAGE_NAMES.finditer(conversation):
        if m.lastgroup is not None:
            expected.update(_LANGUAGE_SETS[int(m.lastgroup[1:])])
    return frozenset(expected)


def _is_gloss(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` sits directly inside brackets or quotes (spaces allowed)."""
    i = start - 1
    while i >= 0 and text[i] == " ":
        i -= 1
    j = end
    while j < len(text) and text[j] == " ":
        j += 1
    if i < 0 or j >= len(text):
        return False
    closer = _OPENERS.get(text[i])
    return closer is not None and text[j] == closer


_LATIN_WORD = regex.compile(r"\p{sc=Latin}{2,}[.,;:!?]*")
#: A markup element's declared language (``xml:lang="bg"``, ``lang='th'``): text in an element declared non-English
#: is data whatever Latin names it holds ("Схема за XML — RELAX NG").
_LANG_ATTR = regex.compile(r"""\blang\s*=\s*["']([A-Za-z]{2,3}(?:[_-][A-Za-z0-9]+)*)["']""")
_NAMED_ESCAPE = regex.compile(r"\\N\{[^}]*\}")  # "\N{LONG RIGHTWARDS SQUIGGLE ARROW}" names a character
#: A literal or comment is English text (where a foreign word is an intrusion) when it has this many words.
MIN_ENGLISH_WORDS = 2


def _in_code(text: str, start: int) -> bool:
    """Whether offset ``start`` lies inside a fenced code block."""
    return text.count("```", 0, start) % 2 == 1


def _english(inside: str) -> bool:
    """Whether a literal's or comment's text reads as English: at least :data:`MIN_ENGLISH_WORDS` space-separated
    words of Latin letters (``'<ईमेल@wők.com>'``, ``'испытание.pythontest.net'`` and a Japanese sentence naming
    "Python" are not)."""
    inside = _NAMED_ESCAPE.sub(" ", inside)
    return sum(1 for w in inside.split() if _LATIN_WORD.fullmatch(w)) >= MIN_ENGLISH_WORDS


def _quoted_value(text: str, start: int, end: int, lo: int, hi: int) -> bool:
    """Whether the space-delimited token around ``text[start:end]`` (within ``[lo, hi)``) is itself quoted or
    bracketed: a value an English message quotes (``"bad format '%ЫйЯЧ' for str"``)."""
    i, j = start, end
    while i > lo and not text[i - 1].isspace():
        i -= 1
    while j < hi and not text[j].isspace():
        j += 1
    token = text[i:j].rstrip(".,;:!?")
    closer = _OPENERS.get(token[:1])
    return closer is not None and len(token) > 1 and token.endswith(closer)


def _in_code_data(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]``, inside a fenced code block, is data: it sits in a string literal or the text
    of a one-line markup element (or an XML comment) that is not English text (:func:`_english`), or it is a value
    such a text quotes. An English sentence with a foreign word in it (``"Returns the สวัสดี total"``) is not data;
    neither is anything in a ``#`` comment or outside literals.

    >>> _in_code_data('```python\\nGREET = {"th": "สวัสดี"}\\n```', 26, 32)
    True
    >>> _in_code_data('```python\\nMSG = "Returns the สวัสดี total"\\n```', 29, 35)
    False
    """
    if not _in_code(text, start):
        return False
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    before, after = text[line_start:start], text[end:line_end]
    inside: str | None = None
    lo = hi = start
    for q in ('"', "'"):
        if before.count(q) % 2 == 1 and q in after:
            lo, hi = line_start + before.rfind(q) + 1, end + after.find(q)
            break
    else:
        # the text of a markup element on one line (<comment xml:lang="sr">ГМЛ документ</comment>), or a comment
        if ">" in before and "<" in after and before.rfind(">") > before.rfind("<"):
            declared = _LANG_ATTR.search(before[before.rfind("<") : before.rfind(">")])
            if declared is not None and not declared.group(1).lower().startswith("en"):
                return True  # the element says its text is in another language (a translated MIME comment)
            lo, hi = line_start + before.rfind(">") + 1, end + after.find("<")
        elif "<!--" in before and "-->" in after:
            lo, hi = line_start + before.rfind("<!--") + 4, end + after.find("-->")
        else:
            return False
    inside = text[lo:start] + " " + text[end:hi]
    return not _english(inside) or _quoted_value(text, start, end, lo, hi)


class UnexpectedScriptDetector:
    """Flags characters of scripts the conversation gives no reason to expect (see the module docstring).

    ``min_flag_chars``, ``max_gloss_chars`` and ``max_greek_symbol_run`` default to the module constants;
    ``extra_expected`` names scripts always allowed for this deployment (e.g. ``{"Cyrillic"}`` for a service
    whose users mix Russian and English without saying so).

    Score: the share of the response's characters that are unexpected (0.0 for a clean response).

    >>> UnexpectedScriptDetector(min_flag_chars=0)
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `min_flag_chars` must be an int >= 1, got 0
    """

    name = "unexpected_script"

    def __init__(
        self,
        *,
        min_flag_chars: int = MIN_FLAG_CHARS,
        max_gloss_chars: int = MAX_GLOSS_CHARS,
        max_greek_symbol_run: int = MAX_GREEK_SYMBOL_RUN,
        extra_expected: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        if isinstance(min_flag_chars, bool) or not isinstance(min_flag_chars, int) or min_flag_chars < 1:
            raise InvalidInputError("min_flag_chars", "must be an int >= 1", min_flag_chars)
        for arg, value in (("max_gloss_chars", max_gloss_chars), ("max_greek_symbol_run", max_greek_symbol_run)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInputError(arg, "must be an int >= 0", value)
        unknown = set(extra_expected) - ALL_SCRIPTS - ALWAYS_EXPECTED
        if unknown:
            raise InvalidInputError("extra_expected", f"must name scripts among {sorted(ALL_SCRIPTS)}", unknown)
        self.min_flag_chars = min_flag_chars
        self.max_gloss_chars = max_gloss_chars
        self.max_greek_symbol_run = max_greek_symbol_run
        self.extra_expected = frozenset(extra_expected)

    def _greek_symbols(self, chunk: str) -> bool:
        """Whether every non-Latin letter of ``chunk`` is Greek, in runs of at most ``max_greek_symbol_run``."""
        runs = [m.group() for m in _NON_LATIN_RUN.finditer(chunk)]
        return all(len(r) <= self.max_greek_symbol_run and all(_script_of(c) == "Greek" for c in r) for r in runs)

    def score(self, ctx: ResponseContext) -> Observation:
        text = ctx.response
        if text.isascii():
            return Observation(self.name, False, 0.0)
        runs = list(_NON_LATIN_RUN.finditer(text))
        if not runs:
            return Observation(self.name, False, 0.0)
        conversation = ctx.conversation_text()
        expected = expected_scripts(conversation) | self.extra_expected
        if not conversation.strip():
            expected = expected | _dominant_scripts(text, script_histogram(text))
        # [start, end) of each run of unexpected characters
        spans: list[list[int]] = []
        for m in runs:
            start = None
            for k, ch in enumerate(m.group()):
                if _script_of(ch) in expected:
                    if start is not None:
                        spans.append([m.start() + start, m.start() + k])
                        start = None
                elif start is None:
                    start = k
            if start is not None:
                spans.append([m.start() + start, m.end()])
        if not spans:
            return Observation(self.name, False, 0.0)
        merged: list[list[int]] = [[spans[0][0], spans[0][1], spans[0][1] - spans[0][0]]]
        for s, e in spans[1:]:
            if s - merged[-1][1] <= MERGE_GAP:
                merged[-1][1] = e
                merged[-1][2] += e - s
            else:
                merged.append([s, e, e - s])
        unexpected = 0
        best: tuple[int, int] | None = None
        for s, e, n in merged:
            chunk = text[s:e]
            if _in_code(text, s):
                if _in_code_data(text, s, e):
                    continue
            elif n <= self.max_gloss_chars and _is_gloss(text, s, e):
                continue
            if self._greek_symbols(chunk):
                continue
            unexpected += n
            if best is None or e - s > best[1] - best[0]:
                best = (s, e)
        score = unexpected / len(text)
        if best is None or unexpected < self.min_flag_chars:
            return Observation(self.name, False, score)
        return Observation(self.name, True, score, evidence=text[best[0] : best[1]], span=best)
