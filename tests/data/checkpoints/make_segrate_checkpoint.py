"""Make ``segrate_stats.pkl.gz`` and ``segrate_streams.json``: a checkpoint of the segment statistics in the format
from before the compiled bank took the rate streams (git ``4b2a652^``, before the h12-segrate merge: score streams
rows of the bank with their zeros counted by the segments' clocks, rate and invariant streams ``BernoulliCUSUM``
objects), and every stream's state after that code went on with more records.

Run with the *old* code on the path (it is the fixture's point), from the repository root::

    mkdir /tmp/old && git archive 4b2a652^ src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python tests/data/checkpoints/make_segrate_checkpoint.py

``tests/monitor/test_segments_batch.py`` loads the checkpoint with today's code and checks that it goes on exactly
as the old code did (and as today's code run without a checkpoint).
"""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

from parity.monitor import Record
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig

HERE = Path(__file__).resolve().parent
REPLAY = HERE.parent / "replay" / "replay.json.gz"
#: records fed before the checkpoint, and in all
CUT, END = 1200, 2000
CONFIG = MonitorConfig(
    stats=StatsConfig(
        dimensions=("model", "pool", "platform", "context_class"),
        alpha=0.01,
        horizon=100_000,
        max_streams=5000,
        rate_warmup=300,
        mean_warmup=100,
        score_max_order=1,
    )
)


def main() -> None:
    data = json.loads(gzip.decompress(REPLAY.read_bytes()))
    records = [Record.from_dict(r) for r in data["records"][:END]]
    mon = SegmentMonitor(config=CONFIG)
    mon.observe_batch(records[:CUT])
    (HERE / "segrate_stats.pkl.gz").write_bytes(gzip.compress(pickle.dumps(mon.stats), mtime=0))
    mon.observe_batch(records[CUT:])
    streams = {}
    for signal, key in mon.stats.streams():
        det = mon.stats.sequential_test(signal, key)
        assert det is not None
        streams[f"{signal}|{'|'.join(key)}"] = [det.n, det.statistic.hex(), det.mean.hex(), det.baseline.hex()]
    out = {"cut": CUT, "end": END, "alerts": len(mon.alerts), "absorbed": mon.n_absorbed, "streams": streams}
    (HERE / "segrate_streams.json").write_text(json.dumps(out, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
