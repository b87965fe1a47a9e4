"""The persisted contracts of the monitor: records, feedback, changes and alerts.

These are what the proxy and ingestion produce, what detectors annotate, what segment statistics read, what
the store persists and what the dashboard shows. They are versioned (``SCHEMA_VERSION``), carry timezone-aware
UTC timestamps, and hold **no prompt or response text** unless capture was opted into (and then only redacted
text of flagged responses, in ``captured_text``).

>>> from datetime import datetime, timezone
>>> r = Record(record_id="cmpl-1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
...            pool="short", platform="gpu", context_tokens=812,
...            observations=(DetectorObservation("unexpected_script", True, 0.93),))
>>> r.context_class, r.parity_version == __version__
('short', True)
>>> r.segment()["platform"]
'gpu'
>>> Record.from_dict(r.to_dict()) == r
True

``context_class`` is a field, decided once, when the record is built: the record builder
(:class:`parity.monitor.intake.scoring.RecordBuilder`, the proxy's, the OTLP receiver's and ``parity ingest``'s) splits
``context_tokens`` at the fleet's configured split (``--long-context-tokens``). Every later stage - the signals and
routing audit, the segment statistics, the store, the dashboard - reads the field and never reclassifies; a stored
record that carries one keeps it. A record built without a class (by hand, or read from a record dict written
before schema version 3, which has none) is split at the default, :data:`LONG_CONTEXT_THRESHOLD_TOKENS`, when it
is constructed; the builder's :meth:`~parity.monitor.intake.scoring.RecordBuilder.adopt` decides such a dict at its own
split instead, and a store from before schema 3 classified its records once, by its migration 3. The record's
``signals`` (every per-record signal's value) are ``None`` until a monitor decided them
(:meth:`parity.monitor.detection.signals.SignalStage.decide`); the store keeps both and readers draw them as stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from parity._change import Change as Change  # the one Change (shared with the lab), re-exported here
from parity._exceptions import InvalidInputError
from parity._time import parse_time
from parity._version import __version__

#: Version of the record layout; bump on any change and add a migration in the store. 3: ``context_class``
#: decided at build time, per-record ``signals``, ``parity_version``.
SCHEMA_VERSION = 3

#: The dimensions a segment is made of. A segment is one value per dimension ("*" for all).
SEGMENT_DIMENSIONS: tuple[str, ...] = ("model", "pool", "platform", "region", "context_class", "config_version")

#: Requests with at most this many context tokens are "short"; above it "long".
LONG_CONTEXT_THRESHOLD_TOKENS = 8192

UNKNOWN = "unknown"

#: The values of ``Record.context_class``.
CONTEXT_CLASSES: tuple[str, ...] = ("short", "long")


def context_class_of(context_tokens: int, threshold: int = LONG_CONTEXT_THRESHOLD_TOKENS) -> str:
    """Classify a request by its context length.

    >>> context_class_of(100), context_class_of(20000)
    ('short', 'long')
    """
    return "long" if context_tokens > threshold else "short"


def _utc(value: datetime | str) -> datetime:
    return parse_time(value)


@dataclass(frozen=True, slots=True)
class DetectorObservation:
    """One detector's verdict on one response: the only per-response quality data stored by default."""

    detector: str
    flagged: bool
    score: float

    def __reduce__(self) -> tuple[Any, ...]:
        # a slots dataclass pickles through Python-level state functions; the constructor's arguments are cheaper
        return (DetectorObservation, (self.detector, self.flagged, self.score))


