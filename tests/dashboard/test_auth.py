"""The token: 401 without it, 200 with a Bearer header, a ?token= link (which sets a cookie) or that cookie."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from parity._exceptions import InvalidInputError
from parity.dashboard import create_app, is_loopback
from parity.dashboard._auth import COOKIE_NAME, TokenCheck
from parity.monitor import MemoryStore

TOKEN = "s3cret-token"
PATHS = ["/", "/api/overview", "/api/alerts", "/static/plotly.min.js", "/static/dashboard.js"]


@pytest.fixture
def client(replay_store: MemoryStore) -> Iterator[TestClient]:
    with TestClient(create_app(replay_store, token=TOKEN)) as c:
        yield c


@pytest.mark.parametrize("path", PATHS)
def test_without_the_token_every_route_is_401(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "token" in resp.text
    assert "content-security-policy" in resp.headers


@pytest.mark.parametrize("header", ["Bearer wrong", "Basic czNjcmV0LXRva2Vu", TOKEN, "Bearer"])
def test_a_wrong_or_malformed_authorization_is_401(client: TestClient, header: str) -> None:
    assert client.get("/api/overview", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("path", PATHS)
def test_a_bearer_token_is_let_in(client: TestClient, path: str) -> None:
    resp = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert "set-cookie" not in resp.headers


def test_a_token_link_sets_a_cookie_for_the_pages_own_requests(client: TestClient) -> None:
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    resp = client.get("/", params={"token": TOKEN})
    assert resp.status_code == 200
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/;" in cookie or cookie.endswith("Path=/")
    assert TOKEN not in cookie  # an HMAC of the token, never the token
    assert client.get("/api/overview").status_code == 200  # the client now carries the cookie
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, "0" * 64)
    assert client.get("/api/overview").status_code == 401


def test_the_cookie_is_scoped_to_the_mount_prefix(replay_store: MemoryStore) -> None:
    outer = Starlette(routes=[Mount("/dashboard", app=create_app(replay_store, token=TOKEN))])
    with TestClient(outer) as c:
        assert c.get("/dashboard/api/overview").status_code == 401
        resp = c.get("/dashboard/", params={"token": TOKEN})
        assert resp.status_code == 200
        assert "Path=/dashboard/" in resp.headers["set-cookie"]
        assert c.get("/dashboard/api/overview").status_code == 200


def test_no_token_no_check(replay_store: MemoryStore) -> None:
    with TestClient(create_app(replay_store)) as c:
        assert c.get("/api/overview").status_code == 200


def test_token_check_and_loopback() -> None:
    check = TokenCheck(TOKEN)
    assert check.allows(authorization=f"bearer {TOKEN}")
    assert not check.allows(query_token=TOKEN[:-1])
    assert check.cookie_value != TOKEN
    with pytest.raises(InvalidInputError, match="`token` must be a non-empty string"):
        TokenCheck("")
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.0.0.2")
    assert is_loopback("::1")
    assert is_loopback("[::1]")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.20")
    assert not is_loopback("dashboard.example.org")
