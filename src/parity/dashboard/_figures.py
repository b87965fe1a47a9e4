"""The dashboard's plots, built with plotly.py and handed to the page as plotly.js figure JSON.

- :func:`timeline_figure`: the incident timeline, one horizontal bar per timeline row split into its phases
  (``undetected`` pale orange, ``detected`` orange, ``worsening`` red, ``fixed`` green), every change of the
  change log as a dotted vertical line labelled with its id, on one UTC time axis spanning the store.
- :func:`segment_figure`: one panel per rate signal of a segment (the rate per bin, its control band and
  baseline, the alerts on it as vertical lines; bins outside the band in red), then a panel with the segment's
  traffic share and affected fraction; changes that can touch the segment as dotted vertical lines.

Times are given to plotly.js as naive UTC strings (plotly.js has no time zones); axes say "UTC".

>>> from datetime import datetime, timezone
>>> from parity.dashboard._timeline import TimelineRow
>>> t = lambda day: datetime(2025, 8, day, tzinfo=timezone.utc)
>>> row = TimelineRow("segment", "model=S: unexpected_script", {"model": "S"}, t(25), t(26), t(30))
>>> fig = timeline_figure([row], [], start=t(1), end=t(31))
>>> [(tr["name"].split(":")[0], tr["base"][0]) for tr in fig["data"] if tr.get("base")]
[('undetected', '2025-08-25 00:00:00'), ('detected', '2025-08-26 00:00:00'), ('fixed', '2025-08-30 00:00:00')]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from parity._optional import import_optional
from parity.dashboard._segment import nested, scope_overlaps
from parity.dashboard._series import SegmentSeries
from parity.dashboard._timeline import OFF_KINDS, PHASES, TimelineRow
from parity.monitor import Alert, Change

__all__ = ["PHASE_COLOURS", "plot_time", "segment_figure", "timeline_figure"]

#: Colour of each timeline phase (and of the legend entries).
PHASE_COLOURS: dict[str, str] = {
    "undetected": "#fdbf8a",
    "detected": "#ff7f0e",
    "worsening": "#d62728",
    "fixed": "#2ca02c",
}

#: What each phase means, shown in the legend and on hover.
PHASE_MEANING: dict[str, str] = {
    "undetected": "signal moved, no alert yet",
    "detected": "parity alerted, not yet fixed",
    "worsening": "escalated again, not yet fixed",
    "fixed": "rollback or fix landed",
}

_CHANGE_LINE = "rgba(90, 90, 90, 0.55)"
_FONT = "DejaVu Sans, Liberation Sans, Arial, sans-serif"


def plot_time(t: datetime) -> str:
    """A time as plotly.js reads it on a date axis: naive UTC ``YYYY-MM-DD HH:MM:SS``.

    >>> from datetime import timedelta, timezone
    >>> plot_time(datetime(2025, 8, 5, 14, tzinfo=timezone(timedelta(hours=2))))
    '2025-08-05 12:00:00'
    """
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _go() -> Any:
    return import_optional("plotly.graph_objects", extra="dashboard")


def _as_json(fig: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(fig.to_json())
    return out


def _change_marks(changes: Sequence[Change], *, lift: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shapes and annotations: one dotted vertical line per change across the whole plot, labelled with the
    change's id above it (rotated, so close changes stay legible; ``lift`` pixels higher, above subplot titles).
    Built as plain dicts and set on the layout at once: ``Figure.add_shape`` re-validates every shape per call."""
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for change in changes:
        x = plot_time(change.time)
        shapes.append(
            {
                "type": "line",
                "x0": x,
                "x1": x,
                "y0": 0,
                "y1": 1,
                "xref": "x",
                "yref": "paper",
                "line": {"color": _CHANGE_LINE, "width": 1, "dash": "dot"},
                "layer": "below",
            }
        )
        notes.append(
            {
                "x": x,
                "y": 1.0,
                "xref": "x",
                "yref": "paper",
                "yanchor": "bottom",
                "xanchor": "left",
                "showarrow": False,
                "yshift": lift,
                "text": change.change_id,
                "textangle": -55,
                "font": {"size": 10, "color": "#444"},
                "hovertext": f"{change.kind}: {change.description or change.change_id}",
            }
        )
    return shapes, notes


def _vline(x: str, row: int, colour: str, width: float, dash: str = "solid") -> dict[str, Any]:
    """A vertical line across subplot ``row`` only."""
    axis = "" if row == 1 else str(row)
    return {
        "type": "line",
        "x0": x,
        "x1": x,
        "y0": 0,
        "y1": 1,
        "xref": f"x{axis}",
        "yref": f"y{axis} domain",
        "line": {"color": colour, "width": width, "dash": dash},
    }


def _small(text: str) -> str:
    return f'<span style="font-size:10px;color:#5b6474">{text}</span>'