@dataclass(frozen=True, slots=True)
class Record:
    """One served response, as the monitor sees it (no user text by default).

    ``session_hash`` is a salted hash, never the raw session id. ``observations`` holds each detector's verdict.
    ``logprob_summary`` holds aggregate numbers only (e.g. mean chosen-token logprob), never tokens.
    """

    record_id: str
    time: datetime
    model: str
    pool: str = UNKNOWN
    platform: str = UNKNOWN
    region: str = UNKNOWN
    config_version: str = UNKNOWN
    server: str = UNKNOWN
    context_tokens: int = 0
    output_tokens: int = 0
    session_hash: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    finish_reason: str | None = None
    status_code: int = 200
    latency_ms: float | None = None
    observations: tuple[DetectorObservation, ...] = ()
    logprob_summary: dict[str, float] = field(default_factory=dict)
    captured_text: str | None = None
    source: str = "proxy"
    schema_version: int = SCHEMA_VERSION
    #: the forwarded request's size in tokens as the proxy estimates it (all messages; characters / 4 unless a
    #: tokenizer is configured), to compare with ``context_tokens`` the upstream reports (schema version 2)
    request_tokens: int | None = None
    #: ``'short'`` or ``'long'``, decided when the record is built
    # (:class:`~parity.monitor.intake.scoring.RecordBuilder`,
    #: at the one configured split); left empty, ``context_tokens`` is split at :data:`LONG_CONTEXT_THRESHOLD_TOKENS`
    #: (schema version 3)
    context_class: str = ""
    #: every per-record signal's value (``parity.monitor.detection.signals``) as the monitor decided it; ``None`` until
    # a
    #: monitor saw the record (schema version 3)
    signals: dict[str, float] | None = None
    #: the parity version that built the record (``None`` for records stored before schema version 3)
    parity_version: str | None = __version__

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the field values, rebuilt by :func:`record_of` (records cross processes in batches: the Ray
        workers, the sharded monitor; a slots dataclass's default pickling walks ``fields()`` per record).

        >>> import pickle
        >>> r = Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=UTC), model="S",
        ...            observations=(DetectorObservation("degeneration", True, 2.5),))
        >>> pickle.loads(pickle.dumps(r)) == r
        True
        """
        return (record_of, (_record_values(self),))

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _utc(self.time))
        if self.context_tokens < 0:
            raise InvalidInputError("context_tokens", "must be >= 0", self.context_tokens)
        if not self.context_class:
            object.__setattr__(self, "context_class", context_class_of(self.context_tokens))
        elif self.context_class not in CONTEXT_CLASSES:
            raise InvalidInputError("context_class", f"must be one of {list(CONTEXT_CLASSES)}", self.context_class)

    def segment(self) -> dict[str, str]:
        """The finest segment this record belongs to: one value per dimension in ``SEGMENT_DIMENSIONS``."""
        return {
            "model": self.model,
            "pool": self.pool,
            "platform": self.platform,
            "region": self.region,
            "context_class": self.context_class,
            "config_version": self.config_version,
        }

    def flagged(self, detector: str) -> bool | None:
        """Whether ``detector`` flagged this response; ``None`` when it did not run."""
        for obs in self.observations:
            if obs.detector == detector:
                return obs.flagged
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO-8601 time)."""
        out = asdict(self)
        out["time"] = self.time.isoformat()
        out["observations"] = [asdict(o) for o in self.observations]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Inverse of :meth:`to_dict`; unknown keys are rejected with their names."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError("record", f"has unknown fields {unknown}")
        values = dict(data)
        values["observations"] = tuple(
            o if isinstance(o, DetectorObservation) else DetectorObservation(**o)
            for o in values.get("observations", ())
        )
        values.setdefault("parity_version", None)  # a dict without one does not say which parity built it
        return cls(**values)


#: One setter per field of :class:`Record`, in field order (the slots' descriptors: they bypass the frozen
#: ``__setattr__`` the way the generated ``__init__`` does, without its keyword handling).
_RECORD_SETTERS = tuple(getattr(Record, f.name).__set__ for f in fields(Record))
_new_object = object.__new__
_RECORD_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Record))
_record_values = attrgetter(*_RECORD_FIELD_NAMES)  # a record's field values in order, as a tuple


