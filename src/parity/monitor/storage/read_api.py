"""The store's HTTP read API, both ends in one place: the routes a ``parity proxy`` serves (:func:`read_routes`)
and :class:`HTTPStore`, the :class:`~parity.monitor.StoreReader` that reads them, over one wire format.

DuckDB lets only one process open a store file while it is being written, so ``parity status`` and the dashboard
read a live store through the proxy. The wire format (JSON, ``GET`` only):

- ``/parity/records[?since=&until=]`` (ISO-8601, timezone-aware): ``{"records": [Record.to_dict(), ...]}``;
- ``/parity/records/summary``: ``StoreSummary.to_dict()``;
- ``/parity/alerts[?open_only=true]``: ``{"alerts": [Alert.to_dict(), ...]}`` (the ``parity status --json`` shape);
- ``/parity/feedback``: ``{"feedback": [FeedbackEvent.to_dict(), ...]}``;
- ``/parity/changes``: ``{"changes": [Change.to_dict(), ...]}``.

A bad query parameter is answered 400 with a message naming it. A proxy listening beyond loopback asks for its
token: pass ``token`` to :class:`HTTPStore` (sent as ``Authorization: Bearer``). :class:`HTTPStore` has no write
methods: it is a reader, not a :class:`~parity.monitor.Store`.

>>> from datetime import datetime, timezone
>>> from parity.monitor import MemoryStore, Record
>>> store = MemoryStore()
>>> store.write_records([Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
...                             context_class="long", signals={"feedback": 0.0})])
>>> back = decode_records(encode_records(store, {"since": "2025-08-04T00:00:00Z"}))
>>> back == store.records(), back[0].signals, back[0].context_class
(True, {'feedback': 0.0}, 'long')
>>> encode_records(store, {"since": "yesterday"})
Traceback (most recent call last):
...
parity._exceptions.InvalidInputError: `since` must be an ISO-8601 time, got 'yesterday'
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx

from parity._exceptions import EndpointError, InvalidInputError, ParityError
from parity._optional import import_optional
from parity._time import parse_time
from parity._token import bearer_headers
from parity.monitor._codec import alert_from_dict, change_from_dict, feedback_from_dict
from parity.monitor._records import Alert, Change, FeedbackEvent, Record
from parity.monitor.storage._store_protocol import StoreReader
from parity.monitor.storage._store_summary import StoreSummary, summarize

__all__ = [
    "ALERTS_PATH",
    "CHANGES_PATH",
    "FEEDBACK_PATH",
    "RECORDS_PATH",
    "SUMMARY_PATH",
    "HTTPStore",
    "decode_alerts",
    "decode_changes",
    "decode_feedback",
    "decode_records",
    "encode_alerts",
    "encode_changes",
    "encode_feedback",
    "encode_records",
    "encode_summary",
    "read_routes",
]

RECORDS_PATH = "/parity/records"
SUMMARY_PATH = "/parity/records/summary"
ALERTS_PATH = "/parity/alerts"
FEEDBACK_PATH = "/parity/feedback"
CHANGES_PATH = "/parity/changes"

_T = TypeVar("_T")

#: ``Query`` parameters of a request (a mapping of name to value).
Query = Mapping[str, str]


def _time(query: Query, name: str) -> datetime | None:
    value = query.get(name)
    return parse_time(value, name) if value else None


# -- the server's half: a store read into the wire format ------------------------------------------------------
def encode_records(store: StoreReader, query: Query) -> dict[str, Any]:
    """``GET /parity/records``: the records with ``since <= time < until``."""
    since, until = _time(query, "since"), _time(query, "until")
    return {"records": [r.to_dict() for r in store.records(since=since, until=until)]}


def encode_summary(store: StoreReader, query: Query) -> dict[str, Any]:
    """``GET /parity/records/summary``: the store's own summary (in SQL) when it has one, else counted here."""
    summary = getattr(store, "summary", None)
    result = summary() if callable(summary) else summarize(store.records())
    out: dict[str, Any] = result.to_dict()
    return out


def encode_alerts(store: StoreReader, query: Query) -> dict[str, Any]:
    """``GET /parity/alerts``: every alert, or the open ones (``open_only=true``)."""
    open_only = query.get("open_only", "false").lower() in ("1", "true", "yes")
    return {"alerts": [a.to_dict() for a in store.alerts(open_only=open_only)]}


def encode_feedback(store: StoreReader, query: Query) -> dict[str, Any]:
    """``GET /parity/feedback``."""
    return {"feedback": [e.to_dict() for e in store.feedback()]}


