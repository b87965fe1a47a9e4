"""One record row, read and written the same way by every SQL store (DuckDB and PostgreSQL).

A row holds a :class:`~parity.monitor.Record`'s fields in :data:`RECORD_FIELDS` order; ``observations`` is JSON
``[[detector, flagged, score], ...]``, ``logprob_summary`` and ``signals`` JSON objects (scores may be NaN, which
is why they are text and not a JSON column type), times are microseconds since the epoch.

>>> from datetime import datetime, timezone
>>> from parity.monitor import DetectorObservation, Record
>>> r = Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
...            observations=(DetectorObservation("degeneration", True, 0.7),), signals={"degeneration": 1.0})
>>> record_from_row(record_row(r)) == r
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from parity.monitor._records import DetectorObservation, Record
from parity.monitor._records import from_micros as from_us  # the stores' short names for the time columns
from parity.monitor._records import micros_of as us

__all__ = [
    "LONG_CONTEXT_KEY",
    "RECORD_FIELDS",
    "from_us",
    "observations_json",
    "record_from_row",
    "record_row",
    "signals_from_json",
    "signals_json",
    "summary_json",
    "us",
]

#: ``meta`` key under which writers before store schema 3 recorded the fleet router's short/long split in context
#: tokens (the lab's is 192). Nothing writes it now (a record's ``context_class`` is decided when it is built and
#: stored with it); migration 3 reads it once, to classify the records an older store holds (at the record default,
#: :data:`~parity.monitor.LONG_CONTEXT_THRESHOLD_TOKENS`, when the key is absent).
LONG_CONTEXT_KEY = "long_context_tokens"

#: The record columns every SQL store selects, in this order (``time`` as microseconds since the epoch).
RECORD_FIELDS: tuple[str, ...] = (
    "record_id",
    "time",
    "model",
    "pool",
    "platform",
    "region",
    "config_version",
    "server",
    "context_tokens",
    "output_tokens",
    "session_hash",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "finish_reason",
    "status_code",
    "latency_ms",
    "observations",
    "logprob_summary",
    "captured_text",
    "source",
    "schema_version",
    "request_tokens",
    "context_class",
    "signals",
    "parity_version",
)

_NAME_JSON: dict[str, str] = {}
_OBS_PREFIX: dict[tuple[str, bool], str] = {}


def _name(text: str) -> str:
    """JSON string literal of a summary key, cached (a handful of distinct names)."""
    out = _NAME_JSON.get(text)
    if out is None:
        out = _NAME_JSON.setdefault(text, json.dumps(text))
    return out


def _number(x: float) -> str:
    out = repr(float(x))
    return out if out[-1] not in "fn" else json.dumps(float(x))  # inf / nan -> Infinity / NaN


def observations_json(observations: Sequence[DetectorObservation]) -> str:
    """``[[detector, flagged, score], ...]`` as JSON, hand-built with cached prefixes: ``json.dumps`` was half
    the batch-insert time.

    >>> observations_json((DetectorObservation("x", True, 0.5), DetectorObservation("y", False, float("nan"))))
    '[["x",true,0.5],["y",false,NaN]]'
    """
    parts = []
    for o in observations:
        key = (o.detector, o.flagged)
        prefix = _OBS_PREFIX.get(key)
        if prefix is None:
            prefix = _OBS_PREFIX.setdefault(key, f"[{json.dumps(o.detector)},{'true' if o.flagged else 'false'},")
        parts.append(prefix + _number(o.score) + "]")
    return "[" + ",".join(parts) + "]"


def summary_json(summary: Mapping[str, float]) -> str:
    return "{" + ",".join([_name(k) + ":" + _number(v) for k, v in summary.items()]) + "}"


_SIGNALS_JSON: dict[tuple[tuple[str, float], ...], str] = {}
_SIGNALS_FROM_JSON: dict[str, dict[str, float]] = {}

#: Distinct signal vectors whose JSON is cached each way (0/1 values: a fleet has a handful).
_SIGNALS_CACHE_SIZE = 4096


def signals_json(signals: Mapping[str, float] | None) -> str | None:
    """A record's decided signals as JSON text (``None`` when a monitor never saw it), cached per vector.

    >>> signals_json({"feedback": 0.0, "routing.short_on_long_pool": 1.0}), signals_json(None)
    ('{"feedback":0.0,"routing.short_on_long_pool":1.0}', None)
    """
    if signals is None:
        return None
    key = tuple(signals.items())
    out = _SIGNALS_JSON.get(key)
    if out is None:
        if len(_SIGNALS_JSON) >= _SIGNALS_CACHE_SIZE:
            _SIGNALS_JSON.clear()
        out = _SIGNALS_JSON[key] = summary_json(signals)
    return out


def signals_from_json(text: str | None) -> dict[str, float] | None:
    """Inverse of :func:`signals_json` (each record gets its own dict)."""
    if not text:
        return None
    parsed = _SIGNALS_FROM_JSON.get(text)
    if parsed is None:
        if len(_SIGNALS_FROM_JSON) >= _SIGNALS_CACHE_SIZE:
            _SIGNALS_FROM_JSON.clear()
        parsed = _SIGNALS_FROM_JSON[text] = {str(k): float(v) for k, v in json.loads(text).items()}
    return dict(parsed)


def record_row(r: Record) -> tuple[Any, ...]:
    """The row of ``r`` in :data:`RECORD_FIELDS` order (``time`` as microseconds, JSON columns as text)."""
    return (
        r.record_id,
        us(r.time),
        r.model,
        r.pool,
        r.platform,
        r.region,
        r.config_version,
        r.server,
        r.context_tokens,
        r.output_tokens,
        r.session_hash,
        r.temperature,
        r.top_p,
        r.top_k,
        r.max_tokens,
        r.finish_reason,
        r.status_code,
        r.latency_ms,
        observations_json(r.observations),
        summary_json(r.logprob_summary) if r.logprob_summary else None,
        r.captured_text,
        r.source,
        r.schema_version,
        r.request_tokens,
        r.context_class,
        signals_json(r.signals),
        r.parity_version,
    )


def record_from_row(row: Sequence[Any]) -> Record:
    """Inverse of :func:`record_row` (a row in :data:`RECORD_FIELDS` order, ``time`` in microseconds)."""
    d = dict(zip(RECORD_FIELDS, row, strict=True))
    obs, lps, signals = d["observations"], d["logprob_summary"], d["signals"]
    d["time"] = from_us(d["time"])
    d["observations"] = tuple(
        DetectorObservation(str(name), bool(f), float(score)) for name, f, score in json.loads(obs or "[]")
    )
    d["logprob_summary"] = json.loads(lps) if lps else {}
    d["signals"] = signals_from_json(signals)
    d["context_class"] = d["context_class"] or ""
    return Record(**d)