def record_of(values: Sequence[Any]) -> Record:
    """The :class:`Record` of ``values``, all its fields in field order: equal to ``Record(*values)``, built at about
    half the cost (the record builder's hot path, ``parity ingest``'s batches). Values that ``__post_init__`` would
    change or refuse (a time that is not a UTC ``datetime``, a context length that is not an int >= 0, a missing or
    unknown context class) go through ``Record(*values)``, so the result and any error are the constructor's.

    >>> from datetime import datetime, timezone
    >>> values = [f.default for f in fields(Record)]
    >>> values[:3] = ["r1", datetime(2025, 8, 5, tzinfo=timezone.utc), "S"]
    >>> values[19], values[24] = {}, "short"
    >>> record_of(values) == Record(*values)
    True
    """
    if len(values) != len(_RECORD_SETTERS):
        return Record(*values)
    t, context, context_class = values[1], values[8], values[24]
    if type(t) is not datetime or t.tzinfo is not UTC or type(context) is not int or context < 0:
        return Record(*values)
    if context_class not in CONTEXT_CLASSES:
        return Record(*values)
    record: Record = _new_object(Record)
    for setter, value in zip(_RECORD_SETTERS, values, strict=True):
        setter(record, value)
    return record


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros_of(t: datetime) -> int:
    """An aware time as microseconds since the epoch, exactly (integer arithmetic: no float rounding).

    >>> micros_of(datetime(2025, 8, 5, 0, 0, 0, 7, tzinfo=UTC))
    1754352000000007
    """
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC time ``micros`` microseconds after the epoch (the inverse of :func:`micros_of`)."""
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class RecordColumns:
    """A batch of records as columns: ``columns[name][i]`` is field ``name`` of record ``i``, one list per field of
    :class:`Record` in field order, except ``time``, which holds microseconds since the epoch (an int) rather than a
    ``datetime``. ``parity ingest``'s fast path builds these straight from the parsed lines and a store that takes
    them (``write_record_columns``) writes them without a :class:`Record` per line; :meth:`records` gives the
    records themselves, equal to the ones the record builder makes, for every other consumer.

    >>> t = datetime(2025, 8, 5, tzinfo=UTC)
    >>> r = Record(record_id="r1", time=t, model="S", logprob_summary={"mean_logprob": -0.5})
    >>> cols = RecordColumns.of([r])
    >>> len(cols), cols.columns["time"], cols.records() == [r]
    (1, [1754352000000000], True)
    """

    columns: dict[str, list[Any]]

    def __post_init__(self) -> None:
        if tuple(self.columns) != _RECORD_FIELD_NAMES:
            raise InvalidInputError("columns", f"must name every record field in order {list(_RECORD_FIELD_NAMES)}")
        if len({len(values) for values in self.columns.values()}) > 1:
            raise InvalidInputError("columns", "must all be of one length")

    def __len__(self) -> int:
        return len(self.columns["record_id"])

    @classmethod
    def of(cls, records: Sequence[Record]) -> RecordColumns:
        """The columns of ``records`` (the inverse of :meth:`records`)."""
        columns = {name: [getattr(r, name) for r in records] for name in _RECORD_FIELD_NAMES}
        columns["time"] = [micros_of(t) for t in columns["time"]]
        return cls(columns)

    def records(self) -> list[Record]:
        """One :class:`Record` per row (each with its own ``logprob_summary`` and ``signals`` dicts)."""
        out = []
        index_time = _RECORD_FIELD_NAMES.index("time")
        index_summary = _RECORD_FIELD_NAMES.index("logprob_summary")
        index_signals = _RECORD_FIELD_NAMES.index("signals")
        for row in zip(*self.columns.values(), strict=True):
            values = list(row)
            values[index_time] = from_micros(values[index_time])
            values[index_summary] = dict(values[index_summary])
            if values[index_signals] is not None:
                values[index_signals] = dict(values[index_signals])
            out.append(record_of(values))
        return out


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """User feedback joined to a response by its id (``POST /v1/feedback`` on the proxy)."""

    response_id: str
    time: datetime
    kind: str  # "thumbs_down" | "thumbs_up" | "bug_report"
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _utc(self.time))
        if self.kind not in FEEDBACK_KINDS:
            raise InvalidInputError("kind", f"must be one of {sorted(FEEDBACK_KINDS)}", self.kind)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (ISO-8601 time), as the store's read API sends it."""
        return {
            "response_id": self.response_id,
            "time": self.time.isoformat(),
            "kind": self.kind,
            "schema_version": self.schema_version,
        }


