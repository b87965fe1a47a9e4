"""The incident replay behind ``parity demo``: the August-September 2025 incident compressed into minutes.

The lab fleet serves real generated text; the script (:mod:`parity.demo.timeline`) switches the incident's faults
on and off at their simulated dates through the lab's change API; every request goes through the monitoring proxy,
whose monitor alerts per segment and names the change it blames; the summary (:mod:`parity.demo.summary`) says,
for each fault, when parity alerted, on which segment, which change it blamed, and lists every false alert.

>>> from parity.demo import incident_timeline
>>> [c.change_id for c in incident_timeline().changes][:3]
['routing-1p', 'routing-partner-a', 'release-0819']
"""

from parity.demo.clock import SimulatedClock
from parity.demo.replay import DayReport, IncidentReplay, ReplayConfig, replay_stats_config
from parity.demo.summary import DemoSummary, FalseAlert, FaultResult, summarize
from parity.demo.timeline import Fault, ScriptedChange, Timeline, incident_timeline

__all__ = [
    "DayReport",
    "DemoSummary",
    "FalseAlert",
    "Fault",
    "FaultResult",
    "IncidentReplay",
    "ReplayConfig",
    "ScriptedChange",
    "SimulatedClock",
    "Timeline",
    "incident_timeline",
    "replay_stats_config",
    "summarize",
]
