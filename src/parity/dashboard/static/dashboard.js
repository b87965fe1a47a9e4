// parity dashboard: fills the page from the app's read-only api/ endpoints (relative URLs, so the app works
// mounted under a prefix). Store data is only ever inserted as text (textContent), never as HTML.
"use strict";

(function () {
  const state = { overview: null, pending: 0 };
  const ROUTING_ROWS = 20; // sessions listed; the summary line counts them all

  // The link printed at start-up carries ?token=...; the response set a cookie, so drop it from the address bar.
  if (new URLSearchParams(window.location.search).has("token")) {
    const url = new URL(window.location.href);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  function api(path) {
    return fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } }).then((r) => {
      if (!r.ok) {
        return r
          .json()
          .catch(() => ({}))
          .then((body) => {
            const msg = body && body.error && body.error.message ? body.error.message : "HTTP " + r.status;
            throw new Error(path + ": " + msg);
          });
      }
      return r.json();
    });
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function cell(row, content, cls) {
    const td = el("td", null, cls);
    if (content instanceof Node) td.appendChild(content);
    else if (content !== undefined && content !== null) td.textContent = String(content);
    row.appendChild(td);
    return td;
  }

  function utc(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").slice(0, 16);
  }

  function shortUtc(iso) {
    return iso ? utc(iso).slice(5) : "";
  }

  function pct(x) {
    if (x === null || x === undefined) return "";
    const v = 100 * x;
    return (Math.abs(v) >= 10 ? v.toFixed(1) : v.toPrecision(2)) + "%";
  }

  // A zero-width space after commas and dots lets long segment and signal names wrap in narrow columns.
  function breakable(text) {
    return String(text).replace(/([,.])/g, "$1\u200b");
  }

  function segText(seg) {
    const parts = Object.keys(seg).map((k) => k + "=" + seg[k]);
    return parts.length ? parts.join(",") : "all";
  }

  function showError(err) {
    const box = document.getElementById("error");
    box.hidden = false;
    box.textContent = (box.textContent ? box.textContent + " | " : "") + err.message;
    document.body.dataset.state = "error";
  }

  function plot(id, figure) {
    const config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
    return window.Plotly.react(document.getElementById(id), figure.data, figure.layout, config);
  }

  function track(promise) {
    state.pending += 1;
    return promise.catch(showError).finally(() => {
      state.pending -= 1;
      if (state.pending === 0 && document.body.dataset.state !== "error") document.body.dataset.state = "ready";
    });
  }

  function renderOverview(o) {
    state.overview = o;
    const days = (new Date(o.end) - new Date(o.start)) / 86400000;
    const bin = o.bin_width_s >= 3600 ? o.bin_width_s / 3600 + " h" : o.bin_width_s / 60 + " min";
    document.getElementById("summary").textContent =
      o.records.toLocaleString("en") + " requests from " + utc(o.start) + " to " + utc(o.end) + " UTC (" +
      days.toFixed(1) + " days, " + bin + " bins); " + o.open_incidents + " open alert(s) of " + o.incidents +
      " (one per incident; " + o.alerts + " alarm(s) as evidence); " +
      o.changes + " change(s); " + o.feedback + " feedback event(s); " + shortContext(o.short_context_max_tokens) +
      "; capture " + (o.capture_on ? "on (redacted text of flagged responses)" : "off") +
      ".";
    const select = document.getElementById("segment-select");
    select.textContent = "";
    for (const s of o.segments) {
      const option = el("option", s.segment + (s.alerted ? "  (alerted)" : ""));
      option.value = s.segment;
      select.appendChild(option);
    }
    const firstAlerted = o.segments.find((s) => s.alerted);
    select.value = firstAlerted ? firstAlerted.segment : "all";
  }

  function showSegment(segment) {
    const select = document.getElementById("segment-select");
    if (segment !== undefined) select.value = segment;
    const chosen = select.value || "all";
    return track(
      api("api/segment?segment=" + encodeURIComponent(chosen)).then((data) => {
        document.getElementById("segment-notes").textContent =
          data.segment + ": " + data.requests.toLocaleString("en") + " requests" +
          (data.quiet_signals.length ? "; never 1 here: " + data.quiet_signals.join(", ") : "") + ".";
        const body = document.querySelector("#segment-signals tbody");
        body.textContent = "";
        for (const s of data.signals) {
          const tr = el("tr", null, s.alerted ? "alerted" : "");
          cell(tr, s.signal, "mono");
          cell(tr, s.flagged + " / " + s.requests.toLocaleString("en"));
          cell(tr, pct(s.baseline));
          cell(tr, s.baseline_source + (s.baseline_until ? ", before " + utc(s.baseline_until) : ""));
          cell(tr, s.bins_outside_band);
          cell(tr, s.alerted ? "yes" : "");
          body.appendChild(tr);
        }
        return plot("segment-plot", data.figure);
      })
    );
  }

  function showExamples(alert) {
    const panel = document.getElementById("examples");
    panel.hidden = false;
    document.getElementById("examples-title").textContent =
      "Requests behind " + alert.id + " (" + alert.signal + " on " + alert.segment_text + ")";
    const body = document.querySelector("#examples-table tbody");
    body.textContent = "";
    return track(
      api("api/alerts/" + encodeURIComponent(alert.id) + "/examples").then((data) => {
        let note = data.matched + " request(s) matched; showing " + data.examples.length + ".";
        if (!data.capture_on) {
          note += " Capture is off: no text was stored (start the proxy with --capture flagged to keep the " +
            "redacted text of flagged responses).";
        }
        document.getElementById("examples-note").textContent = note;
        for (const e of data.examples) {
          const tr = el("tr");
          cell(tr, utc(e.time));
          cell(tr, e.server + " (" + e.model + ", " + e.platform + ", pool " + e.pool + ")");
          cell(tr, e.session_hash || "", "mono");
          cell(tr, e.context_tokens + " tokens");
          cell(tr, e.score === null ? "" : e.score.toFixed(3));
          cell(tr, e.captured_text === null ? "(not captured)" : e.captured_text, "captured");
          body.appendChild(tr);
        }
        panel.scrollIntoView({ block: "nearest" });
      })
    );
  }

  function renderIncidents(incidents) {
    const body = document.querySelector("#incidents tbody");
    body.textContent = "";
    if (!incidents.length) {
      const tr = el("tr");
      const td = cell(tr, "No alerts in this store.");
      td.colSpan = 8;
      body.appendChild(tr);
    }
    for (const inc of incidents) {
      const tr = el("tr", null, "incident " + inc.status);
      tr.dataset.incidentId = inc.id;
      const idCell = cell(tr, el("span", inc.id, "mono"));
      if (inc.status !== "open") idCell.appendChild(el("span", inc.status, "badge"));
      cell(tr, inc.explanation, "wrap");
      const segs = cell(tr, null, "mono wrap");
      inc.segments.forEach((s, i) => {
        const link = el("a", breakable(s));
        link.href = "#segment-section";
        link.addEventListener("click", () => showSegment(s));
        if (i) segs.appendChild(el("br"));
        segs.appendChild(link);
      });
      cell(tr, breakable(inc.signals.join(", ")), "mono wrap");
      const ev = cell(tr, inc.evidence.length + " alarm(s)");
      for (const e of inc.evidence) {
        const line = el("div", e.id + " " + e.signal + " on " + e.segment + (e.status !== "open" ? " [" + e.status +
          "]" : "") + (e.id === inc.opened_by ? " (notified)" : ""), "note mono");
        ev.appendChild(line);
      }
      cell(tr, shortUtc(inc.detected_at), "nowrap");
      cell(tr, inc.attributed_changes.length ? inc.attributed_changes[0] : "no candidate change in the log", "mono");
      cell(tr, inc.fix ? inc.fix.change_id : "not yet", inc.fix ? "mono" : "");
      body.appendChild(tr);
    }
  }

  function renderAlerts(data) {
    renderIncidents(data.incidents || []);
    const body = document.querySelector("#alerts tbody");
    body.textContent = "";
    if (!data.alerts.length) {
      const tr = el("tr");
      const td = cell(tr, "No alerts in this store.");
      td.colSpan = 9;
      body.appendChild(tr);
    }
    for (const a of data.alerts) {
      const tr = el("tr", null, "alert " + a.status);
      tr.dataset.alertId = a.id;
      const id = el("span", a.id, "mono");
      const idCell = cell(tr, id);
      if (a.status !== "open") idCell.appendChild(el("span", a.status, "badge"));
      if (a.worsens) idCell.appendChild(el("div", "worsens " + a.worsens, "note"));
      if (a.incident_id && a.incident_id !== a.id) idCell.appendChild(el("div", "incident " + a.incident_id, "note"));
      const sig = cell(tr, breakable(a.signal), "mono wrap");
      if (a.explanation) sig.appendChild(el("div", a.explanation, "note"));
      const link = el("a", breakable(a.segment_text));
      link.href = "#segment-section";
      link.addEventListener("click", () => showSegment(a.segment_text));
      cell(tr, link);
      const when = cell(tr, shortUtc(a.started_at), "nowrap");
      if (a.latest_start && Date.parse(a.latest_start) - Date.parse(a.started_at) >= 60000) {
        // a rare signal's start is uncertain: the latest start its data support (see parity.stats.sequential)
        when.appendChild(el("div", "or as late as " + shortUtc(a.latest_start), "note"));
      }
      when.appendChild(el("div", shortUtc(a.detected_at)));
      cell(tr, pct(a.baseline) + " → " + pct(a.current) + " (" + (a.effect >= 0 ? "+" : "") + pct(a.effect) + ")");
      cell(tr, a.n_after);
      const cause = el("div");
      if (a.attributed_changes.length) {
        const top = a.attributed_changes[0];
        const line = el("div", null, "cause top");
        line.appendChild(el("b", top.change_id + " (" + top.score.toFixed(2) + ")"));
        line.appendChild(document.createTextNode(": " + top.evidence));
        cause.appendChild(line);
        if (a.attributed_changes.length > 1) {
          const more = el("details", null, "cause");
          more.appendChild(el("summary", a.attributed_changes.length - 1 + " more candidate(s)"));
          for (const c of a.attributed_changes.slice(1)) {
            const other = el("div");
            other.appendChild(el("b", c.change_id + " (" + c.score.toFixed(2) + ")"));
            other.appendChild(document.createTextNode(": " + c.evidence));
            more.appendChild(other);
          }
          cause.appendChild(more);
        }
      } else {
        cause.textContent = "no candidate change in the log";
      }
      cell(tr, cause);
      const fix = cell(tr, a.fix ? a.fix.change_id : "not yet", a.fix ? "mono" : "");
      if (a.fix) fix.appendChild(el("div", a.fix.kind + ", " + shortUtc(a.fix.time), "note"));
      const button = el("button", "examples");
      button.type = "button";
      button.addEventListener("click", () => showExamples(a));
      cell(tr, button);
      body.appendChild(tr);
    }
  }

  function shortContext(tokens) {
    return tokens === null ? "no short-context request" :
      "short context as classed when recorded, longest " + tokens.toLocaleString("en") + " tokens";
  }

  function renderRouting(r) {
    const share = r.n_sessions ? pct(r.affected_sessions / r.n_sessions) : "0%";
    document.getElementById("routing-summary").textContent =
      "Rule " + r.rule + " (" + shortContext(r.short_context_max_tokens) + "): " + r.n_violations +
      " of " + r.n_requests + " requests violated it; " + r.affected_sessions + " of " + r.n_sessions +
      " sessions (" + share + ") had at least one misrouted request" +
      (r.unhashed_violations ? "; " + r.unhashed_violations + " violating request(s) had no session" : "") +
      (r.sessions.length < r.affected_sessions ? ". Showing the " + r.sessions.length + " worst." : ".");
    const body = document.querySelector("#routing tbody");
    body.textContent = "";
    for (const s of r.sessions) {
      const tr = el("tr");
      cell(tr, s.session_hash, "mono");
      cell(tr, s.server, "mono");
      cell(tr, s.pool);
      cell(tr, s.violations + " / " + s.requests);
      cell(tr, s.longest_run + " in a row");
      cell(tr, utc(s.first_at) + " / " + utc(s.last_at));
      body.appendChild(tr);
    }
  }

  function renderChanges(data) {
    const body = document.querySelector("#changes tbody");
    body.textContent = "";
    for (const c of data.changes) {
      const tr = el("tr");
      cell(tr, utc(c.time));
      cell(tr, c.change_id, "mono");
      cell(tr, c.kind);
      cell(tr, segText(c.scope));
      cell(tr, c.description);
      body.appendChild(tr);
    }
  }

  function start() {
    document.getElementById("segment-select").addEventListener("change", () => showSegment());
    track(
      api("api/overview").then((o) => {
        renderOverview(o);
        return showSegment();
      })
    );
    track(api("api/timeline").then((t) => plot("timeline", t.figure)));
    track(api("api/alerts").then(renderAlerts));
    track(api("api/routing?limit=" + ROUTING_ROWS).then(renderRouting));
    track(api("api/changes").then(renderChanges));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