FEEDBACK_KINDS = frozenset({"thumbs_down", "thumbs_up", "bug_report"})


@dataclass(frozen=True, slots=True)
class AttributedChange:
    """A candidate cause of an alert, with its score in [0, 1] and the evidence for it."""

    change_id: str
    score: float
    evidence: str


@dataclass(frozen=True, slots=True)
class Alert:
    """A detected change in one signal on one segment, with the changes ranked as its likely cause.

    ``status`` is ``open`` or ``superseded`` (a more specific or a worse alert replaced it). ``worsens`` names the
    open alert this one escalates when the same signal rose again on the same segment to several times the level
    that alert reported (a second change on top of the first, such as a load-balancing change that multiplies a
    routing fault); its attributed changes are then ranked for the new start.
    """

    alert_id: str
    signal: str
    segment: dict[str, str]
    started_at: datetime
    detected_at: datetime
    effect: float  # rate after minus rate before, in the signal's unit
    baseline: float
    current: float
    n_after: int  # affected-segment requests between estimated start and detection
    attributed_changes: tuple[AttributedChange, ...] = ()
    status: str = "open"
    worsens: str | None = None
    #: The latest start the data still support (the end of the start estimate's 1/32 likelihood support interval,
    #: see :mod:`parity.stats.sequential`); ``None`` means ``started_at``. A rare signal's start is uncertain by
    #: days of traffic, and a change landing inside ``[started_at, latest_start]`` may still be its cause.
    latest_start: datetime | None = None
    schema_version: int = SCHEMA_VERSION
    #: The incident this alert belongs to (``parity.monitor.detection.incidents``): alarms sharing a cause - nested
    #: segments, related signals, a close start - share one id, the first such alert's; ``None`` for alerts
    #: stored before incidents existed (each is then its own incident).
    incident: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "started_at", _utc(self.started_at))
        object.__setattr__(self, "detected_at", _utc(self.detected_at))
        if self.latest_start is not None:
            object.__setattr__(self, "latest_start", _utc(self.latest_start))

    @property
    def opens_incident(self) -> bool:
        """Whether this alarm opened its incident: the one alert of the incident a person is notified of (the
        incident's later alarms are its evidence; see ``parity.monitor.detection.incidents``). An alert without an
        ``incident`` (stored before incidents existed) is its own incident.

        >>> from datetime import datetime, timezone
        >>> t = datetime(2025, 8, 25, tzinfo=timezone.utc)
        >>> Alert("a-1", "degeneration", {}, t, t, 0.1, 0.0, 0.1, 50, incident="a-1").opens_incident
        True
        >>> Alert("a-2", "degeneration.score", {}, t, t, 0.1, 0.0, 0.1, 50, incident="a-1").opens_incident
        False
        """
        return self.incident is None or self.incident == self.alert_id

    def to_dict(self) -> dict[str, Any]:
        """The ``parity status --json`` shape of one alert."""
        return {
            "id": self.alert_id,
            "signal": self.signal,
            "segment": dict(self.segment),
            "started_at": self.started_at.isoformat(),
            "detected_at": self.detected_at.isoformat(),
            "effect": self.effect,
            "baseline": self.baseline,
            "current": self.current,
            "n_after": self.n_after,
            "status": self.status,
            "worsens": self.worsens,
            "latest_start": self.latest_start.isoformat() if self.latest_start is not None else None,
            "attributed_changes": [asdict(c) for c in self.attributed_changes],
            "incident": self.incident,
        }
