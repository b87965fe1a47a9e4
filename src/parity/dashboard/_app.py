"""``create_app``: the dashboard as an ASGI application (starlette), read-only over a store.

Routes (all ``GET``; relative to wherever the app is mounted):

===============================  ====================================================================
``/``                            the page
``/static/plotly.min.js``        plotly.js, from the plotly wheel (``plotly/package_data``)
``/static/dashboard.js|.css``    the page's script and style
``/api/overview``                counts, span, bin width, context split, capture, segments to pick
``/api/timeline``                timeline rows and figure
``/api/alerts``                  every alert with its attributed changes, evidence and fix
``/api/alerts/{alert_id}/examples``  the requests behind an alert (redacted text when captured)
``/api/segment?segment=...``     one segment's signals, control bands, traffic share, affected fraction
``/api/routing?limit=50``        routing-audit findings per session hash (the ``limit`` worst)
``/api/changes``                 the change log
``/api/feedback``                feedback events
===============================  ====================================================================

The store is read at most once per ``refresh_s`` seconds (one snapshot, shared by every view until the next), in
a worker thread; a store that cannot be read answers ``503`` with the reason, a bad parameter ``400``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from parity._exceptions import InvalidInputError, ParityError
from parity._optional import import_optional
from parity.dashboard._auth import SecurityHeaders, TokenAuth, TokenCheck
from parity.dashboard._page import render_page
from parity.dashboard._segment import parse_segment
from parity.dashboard._snapshot import StoreReader, take_snapshot
from parity.dashboard._views import ROUTING_LIMIT, DashboardViews

__all__ = ["DEFAULT_TITLE", "REFRESH_S", "create_app", "plotly_js_path"]

#: Title of the page.
DEFAULT_TITLE = "parity dashboard"

#: Seconds a snapshot of the store is reused before the next request re-reads it.
REFRESH_S = 5.0

#: The page's own static files (in ``parity/dashboard/static``).
STATIC_FILES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}


def plotly_js_path() -> Path:
    """Where the plotly wheel keeps its plotly.js bundle."""
    plotly = import_optional("plotly", extra="dashboard")
    path = Path(str(plotly.__file__)).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise InvalidInputError("plotly", "must be a full install with package_data/plotly.min.js", str(path))
    return path


class _Views:
    """The current views, rebuilt from a fresh snapshot when older than ``refresh_s``."""

    def __init__(self, store: StoreReader, *, refresh_s: float) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._views: DashboardViews | None = None
        self._at = 0.0

    def get(self) -> DashboardViews:
        with self._lock:
            if self._views is None or time.monotonic() - self._at >= self.refresh_s:
                self._views = DashboardViews(take_snapshot(self.store))
                self._at = time.monotonic()
            return self._views


def _limit(request: Request) -> int:
    """The ``limit`` query parameter of ``/api/routing``: an integer in [1, 1000], default 50."""
    text = request.query_params.get("limit", str(ROUTING_LIMIT))
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise InvalidInputError("limit", "must be an integer in [1, 1000]", text)
    return value


def _error(status: int, err: Exception) -> JSONResponse:
    return JSONResponse({"error": {"message": str(err), "type": type(err).__name__}}, status_code=status)


def create_app(
    store: StoreReader,
    *,
    token: str | None = None,
    title: str = DEFAULT_TITLE,
    refresh_s: float = REFRESH_S,
) -> Starlette:
    """The dashboard over ``store`` (anything with the read half of :class:`parity.monitor.Store`; it is never
    written). ``token``: require it on every request (see ``parity.dashboard._auth``); each record's ``context_class``
    is drawn as it was built (never reclassified here); ``refresh_s``: how long one read of the store is reused. The
    caller keeps ownership of ``store``."""
    if not isinstance(store, StoreReader):
        raise InvalidInputError(
            "store", "must have records(), feedback(), changes() and alerts()", type(store).__name__
        )
    if refresh_s < 0:
        raise InvalidInputError("refresh_s", "must be >= 0", refresh_s)
    if token is not None:
        TokenCheck(token)  # validates it now rather than at the first request
    views = _Views(store, refresh_s=refresh_s)
    plotly = import_optional("plotly", extra="dashboard")
    plotly_js = plotly_js_path()
    page = render_page(title, plotly_version=str(plotly.__version__))
    static_dir = resources.files("parity.dashboard") / "static"

    def api(view: Callable[[DashboardViews, Request], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                payload = await asyncio.to_thread(lambda: view(views.get(), request))
            except InvalidInputError as err:
                return _error(404 if err.argument == "alert_id" else 400, err)
            except ParityError as err:  # the store could not be read (a proxy down, a closed file)
                return _error(503, err)
            return JSONResponse(payload, headers={"cache-control": "no-store"})

        return endpoint

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def plotly_bundle(request: Request) -> Response:
        return FileResponse(
            plotly_js, media_type="text/javascript; charset=utf-8", headers={"cache-control": "public, max-age=86400"}
        )

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return Response("not found\n", status_code=404, media_type="text/plain")
        body = (static_dir / name).read_bytes()
        return Response(body, media_type=STATIC_FILES[name], headers={"cache-control": "public, max-age=3600"})

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/static/plotly.min.js", plotly_bundle, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/api/overview", api(lambda v, r: v.overview()), methods=["GET"]),
        Route("/api/timeline", api(lambda v, r: v.timeline()), methods=["GET"]),
        Route("/api/alerts", api(lambda v, r: v.alerts()), methods=["GET"]),
        Route(
            "/api/alerts/{alert_id}/examples", api(lambda v, r: v.examples(r.path_params["alert_id"])), methods=["GET"]
        ),
        Route(
            "/api/segment",
            api(lambda v, r: v.segment(parse_segment(r.query_params.get("segment", "all")))),
            methods=["GET"],
        ),
        Route("/api/routing", api(lambda v, r: v.routing(limit=_limit(r))), methods=["GET"]),
        Route("/api/changes", api(lambda v, r: v.changes()), methods=["GET"]),
        Route("/api/feedback", api(lambda v, r: v.feedback()), methods=["GET"]),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if token is not None:
        middleware.append(Middleware(TokenAuth, token=token))
    app = Starlette(routes=routes, middleware=middleware)
    return app
