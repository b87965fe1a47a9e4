"""The dashboard's one HTML page: a static shell that the page's script fills from the ``api/`` endpoints.

Every URL in it is relative (``static/...``, and ``api/...`` in the script), so the app works at ``/`` and mounted
under a prefix such as the proxy's ``/dashboard/``. It has no inline script (the Content-Security-Policy allows
scripts from the app only) and loads nothing from elsewhere: plotly.js is served by the app from the plotly
wheel.

>>> html = render_page("parity <dashboard>", plotly_version="6.0.0")
>>> "<title>parity &lt;dashboard&gt;</title>" in html, 'src="static/plotly.min.js?v=6.0.0"' in html
(True, True)
>>> "http://" in html or "https://" in html
False
"""

from __future__ import annotations

from html import escape

from parity._version import __version__

__all__ = ["render_page"]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="static/dashboard.css?v={version}">
<script src="static/plotly.min.js?v={plotly_version}" defer></script>
<script src="static/dashboard.js?v={version}" defer></script>
</head>
<body data-state="loading">
<header>
  <h1>{title}</h1>
  <p id="summary" class="summary">Loading the store&hellip;</p>
  <p id="error" class="error" role="alert" hidden></p>
  <nav>
    <a href="#timeline-section">Timeline</a>
    <a href="#alerts-section">Alerts</a>
    <a href="#segment-section">Segments</a>
    <a href="#routing-section">Routing audit</a>
    <a href="#changes-section">Change log</a>
  </nav>
</header>
<main>
  <section id="timeline-section">
    <h2>Incident timeline</h2>
    <p class="hint">One row per alerted segment (indented under the change it is attributed to) and per
      fault-bearing change: <span class="swatch undetected"></span> undetected (the signal moved, parity had not yet
      alerted), <span class="swatch detected"></span> detected (alerted, not yet fixed),
      <span class="swatch worsening"></span> worsening (escalated again after detection),
      <span class="swatch fixed"></span> fixed (the rollback or fix landed). Dotted lines: the change log.</p>
    <div id="timeline" class="plot" aria-label="incident timeline"></div>
  </section>
  <section id="alerts-section">
    <h2>Alerts</h2>
    <p class="hint">One alert per incident: alarms that share a cause (nested segments, a signal and its mean score,
      a close start) are one fault, notified once (the webhook sends one message per incident), led by its strongest
      evidence. Every alarm stays below, as the evidence.</p>
    <table id="incidents" class="data">
      <thead><tr><th>incident</th><th>what changed</th><th>segments</th><th>signals</th><th>evidence</th>
        <th>detected (UTC)</th><th>attributed change</th><th>fixed by</th></tr></thead>
      <tbody></tbody>
    </table>
    <h3>Evidence: every alarm (a signal on a segment)</h3>
    <table id="alerts" class="data">
      <thead><tr><th>alert</th><th>signal</th><th>segment</th><th>moved /<br>detected (UTC)</th>
        <th>baseline &rarr; current</th><th>requests</th><th>attributed change and evidence</th><th>fixed by</th>
        <th></th></tr></thead>
      <tbody></tbody>
    </table>
    <div id="examples" class="panel" hidden>
      <h3 id="examples-title">Examples</h3>
      <p id="examples-note" class="hint"></p>
      <table id="examples-table" class="data">
        <thead><tr><th>time (UTC)</th><th>served by</th><th>session</th><th>context</th><th>score</th>
          <th>captured text (redacted)</th></tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
  <section id="segment-section">
    <h2>Segment view</h2>
    <p><label for="segment-select">Segment</label> <select id="segment-select"></select></p>
    <p id="segment-notes" class="hint"></p>
    <table id="segment-signals" class="data compact">
      <thead><tr><th>signal</th><th>1s / requests</th><th>baseline</th><th>baseline from</th>
        <th>bins outside band</th><th>alerted</th></tr></thead>
      <tbody></tbody>
    </table>
    <div id="segment-plot" class="plot" aria-label="segment signals"></div>
  </section>
  <section id="routing-section">
    <h2>Routing audit</h2>
    <p id="routing-summary" class="hint"></p>
    <table id="routing" class="data">
      <thead><tr><th>session (salted hash)</th><th>stuck on server</th><th>pool</th><th>violating / all requests</th>
        <th>longest run there</th><th>first / last (UTC)</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="changes-section">
    <h2>Change log</h2>
    <table id="changes" class="data">
      <thead><tr><th>time (UTC)</th><th>change</th><th>kind</th><th>scope</th><th>description</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<footer>parity {version}: a read-only view of the store. Times are UTC. The alerting itself is the monitor's
  per-segment CUSUM; control bands are a visual aid.</footer>
</body>
</html>
"""


def render_page(title: str, *, plotly_version: str) -> str:
    """The page, with ``title`` escaped and asset URLs versioned (so browsers re-fetch after an upgrade)."""
    return _PAGE.format(title=escape(title), version=escape(__version__), plotly_version=escape(plotly_version))
