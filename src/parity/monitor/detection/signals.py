"""Per-record signals, defined once: what the monitor's statistics read, what the store keeps with each record and
what the dashboard draws.

**Signals of a record** (:func:`record_signals`, :class:`SignalStage`):

- ``<detector>``: the detector's flag (0 or 1), one per detector that ran - sampling-consistency violations are
  the flag rate of the sampling-consistency detector;
- ``<detector>.score`` (:func:`score_signal`): the detector's score, clipped to [0, 1] (higher = more
  suspicious, the detectors' convention); NaN scores carry none;
- ``feedback`` (:data:`FEEDBACK_SIGNAL`): 0 when the request is served; a negative feedback event
  (:data:`NEGATIVE_FEEDBACK`) naming the response later counts a 1 for it;
- ``output.cut`` (:data:`OUTPUT_CUT_SIGNAL`): the answer ended at a length limit the client did not ask for
  (``finish_reason="length"`` with fewer output tokens than the requested ``max_tokens``, or no ``max_tokens``
  requested): a silent ``max_tokens`` cap shows as a rise;
- ``context.dropped`` (:data:`CONTEXT_DROPPED_SIGNAL`): the upstream's ``usage.prompt_tokens`` is under
  :data:`SERVED_CONTEXT_RATIO` of the proxy's estimate of the forwarded request (``Record.request_tokens``), on
  requests of at least :data:`MIN_REQUEST_TOKENS`: a fleet that drops or truncates history shows a rise;
- ``routing.<rule>`` (:func:`audit_signal`): the routing audit's verdict on the record
  (``parity.monitor.detection.audit``), one per rule. A rule that states an *invariant* (``PoolContextRule``) is an
  ``"invariant"`` signal: its baseline is fixed, not learned (``StatsConfig.invariant_rate``). A rule whose ``alerts``
  is false (``StickySessionRule`` by default) is decided and stored, but not fed to the statistics.

**Counted once per session.** A signal named in ``session_once`` (:data:`SESSION_ONCE` by default:
``unexpected_script``) counts a session's flags once per :data:`SESSION_WINDOW_S`: a flagged record whose session
(``Record.session_hash``) already counted a flag of that signal in the window contributes nothing to that signal's
rate stream (its zeros always count, its score too). The statistics test a per-request Bernoulli rate; flags that
come in runs within a session are not that (a session's sampling temperature, its language or its subject make one
session flag answer after answer), and a few such sessions moving in and out of a segment move its rate without any
fault. On the faultbox drill's clean traffic, ``unexpected_script``'s per-session flag counts are overdispersed
(dispersion index 2.15 over 207 sessions of 4-8 requests: sessions at temperature 1 flag 25-42% of their answers,
sessions at 0.7 or below 0-4%), ``degeneration``'s barely (1.21) and ``code_integrity``'s not at all (1.03). The
stored flag is kept as it is (``Record.signals``, what the dashboard draws); only what the statistics read changes.
A fault that flags answers across many sessions still counts one flag per session, and every clean answer a zero.

**Decided once.** :meth:`SignalStage.decide` runs once per record, in the monitor (the routing audit keeps state:
sticky sessions, and depends on the monitor's configuration), and returns the record with ``Record.signals``
filled: every 0/1 signal above. The store keeps them with the record, the monitor's statistics read them
(:meth:`SignalStage.values`), and the dashboard draws the stored values. A record that already carries signals (a
replay of stored records) is never decided again. The score signals are not repeated in ``Record.signals``: they
are the detectors' scores, stored with the record already (``Record.observations``), and
:meth:`SignalStage.values` reads them from there (which also keeps the stored signals to a handful of distinct
0/1 vectors, cheap to store).

>>> from datetime import datetime, timezone
>>> from parity.monitor import DetectorObservation, Record
>>> stage = SignalStage()
>>> r = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S", pool="long",
...            context_tokens=100, observations=(DetectorObservation("unexpected_script", True, 0.9),))
>>> decided = stage.decide(r)
>>> decided.signals
{'unexpected_script': 1.0, 'feedback': 0.0, 'routing.short_on_long_pool': 1.0, 'routing.sticky_degraded_session': 0.0}
>>> [(v.signal, v.kind, v.value) for v in stage.values(decided)]  # what the statistics read
[('unexpected_script', 'rate', 1.0), ('unexpected_script.score', 'mean', 0.9), ('feedback', 'rate', 0.0), \
('routing.short_on_long_pool', 'invariant', 1.0)]
>>> stage.decide(decided) is decided
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from parity._exceptions import InvalidInputError
from parity.monitor._records import Record
from parity.monitor.detection.audit import AuditContext, PoolContextRule, RoutingAudit, RoutingRule, StickySessionRule

__all__ = [
    "AUDIT_PREFIX",
    "CONTEXT_DROPPED_SIGNAL",
    "DEFAULT_LONG_POOLS",
    "FEEDBACK_SIGNAL",
    "MIN_REQUEST_TOKENS",
    "NEGATIVE_FEEDBACK",
    "OUTPUT_CUT_SIGNAL",
    "SCORE_SUFFIX",
    "SERVED_CONTEXT_RATIO",
    "SESSION_ONCE",
    "SESSION_WINDOW_S",
    "Members",
    "SignalKind",
    "SignalStage",
    "SignalValue",
    "audit_signal",
    "default_audit",
    "is_score_signal",
    "record_signals",
    "score_signal",
    "serving_signals",
]

#: Signals whose flags count once per session per :data:`SESSION_WINDOW_S` (see the module docstring).
SESSION_ONCE: tuple[str, ...] = ("unexpected_script",)

#: The window, in seconds of record time, within which a session's flags of a ``session_once`` signal count once.
SESSION_WINDOW_S = 300.0

#: The (session, signal) pairs the once-per-session count remembers before it forgets those out of the window.
_ONCE_PRUNE_MIN = 4096

#: The negative-feedback signal.
FEEDBACK_SIGNAL = "feedback"

#: Answers cut at a length limit below the requested ``max_tokens`` (or with none requested).
OUTPUT_CUT_SIGNAL = "output.cut"

#: Requests whose served context (``usage.prompt_tokens``) is well under what the forwarded request implies.
CONTEXT_DROPPED_SIGNAL = "context.dropped"

#: ``context.dropped`` counts a request whose reported prompt tokens are under this share of the estimate: a
#: byte-level BPE on English serves ~1x the characters / 4 estimate (plus its chat template); a request that
#: lost its history keeps only its last message, a fraction of the estimate.
SERVED_CONTEXT_RATIO = 0.6

#: Requests smaller than this (estimated tokens) carry no ``context.dropped`` observation: too little text for
#: the estimate to mean anything.
MIN_REQUEST_TOKENS = 24

#: Feedback kinds that count as a 1 of the feedback signal (the pipeline and the dashboard both read it).
NEGATIVE_FEEDBACK = frozenset({"thumbs_down", "bug_report"})

#: Suffix of a detector's score signal; prefix of a routing rule's signal.
SCORE_SUFFIX = ".score"
AUDIT_PREFIX = "routing."

#: Pools a short-context request must not be served by (the incident's routing bug), by default.
DEFAULT_LONG_POOLS: tuple[str, ...] = ("long", "long-context", "long_context", "1m")

#: ``"rate"`` (0 or 1, baseline learned), ``"invariant"`` (0 or 1, baseline fixed) or ``"mean"`` (a score).
SignalKind = Literal["rate", "invariant", "mean"]


#: A record's signals as the statistics read them, without the values: (name, kind) each, in the order of
#: :meth:`SignalStage.values` (:meth:`SignalStage.inputs` gives them with the values apart).
Members = tuple[tuple[str, SignalKind], ...]


@dataclass(frozen=True, slots=True)
class SignalValue:
    """One observation of one signal (``kind``: see :data:`SignalKind`)."""

    signal: str
    kind: SignalKind
    value: float


def score_signal(detector: str) -> str:
    """Name of a detector's mean-score signal.

    >>> score_signal("reference"), is_score_signal("reference.score")
    ('reference.score', True)
    """
    return f"{detector}{SCORE_SUFFIX}"


def is_score_signal(name: str) -> bool:
    """Whether ``name`` is a detector's score signal (a mean, not a rate: the dashboard does not draw it)."""
    return name.endswith(SCORE_SUFFIX)


