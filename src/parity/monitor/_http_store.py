"""``HTTPStore``: the read half of the store protocol, served by a running ``parity proxy``.

DuckDB lets only one process open a store file while it is being written, so ``parity status`` and the
dashboard read a live store through the proxy's read-only JSON endpoints (``/parity/records``,
``/parity/records/summary``, ``/parity/alerts``, ``/parity/feedback``, ``/parity/changes``). Writes raise
:class:`~parity.StoreError`. A proxy listening beyond loopback asks for its token: pass ``token`` (sent as
``Authorization: Bearer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from parity._exceptions import EndpointError, StoreError
from parity._token import bearer_headers
from parity.monitor._codec import alert_from_dict, change_from_dict, feedback_from_dict
from parity.monitor._records import Alert, Change, FeedbackEvent, Record
from parity.monitor._store_summary import StoreSummary


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

    def _read_only(self, what: str) -> StoreError:
        return StoreError(f"{self.base_url} is a read-only view of the proxy's store; cannot write {what}")

    def write_records(self, records: Sequence[Record]) -> None:
        raise self._read_only("records")

    def write_feedback(self, events: Sequence[FeedbackEvent]) -> None:
        raise self._read_only("feedback")

    def write_changes(self, changes: Sequence[Change]) -> None:
        raise self._read_only("changes")

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        raise self._read_only("alerts")

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]:
        params = {}
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        return [Record.from_dict(d) for d in self._get("/parity/records", params)["records"]]

    def feedback(self) -> list[FeedbackEvent]:
        return [feedback_from_dict(d) for d in self._get("/parity/feedback")["feedback"]]

    def changes(self) -> list[Change]:
        return [change_from_dict(d) for d in self._get("/parity/changes")["changes"]]

    def alerts(self, *, open_only: bool = False) -> list[Alert]:
        params = {"open_only": "true"} if open_only else None
        return [alert_from_dict(d) for d in self._get("/parity/alerts", params)["alerts"]]

    def summary(self) -> StoreSummary:
        return StoreSummary.from_dict(self._get("/parity/records/summary"))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
