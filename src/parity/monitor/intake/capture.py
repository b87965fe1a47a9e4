"""Privacy by default: what of a user's exchange may ever be kept, and redaction of what is.

* No prompt or response text is stored unless capture is opted into (``--capture flagged``); then only the text
  of responses a detector flagged is kept, after :func:`redact`.
* Credentials never leave the request path: :func:`safe_request_headers` keeps only the headers the monitor
  needs (``x-session-id``), so ``Authorization``, ``api-key``, ``x-api-key``, cookies and the like are never
  queued, spooled, stored or logged.

>>> redact("mail jane.doe@example.com, key sk-abcdefghijklmnopqrstuv, card 4111 1111 1111 1111")
'mail [EMAIL], key [SECRET], card [NUMBER]'
>>> policy = CapturePolicy("flagged")
>>> policy.capture("call 0123456789", flagged=True)
'call [NUMBER]'
>>> policy.capture("fine", flagged=False) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from parity._exceptions import InvalidInputError

#: Capture modes: ``none`` keeps no text (the default), ``flagged`` keeps redacted text of flagged responses.
CAPTURE_MODES: tuple[str, ...] = ("none", "flagged")

#: Digit runs at least this long (spaces, dots and dashes between digit groups allowed) are redacted: long
#: enough to spare years, counts and versions, short enough for phone, card, account and ID numbers.
MIN_REDACTED_DIGITS = 6

#: Request headers that are kept with an exchange (lower-case). Everything else - Authorization, api-key,
#: x-api-key, cookies, organisation ids - is dropped before the exchange leaves the request path.
KEPT_REQUEST_HEADERS = frozenset({"x-session-id"})

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SECRETS = (
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"),  # OpenAI / Anthropic / Stripe style keys
    re.compile(r"\b(?:ghp|gho|ghu|ghs|github_pat|glpat|xox[abposr])[-_][A-Za-z0-9_-]{16,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API key
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),  # JWT
    re.compile(r"(?i)\b(?:api[_-]?key|secret|token|password|passwd)\b\s*[:=]\s*['\"]?[^\s'\",;]{6,}"),
)
_DIGITS = re.compile(r"(?<![\w.])\+?\d(?:[ .-]?\d){" + str(MIN_REDACTED_DIGITS - 1) + r",}(?![\w])")


def redact(text: str) -> str:
    """Replace e-mail addresses with ``[EMAIL]``, API keys / bearer tokens / credentials with ``[SECRET]`` and
    digit runs of :data:`MIN_REDACTED_DIGITS` or more with ``[NUMBER]``.

    >>> redact("Authorization: Bearer abc.def-123456789")
    'Authorization: [SECRET]'
    >>> redact("in 2025 we shipped v1.2.3 to 40 users")
    'in 2025 we shipped v1.2.3 to 40 users'
    """
    out = _EMAIL.sub("[EMAIL]", text)
    for pattern in _SECRETS:
        out = pattern.sub("[SECRET]", out)
    return _DIGITS.sub("[NUMBER]", out)


def safe_request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The subset of request headers the monitor may keep (see :data:`KEPT_REQUEST_HEADERS`).

    >>> safe_request_headers({"Authorization": "Bearer sk-x", "X-Session-Id": "s1", "api-key": "k"})
    {'x-session-id': 's1'}
    """
    return {k.lower(): v for k, v in headers.items() if k.lower() in KEPT_REQUEST_HEADERS}


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    """Whether and how response text is kept: ``mode`` is one of :data:`CAPTURE_MODES`."""

    mode: str = "none"

    def __post_init__(self) -> None:
        if self.mode not in CAPTURE_MODES:
            raise InvalidInputError("capture", f"must be one of {list(CAPTURE_MODES)}", self.mode)

    def capture(self, text: str, *, flagged: bool) -> str | None:
        """The text to store with a record: ``None`` unless capture is on and a detector flagged the response."""
        if self.mode == "none" or not flagged or not text:
            return None
        return redact(text)
