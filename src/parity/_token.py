"""Access tokens for parity's HTTP views: one check shared by the dashboard and the proxy.

A server reachable beyond the loopback interface needs a token (``parity dashboard`` and ``parity proxy``
generate and print one when none is given). :class:`TokenCheck` decides whether a request's credentials match:
``Authorization: Bearer TOKEN``, ``?token=TOKEN``, or a cookie holding an HMAC of the token (never the token
itself; the dashboard sets it after a valid ``?token=``). Comparisons use :func:`hmac.compare_digest`.

This module sits low in the house (standard library only) so that the monitor and the dashboard both import it
without importing each other.

>>> check = TokenCheck("s3cret")
>>> check.allows(authorization="Bearer s3cret"), check.allows(query_token="nope"), check.allows()
(True, False, False)
>>> check.allows(cookie=check.cookie_value)
True
>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
(True, True, False)
>>> bearer_headers("t"), bearer_headers(None)
({'authorization': 'Bearer t'}, {})
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from parity._exceptions import InvalidInputError

__all__ = ["TokenCheck", "bearer_headers", "is_loopback", "new_token", "resolve_token"]


def new_token() -> str:
    """A fresh random token (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server on this machine (``localhost`` or a loopback address)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token a server on ``host`` requires and whether it was generated (the proxy's and the dashboard's
    ``--token``): ``token`` when given; else a new one when ``host`` is not a loopback address; else none.

    >>> resolve_token("127.0.0.1", None), resolve_token("127.0.0.1", "t")
    ((None, False), ('t', False))
    >>> token, generated = resolve_token("0.0.0.0", None)
    >>> len(token), generated
    (32, True)
    """
    if token is not None:
        if not token.strip():
            raise InvalidInputError("--token", "must be a non-empty string", token)
        return token, False
    if is_loopback(host):
        return None, False
    return new_token(), True


def bearer_headers(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header a client sends with ``token`` (none without one)."""
    return {"authorization": f"Bearer {token}"} if token else {}


class TokenCheck:
    """Whether a request's credentials match ``token`` (see the module docstring)."""

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not token:
            raise InvalidInputError("token", "must be a non-empty string", token)
        self._token = token.encode()
        #: the cookie value: an HMAC-SHA256 of the token, so the cookie never holds the token itself
        self.cookie_value = hmac.new(self._token, b"parity-dashboard-cookie", hashlib.sha256).hexdigest()

    def _same(self, given: str | None, expected: bytes) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)

    def allows(
        self, *, authorization: str | None = None, query_token: str | None = None, cookie: str | None = None
    ) -> bool:
        """Whether any of the credentials given is valid."""
        bearer = None
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            bearer = value.strip() if scheme.lower() == "bearer" else None
        return (
            self._same(bearer, self._token)
            or self._same(query_token, self._token)
            or self._same(cookie, self.cookie_value.encode())
        )
