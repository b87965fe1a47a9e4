"""Segment views as numbers: each rate signal per time bin with its control band, the segment's traffic share and
the fraction of its traffic that a live regression affected.

**Signals of a record** are the ones the monitor decided and the store kept with it (``Record.signals``, see
:mod:`parity.monitor.detection.signals`), never re-derived: each detector's flag, the serving signals and the routing
audit's ``routing.<rule>``, as the monitor's own audit saw them; and its finest segment is ``Record.segment()``, with
the ``context_class`` the record carries. A record's ``feedback`` is 1 when a negative feedback event
(:data:`~parity.monitor.detection.signals.NEGATIVE_FEEDBACK`) names it (counted once per record, in the bin of the
request, not of the feedback). Score signals (``<detector>.score``) are not drawn. A record no monitor saw (stored by
``parity ingest --no-monitor``, or before schema version 3) has its signals decided here by the same
:class:`~parity.monitor.detection.signals.SignalStage` (counted in ``SignalTable.undecided``); its ``context_class`` is
the one it was built with (a store migrated from before schema version 3 classified its older records once, see
``parity.monitor.storage.store.MIGRATIONS``).

**Per bin** ``i`` of a segment: ``n[i]`` requests carrying the signal, ``k[i]`` of them 1, rate ``k/n``
(``None`` when ``n`` is 0); ``traffic_share = requests / all requests`` in the bin; ``affected_fraction`` = the
share of the segment's requests that fall in a segment row of the timeline while it is live (from when its signal
moved until its fix, see ``_timeline``): e.g. for ``model=S``, the share of model S requests that were short
requests served by the long pool while the routing bug was live, the postmortem's "16% of requests".

>>> from dataclasses import replace
>>> from datetime import datetime, timedelta, timezone
>>> from parity.monitor import DetectorObservation, Record
>>> from parity.dashboard._bins import bins_for
>>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
>>> recs = [Record(record_id=f"r{i}", time=t + timedelta(hours=i), model="S", platform=("gpu", "tpu")[i % 2],
...                observations=(DetectorObservation("unexpected_script", i == 3, 0.0),)) for i in range(4)]
>>> bins = bins_for(recs[0].time, recs[-1].time, max_bins=4)
>>> table = signal_table(recs, bins=bins)
>>> tpu = segment_series(table, {"platform": "tpu"})
>>> tpu.requests, tpu.traffic_share(), tpu.signal("unexpected_script").rates(), table.undecided
((0, 1, 0, 1), [0.0, 1.0, 0.0, 1.0], [None, 0.0, None, 1.0], 4)

A decided record is drawn as the monitor decided it (here: a flag the monitor's values overrule):

>>> decided = [replace(r, signals={"unexpected_script": 0.0}) for r in recs]
>>> segment_series(signal_table(decided, bins=bins), {"platform": "tpu"}).signal("unexpected_script").rates()
[None, 0.0, None, 0.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from parity._exceptions import InvalidInputError
from parity.dashboard._bins import TimeBins
from parity.dashboard._control import MIN_BASELINE_REQUESTS, ControlBand, baseline_end, baseline_rate, control_band
from parity.dashboard._segment import contains, nested
from parity.dashboard._timeline import TimelineRow
from parity.monitor import Alert, Change, FeedbackEvent, Record
from parity.monitor.detection.audit import AuditContext
from parity.monitor.detection.signals import FEEDBACK_SIGNAL, NEGATIVE_FEEDBACK, SignalStage, is_score_signal

__all__ = ["SegmentSeries", "SignalSeries", "SignalTable", "segment_series", "signal_table"]


@dataclass(frozen=True, slots=True)
class SignalTable:
    """Every record reduced to what the views need: its bin, finest segment, the rate signals it carries and
    those that are 1. ``signals`` lists every signal carried, sorted."""

    bins: TimeBins
    times: tuple[datetime, ...]
    bin_of: tuple[int, ...]
    finest: tuple[dict[str, str], ...]
    carried: tuple[frozenset[str], ...]
    positive: tuple[frozenset[str], ...]
    record_ids: tuple[str, ...]
    signals: tuple[str, ...]
    #: records stored without decided signals (no monitor saw them): their signals were decided here
    undecided: int = 0

    def __len__(self) -> int:
        return len(self.times)


def signal_table(
    records: Sequence[Record],
    feedback: Iterable[FeedbackEvent] = (),
    alerts: Iterable[Alert] = (),
    *,
    bins: TimeBins,
    sticky_min_run: int = 3,
) -> SignalTable:
    """Reduce ``records`` (in time order) to a :class:`SignalTable` (see the module docstring); ``sticky_min_run``
    only serves records no monitor decided (stored without signals)."""
    negative = {e.response_id for e in feedback if e.kind in NEGATIVE_FEEDBACK}
    alerting = sorted((a for a in alerts if a.status != "superseded"), key=lambda a: a.detected_at)
    now: list[datetime] = [bins.start]

    def is_alerting(segment: dict[str, str]) -> bool:
        return any(a.detected_at <= now[0] and contains(a.segment, segment) for a in alerting)

    stage: SignalStage | None = None  # for undecided records only, made on first need

    context = AuditContext(is_alerting=is_alerting)
    bin_of: list[int] = []
    finest: list[dict[str, str]] = []
    carried: list[frozenset[str]] = []
    positive: list[frozenset[str]] = []
    seen: set[str] = set()
    undecided = 0
    for record in records:
        now[0] = record.time
        if record.signals is None:
            undecided += 1
            if stage is None:
                stage = SignalStage(sticky_min_run=sticky_min_run)
            record = stage.decide(record, context)
        values = record.signals or {}
        names = {n for n in values if not is_score_signal(n)}
        ones = {n for n in names if values[n] != 0.0}
        if record.record_id in negative:
            ones.add(FEEDBACK_SIGNAL)
        bin_of.append(bins.index(record.time))
        finest.append(record.segment())
        carried.append(frozenset(names))
        positive.append(frozenset(ones))
        seen.update(names)
    return SignalTable(
        bins=bins,
        times=tuple(r.time for r in records),
        bin_of=tuple(bin_of),
        finest=tuple(finest),
        carried=tuple(carried),
        positive=tuple(positive),
        record_ids=tuple(r.record_id for r in records),
        signals=tuple(sorted(seen)),
        undecided=undecided,
    )


@dataclass(frozen=True, slots=True)
class SignalSeries:
    """One signal of one segment per bin: ``n`` requests carrying it, ``k`` of them 1; the control ``band``
    around the baseline from ``baseline_source`` (``"segment"``, ``"fleet"`` or ``"fleet, whole store"``) before
    ``baseline_until``; ``alerted`` when an alert (not superseded) on this signal names this segment, one containing
    it or one inside it."""

    signal: str
    n: tuple[int, ...]
    k: tuple[int, ...]
    band: ControlBand
    baseline_source: str
    baseline_until: datetime | None
    alerted: bool

    def rates(self) -> list[float | None]:
        """``k / n`` per bin, ``None`` where ``n`` is 0."""
        return [k / n if n else None for n, k in zip(self.n, self.k, strict=True)]

    def outside(self) -> list[int]:
        """Bins whose rate lies outside the control band."""
        return [i for i, r in enumerate(self.rates()) if r is not None and self.band.outside(r, i)]

    @property
    def total(self) -> int:
        """Requests that were 1, over all bins."""
        return sum(self.k)


@dataclass(frozen=True, slots=True)
class SegmentSeries:
    """A segment's traffic and signals per bin (see the module docstring)."""

    segment: dict[str, str]
    bins: TimeBins
    requests: tuple[int, ...]
    total: tuple[int, ...]
    affected: tuple[int, ...]
    signals: tuple[SignalSeries, ...]

    def traffic_share(self) -> list[float | None]:
        """The segment's share of all requests per bin (``None`` in empty bins)."""
        return [r / t if t else None for r, t in zip(self.requests, self.total, strict=True)]

    def affected_fraction(self) -> list[float | None]:
        """The share of the segment's requests in a live regression per bin (``None`` where it has none)."""
        return [a / r if r else None for a, r in zip(self.affected, self.requests, strict=True)]

    def signal(self, name: str) -> SignalSeries:
        """The series of signal ``name``."""
        for s in self.signals:
            if s.signal == name:
                return s
        raise InvalidInputError("signal", f"must be one of {[s.signal for s in self.signals]}", name)


