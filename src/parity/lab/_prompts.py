"""The load generator's prompt library: requests built from real text that ships with Python.

The standard library's functions and docstrings give four kinds of prompt (see :mod:`parity.lab.traffic`):
code to continue, prose questions, requests whose answer is expected in a non-Latin script, and long-context
questions over a source excerpt. :func:`prompt_mix` draws one of the mix, :func:`make_prompt` one of a kind.

>>> import numpy as np
>>> make_prompt("non_latin", np.random.default_rng(0)).expects_non_latin
True
"""

from __future__ import annotations

import ast
import sysconfig
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from parity._exceptions import InvalidInputError

__all__ = ["PROMPT_KINDS", "TrafficPrompt", "make_prompt", "prompt_mix"]

#: the prompt kinds and their default shares.
PROMPT_KINDS: dict[str, float] = {"code": 0.45, "prose": 0.42, "non_latin": 0.05, "long": 0.08}

#: standard-library modules the prompts are drawn from (present in every CPython install).
_SOURCE_MODULES = (
    "textwrap.py",
    "json/__init__.py",
    "json/encoder.py",
    "functools.py",
    "shlex.py",
    "fnmatch.py",
    "heapq.py",
    "bisect.py",
    "base64.py",
    "string.py",
    "calendar.py",
    "difflib.py",
    "argparse.py",
    "os.py",
    "posixpath.py",
    "statistics.py",
    "fractions.py",
    "csv.py",
    "glob.py",
    "shutil.py",
)

#: English messages of the kind the lab's translation data holds, for "Write this in Thai/Chinese" prompts.
_MESSAGES = (
    "No such file or directory",
    "Permission denied",
    "File exists",
    "Invalid argument",
    "Try again later.",
    "Cannot open the file",
    "Unknown error",
    "Operation not permitted",
    "The file was saved.",
    "Show hidden files",
    "Open with another application",
    "Memory exhausted",
)

#: languages of the non-Latin prompts (names as in the lab's chat data).
_LANGUAGES = ("Thai", "Chinese", "Japanese")


@dataclass(frozen=True)
class TrafficPrompt:
    """One generated request: ``endpoint`` ``chat`` (``messages``) or ``completions`` (``prompt``)."""

    kind: str
    endpoint: str
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str = ""
    expects_non_latin: bool = False

    def body(
        self,
        *,
        model: str,
        max_tokens: int,
        user: str | None,
        temperature: float | None = None,
        sampling: dict[str, float] | None = None,
        top_logprobs: int = 0,
    ) -> dict[str, Any]:
        """The OpenAI request body (``sampling``: extra parameters such as ``top_p``; ``temperature`` wins;
        ``top_logprobs`` > 0 asks for each token's logprob and that many alternatives, in the endpoint's shape).

        >>> TrafficPrompt("prose", "chat", messages=(("user", "Hi"),)).body(model="S", max_tokens=4, user=None,
        ...                                                                 top_logprobs=5)
        {'model': 'S', 'max_tokens': 4, 'messages': [{'role': 'user', 'content': 'Hi'}], 'logprobs': True, \
'top_logprobs': 5}
        """
        out: dict[str, Any] = {"model": model, "max_tokens": max_tokens, **(sampling or {})}
        if self.endpoint == "chat":
            out["messages"] = [{"role": r, "content": c} for r, c in self.messages]
            if top_logprobs:
                out["logprobs"] = True
                out["top_logprobs"] = top_logprobs
        else:
            out["prompt"] = self.prompt
            if top_logprobs:
                out["logprobs"] = top_logprobs
        if user:
            out["user"] = user
        if temperature is not None:
            out["temperature"] = temperature
        return out


@dataclass(frozen=True)
class _Function:
    qualname: str
    header: str  # the ``def`` line(s)
    indent: str  # the body's indentation
    doc: str
    body: tuple[str, ...]  # the source lines after the docstring
    source: str


#: A long prompt's excerpt: the first 30 lines of a 60-line window of the standard library (more while they hold
#: under 1,100 characters): 202-548 tokens (mean 305) for the 9M model's tokenizer and 215 or more (mean 311) for
#: SmolLM2's, so every long prompt stays above the lab router's 192-token split. Prefill is most of the lab's work
#: and attention grows with the prompt: the whole windows used before (mean 565 tokens) were a third of the
#: prefilled tokens at a 2% share. The windows themselves, and so their number, are unchanged:
#: ``rng.integers(len(excerpts))`` with another length can consume another number of random bits and would change
#: every later draw of a seeded plan.
_EXCERPT_LINES = 30
_EXCERPT_MIN_CHARS = 1100


