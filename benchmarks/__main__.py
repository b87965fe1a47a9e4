"""Run benchmarks and assemble RESULTS.md: ``python -m benchmarks [topic ...]`` (topic = bench_<topic>.py)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from benchmarks._results import assemble


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    topics = argv or sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    for topic in topics:
        print(f"== benchmark {topic}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{topic}")
        module.main()
    print(f"wrote {assemble()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
