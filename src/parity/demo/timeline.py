"""The August-September 2025 incident as a script: the changes the replay posts to the lab, and the faults it expects
parity to find (see ``../shared/INCIDENT.md`` in the project workspace, and the postmortem it summarises).

Every entry is a change the lab fleet understands (``parity.lab.faults``), stamped with its simulated date and
posted to ``POST /admin/changes`` when the replay reaches that date, so the monitor learns it the way it would
learn a deploy log: from the lab's ``GET /admin/changes``. The shares are the postmortem's where it gives them;
where it does not (how often corruption struck, how peaked a row must be for the sampler to drop its argmax), the
lab's fault models set them and the choice is stated here.

=========  ============================  ================================================  =======================
date       change id                     what the lab does                                 scope
=========  ============================  ================================================  =======================
08-05      ``routing-1p``                0.8% of short-context sessions sticky to the      model S, gpu
                                         long-context (RoPE x8) pool
08-12      ``routing-partner-a``         the same at 0.18%                                 model S, tpu (partner A)
08-19      ``release-0819``              the weekly release: a new config version, no      whole fleet
                                         behaviour change (a change that must *not* be
                                         blamed)
08-25      ``corruption-O``,             5% of decoding steps start a burst of Thai,       platform tpu, models O
           ``corruption-S``              Chinese or code-breaking tokens                   and S
08-26      ``sampler-H``                 the sampler rewrite exposes the approximate       model H, tpu
                                         top-k miscompile: at odd batch sizes it never
                                         sees token ids >= 10240, so the top token is
                                         dropped whenever it lies there (see below)
08-27      ``routing-partner-b``         misrouting at 0.0004% (below what the replay's    model S, trainium
                                         traffic can show: expected 0 events)
08-28      ``fix-corruption-O``          corruption rolled back for O                      platform tpu, model O
08-29      ``lb-0829``                   load-balancing change: misrouting x20, 0.8% ->    model S
                                         16% (the postmortem's worst hour, held)
09-02      ``rollback-corruption-S``     corruption rolled back for S                      platform tpu, model S
09-04      ``fix-routing-1p``,           routing fix deployed; model H's sampler rolled
           ``rollback-sampler-H``        back
09-16      ``fix-routing-partners``      routing fix complete on the partner platforms
=========  ============================  ================================================  =======================

The postmortem's model O3 (sampler rolled back 09-12) has no counterpart among the lab's three models.

**The approximate top-k's cut-off.** The postmortem's repro misses the maximum at indices >= 10240 of a 12,000-wide
row, and the replay keeps that cut-off: SmolLM2-135M-Instruct (the demo's model, a 49,152-token vocabulary) has
its argmax at an id >= 10240 in about 8.6% of greedy steps on ordinary English, so the fault drops the most likely
token "occasionally", as the postmortem says. (The lab's own 9M model never has its argmax there, 0 of 2,135
greedy steps: a replay on it must scale the cut-off down, to 512 or 1024.) It strikes at odd batch sizes only (the
postmortem: "for some batch sizes"), so most, not all, of model H's requests on tpu are affected, and a request's
fate depends on what it was batched with. At temperature 0 a dropped argmax is a sampling-consistency violation
the served logprobs prove.

>>> timeline = incident_timeline()
>>> [f.name for f in timeline.faults]
['routing', 'routing-growth', 'corruption', 'sampler']
>>> timeline.days[0].isoformat(), len(timeline.days)
('2025-08-01', 49)
>>> [c.change_id for c in timeline.changes_on(timeline.days[4])]
['routing-1p']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from parity._exceptions import InvalidInputError
from parity.monitor.detection.signals import score_signal

__all__ = ["ODD_BATCH_SIZES", "Fault", "ScriptedChange", "Timeline", "incident_timeline"]

#: The batch sizes at which the incident's approximate top-k miscompile showed (odd ones, up to the lab's 256).
ODD_BATCH_SIZES: tuple[int, ...] = tuple(range(1, 257, 2))


@dataclass(frozen=True)
class ScriptedChange:
    """One change of the script: posted to the lab at ``at`` (simulated time) as ``to_json()``."""

    at: datetime
    change_id: str
    kind: str
    scope: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        """The body of ``POST /admin/changes`` (the simulated time included)."""
        return {
            "time": self.at.isoformat().replace("+00:00", "Z"),
            "id": self.change_id,
            "kind": self.kind,
            "scope": dict(self.scope),
            "params": dict(self.params),
            "description": self.description,
        }


@dataclass(frozen=True)
class Fault:
    """A fault the replay injects and parity should find.

    An alert is *about* this fault when its signal is one of ``signals`` (a prefix ending in ``.`` matches a family,
    e.g. ``routing.``; a detector's name also matches its mean-score signal, ``degeneration.score``), its segment
    agrees with ``scope`` on every dimension both name, and it started no earlier than a day before ``onset``
    (``worsening=True``: only alerts that worsen an earlier one). Its attribution is correct when the top-ranked
    change is one of ``causes``.
    """

    name: str
    title: str
    onset: datetime
    causes: tuple[str, ...]
    signals: tuple[str, ...]
    scope: Mapping[str, str]
    postmortem: str
    worsening: bool = False

    def matches_signal(self, signal: str) -> bool:
        """Whether ``signal`` is one this fault shows in: a detector's rate or its mean score, or one of a family.

        >>> corruption = incident_timeline().faults[2]
        >>> [corruption.matches_signal(s) for s in ("degeneration", "degeneration.score", "routing.short_on_long_pool")]
        [True, True, False]
        """
        return any(signal.startswith(s) if s.endswith(".") else signal in (s, score_signal(s)) for s in self.signals)

    def agrees_with(self, segment: Mapping[str, str]) -> bool:
        """Whether ``segment`` agrees with this fault's scope on every dimension both fix."""
        return all(segment[k] == v for k, v in self.scope.items() if k in segment)

    def specificity(self, segment: Mapping[str, str]) -> int:
        """How many of this fault's scope dimensions ``segment`` fixes (to prefer the closest fault)."""
        return sum(1 for k in self.scope if k in segment)


@dataclass(frozen=True)
class Timeline:
    """The script: simulated ``days`` (one replay day each), the ``changes`` to post, the ``faults`` to find."""

    start: date
    end: date
    changes: tuple[ScriptedChange, ...]
    faults: tuple[Fault, ...]

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidInputError("end", "must not be before start", self.end.isoformat())
        ids = [c.change_id for c in self.changes]
        if len(set(ids)) != len(ids):
            raise InvalidInputError("changes", "must have distinct ids", ids)

    @property
    def days(self) -> list[date]:
        """Every simulated day, first to last."""
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def changes_on(self, day: date) -> list[ScriptedChange]:
        """The changes scripted on ``day``, in time order."""
        return sorted((c for c in self.changes if c.at.date() == day), key=lambda c: c.at)

    def change(self, change_id: str) -> ScriptedChange:
        """The scripted change with this id."""
        for c in self.changes:
            if c.change_id == change_id:
                return c
        raise InvalidInputError("change_id", "must name a scripted change", change_id)


def _at(day: str, hour: int = 9) -> datetime:
    return datetime.combine(date.fromisoformat(f"2025-{day}"), time(hour), tzinfo=UTC)


def incident_timeline(
    *,
    misroute_fraction: float = 0.008,
    misroute_growth: float = 20.0,
    corruption_fraction: float = 0.05,
    sampler_cutoff: int = 10240,
    sampler_batch_sizes: Sequence[int] | Literal["all"] = ODD_BATCH_SIZES,
) -> Timeline:
    """The incident's script (the table in the module docstring): first-party misrouting at ``misroute_fraction`` of
    sessions (the postmortem's 0.8%), multiplied by ``misroute_growth`` on 08-29 (to its 16%), and corruption
    bursts starting at ``corruption_fraction`` of decoding steps (the postmortem says "occasionally" and gives
    no rate; at 5% a third of the demo's 8-token answers from the misconfigured servers carry a burst), and the
    approximate top-k missing every token id >= ``sampler_cutoff`` (the postmortem's 10240; see the module
    docstring), at the batch sizes ``sampler_batch_sizes`` (the postmortem's odd ones, or ``"all"``). A shortened
    replay raises the shares so that its few hundred requests hold enough events, and may put the sampler fault on
    every batch size so that whether it shows does not hang on how the lab's batches happen to form."""
    if not 0 < misroute_fraction * misroute_growth <= 1:
        raise InvalidInputError("misroute_fraction", "times misroute_growth must be in (0, 1]", misroute_fraction)
    changes = (
        ScriptedChange(
            _at("08-05"),
            "routing-1p",
            "routing",
            {"model": "S", "platform": "gpu"},
            {"fraction": misroute_fraction},
            f"routing bug: {misroute_fraction:.1%} of short-context requests to the 1M-context pool, sticky per "
            "session",
        ),
        ScriptedChange(
            _at("08-12"),
            "routing-partner-a",
            "routing",
            {"model": "S", "platform": "tpu"},
            {"fraction": 0.0018},
            "routing bug reaches partner A (0.18%)",
        ),
        ScriptedChange(
            _at("08-19", 3),
            "release-0819",
            "deploy",
            {},
            {"config_version": "2025-08-19.1"},
            "weekly release (no behaviour change)",
        ),
        ScriptedChange(
            _at("08-25"),
            "corruption-O",
            "corruption",
            {"model": "O", "platform": "tpu"},
            {"fraction": corruption_fraction, "config_version": "2025-08-25.tpu-perf"},
            "runtime performance optimisation misconfigured on tpu servers (model O)",
        ),
        ScriptedChange(
            _at("08-25", 10),
            "corruption-S",
            "corruption",
            {"model": "S", "platform": "tpu"},
            {"fraction": corruption_fraction, "config_version": "2025-08-25.tpu-perf"},
            "runtime performance optimisation misconfigured on tpu servers (model S)",
        ),
        ScriptedChange(
            _at("08-26"),
            "sampler-H",
            "sampler",
            {"model": "H", "platform": "tpu"},
            {
                "sampler": "approx-topk-10240",
                "cutoff": sampler_cutoff,
                "affected_batch_sizes": sampler_batch_sizes
                if sampler_batch_sizes == "all"
                else list(sampler_batch_sizes),
                "config_version": "2025-08-26.sampler",
            },
            f"sampler rewrite on tpu (December workaround removed) exposes the approximate top-k miscompile: ids >= "
            f"{sampler_cutoff} unseen at odd batch sizes",
        ),
        ScriptedChange(
            _at("08-27"),
            "routing-partner-b",
            "routing",
            {"model": "S", "platform": "trainium"},
            {"fraction": 0.000004},
            "routing bug reaches partner B (<0.0004%)",
        ),
        ScriptedChange(
            _at("08-28"),
            "fix-corruption-O",
            "rollback",
            {"model": "O", "platform": "tpu"},
            {"change_id": "corruption-O"},
            "corruption fixed for model O",
        ),
        ScriptedChange(
            _at("08-29"),
            "lb-0829",
            "load_balancing",
            {"model": "S"},
            {"misroute_multiplier": misroute_growth},
            f"routine load-balancing change (misrouting x{misroute_growth:g}: more short requests reach the "
            "misconfigured servers)",
        ),
        ScriptedChange(
            _at("09-02"),
            "rollback-corruption-S",
            "rollback",
            {"model": "S", "platform": "tpu"},
            {"change_id": "corruption-S"},
            "corruption rolled back for model S",
        ),
        ScriptedChange(
            _at("09-04"),
            "fix-routing-1p",
            "fix",
            {"model": "S", "platform": "gpu"},
            {"change_id": "routing-1p"},
            "routing logic fixed (first party)",
        ),
        ScriptedChange(
            _at("09-04", 11),
            "rollback-sampler-H",
            "rollback",
            {"model": "H", "platform": "tpu"},
            {"change_id": "sampler-H"},
            "model H sampler rolled back",
        ),
        ScriptedChange(
            _at("09-16"),
            "fix-routing-partner-a",
            "fix",
            {"model": "S", "platform": "tpu"},
            {"change_id": "routing-partner-a"},
            "routing fix complete on partner A",
        ),
        ScriptedChange(
            _at("09-16", 10),
            "fix-routing-partner-b",
            "fix",
            {"model": "S", "platform": "trainium"},
            {"change_id": "routing-partner-b"},
            "routing fix complete on partner B",
        ),
    )
    faults = (
        Fault(
            name="routing",
            title="Bug 1: short requests sticky-routed to the 1M-context pool",
            onset=_at("08-05"),
            causes=("routing-1p", "routing-partner-a", "routing-partner-b"),
            signals=("routing.",),
            scope={"model": "S", "context_class": "short"},
            postmortem="started 08-05; fix deployed 09-04, complete 09-16",
        ),
        Fault(
            name="routing-growth",
            title="Bug 1 grows: the 08-29 load-balancing change (0.8% -> 16%)",
            onset=_at("08-29"),
            causes=("lb-0829",),
            signals=("routing.",),
            scope={"model": "S", "context_class": "short"},
            postmortem="08-29 spike not tied to the change at once; worst hour 08-31",
            worsening=True,
        ),
        Fault(
            name="corruption",
            title="Bug 2: output corruption on one platform",
            onset=_at("08-25"),
            causes=("corruption-O", "corruption-S"),
            signals=("unexpected_script", "code_integrity", "degeneration", "sampling_consistency", "feedback"),
            scope={"platform": "tpu", "config_version": "2025-08-25.tpu-perf"},
            postmortem="08-25 to 09-02 (model O fixed 08-28); rolled back 09-02",
        ),
        Fault(
            name="sampler",
            title="Bug 3: approximate top-k miscompile drops the top token",
            onset=_at("08-26"),
            causes=("sampler-H",),
            signals=("sampling_consistency", "unexpected_script", "code_integrity", "degeneration", "feedback"),
            scope={"platform": "tpu", "model": "H", "config_version": "2025-08-26.sampler"},
            postmortem="08-25/26 onward; rolled back 09-04 (model O3: 09-12)",
        ),
    )
    return Timeline(start=date(2025, 8, 1), end=date(2025, 9, 18), changes=changes, faults=faults)