@lru_cache(maxsize=1)
def _library() -> tuple[list[_Function], list[str]]:
    """Functions (with docstrings) and long source excerpts from the standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    functions: list[_Function] = []
    excerpts: list[str] = []
    for rel in _SOURCE_MODULES:
        path = root / rel
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (OSError, SyntaxError, ValueError):
            continue
        lines = text.splitlines()
        module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            if not doc or node.end_lineno is None:
                continue
            first = node.body[0]
            if first.end_lineno is None:
                continue
            header = "\n".join(lines[node.lineno - 1 : first.lineno - 1])
            indent = lines[first.lineno - 1][: len(lines[first.lineno - 1]) - len(lines[first.lineno - 1].lstrip())]
            body = tuple(lines[first.end_lineno : node.end_lineno])
            source = "\n".join(lines[node.lineno - 1 : node.end_lineno])
            functions.append(_Function(f"{module}.{node.name}", header, indent, doc, body, source))
        for start in range(0, max(1, len(lines) - 60), 120):
            window = lines[start : start + 60]
            if len("\n".join(window)) > 1500:
                # the same windows as ever (so the generator's draws, and every seeded plan, stay the same),
                # each cut to its first 30 lines or, if those are short, to as many as reach _EXCERPT_MIN_CHARS
                keep = _EXCERPT_LINES
                while keep < len(window) and len("\n".join(window[:keep])) < _EXCERPT_MIN_CHARS:
                    keep += 1
                excerpts.append("\n".join(window[:keep]))
    if not functions:
        raise InvalidInputError("stdlib", "must hold the standard library's sources for the prompt mix", str(root))
    return functions, excerpts


def prompt_mix(
    rng: np.random.Generator,
    *,
    shares: dict[str, float] | None = None,
) -> TrafficPrompt:
    """Draw one prompt of the mix (``shares`` by kind, default :data:`PROMPT_KINDS`)."""
    shares = dict(PROMPT_KINDS if shares is None else shares)
    bad = [k for k in shares if k not in PROMPT_KINDS]
    if bad or not shares or any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
        raise InvalidInputError("shares", f"must map kinds among {list(PROMPT_KINDS)} to shares >= 0", shares)
    kinds = list(shares)
    p = np.array([shares[k] for k in kinds], dtype=np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    return make_prompt(kind, rng)


def make_prompt(kind: str, rng: np.random.Generator) -> TrafficPrompt:
    """One prompt of ``kind`` (see the module docstring)."""
    functions, excerpts = _library()
    fn = functions[int(rng.integers(len(functions)))]
    if kind == "code":
        # the header, the docstring's first paragraph (short prompts) and up to three body lines: the model
        # writes the rest
        summary = fn.doc.split("\n\n")[0][:300].replace("\n", f"\n{fn.indent}")
        body = list(fn.body[: int(rng.integers(0, 4))])
        # no trailing newline: the model's next token is then the newline-and-indent it saw in training, where a
        # prompt ending on a bare "\n" splits that token and reads as the end of a block
        text = textwrap.dedent("\n".join([fn.header, f'{fn.indent}"""{summary}"""', *body]))
        return TrafficPrompt(kind, "completions", prompt=text)
    if kind == "prose":
        if rng.random() < 0.7:
            return TrafficPrompt(kind, "chat", messages=(("user", f"What does `{fn.qualname}` do?"),))
        first = fn.doc.split("\n\n")[0].replace("\n", " ")
        words = first.split()
        cut = max(3, len(words) // 2)
        return TrafficPrompt(kind, "completions", prompt=" ".join(words[:cut]))
    if kind == "non_latin":
        language = _LANGUAGES[int(rng.integers(len(_LANGUAGES)))]
        message = _MESSAGES[int(rng.integers(len(_MESSAGES)))]
        return TrafficPrompt(
            kind, "chat", messages=(("user", f"Write this in {language}: {message}"),), expects_non_latin=True
        )
    if kind == "long":
        excerpt = excerpts[int(rng.integers(len(excerpts)))] if excerpts else fn.source
        question = "What does this code do?" if rng.random() < 0.5 else f"What does `{fn.qualname}` do?"
        return TrafficPrompt(kind, "chat", messages=(("user", f"{excerpt}\n\n{question}"),))
    raise InvalidInputError("kind", f"must be one of {list(PROMPT_KINDS)}", kind)
