"""Privacy: redaction of captured text and the headers that never leave the request path."""

from __future__ import annotations

import pytest

from parity import InvalidInputError
from parity.monitor.intake.capture import CapturePolicy, redact, safe_request_headers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to a.b-c+d@mail.example.org now", "write to [EMAIL] now"),
        ("key sk-proj-abcdefghijklmnop1234", "key [SECRET]"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payloadpayload.signaturesig", "Authorization: [SECRET]"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "token [SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "aws [SECRET] here"),
        ("api_key = 'abcdef123456'", "[SECRET]'"),
        ("password: hunter2hunter2", "[SECRET]"),
        ("call +44 20 7946 0958 or 555-123-4567", "call [NUMBER] or [NUMBER]"),
        ("card 4111-1111-1111-1111.", "card [NUMBER]."),
        ("iban 123456789012", "iban [NUMBER]"),
        ("in 2025, 12 users ran v1.2.3 for 30000 s", "in 2025, 12 users ran v1.2.3 for 30000 s"),
        ("plain English stays as it is", "plain English stays as it is"),
        ("สวัสดี mixed text 42", "สวัสดี mixed text 42"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redaction_is_idempotent() -> None:
    once = redact("mail x@y.io key sk-abcdefghijklmnopqrstu 1234567")
    assert redact(once) == once


def test_only_session_header_is_kept() -> None:
    headers = {
        "Authorization": "Bearer sk-abc",
        "api-key": "k",
        "X-API-Key": "k",
        "Cookie": "session=1",
        "OpenAI-Organization": "org",
        "Proxy-Authorization": "Basic x",
        "x-session-id": "s-1",
    }
    assert safe_request_headers(headers) == {"x-session-id": "s-1"}


def test_capture_policy() -> None:
    assert CapturePolicy().capture("a@b.co", flagged=True) is None  # default keeps nothing
    flagged = CapturePolicy("flagged")
    assert flagged.capture("a@b.co", flagged=True) == "[EMAIL]"
    assert flagged.capture("a@b.co", flagged=False) is None
    with pytest.raises(InvalidInputError, match="`capture` must be one of \\['none', 'flagged'\\], got 'all'"):
        CapturePolicy("all")