def _display_labels(rows: Sequence[TimelineRow], changes: Sequence[Change]) -> list[str]:
    """Two-line tick labels: a change row's id and kind over its scope; a segment row's segment over its signals
    (indented under the change it is attributed to)."""
    kinds = {c.change_id: c.kind for c in changes}
    out: list[str] = []
    under_change = False
    for row in rows:
        if row.kind == "change":
            under_change = True
            scope = ",".join(f"{k}={v}" for k, v in row.segment.items()) or "whole fleet"
            out.append(f"<b>{row.change_id}</b> ({kinds.get(row.change_id or '', 'change')})<br>{_small(scope)}")
        else:
            under_change = under_change and row.change_id is not None
            segment = ",".join(f"{k}={v}" for k, v in row.segment.items()) or "all"
            indent = "└ " if under_change else ""
            out.append(f"{indent}{segment}<br>{_small(indent.replace('└', '  ') + ', '.join(row.signals))}")
    return out


def _detections(rows: Sequence[TimelineRow], labels: Sequence[str], alerts: Sequence[Alert]) -> Any:
    """A black tick on a segment row at each detection of one of its alerts (the first, and each escalation)."""
    by_id = {a.alert_id: a for a in alerts}
    xs: list[str] = []
    ys: list[str] = []
    text: list[str] = []
    for label, row in zip(labels, rows, strict=True):
        if row.kind != "segment":
            continue
        for alert_id in row.alert_ids:
            alert = by_id.get(alert_id)
            if alert is None:
                continue
            xs.append(plot_time(alert.detected_at))
            ys.append(label)
            how = f"escalates {alert.worsens}" if getattr(alert, "worsens", None) else "raised"
            text.append(f"alert {alert.alert_id} ({alert.signal}) {how}<br>detected {plot_time(alert.detected_at)} UTC")
    if not xs:
        return None
    return _go().Scatter(
        x=xs,
        y=ys,
        mode="markers",
        name="an alert detected",
        marker={"symbol": "line-ns-open", "size": 16, "color": "#1d2330", "line": {"width": 2, "color": "#1d2330"}},
        hovertext=text,
        hoverinfo="text",
    )


def timeline_figure(
    rows: Sequence[TimelineRow],
    changes: Sequence[Change],
    *,
    start: datetime,
    end: datetime,
    alerts: Sequence[Alert] = (),
) -> dict[str, Any]:
    """The incident timeline (see the module docstring) as plotly.js figure JSON; with ``alerts``, a tick marks
    each detection on its segment row."""
    go = _go()
    labels = _display_labels(rows, changes)
    fig = go.Figure()
    for state in PHASES:
        ys: list[str] = []
        bases: list[str] = []
        widths: list[float] = []
        hover: list[str] = []
        for label, row in zip(labels, rows, strict=True):
            for phase in row.phases(end):
                if phase.state != state:
                    continue
                ys.append(label)
                bases.append(plot_time(phase.start))
                widths.append((phase.end - phase.start).total_seconds() * 1000.0)
                detail = ""
                if state == "fixed" and row.fix_change_id:
                    detail = f"fixed by {row.fix_change_id}"
                elif state == "worsening" and row.escalation_change_id:
                    detail = f"escalation attributed to {row.escalation_change_id}"
                elif state != "fixed" and row.change_id:
                    detail = f"attributed to {row.change_id}"
                hover.append(
                    f"{row.label}<br>{state}: {PHASE_MEANING[state]}<br>{plot_time(phase.start)} to "
                    f"{plot_time(phase.end)} UTC" + (f"<br>{detail}" if detail else "")
                )
        fig.add_trace(
            go.Bar(
                name=f"{state}: {PHASE_MEANING[state]}",
                orientation="h",
                y=ys,
                x=widths,
                base=bases,
                marker={"color": PHASE_COLOURS[state]},
                hovertext=hover,
                hoverinfo="text",
                showlegend=True,
            )
        )
    detections = _detections(rows, labels, alerts)
    if detections:
        fig.add_trace(detections)
    shapes, notes = _change_marks(changes)
    fig.update_layout(
        shapes=shapes,
        annotations=notes,
        barmode="overlay",
        height=max(280, 170 + 40 * len(rows)),
        margin={"l": 10, "r": 20, "t": 110, "b": 80},
        font={"family": _FONT, "size": 12},
        legend={"orientation": "h", "x": 0, "y": 0, "yanchor": "bottom", "yref": "container"},
        xaxis={"type": "date", "range": [plot_time(start), plot_time(end)], "title": {"text": "time (UTC)"}},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": labels,
            "autorange": "reversed",
            "automargin": True,
        },
        plot_bgcolor="white",
        paper_bgcolor="white",
    )
    return _as_json(fig)


