"""Parse untrusted JSON (request bodies, log lines) with bounds, so that no input can crash the parser or what
runs after it.

:func:`loads_bounded` refuses, with a :class:`JSONInputError` naming what is wrong (never a ``RecursionError``,
``UnicodeError`` or a plain ``500``):

- bytes that are not UTF-8 (``code="invalid_encoding"``);
- text that is not JSON (``code="invalid_json"``), including the ``NaN``/``Infinity`` literals Python's
  :mod:`json` accepts but JSON (RFC 8259) does not, and integers too long for Python to convert;
- nesting deeper than ``max_depth`` (``code="too_deep"``), checked by a bracket scan *before* any object is
  built: a 2 KB body of 1,000 ``[`` never reaches the recursive parser;
- strings holding a lone UTF-16 surrogate such as ``"a\\ud800b"`` (``code="invalid_unicode"``): valid JSON,
  but no UTF-8 encoder (a tokenizer, a database, a response writer) can write it back.

>>> loads_bounded(b'{"prompt": "hi", "n": [1, 2]}')
{'prompt': 'hi', 'n': [1, 2]}
>>> for bad in (b'[' * 1000 + b']' * 1000, b'{"x": NaN}', b'"a\\\\ud800b"', b'\\xff', b'{"x": '):
...     try:
...         loads_bounded(bad)
...     except JSONInputError as err:
...         print(err.code)
too_deep
invalid_json
invalid_unicode
invalid_encoding
invalid_json
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from parity._exceptions import InvalidInputError

__all__ = ["MAX_JSON_DEPTH", "JSONInputError", "json_depth_exceeds", "loads_bounded", "orjson_reads_as_json"]

#: The deepest nesting accepted (objects and arrays). OpenAI requests nest a handful of levels (a JSON schema
#: for structured output rarely a few dozen); Python's recursive parser and every recursive walk after it fail
#: near 1,000. 128 leaves room for any real payload and far from that limit.
MAX_JSON_DEPTH = 128

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: digits to "0", everything else to " ": 20 zeros in a row then mark a number orjson would read as a float where
#: Python's json keeps an exact integer (a translate and a find: ~8x faster than a regex search for \d{20})
_DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_TWENTY_DIGITS = b"0" * 20


class JSONInputError(InvalidInputError):
    """Untrusted JSON refused; ``code`` says why (see the module docstring), ``argument`` names the input."""

    def __init__(self, argument: str, requirement: str, *, code: str, detail: str | None = None) -> None:
        self.code = code
        self.detail = detail
        super().__init__(argument, requirement, detail=detail)


def json_depth_exceeds(data: bytes, max_depth: int) -> bool:
    """Whether the JSON text ``data`` nests objects/arrays deeper than ``max_depth`` (brackets inside strings
    do not count). Linear time; stops at the first level too deep.

    >>> json_depth_exceeds(b'[[1]]', 2), json_depth_exceeds(b'[[[1]]]', 2), json_depth_exceeds(b'["[[[["]', 2)
    (False, True, False)
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub(b"", data)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def orjson_reads_as_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``orjson.loads(raw)``, when it succeeds, gives what :func:`loads_bounded` would: no number of 20 digits
    or more (orjson reads those differently), nesting within ``max_depth`` (proved without a scan when the line
    holds no more brackets than that).

    >>> orjson_reads_as_json(b'{"a": [1, 2]}'), orjson_reads_as_json(b'{"n": 123456789012345678901}')
    (True, False)
    """
    if _TWENTY_DIGITS in raw.translate(_DIGITS_AS_ZERO):
        return False
    return raw.count(b"[") + raw.count(b"{") <= max_depth or not json_depth_exceeds(raw, max_depth)


def loads_bounded(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, what: str = "body") -> Any:
    """Parse ``data`` as strict JSON within the bounds of the module docstring; ``what`` names the input in
    errors. Raises :class:`JSONInputError`."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    # the fast path: orjson is strict where this function is (UTF-8 only, no NaN/Infinity, no lone surrogate,
    # no trailing commas) and about 6x faster than json; anything it refuses takes the path below, which names
    # what is wrong exactly as before, and so does a number orjson would read differently (an integer over 64
    # bits, a float that overflows: json reads it as inf)
    if orjson_reads_as_json(raw, max_depth):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JSONInputError(what, "must be UTF-8", code="invalid_encoding",
                             detail=f"invalid byte at offset {err.start}") from None  # fmt: skip
    if json_depth_exceeds(raw, max_depth):
        raise JSONInputError(what, f"must nest objects and arrays at most {max_depth} levels deep", code="too_deep")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise JSONInputError(what, "must be valid JSON", code="invalid_json",
                             detail=f"{err.msg} at line {err.lineno} column {err.colno}") from None  # fmt: skip
    except (ValueError, RecursionError) as err:  # NaN/Infinity, an integer over Python's digit limit
        raise JSONInputError(what, "must be valid JSON", code="invalid_json", detail=str(err)) from None
    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(value):
        raise JSONInputError(what, "must not hold a lone UTF-16 surrogate (\\ud800-\\udfff)", code="invalid_unicode")
    return value