def _rate(table: SignalTable, idx: Sequence[int], signal: str) -> tuple[int, int]:
    n = k = 0
    for i in idx:
        if signal in table.carried[i]:
            n += 1
            k += signal in table.positive[i]
    return n, k


def segment_series(
    table: SignalTable,
    segment: Mapping[str, str],
    *,
    alerts: Sequence[Alert] = (),
    changes: Sequence[Change] = (),
    rows: Sequence[TimelineRow] = (),
) -> SegmentSeries:
    """The :class:`SegmentSeries` of ``segment``; ``alerts`` and ``changes`` set the baseline period
    (:func:`~parity.dashboard._control.baseline_end`), the segment ``rows`` of the timeline the affected traffic."""
    count = table.bins.count
    members = [i for i, seg in enumerate(table.finest) if contains(segment, seg)]
    requests, total, affected = [0] * count, [0] * count, [0] * count
    for b in table.bin_of:
        total[b] += 1
    windows = [(r.segment, r.moved_at, r.fixed_at) for r in rows if r.kind == "segment"]
    for i in members:
        b = table.bin_of[i]
        requests[b] += 1
        t, seg = table.times[i], table.finest[i]
        if any(start <= t and (end is None or t < end) and contains(w, seg) for w, start, end in windows):
            affected[b] += 1
    until = baseline_end(segment, alerts, changes)
    before = [i for i in members if until is None or table.times[i] < until]
    fleet_before = [i for i in range(len(table)) if until is None or table.times[i] < until]
    alerted = {a.signal for a in alerts if a.status != "superseded" and nested(a.segment, segment)}
    series: list[SignalSeries] = []
    for signal in table.signals:
        n, k = [0] * count, [0] * count
        for i in members:
            if signal in table.carried[i]:
                b = table.bin_of[i]
                n[b] += 1
                k[b] += signal in table.positive[i]
        if not sum(n):
            continue
        nb, kb = _rate(table, before, signal)
        source = "segment"
        if nb < MIN_BASELINE_REQUESTS:
            nb, kb = _rate(table, fleet_before, signal)
            source = "fleet"
        if nb < MIN_BASELINE_REQUESTS:
            nb, kb = _rate(table, range(len(table)), signal)
            source = "fleet, whole store"
        p0 = baseline_rate(kb, nb)
        series.append(SignalSeries(signal, tuple(n), tuple(k), control_band(p0, n), source, until, signal in alerted))
    series.sort(key=lambda s: (not s.alerted, s.total == 0, s.signal))
    return SegmentSeries(dict(segment), table.bins, tuple(requests), tuple(total), tuple(affected), tuple(series))