def encode_changes(store: StoreReader, query: Query) -> dict[str, Any]:
    """``GET /parity/changes``."""
    return {"changes": [c.to_dict() for c in store.changes()]}


#: Every route of the read API: path -> encoder.
ROUTES: dict[str, Callable[[StoreReader, Query], dict[str, Any]]] = {
    RECORDS_PATH: encode_records,
    SUMMARY_PATH: encode_summary,
    ALERTS_PATH: encode_alerts,
    FEEDBACK_PATH: encode_feedback,
    CHANGES_PATH: encode_changes,
}


def read_routes(
    store: StoreReader,
    *,
    guard: Callable[[Callable[[Any], Any]], Callable[[Any], Any]] = lambda handler: handler,
    error: Callable[[ParityError], Any] | None = None,
) -> list[Any]:
    """The read API as Starlette routes over ``store`` (each read runs off the event loop); ``guard`` wraps each
    handler (the proxy's token check); ``error`` answers a bad request (default: 400 with the message)."""
    routing = import_optional("starlette.routing", extra="monitor")
    responses = import_optional("starlette.responses", extra="monitor")

    def bad_request(err: ParityError) -> Any:
        param = err.argument if isinstance(err, InvalidInputError) else None
        payload = {
            "error": {"message": str(err), "type": "invalid_request_error", "param": param, "code": "invalid_value"}
        }
        return responses.JSONResponse(payload, status_code=400)

    answer_error = error or bad_request

    def handler(encode: Callable[[StoreReader, Query], dict[str, Any]]) -> Callable[[Any], Any]:
        async def endpoint(request: Any) -> Any:
            query = dict(request.query_params)
            try:
                payload = await asyncio.to_thread(encode, store, query)
            except ParityError as err:
                return answer_error(err)
            return responses.JSONResponse(payload)

        return endpoint

    return [routing.Route(path, guard(handler(encode)), methods=["GET"]) for path, encode in ROUTES.items()]


# -- the client's half: the wire format read back -------------------------------------------------------------
def decode_records(payload: Any) -> list[Record]:
    """Inverse of :func:`encode_records`."""
    return [Record.from_dict(d) for d in payload["records"]]


def decode_alerts(payload: Any) -> list[Alert]:
    """Inverse of :func:`encode_alerts`."""
    return [alert_from_dict(d) for d in payload["alerts"]]


def decode_feedback(payload: Any) -> list[FeedbackEvent]:
    """Inverse of :func:`encode_feedback`."""
    return [feedback_from_dict(d) for d in payload["feedback"]]


def decode_changes(payload: Any) -> list[Change]:
    """Inverse of :func:`encode_changes`."""
    return [change_from_dict(d) for d in payload["changes"]]


class HTTPStore:
    """Read a store through a running proxy at ``base_url`` (e.g. ``http://127.0.0.1:8080``); ``token``: the
    proxy's token, when it asks for one."""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None, token: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = bearer_headers(token)
        self.timeout = timeout
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        try:
            resp = self._client.get(url, params=params, headers=self._headers)
        except httpx.HTTPError as err:
            raise EndpointError(f"cannot reach the proxy: {err}", url=url) from err
        if resp.status_code == 401:
            what = "refused the token given" if self._headers else "asks for its token"
            raise EndpointError(
                f"answered HTTP 401: the proxy {what}; pass --proxy-token or set PARITY_PROXY_TOKEN",
                url=url,
                status_code=401,
            )
        if resp.status_code != 200:
            raise EndpointError(f"answered HTTP {resp.status_code}", url=url, status_code=resp.status_code)
        try:
            return resp.json()
        except ValueError as err:
            raise EndpointError("answered with invalid JSON", url=url) from err

    def _decode(self, path: str, decode: Callable[[Any], list[_T]], params: dict[str, str] | None = None) -> list[_T]:
        payload = self._get(path, params)
        try:
            return decode(payload)
        except (InvalidInputError, KeyError, TypeError, ValueError) as err:
            raise EndpointError(f"answered {path} in an unknown shape: {err}", url=f"{self.base_url}{path}") from err

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]:
        params = {}
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        return self._decode(RECORDS_PATH, decode_records, params)

    def feedback(self) -> list[FeedbackEvent]:
        return self._decode(FEEDBACK_PATH, decode_feedback)

    def changes(self) -> list[Change]:
        return self._decode(CHANGES_PATH, decode_changes)

    def alerts(self, *, open_only: bool = False) -> list[Alert]:
        return self._decode(ALERTS_PATH, decode_alerts, {"open_only": "true"} if open_only else None)

    def summary(self) -> StoreSummary:
        return StoreSummary.from_dict(self._get(SUMMARY_PATH))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