def audit_signal(rule: str) -> str:
    """Name of a routing rule's violation-rate signal.

    >>> audit_signal("short_on_long_pool")
    'routing.short_on_long_pool'
    """
    return f"{AUDIT_PREFIX}{rule}"


def record_signals(record: Record, *, scores: bool = True) -> list[SignalValue]:
    """The signals read from the record alone: each detector's flag (and score when ``scores``), the feedback
    signal's zero (the request happened, no negative feedback yet) and :func:`serving_signals`.

    >>> from datetime import datetime, timezone
    >>> from parity.monitor import DetectorObservation
    >>> r = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
    ...            observations=(DetectorObservation("unexpected_script", True, 0.9),))
    >>> [(s.signal, s.value) for s in record_signals(r)]
    [('unexpected_script', 1.0), ('unexpected_script.score', 0.9), ('feedback', 0.0)]
    """
    out: list[SignalValue] = []
    for obs in record.observations:
        out.append(SignalValue(obs.detector, "rate", 1.0 if obs.flagged else 0.0))
        if scores and obs.score == obs.score:  # NaN scores carry no information
            out.append(SignalValue(score_signal(obs.detector), "mean", min(max(float(obs.score), 0.0), 1.0)))
    out.append(SignalValue(FEEDBACK_SIGNAL, "rate", 0.0))
    out.extend(serving_signals(record))
    return out


