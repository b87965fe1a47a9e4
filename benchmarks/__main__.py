"""Run benchmarks and assemble RESULTS.md: ``python -m benchmarks [topic ...]`` (topic = bench_<topic>.py).

``python -m benchmarks --help`` lists the topics; an unknown topic is named, with the list, before anything runs.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from benchmarks._results import assemble


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    known = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: python -m benchmarks [TOPIC ...]  (none: every topic)\ntopics: {', '.join(known)}")
        return 0
    unknown = [a for a in argv if a not in known]
    if unknown:
        print(f"unknown benchmark topic(s) {unknown}; topics: {', '.join(known)}", file=sys.stderr)
        return 2
    for topic in argv or known:
        print(f"== benchmark {topic}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{topic}")
        module.main()
    print(f"wrote {assemble()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