def segment_figure(series: SegmentSeries, alerts: Sequence[Alert], changes: Sequence[Change]) -> dict[str, Any]:
    """One segment's signals with control bands, then its traffic share and affected fraction (see the module
    docstring), as plotly.js figure JSON."""
    go = _go()
    subplots = import_optional("plotly.subplots", extra="dashboard")
    signals = [s for s in series.signals if s.alerted or s.total > 0]
    titles = [
        f"{s.signal}: rate per bin, band = baseline {s.band.center:.3%} ± 3σ ({s.baseline_source})" for s in signals
    ]
    titles.append("traffic share of all requests, and the share of the segment's requests a live regression affected")
    n_rows = len(signals) + 1
    fig = subplots.make_subplots(
        rows=n_rows, cols=1, shared_xaxes=True, vertical_spacing=min(0.06, 0.5 / n_rows), subplot_titles=titles
    )
    x = [plot_time(t) for t in series.bins.centers()]
    alert_lines: list[dict[str, Any]] = []
    for r, s in enumerate(signals, start=1):
        show = r == 1
        fig.add_trace(
            go.Scatter(
                x=x,
                y=list(s.band.lower),
                mode="lines",
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup="band",
                connectgaps=False,
            ),
            row=r,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=list(s.band.upper),
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(31, 119, 180, 0.15)",
                name="control band (±3σ)",
                legendgroup="band",
                showlegend=show,
                hoverinfo="skip",
                connectgaps=False,
            ),
            row=r,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[x[0], x[-1]],
                y=[s.band.center] * 2,
                mode="lines",
                name="baseline",
                line={"color": "rgba(31, 119, 180, 0.8)", "dash": "dash", "width": 1},
                legendgroup="baseline",
                showlegend=show,
                hoverinfo="skip",
            ),
            row=r,
            col=1,
        )
        rates = s.rates()
        out = set(s.outside())
        fig.add_trace(
            go.Scatter(
                x=x,
                y=rates,
                mode="lines+markers",
                name="rate per bin",
                legendgroup="rate",
                showlegend=show,
                line={"color": "#1f77b4", "width": 1.5},
                marker={"size": 5, "color": ["#d62728" if i in out else "#1f77b4" for i in range(len(rates))]},
                customdata=[[k, n] for k, n in zip(s.k, s.n, strict=True)],
                hovertemplate=f"{s.signal}<br>%{{x}} UTC<br>rate %{{y:.2%}} (%{{customdata[0]}} of "
                "%{customdata[1]})<extra></extra>",
                connectgaps=False,
            ),
            row=r,
            col=1,
        )
        for alert in alerts:
            if alert.signal == s.signal and alert.status != "superseded" and nested(alert.segment, series.segment):
                alert_lines.append(_vline(plot_time(alert.started_at), r, "#d62728", 1, "dash"))
                alert_lines.append(_vline(plot_time(alert.detected_at), r, "#ff7f0e", 2))
        fig.update_yaxes(tickformat=".1%", rangemode="tozero", row=r, col=1)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=series.affected_fraction(),
            mode="lines",
            name="affected fraction of the segment",
            line={"color": "#d62728", "width": 1.5},
            fill="tozeroy",
            fillcolor="rgba(214, 39, 40, 0.15)",
            hovertemplate="%{x} UTC<br>affected %{y:.1%}<extra></extra>",
            connectgaps=False,
        ),
        row=n_rows,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=series.traffic_share(),
            mode="lines",
            name="traffic share",
            line={"color": "#7f7f7f"},
            customdata=list(series.requests),
            connectgaps=False,
            hovertemplate="%{x} UTC<br>share %{y:.1%} (%{customdata} requests)<extra></extra>",
        ),
        row=n_rows,
        col=1,
    )
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], row=n_rows, col=1)
    relevant = [c for c in changes if c.kind not in OFF_KINDS and scope_overlaps(c.scope, series.segment)]
    fixes = [c for c in changes if c.kind in OFF_KINDS and scope_overlaps(c.scope, series.segment)]
    shapes, notes = _change_marks([*relevant, *fixes], lift=22)
    fig.update_xaxes(type="date", range=[plot_time(series.bins.start), plot_time(series.bins.end)], showgrid=True)
    fig.update_xaxes(title={"text": "time (UTC)"}, row=n_rows, col=1)
    fig.update_layout(
        shapes=[*shapes, *alert_lines],
        annotations=[*fig.layout.annotations, *notes],
        height=220 + 170 * n_rows,
        margin={"l": 60, "r": 20, "t": 140, "b": 70},
        font={"family": _FONT, "size": 12},
        legend={"orientation": "h", "x": 0, "y": 0, "yanchor": "bottom", "yref": "container"},
        plot_bgcolor="white",
        paper_bgcolor="white",
        hovermode="closest",
    )
    return _as_json(fig)