def serving_signals(record: Record) -> list[SignalValue]:
    """The signals read from how the request was served, not from the text: ``output.cut`` when the finish
    reason is known, ``context.dropped`` when the upstream reported its prompt tokens on a request of at least
    :data:`MIN_REQUEST_TOKENS` (estimated); none for failed requests.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
    >>> capped = Record(record_id="r", time=t, model="H", max_tokens=64, output_tokens=4, finish_reason="length",
    ...                 context_tokens=12, request_tokens=80)
    >>> [(s.signal, s.value) for s in serving_signals(capped)]
    [('output.cut', 1.0), ('context.dropped', 1.0)]
    >>> full = Record(record_id="r", time=t, model="H", max_tokens=64, output_tokens=64, finish_reason="length",
    ...               context_tokens=90, request_tokens=80)
    >>> [(s.signal, s.value) for s in serving_signals(full)]
    [('output.cut', 0.0), ('context.dropped', 0.0)]
    """
    if not 200 <= record.status_code < 300:
        return []
    out: list[SignalValue] = []
    finish = record.finish_reason
    if finish is not None:
        cut = finish == "length" and (record.max_tokens is None or 0 < record.output_tokens < record.max_tokens)
        out.append(SignalValue(OUTPUT_CUT_SIGNAL, "rate", 1.0 if cut else 0.0))
    estimate = record.request_tokens
    if estimate is not None and estimate >= MIN_REQUEST_TOKENS and record.context_tokens > 0:
        dropped = record.context_tokens < SERVED_CONTEXT_RATIO * estimate
        out.append(SignalValue(CONTEXT_DROPPED_SIGNAL, "rate", 1.0 if dropped else 0.0))
    return out


def default_audit(
    *,
    long_pools: Sequence[str] = DEFAULT_LONG_POOLS,
    sticky_min_run: int = 3,
) -> RoutingAudit:
    """The routing audit the monitor runs: short requests (``Record.context_class``, decided when the record was
    built) off the ``long_pools``, sessions not stuck on a degraded server."""
    return RoutingAudit(
        [
            PoolContextRule(forbidden_pools=long_pools),
            StickySessionRule(min_run=sticky_min_run),
        ]
    )


