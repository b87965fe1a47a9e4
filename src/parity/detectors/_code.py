"""Code integrity: a syntax error in a code block that the surrounding code makes implausible.

The incident's corruption produced "obvious syntax errors in code". Flagging every block that fails to parse
would drown that signal: LLM answers are full of legitimately partial code (a method body without its class,
``...`` placeholders, output cut by ``max_tokens``, shell lines in a Python fence, Python 2 ``print``). So the
detector flags only errors that a *single local repair* explains. Order of operations:

1. Blocks: fenced blocks (```` ``` ```` or ``~~~``, an unterminated last fence runs to the end of the response)
   with their language tag; an untagged block is taken as JSON when it starts with ``{``/``[``, as Python when
   its first line reads like Python. Without fences, a response that starts like a Python module (``def``,
   ``class``, ``import``, ``from``, ``@``) is one Python block; a ``/v1/completions`` continuation of a Python
   prompt is parsed together with its prompt. Python via :mod:`ast`, JSON via :mod:`json`, TOML via
   :mod:`tomllib`, XML via :mod:`xml.etree` (fragments wrapped in one root); other languages are not judged.
2. Python: dedent (method bodies), keep only the source lines of ``>>>`` sessions, parse (warnings silenced).
   It parses: clean.
3. Tolerated, never flagged: an error of an unfinished block (unexpected EOF, unclosed bracket or string,
   missing indented block) when the block is the last thing in the response or the error sits in its last
   :data:`TAIL_LINES` lines (``max_tokens`` cut it, or the author left it open); the last line of a block that
   runs to the end of an answer cut by ``max_tokens`` (``finish_reason`` ``"length"``: the line may stop
   anywhere, ``return os.``), which is left out; an error line that holds a
   placeholder (``…``, ``<your key>``, ``TODO``, ``[...]``); errors Python itself names as another dialect
   (Python 2 ``print``/``exec``); a line that starts like another language (``const``, ``export``...).
4. Flagged: deleting or replacing one token at the error position makes the block parse - the rest of the
   block is valid code, so a stray token was injected - or the error line carries letters of a non-Latin
   script outside strings and comments.
5. Otherwise (an error no single repair explains: pseudo-code, another language) not flagged, score
   :data:`UNEXPLAINED_SCORE`.

JSON follows the same plan (truncation tolerated, a trailing comma before a closing bracket tolerated, a single
token repair flagged).

Score: 1.0 for a flagged block, :data:`UNEXPLAINED_SCORE` for an unexplained error, else 0.0; the evidence is
the offending line.

>>> det = CodeIntegrityDetector()
>>> good = "Here:\\n```python\\ndef add(a, b):\\n    return a + b\\n```\\n"
>>> det.score(ResponseContext(good)).flagged
False
>>> obs = det.score(ResponseContext(good.replace("a + b", "a + b)")))
>>> obs.flagged, obs.evidence
(True, '    return a + b)')
>>> det.score(ResponseContext("```python\\nfor i in range(10):\\n    total = compute(i,")).flagged  # cut by max_tokens
False
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import textwrap
import tomllib
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import regex

from parity._exceptions import InvalidInputError
from parity.detectors._base import Observation, ResponseContext

__all__ = [
    "LANGUAGES",
    "TAIL_LINES",
    "UNEXPLAINED_SCORE",
    "CodeBlock",
    "CodeIntegrityDetector",
    "check_json",
    "check_python",
    "check_toml",
    "check_xml",
]

#: An unfinished construct this close to the end of its block is an open snippet, not corruption.
TAIL_LINES = 2
#: Score of a block with a syntax error that no single repair explains (not flagged).
UNEXPLAINED_SCORE = 0.25
#: Repairs tried per block: delete each token near the error position; a token with non-ASCII characters (a
#: likely injected one) is also replaced by each of these. ASCII tokens are only deleted: replacing them by
#: ``=`` or ``,`` turns shell lines ("uv add pkg" -> "uv = pkg") into valid Python and would flag them.
REPLACEMENTS: tuple[str, ...] = (":", ",", ")", "(", "=", " ")
#: Blocks longer than this get no repair attempts (each attempt is a full parse): an error in them scores
#: :data:`UNEXPLAINED_SCORE` unless its line carries non-Latin letters.
MAX_REPAIR_BLOCK_CHARS = 20_000
#: Lines with at most this many tokens have every token tried (the error position may sit after the injected
#: token: an extra ``)`` is reported where the next ``)`` no longer matches)...
MAX_REPAIR_TOKENS = 24
#: ...longer lines only the tokens nearest the error position, this many on each side.
REPAIR_WINDOW = 6

PYTHON_TAGS = frozenset({"python", "py", "python3", "py3", "pycon", "ipython", "sage"})
JSON_TAGS = frozenset({"json"})
TOML_TAGS = frozenset({"toml"})
XML_TAGS = frozenset({"xml", "svg", "xsd", "xslt", "plist"})
#: Languages the detector can judge, each with a maintained parser in the standard library.
LANGUAGES = frozenset({"python", "json", "toml", "xml"})
_EOF_MESSAGES = (
    "unexpected eof",
    "was never closed",
    "unterminated triple-quoted",
    "expected an indented block",
    "eof while scanning",
    "unterminated string literal",
    "expected ':'",
)
_DIALECT_MESSAGES = ("missing parentheses in call to", "did you mean print", "did you mean exec")
_PLACEHOLDER = regex.compile(r"…|\.\.\.|<[^<>\n]{1,60}>|\bTODO\b|\[\s*\.\.\.\s*\]|\{\s*\.\.\.\s*\}")
_OTHER_LANGUAGE = regex.compile(
    r"^\s*(?:const|let|var|function|export|public|private|static|void|int|fn|func|package|using|#include|"
    r"echo|sudo|pip|pip3|npm|npx|yarn|conda|uv|poetry|git|curl|wget|cd|ls|make|docker|brew|apt|apt-get|export|"
    r"python3?\s+-|SELECT|INSERT|CREATE)\b|^\s*[$%!>]",
    regex.IGNORECASE,
)
_FENCE = regex.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*$", regex.MULTILINE)
_PY_START = regex.compile(
    r"(?:def |class |import |from \w[\w.]* import |@\w|async def |if __name__|for \w+ in |while |with |try:|#!)"
)
_PY_MODULE_START = regex.compile(r"\s*(?:def |class |import |from \w[\w.]* import |@\w|async def |#!)")
_WORDLIKE = regex.compile(r"[\w\"']")
_TOKEN = regex.compile(r"\w+|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|\S")
_NON_LATIN_LETTER = regex.compile(r"[^\p{sc=Latin}\p{sc=Common}\p{sc=Inherited}\s]")
_STRING_OR_COMMENT = regex.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|#.*$")


@dataclass(frozen=True, slots=True)
class CodeBlock:
    """A block of code found in a response: language, source, and the offset of its first character."""

    language: str
    code: str
    offset: int
    final: bool


@dataclass(frozen=True, slots=True)
class _Verdict:
    score: float
    line: int = 0  # 1-based line of the offending code, 0 when none


_CLEAN = _Verdict(0.0)
_UNEXPLAINED = _Verdict(UNEXPLAINED_SCORE)


def _python_parses(code: str) -> SyntaxError | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
    except SyntaxError as err:
        return err
    except (ValueError, RecursionError, MemoryError):  # NUL bytes, absurd nesting: not a verdict on syntax
        return None
    return None


def _json_parses(code: str) -> json.JSONDecodeError | None:
    try:
        json.loads(code)
    except json.JSONDecodeError as err:
        return err
    except RecursionError:
        return None
    return None


def _repairs(line: str, col: int) -> list[str]:
    """Candidate repaired lines: one token of ``line`` deleted (a non-ASCII one also replaced), trying tokens
    nearest column ``col`` (0-based) first; every token when the line has at most :data:`MAX_REPAIR_TOKENS`,
    else :data:`REPAIR_WINDOW` on each side. Tokens are words, string literals, single punctuation characters
    and pairs of adjacent punctuation tokens (an injected ``::`` or ``) )``)."""
    tokens = [(t.start(), t.end()) for t in _TOKEN.finditer(line)]
    spans = set(tokens)
    for (s1, e1), (s2, e2) in itertools.pairwise(tokens):
        if not (_WORDLIKE.match(line, s1, e1) or _WORDLIKE.match(line, s2, e2)):
            spans.add((s1, e2))  # two punctuation tokens: an injected "::" or ") )"
    if not spans:
        return []
    ordered = sorted(spans, key=lambda se: (abs(se[0] - col), se))
    if len(ordered) > MAX_REPAIR_TOKENS:
        ordered = ordered[: 2 * REPAIR_WINDOW + 1]
    out: list[str] = []
    for start, end in ordered:
        out.append(line[:start] + line[end:])
        if not line[start:end].isascii():
            out.extend(line[:start] + rep + line[end:] for rep in REPLACEMENTS)
    return out


def _python_source(code: str) -> str:
    code = textwrap.dedent(code)
    if code.lstrip().startswith(">>>"):
        kept: list[str] = []
        for ln in code.splitlines():
            if ln.startswith((">>> ", "... ")) or ln in (">>>", "..."):
                kept.append(ln[4:])
            elif kept and kept[-1].endswith("\\"):  # a continuation line written without the "... " prompt
                kept.append(ln)
        code = "\n".join(kept)
    return code


def check_python(code: str, *, final: bool = False) -> tuple[float, int]:
    """Score one Python block: ``(score, offending 1-based line or 0)``; see the module docstring.

    ``final`` says the block ends the response (it may have been cut by ``max_tokens``).

    >>> check_python("x = [1, 2, 3]\\nprint(len(x))")
    (0.0, 0)
    >>> check_python("x = [1, 2, 3]\\nprint(len(x) กขค)\\ny = 2")
    (1.0, 2)
    >>> check_python("print 'hello'")  # Python 2: another dialect, not corruption
    (0.0, 0)
    """
    verdict = _check_python(_python_source(code), final)
    return verdict.score, verdict.line


def _check_python(code: str, final: bool) -> _Verdict:
    err = _python_parses(code)
    if err is None:
        return _CLEAN
    lines = code.splitlines()
    lineno = err.lineno or len(lines)
    msg = (err.msg or "").lower()
    n_lines = len(lines)
    while n_lines and not lines[n_lines - 1].strip():
        n_lines -= 1
    if 1 <= lineno <= len(lines) and _NON_LATIN_LETTER.search(_STRING_OR_COMMENT.sub("", lines[lineno - 1])):
        return _Verdict(1.0, lineno)
    if any(m in msg for m in _EOF_MESSAGES) and (final or lineno > n_lines - TAIL_LINES):
        return _CLEAN
    if any(m in msg for m in _DIALECT_MESSAGES):
        return _CLEAN
    if not 1 <= lineno <= len(lines):
        return _UNEXPLAINED
    line = lines[lineno - 1]
    if _PLACEHOLDER.search(_STRING_OR_COMMENT.sub("", line)) or _OTHER_LANGUAGE.match(line):
        return _CLEAN
    col = max(0, (err.offset or 1) - 1)
    if len(code) > MAX_REPAIR_BLOCK_CHARS:
        return _UNEXPLAINED
    for repaired in _repairs(line, col):
        if _python_parses("\n".join([*lines[: lineno - 1], repaired, *lines[lineno:]])) is None:
            return _Verdict(1.0, lineno)
    return _UNEXPLAINED


def check_json(code: str, *, final: bool = False) -> tuple[float, int]:
    """Score one JSON block like :func:`check_python`.

    >>> check_json('{"a": [1, 2], "b": null}')
    (0.0, 0)
    >>> check_json('{"a": [1, 2]], "b": null}')
    (1.0, 1)
    >>> check_json('{"a": [1, 2], "b": nu', final=True)
    (0.0, 0)
    """
    err = _json_parses(code)
    if err is None:
        return 0.0, 0
    rest = code[err.pos :].strip()
    if final and (len(_TOKEN.findall(rest)) <= 1 or err.msg.startswith("Unterminated string")):
        return 0.0, 0
    lines = code.splitlines()
    lineno = err.lineno
    if not 1 <= lineno <= len(lines):
        return UNEXPLAINED_SCORE, 0
    line = lines[lineno - 1]
    if _PLACEHOLDER.search(line) or "//" in line or "/*" in line:
        return 0.0, 0
    before = code[: err.pos].rstrip()
    if before.endswith(",") and rest[:1] in ("]", "}"):
        return 0.0, 0  # trailing comma: a common hand-written slip, not an injected token
    if len(code) > MAX_REPAIR_BLOCK_CHARS:
        return UNEXPLAINED_SCORE, 0
    for repaired in _repairs(line, err.colno - 1):
        if _json_parses("\n".join([*lines[: lineno - 1], repaired, *lines[lineno:]])) is None:
            return 1.0, lineno
    return UNEXPLAINED_SCORE, 0


_TOML_AT = re.compile(r"\(at line (\d+), column (\d+)\)")
_XML_PROLOG = re.compile(r"^\s*<\?xml[^>]*\?>")
_XML_PLACEHOLDER = regex.compile(r"…|\.\.\.|\bTODO\b")  # "<...>" is every tag in XML, not a placeholder
_BARE_AMPERSAND = re.compile(r"&(?!#?\w+;)")

#: A parse error as ``(1-based line, 0-based column, message)``, or ``None`` when the text parses.
ParseError = tuple[int, int, str] | None


def _toml_error(code: str) -> ParseError:
    try:
        tomllib.loads(code)
    except tomllib.TOMLDecodeError as err:
        m = _TOML_AT.search(str(err))
        if m is None:  # "(at end of document)"
            lines = code.splitlines() or [""]
            return len(lines), len(lines[-1]), str(err)
        return int(m.group(1)), int(m.group(2)) - 1, str(err)
    return None


def _xml_error(code: str) -> ParseError:
    # wrapped in one root so that a fragment with several elements (the usual snippet) is well-formed
    body = _XML_PROLOG.sub("", code, count=1)
    try:
        ElementTree.fromstring(f"<parity-root>\n{body}\n</parity-root>")
    except ElementTree.ParseError as err:
        line, col = err.position
        return max(1, line - 1), col, str(err)
    return None


def _check_generic(
    code: str, final: bool, parse: Callable[[str], ParseError], placeholder: regex.Pattern[str] = _PLACEHOLDER
) -> tuple[float, int]:
    """The plan of :func:`check_python` for a language whose parser reports ``(line, column, message)``."""
    err = parse(code)
    if err is None:
        return 0.0, 0
    lineno, col, _msg = err
    lines = code.splitlines()
    n_lines = len(lines)
    while n_lines and not lines[n_lines - 1].strip():
        n_lines -= 1
    if not 1 <= lineno <= len(lines):
        return (0.0, 0) if final else (UNEXPLAINED_SCORE, 0)
    line = lines[lineno - 1]
    if _NON_LATIN_LETTER.search(_STRING_OR_COMMENT.sub("", line)) and "<" not in line:
        return 1.0, lineno
    if final and lineno > n_lines - TAIL_LINES:
        return 0.0, 0
    if placeholder.search(line) or _BARE_AMPERSAND.search(line):
        return 0.0, 0  # a placeholder, or a bare "&" in XML text: written by hand, not injected
    if len(code) > MAX_REPAIR_BLOCK_CHARS:
        return UNEXPLAINED_SCORE, 0
    for repaired in _repairs(line, col):
        if parse("\n".join([*lines[: lineno - 1], repaired, *lines[lineno:]])) is None:
            return 1.0, lineno
    return UNEXPLAINED_SCORE, 0


def check_toml(code: str, *, final: bool = False) -> tuple[float, int]:
    """Score one TOML block like :func:`check_python` (parsed with :mod:`tomllib`).

    >>> check_toml('[tool.ruff]\\nline-length = 120\\nselect = ["E", "F"]\\n')
    (0.0, 0)
    >>> check_toml('[tool.ruff]\\nline-length = 120 ]\\nselect = ["E", "F"]\\n')
    (1.0, 2)
    """
    return _check_generic(code, final, _toml_error)


def check_xml(code: str, *, final: bool = False) -> tuple[float, int]:
    """Score one XML block (a fragment with several elements is fine) like :func:`check_python`; blocks with a
    DOCTYPE are not judged (their entities are not resolved here).

    >>> check_xml('<dependency>\\n  <groupId>org.example</groupId>\\n</dependency>\\n<other/>\\n')
    (0.0, 0)
    >>> check_xml('<dependency>\\n  <groupId>org.example</groupId>>\\n</dependency>\\n')  # ">" is legal text
    (0.0, 0)
    >>> check_xml('<dependency>\\n  <groupId>org<.example</groupId>\\n</dependency>\\n<other/>\\n')
    (1.0, 2)
    """
    if "<!DOCTYPE" in code or "<!ENTITY" in code:
        return 0.0, 0
    return _check_generic(code, final, _xml_error, _XML_PLACEHOLDER)


def code_blocks(text: str) -> list[CodeBlock]:
    """Fenced code blocks of ``text`` (language tag lower-cased, ``""`` when untagged).

    >>> [(b.language, b.code, b.final) for b in code_blocks("a\\n```py\\nx = 1\\n```\\nb\\n```\\n{}")]
    [('py', 'x = 1\\n', False), ('', '{}', True)]
    """
    blocks = []
    pos = 0
    while True:
        opening = _FENCE.search(text, pos)
        if opening is None:
            break
        fence, language = opening.group(1), opening.group(2).lower()
        start = opening.end() + 1
        closing = regex.compile(rf"^[ \t]*{regex.escape(fence[0])}{{{len(fence)},}}[ \t]*$", regex.MULTILINE)
        end_match = closing.search(text, start) if start <= len(text) else None
        if end_match is None:
            blocks.append(CodeBlock(language, text[start:], start, True))
            break
        final = not text[end_match.end() :].strip()
        blocks.append(CodeBlock(language, text[start : end_match.start()], start, final))
        pos = end_match.end()
    return blocks


@lru_cache(maxsize=1024)
def _prompt_is_python(prompt: str) -> bool:
    return bool(prompt) and _PY_MODULE_START.match(prompt) is not None


_CHECKS: dict[str, Callable[..., tuple[float, int]]] = {
    "python": check_python,
    "json": check_json,
    "toml": check_toml,
    "xml": check_xml,
}


class CodeIntegrityDetector:
    """Flags code blocks whose syntax error a single-token repair explains (see the module docstring).

    ``languages`` limits the languages judged (default: all of :data:`LANGUAGES`: Python, JSON, TOML, XML).
    """

    name = "code_integrity"

    def __init__(self, *, languages: frozenset[str] | set[str] = LANGUAGES) -> None:
        unknown = set(languages) - LANGUAGES
        if unknown:
            raise InvalidInputError("languages", f"must be a subset of {sorted(LANGUAGES)}", sorted(unknown))
        self.languages = frozenset(languages)

    def _language(self, block: CodeBlock) -> str | None:
        tag = block.language
        if tag in PYTHON_TAGS:
            return "python"
        if tag in JSON_TAGS:
            return "json"
        if tag in TOML_TAGS:
            return "toml"
        if tag in XML_TAGS:
            return "xml"
        if tag:
            return None
        head = block.code.lstrip()[:1]
        if head in ("{", "["):
            return "json"
        if _PY_START.match(block.code.lstrip()):
            return "python"
        return None

    def score(self, ctx: ResponseContext) -> Observation:
        text = ctx.response
        truncated = ctx.finish_reason == "length"
        blocks: list[CodeBlock]
        prefix = 0
        if "```" in text or "~~~" in text:
            blocks = code_blocks(text)
        elif "\n" in text and _PY_MODULE_START.match(text):
            blocks = [CodeBlock("python", text, 0, True)]
        elif not ctx.messages and "\n" in ctx.prompt and _prompt_is_python(ctx.prompt[:200]):
            prefix = len(ctx.prompt)
            blocks = [CodeBlock("python", ctx.prompt + text, -prefix, True)]
        else:
            return Observation(self.name, False, 0.0)
        worst = 0.0
        evidence: tuple[int, int] | None = None
        for block in blocks:
            language = self._language(block)
            if language is None or language not in self.languages:
                continue
            final = block.final or truncated
            code = block.code
            if truncated and block.offset + len(code) == len(text):
                # max_tokens cut this block's last line anywhere, even after `os.` or `x +`: that line is no
                # evidence; the block is judged without it (a complete last line, ending in a newline, is kept)
                code = code[: code.rfind("\n") + 1]
            score, line = _CHECKS[language](code, final=final)
            if score > worst:
                worst = score
                if line:
                    lines = block.code.splitlines(keepends=True)
                    start = block.offset + sum(len(x) for x in lines[: line - 1])
                    end = start + len(lines[line - 1].rstrip("\n"))
                    evidence = (max(0, start), max(0, end))
        if worst >= 1.0 and evidence is not None:
            return Observation(self.name, True, worst, evidence=text[evidence[0] : evidence[1]], span=evidence)
        return Observation(self.name, worst >= 1.0, worst)
