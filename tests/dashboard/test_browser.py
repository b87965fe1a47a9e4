"""The page in a real headless browser (Debian's Chromium driven by Playwright) on a recorded replay: it loads
with no console errors or failed requests, shows every alert, draws the plots, drills down to examples, and a
screenshot of the timeline has the phase colours in it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parity.dashboard import create_app
from parity.dashboard._figures import PHASE_COLOURS
from parity.monitor import MemoryStore
from parity.monitor.detection.incidents import group_incidents

from ._chromium import CHROMIUM_ARGS
from ._png import read_png
from .conftest import Replay, ServerHandle, fill_store

TOKEN = "browser-test-token"


def colour_pixels(image: np.ndarray[Any, Any], hex_colour: str, tolerance: int = 12) -> int:
    """Pixels within ``tolerance`` of ``hex_colour`` on every channel."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3].astype(int) - rgb) <= tolerance).all(axis=-1).sum())


@pytest.mark.browser
@pytest.mark.timeout(900)  # the first run on a machine installs Chromium with apt-get
def test_the_dashboard_in_headless_chromium(
    chromium: Path,
    replay: Replay,
    serve_app: Callable[[Any], ServerHandle],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    # one alert whose start the data pin down only to a span (Alert.latest_start): the list shows the span's end
    uncertain = next(a for a in replay.alerts if a.status == "open")
    store = MemoryStore()
    fill_store(store, replay)
    store.write_alerts([replace(uncertain, latest_start=uncertain.started_at + timedelta(hours=27))])
    handle = serve_app(create_app(store, token=TOKEN))
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

            page.goto(f"{handle.url}/?token={TOKEN}")
            # (selectors, not wait_for_function: the page's CSP forbids the eval Playwright would poll with)
            page.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=60_000)
            assert page.evaluate("document.body.dataset.state") == "ready", page.inner_text("#error")
            assert "token=" not in page.url  # the link's token left the address bar; a cookie carries the rest

            # the alerts of the replay, with their attributed changes
            assert page.locator("#alerts tbody tr").count() == len(replay.alerts)
            table = page.inner_text("#alerts")
            for alert in replay.alerts:
                assert alert.alert_id in table
                if alert.attributed_changes:
                    assert alert.attributed_changes[0].change_id in table
            assert str(len(replay.records)) in page.inner_text("#summary").replace(",", "")
            # one alert a person sees per incident, listing its alarms as evidence
            incidents = group_incidents(replay.alerts)
            assert len(incidents) < len(replay.alerts)  # the replay has incidents of several alarms
            assert page.locator("#incidents tbody tr").count() == len(incidents)
            for incident in incidents:
                row = page.inner_text(f'#incidents tr[data-incident-id="{incident.incident_id}"]')
                assert f"{len(incident.alerts)} alarm(s)" in row
                assert all(a.alert_id in row for a in incident.alerts)
            row = page.inner_text(f'#alerts tr[data-alert-id="{uncertain.alert_id}"]')
            assert "or as late as" in row
            others = [x for x in replay.alerts if x.alert_id != uncertain.alert_id]
            spans = sum(
                x.latest_start is not None and (x.latest_start - x.started_at).total_seconds() >= 60 for x in others
            )
            assert table.count("or as late as") == 1 + spans  # this one, and the spans the monitor itself reported

            # plotly drew the timeline bars and the segment panels; the change log and routing audit are filled
            assert page.locator("#timeline .main-svg").count() > 0
            assert page.locator("#timeline g.trace.bars path").count() >= len(replay.alerts) // 2
            assert page.locator("#segment-plot g.scatterlayer g.trace").count() > 0
            assert page.locator("#changes tbody tr").count() == len(replay.changes)
            assert page.locator("#routing tbody tr").count() > 0

            # drill-down to the requests behind the first open alert
            first_open = next(
                a for a in sorted(replay.alerts, key=lambda a: a.detected_at, reverse=True) if a.status == "open"
            )
            page.locator(f'#alerts tr[data-alert-id="{first_open.alert_id}"] button').click()
            page.wait_for_selector("#examples-table tbody tr")
            assert first_open.alert_id in page.inner_text("#examples-title")

            # screenshots: the whole page, and the timeline checked for content
            page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
            timeline = read_png(page.locator("#timeline").screenshot(path=tmp_path / "timeline.png"))
            box = page.locator("#segment-plot").bounding_box()
            assert box is not None
            clip = {"x": box["x"], "y": box["y"], "width": box["width"], "height": min(box["height"], 500.0)}
            segment = read_png(page.screenshot(path=tmp_path / "segment.png", clip=clip, full_page=True))
        finally:
            browser.close()
    assert problems == []
    assert (tmp_path / "dashboard.png").stat().st_size > 50_000
    height, width = timeline.shape[:2]
    assert width >= 1000
    assert height >= 300
    for state in ("detected", "fixed"):
        assert colour_pixels(timeline, PHASE_COLOURS[state]) > 2000, state  # bars drawn in the legend's colours
    not_white = (timeline[..., :3] < 235).any(axis=-1).mean()
    assert 0.1 < not_white < 0.9
    assert (segment[..., :3] < 235).any(axis=-1).mean() > 0.02
