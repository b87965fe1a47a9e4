"""The dashboard's access token and the response headers that keep the page to itself.

When the dashboard is reachable beyond the loopback interface it needs a token (``parity dashboard`` generates
and prints one when none is given). A request is let in when it carries the token

- as ``Authorization: Bearer TOKEN`` (scripts), or
- as ``?token=TOKEN`` on any URL (the link printed at start-up): the response then sets an ``HttpOnly``,
  ``SameSite=Strict`` cookie holding an HMAC of the token (never the token itself), scoped to the app's path, so
  the page's own requests for scripts and data carry it; the page then drops ``?token=`` from the address bar;
- or with that cookie.

Comparisons use :func:`hmac.compare_digest` (the check itself lives in :mod:`parity._token`, shared with the
proxy's own views). Anything else is answered ``401``. Every response also carries a
strict Content-Security-Policy (scripts only from the app itself: there is no CDN), ``nosniff``, no referrer and
no framing.

>>> check = TokenCheck("s3cret")
>>> check.allows(authorization="Bearer s3cret"), check.allows(query_token="nope"), check.allows()
(True, False, False)
>>> check.allows(cookie=check.cookie_value)
True
>>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
(True, True, False)
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parity._token import TokenCheck, is_loopback, new_token

__all__ = ["COOKIE_NAME", "SECURITY_HEADERS", "SecurityHeaders", "TokenAuth", "TokenCheck", "is_loopback", "new_token"]

#: Name of the cookie set after a valid ``?token=``.
COOKIE_NAME = "parity_dashboard"

#: Headers on every response. plotly.js injects ``<style>`` elements, hence ``'unsafe-inline'`` for styles only.
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class TokenAuth:
    """ASGI middleware letting in only requests that carry the token (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.check = TokenCheck(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        query_token = conn.query_params.get("token")
        via_query = self.check.allows(query_token=query_token)
        if not (
            via_query
            or self.check.allows(authorization=conn.headers.get("authorization"))
            or self.check.allows(cookie=conn.cookies.get(COOKIE_NAME))
        ):
            response = PlainTextResponse(
                "parity dashboard: a token is needed. Open the link `parity dashboard` printed (it ends in "
                "?token=...), or send Authorization: Bearer TOKEN.\n",
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="parity dashboard"'},
            )
            await response(scope, receive, send)
            return
        if not via_query:
            await self.app(scope, receive, send)
            return
        cookie: SimpleCookie = SimpleCookie()
        cookie[COOKIE_NAME] = self.check.cookie_value
        morsel = cookie[COOKIE_NAME]
        morsel["path"] = (scope.get("root_path") or "").rstrip("/") + "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        set_cookie = morsel.OutputString()

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", set_cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
