"""The lab model's training corpus: freely licensed text that ships on the machine itself.

Nothing is downloaded. Every source is named (with its licence) in :data:`SOURCES` and in the model card:

- the CPython 3.11 standard library: module sources (code) and their docstrings (English prose), PSF licence;
- CPython's own multibyte-codec test texts ``Lib/test/cjkencodings/*-utf8.txt`` (Chinese, Japanese, Korean), PSF;
- gettext message catalogs under ``/usr/share/locale`` for Thai, Simplified/Traditional Chinese and Japanese:
  English ``msgid`` paired with the translated ``msgstr``, formatted both as plain parallel text and as chat turns
  (``Write this in Thai: ...``). Each catalog carries its package's licence (GPL/LGPL/MIT family, see the card).

Documents are returned in a fixed order; the train/validation split is a stable hash of each document's key, so
the same machine always yields the same corpus.

>>> doc = Document(key="x", text="hello", kind="prose")
>>> is_validation(doc.key) in (True, False)
True
"""

from __future__ import annotations

import ast
import gettext
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: special tokens of the lab tokenizer, in id order (ids 0..4).
END_OF_TEXT = "<|endoftext|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SYSTEM = "<|system|>"
END = "<|end|>"
SPECIAL_TOKENS: tuple[str, ...] = (END_OF_TEXT, USER, ASSISTANT, SYSTEM, END)

#: one document in 50 (by a stable hash of its key) is held out for validation.
VALIDATION_MODULUS = 50

#: locale directory -> language name used in the chat prompts.
LANGUAGES: dict[str, str] = {"th": "Thai", "zh_CN": "Chinese", "zh_TW": "Traditional Chinese", "ja": "Japanese"}

#: locale directory -> keep one translation document in this many (by stable hash), so that translations stay a
#: minority of the corpus (the traffic is mostly English prose and code) while the smaller Thai catalogs stay whole.
LOCALE_SUBSAMPLE: dict[str, int] = {"th": 1, "zh_CN": 4, "zh_TW": 6, "ja": 6}

#: (source, licence) of everything the corpus reads; copied into the model card.
SOURCES: tuple[tuple[str, str], ...] = (
    ("CPython 3.11 standard library sources and docstrings (Lib/*.py, excluding Lib/test)", "PSF License v2"),
    ("CPython Lib/test/cjkencodings/*-utf8.txt (codec test texts in Chinese, Japanese, Korean)", "PSF License v2"),
    (
        "gettext catalogs /usr/share/locale/{th,zh_CN,zh_TW,ja}/LC_MESSAGES/*.mo (Debian packages: coreutils, "
        "grep, sed, bash, apt, dpkg, glib, gtk, iso-codes, ...)",
        "each package's own licence: GPL-2.0+/GPL-3.0+/LGPL-2.1+ (iso-codes LGPL-2.1+)",
    ),
)


@dataclass(frozen=True)
class Document:
    """One training document: ``kind`` is ``code``, ``prose``, ``chat`` or ``parallel``."""

    key: str
    text: str
    kind: str


def stdlib_dir() -> Path:
    """The directory of the running interpreter's standard library."""
    return Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def is_validation(key: str) -> bool:
    """Whether a document belongs to the validation split (stable across runs and machines)."""
    return zlib.crc32(key.encode("utf-8")) % VALIDATION_MODULUS == 0


def _stdlib_files(root: Path) -> list[Path]:
    skip = {"test", "site-packages", "idlelib", "lib2to3", "tkinter", "turtledemo", "__pycache__", "ensurepip"}
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & skip:
            continue
        files.append(path)
    return files


def _docstring_documents(module: str, source: str) -> Iterator[Document]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    nodes: list[tuple[str, ast.AST]] = [(module, tree)]
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            nodes.append((f"{module}.{node.name}", node))
    for name, node in nodes:
        assert isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        doc = ast.get_docstring(node)
        if not doc or len(doc) < 40:
            continue
        yield Document(key=f"doc:{name}", text=f"{name}\n\n{doc}\n", kind="prose")
        first = doc.split("\n\n")[0].strip()
        if len(first) >= 30:
            yield Document(
                key=f"chat:{name}",
                text=f"{USER}What does `{name}` do?{END}\n{ASSISTANT}{first}{END}\n",
                kind="chat",
            )


def python_documents(root: Path | None = None) -> Iterator[Document]:
    """Standard library modules as code, plus their docstrings as prose and question/answer chat turns."""
    root = stdlib_dir() if root is None else root
    for path in _stdlib_files(root):
        rel = path.relative_to(root)
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if len(source) > 400_000:  # a few generated tables; keep their head only
            source = source[:400_000]
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        yield Document(key=f"code:{rel}", text=f"# {rel}\n{source}", kind="code")
        yield from _docstring_documents(module, source)


def cjk_documents(root: Path | None = None) -> Iterator[Document]:
    """CPython's UTF-8 codec test texts (Chinese, Japanese, Korean)."""
    root = stdlib_dir() if root is None else root
    for path in sorted((root / "test" / "cjkencodings").glob("*-utf8.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        yield Document(key=f"cjk:{path.name}", text=text, kind="prose")


def _catalog(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as fp:
            translations = gettext.GNUTranslations(fp)
    except (OSError, UnicodeDecodeError, ValueError, IndexError, KeyError):
        return {}
    catalog: dict[object, str] = translations._catalog  # type: ignore[attr-defined]
    pairs = {}
    for msgid, msgstr in catalog.items():
        if not isinstance(msgid, str) or not msgid or not msgstr or msgid == msgstr:
            continue
        if len(msgid) > 600 or "\x00" in msgid or msgid.startswith("%"):
            continue
        pairs[msgid] = msgstr
    return pairs


def locale_documents(root: Path = Path("/usr/share/locale")) -> Iterator[Document]:
    """English/translation pairs from gettext catalogs, as parallel text blocks and as chat turns.

    Pairs are grouped 16 to a parallel-text document; every pair is also one chat document with the request
    ``Write this in <language>: <English>`` and the translation as the assistant's answer.
    """
    for code, language in LANGUAGES.items():
        directory = root / code / "LC_MESSAGES"
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.mo")):
            pairs = sorted(_catalog(path).items())
            keep = LOCALE_SUBSAMPLE.get(code, 1)
            for start in range(0, len(pairs), 16):
                if zlib.crc32(f"{path.name}:{start}".encode()) % keep:
                    continue
                block = pairs[start : start + 16]
                text = "".join(f"English: {en}\n{language}: {tr}\n\n" for en, tr in block)
                yield Document(key=f"par:{code}:{path.name}:{start}", text=text, kind="parallel")
            for index, (en, tr) in enumerate(pairs):
                if len(en) > 200 or zlib.crc32(f"{path.name}:{index}".encode()) % keep:
                    continue
                yield Document(
                    key=f"tr:{code}:{path.name}:{index}",
                    text=f"{USER}Write this in {language}: {en}{END}\n{ASSISTANT}{tr}{END}\n",
                    kind="chat",
                )


def corpus_documents() -> list[Document]:
    """Every document of the corpus, in a fixed order."""
    return [*python_documents(), *cjk_documents(), *locale_documents()]