class SignalStage:
    """Decides every per-record signal of a record once (see the module docstring).

    ``audit``: the routing audit (default :func:`default_audit` with ``long_pools`` and ``sticky_min_run``);
    ``routing=False``: no routing signals. The stage reads the record's ``context_class`` (decided when the record
    was built, :class:`~parity.monitor.intake.scoring.RecordBuilder`) and never changes it. ``session_once`` and
    ``session_window_s``: the signals whose flags count once per session per window (see the module docstring);
    :meth:`inputs` (and :meth:`values`) keep that count, so the monitor calls one of them once per record, in order.

    >>> from datetime import datetime, timedelta, timezone
    >>> from parity.monitor import DetectorObservation
    >>> stage, t = SignalStage(routing=False), datetime(2025, 8, 5, tzinfo=timezone.utc)
    >>> def flagged(i, session):
    ...     return Record(record_id=f"r{i}", time=t + timedelta(seconds=i), model="S", session_hash=session,
    ...                   observations=(DetectorObservation("unexpected_script", True, 0.5),))
    >>> [[v.signal for v in stage.values(flagged(i, s)) if v.kind == "rate"] for i, s in enumerate("aab")]
    [['unexpected_script', 'feedback'], ['feedback'], ['unexpected_script', 'feedback']]
    """

    def __init__(
        self,
        *,
        long_pools: Sequence[str] = DEFAULT_LONG_POOLS,
        sticky_min_run: int = 3,
        routing: bool = True,
        audit: RoutingAudit | None = None,
        session_once: Sequence[str] = SESSION_ONCE,
        session_window_s: float = SESSION_WINDOW_S,
    ) -> None:
        if not session_window_s > 0:
            raise InvalidInputError("session_window_s", "must be > 0 seconds", session_window_s)
        #: the signals counted once per session per window, the window, and when each (session, signal) last counted
        self._once = frozenset(session_once)
        self._once_window = float(session_window_s)
        self._once_last: dict[tuple[str, str], float] = {}
        self._once_prune_at = _ONCE_PRUNE_MIN
        self.audit: RoutingAudit | None = None
        if routing:
            self.audit = audit or default_audit(long_pools=long_pools, sticky_min_run=sticky_min_run)
        rules: tuple[RoutingRule, ...] = self.audit.rules if self.audit is not None else ()
        #: the kind of each routing signal, and the routing signals the statistics do not watch
        self._kinds: dict[str, SignalKind] = {
            audit_signal(r.name): "invariant" if getattr(r, "invariant", False) else "rate" for r in rules
        }
        self._silent = frozenset(audit_signal(r.name) for r in rules if not getattr(r, "alerts", True))
        #: the rules whose verdicts the statistics read, and whether each reads the record alone (see ``audit``)
        self._alerting = tuple(r for r in rules if getattr(r, "alerts", True))
        #: per signal name: (read by the statistics, its kind, its score signal's name)
        self._names: dict[str, tuple[bool, SignalKind, str]] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if "_names" not in state:  # a checkpoint from before the batch path's caches
            rules: tuple[RoutingRule, ...] = self.audit.rules if self.audit is not None else ()
            self._alerting = tuple(r for r in rules if getattr(r, "alerts", True))
            self._names = {}
        if "_once" not in state:  # a checkpoint from before sessions counted once
            self._once, self._once_window = frozenset(SESSION_ONCE), SESSION_WINDOW_S
            self._once_last, self._once_prune_at = {}, _ONCE_PRUNE_MIN

    @property
    def context_free(self) -> bool:
        """Whether the signals the statistics read depend on the record alone: every alerting rule is
        ``context_free`` (``PoolContextRule`` is; a non-alerting rule, such as the sticky-session one, is decided
        and stored but never read by the statistics). The monitor's batch path then reads them ahead
        (:meth:`statistics_signals`) and decides each record later, in order."""
        return all(getattr(r, "context_free", False) for r in self._alerting)

    def statistics_signals(self, record: Record) -> Mapping[str, float] | None:
        """The record's signals as far as the statistics read them, without deciding it (no audit state moves, no
        violation is counted): its stored signals, or - when :attr:`context_free` - the verdicts :meth:`decide`
        will reach (the non-alerting rules' as 0, which the statistics never read); ``None`` otherwise."""
        if record.signals is not None:
            return record.signals
        if not self.context_free:
            return None
        values = {v.signal: v.value for v in record_signals(record, scores=False)}
        if self.audit is not None:
            context = AuditContext()
            for rule in self.audit.rules:
                alerting = getattr(rule, "alerts", True)
                values[audit_signal(rule.name)] = 1.0 if alerting and rule.check(record, context) is not None else 0.0
        return values

    def decide(self, record: Record, context: AuditContext | None = None) -> Record:
        """``record`` with its signals decided (its ``context_class`` as built); ``context``: what the audit may ask
        the monitor. A record that carries signals already is returned as it is."""
        if record.signals is not None:
            return record
        values = {v.signal: v.value for v in record_signals(record, scores=False)}
        if self.audit is not None:
            violated = {f.rule for f in self.audit.check(record, context)}
            for rule in self.audit.rules:
                values[audit_signal(rule.name)] = 1.0 if rule.name in violated else 0.0
        return replace(record, signals=values)

    def kind(self, name: str) -> SignalKind:
        """The kind of signal ``name``: a score is a mean, an invariant rule's signal an invariant, else a rate."""
        if is_score_signal(name):
            return "mean"
        return self._kinds.get(name, "rate")

    def values(self, record: Record) -> list[SignalValue]:
        """What the statistics read of a decided record (decided now when it is not): its signals, less the routing
        signals that do not alert (all routing signals when this stage has no audit: another monitor's stored
        verdicts are not this one's to watch), each detector's flag followed by its score (from
        ``Record.observations``), in the order of :func:`record_signals`."""
        members, values = self.inputs(record)
        return [SignalValue(name, kind, value) for (name, kind), value in zip(members, values, strict=True)]

    def inputs(self, record: Record, signals: Mapping[str, float] | None = None) -> tuple[Members, tuple[float, ...]]:
        """:meth:`values` as (name, kind) pairs and their values apart (what the statistics bank's batch path
        reads); ``signals``: the record's signals when known apart from it (:meth:`statistics_signals`)."""
        if signals is None:
            signals = record.signals
            if signals is None:
                signals = self.decide(record).signals or {}
        scores = {
            score_signal(o.detector): min(max(float(o.score), 0.0), 1.0)
            for o in record.observations
            if o.score == o.score  # NaN scores carry no information
        }
        names = self._names
        members: list[tuple[str, SignalKind]] = []
        values: list[float] = []
        session = record.session_hash if self._once else None
        for name, value in signals.items():
            known = names.get(name)
            if known is None:
                # a rule that does not alert, or any routing verdict when this stage audits no routing, is not read
                read = not (name in self._silent or (self.audit is None and name.startswith(AUDIT_PREFIX)))
                known = names[name] = (read, self.kind(name), score_signal(name))
            if not known[0]:
                continue
            # a flag whose session counted one of this signal already in the window: no rate observation (its score
            # is read all the same)
            if session is None or not value or name not in self._once or not self._counted(session, name, record):
                members.append((name, known[1]))
                values.append(value)
            score = scores.pop(known[2], None) if scores else None
            if score is not None:
                members.append((known[2], "mean"))
                values.append(score)
        for name, value in scores.items():
            members.append((name, "mean"))
            values.append(value)
        return tuple(members), tuple(values)

    def _counted(self, session: str, name: str, record: Record) -> bool:
        """Whether ``session`` counted a flag of ``name`` within the window before ``record`` (else it counts now)."""
        t = record.time.timestamp()
        key = (session, name)
        last = self._once_last.get(key)
        if last is not None and 0.0 <= t - last < self._once_window:
            return True
        self._once_last[key] = t
        if len(self._once_last) > self._once_prune_at:  # forget sessions whose window has passed (amortised)
            self._once_last = {k: v for k, v in self._once_last.items() if t - v < self._once_window}
            self._once_prune_at = max(_ONCE_PRUNE_MIN, 2 * len(self._once_last))
        return False
