"""The dashboard: a read-only web page over the monitor's store (``parity dashboard``, or mounted in the proxy at
``/dashboard``).

What the page shows, top to bottom:

- **Incident timeline**, drawn like the postmortem's illustration: one row per alerted segment and per
  fault-bearing change, each a bar in phases - *undetected* (the signal moved, parity had not alerted yet),
  *detected* (alerted, not yet fixed), *worsening* (it escalated again after detection, e.g. after a
  load-balancing change) and *fixed* (the rollback or fix landed) - with a tick at each detection and every change
  of the change log as a labelled dotted line on the shared time axis.
- **Alerts**: every alert with its segment, when the signal moved and when parity detected it, baseline and
  current rate, the changes it is attributed to with their evidence, and the change that fixed it; a drill-down
  to the requests behind it (metadata; the redacted text when the proxy ran with ``--capture flagged``).
- **Segment view**: for a segment (an alerted one, all traffic, or one model/platform/pool/context class), each
  rate signal per time bin with its baseline and a binomial 3-sigma control band (a visual aid; the alerts come
  from the monitor's CUSUM), then the segment's share of traffic and the fraction of it a live regression
  affected.
- **Routing audit**: per (salted) session hash, the server and pool it was stuck on in violation of the
  short/long context split, and for how many requests.
- **Change log**.

It never writes: ``create_app`` takes anything with the read half of :class:`parity.monitor.Store`
(``DuckDBStore`` read-only, ``MemoryStore``, ``HTTPStore`` over a running proxy). Beyond 127.0.0.1 it is
protected by a token (``parity.dashboard._auth``). plotly.js is served from the plotly wheel; the page loads
nothing from the internet.

>>> from parity.monitor import MemoryStore
>>> store = MemoryStore()
>>> app = create_app(store)
>>> [route.path for route in app.routes][:5]
['/', '/static/plotly.min.js', '/static/{name}', '/api/overview', '/api/timeline']
>>> from starlette.testclient import TestClient
>>> with TestClient(app) as client:
...     client.get("/api/overview").json()["records"]
0
"""

from parity._exceptions import MissingDependencyError

try:
    import plotly  # noqa: F401
    import starlette  # noqa: F401
except ImportError as _err:  # pragma: no cover - the dashboard extra is part of `make test`
    raise MissingDependencyError(_err.name or "plotly", extra="dashboard") from _err

from parity.dashboard._app import DEFAULT_TITLE, REFRESH_S, create_app
from parity.dashboard._auth import is_loopback, new_token
from parity.dashboard._snapshot import Snapshot, StoreReader, take_snapshot
from parity.dashboard._views import DashboardViews

__all__ = [
    "DEFAULT_TITLE",
    "REFRESH_S",
    "DashboardViews",
    "Snapshot",
    "StoreReader",
    "create_app",
    "is_loopback",
    "new_token",
    "take_snapshot",
]
