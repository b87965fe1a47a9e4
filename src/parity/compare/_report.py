"""Present a :class:`ComparisonReport`: a rich table for the terminal and a self-contained HTML report.

The HTML report embeds plotly.js (``include_plotlyjs=True``) so it opens offline: per-prompt divergence, the
positions where the candidate's next-token distribution departs from the reference's (against the noise floor),
and example completions side by side.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from parity._optional import import_optional
from parity._version import __version__
from parity.compare._runner import REPORT_SCHEMA_VERSION, ComparisonReport

__all__ = ["render_table", "write_html"]


def _fmt(value: float, spec: str = ".4g") -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


def render_table(report: ComparisonReport, console: Console) -> None:
    """Print the verdict, one row per test and the skipped tests."""
    table = Table(title=f"parity compare: {report.budget_used} completions per endpoint, alpha {report.alpha:g}")
    for column in ("test", "statistic", "p", "Holm p", "effect", "MDE", "verdict"):
        table.add_column(column, justify="left" if column in ("test", "verdict") else "right", no_wrap=True)
    for t in report.tests:
        r = t.result
        table.add_row(
            t.name,
            _fmt(r.statistic),
            _fmt(r.pvalue, ".3g"),
            _fmt(t.adjusted_pvalue, ".3g"),
            _fmt(r.effect),
            _fmt(r.min_detectable_effect),
            "[red]differs[/red]" if t.rejected else "[green]same[/green]",
        )
    console.print(table)
    console.print("  MDE: minimum detectable effect at 80% power, in the effect's units")
    for t in report.tests:
        d = t.result.details
        if t.name in ("support", "greedy") and "candidate_decided" in d:
            console.print(
                f"  {t.name}: candidate {d['candidate_violations']} tokens outside the reference's kept sets of "
                f"{d['candidate_decided']} decided, reference's own samples {d['reference_violations']} of "
                f"{d['reference_decided']} (tolerance {d.get('tolerance_nats', 0.0):.2g} nats)"
            )
    for name, reason in report.skipped:
        console.print(f"  skipped {name}: {reason}")
    for note in report.notes:
        console.print(f"  note: {note}")
    for side, caps in (("reference", report.reference), ("candidate", report.candidate)):
        for note in caps.notes:
            console.print(f"  {side}: {note}")
    verdict = (
        "[green]EQUIVALENT[/green]: no test detects a difference"
        if report.equivalent
        else "[red]DIFFERENT[/red]: " + ", ".join(t.name for t in report.tests if t.rejected)
    )
    console.print(
        f"{verdict} (Holm-corrected, alpha {report.alpha:g}; {report.requests} requests, "
        f"{report.retries} retries, {report.elapsed_s:.1f} s)"
    )


def _per_prompt(report: ComparisonReport, name: str) -> list[float]:
    for t in report.tests:
        if t.name == name:
            values = t.result.details.get("per_prompt")
            if isinstance(values, Sequence):
                return [float(v) for v in values]
    return []


def _short(text: str, limit: int = 40) -> str:
    flat = text.replace("\n", "\\n")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def write_html(report: ComparisonReport, path: str | Path) -> Path:
    """Write the HTML report to ``path`` (needs plotly: ``pip install 'parity[dashboard]'``)."""
    go = import_optional("plotly.graph_objects", extra="dashboard")
    pio = import_optional("plotly.io", extra="dashboard")
    labels = [f"{i}: {_short(p, 30)}" for i, p in enumerate(report.prompts)]
    figures = []
    per_prompt = go.Figure()
    for name in ("token-frequency", "mmd-hamming", "loglik-shift", "argmax-rate"):
        values = _per_prompt(report, name)
        if values:
            per_prompt.add_trace(go.Bar(name=name, x=labels, y=[v if math.isfinite(v) else None for v in values]))
    per_prompt.update_layout(
        title="Per-prompt divergence (token counts: chi2 over null mean; MMD^2; loglik, argmax rate: ref - cand)",
        barmode="group",
        height=460,
    )
    figures.append(per_prompt)
    if report.position_tv:
        positions = go.Figure()
        xs = list(range(len(report.position_tv)))
        positions.add_trace(go.Scatter(x=xs, y=list(report.position_tv), name="reference vs candidate"))
        positions.add_trace(go.Scatter(x=xs, y=list(report.noise_position_tv), name="reference vs itself (noise)"))
        positions.update_layout(
            title="Where the candidate differs: next-token total variation (lower bound) by position",
            xaxis_title="token position in the continuation",
            yaxis_title="mean TV",
            height=400,
        )
        figures.append(positions)
    parts = [
        pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, default_width="100%")
        for i, fig in enumerate(figures)
    ]
    rows = []
    for t in report.tests:
        r = t.result
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(c))}</td>"
                for c in (
                    t.name,
                    _fmt(r.statistic),
                    _fmt(r.pvalue, ".3g"),
                    _fmt(t.adjusted_pvalue, ".3g"),
                    _fmt(r.effect),
                    _fmt(r.min_detectable_effect),
                    "differs" if t.rejected else "no difference",
                )
            )
            + "</tr>"
        )
    examples = []
    for i, prompt in enumerate(report.prompts):
        ref = report.reference_samples[i][:2] if i < len(report.reference_samples) else ()
        cand = report.candidate_samples[i][:2] if i < len(report.candidate_samples) else ()
        examples.append(
            f"<tr><td><pre>{html.escape(prompt)}</pre></td>"
            f"<td><pre>{'<hr>'.join(html.escape(x) for x in ref)}</pre></td>"
            f"<td><pre>{'<hr>'.join(html.escape(x) for x in cand)}</pre></td></tr>"
        )
    verdict = "EQUIVALENT" if report.equivalent else "DIFFERENT"
    skipped = "".join(f"<li>{html.escape(n)}: {html.escape(r)}</li>" for n, r in report.skipped)
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>parity compare: {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}
pre{{white-space:pre-wrap;margin:0;max-width:40em}}</style>
</head><body>
<h1>parity compare: {verdict}</h1>
<p>reference <code>{html.escape(report.reference.url)}</code> ({html.escape(report.reference.model)}) vs candidate
<code>{html.escape(report.candidate.url)}</code> ({html.escape(report.candidate.model)}):
{report.budget_used} completions per endpoint over {len(report.prompts)} prompts; alpha {report.alpha:g},
Holm correction across tests; seed {report.seed}.</p>
<p><small>parity {html.escape(__version__)}, report schema {REPORT_SCHEMA_VERSION}</small></p>
<table><tr><th>test</th><th>statistic</th><th>p-value</th><th>Holm p</th><th>effect</th>
<th>min. detectable effect</th><th>verdict</th></tr>{"".join(rows)}</table>
<ul>{skipped}</ul>
{"".join(parts)}
<h2>Example completions side by side</h2>
<table><tr><th>prompt</th><th>reference</th><th>candidate</th></tr>{"".join(examples)}</table>
</body></html>
"""
    out = Path(path)
    out.write_text(doc, encoding="utf-8")
    return out
