"""A short check of ``bench_compare_gate``'s budget-64 cells: whole ``parity compare`` runs, one fault per process.

Not a ``bench_*`` topic (it writes no section): it prints, per run, the verdict and the sampler tests' details
(violations / decided tokens on each side), the figures of the addendum in ``results/compare_gate.md``.

Run: ``python -m benchmarks.compare_gate_short 0,1,2 self`` (or ``"threshold mismatch"``, ``"corruption 1%"``, any
``bench_compare_gate.FAULTS`` name; several names comma-separated run one after another on the same servers).
"""

from __future__ import annotations

import os
import secrets
import sys
import time

from benchmarks.bench_compare_gate import CONTEXTS, FAULTS, GREEDY, MAX_TOKENS, _post, lab_server
from parity.compare import DEFAULT_PROMPTS, CompareConfig, compare_endpoints

SAMPLER = ("support", "greedy", "calibration")


def main(argv: list[str]) -> None:
    seeds = [int(x) for x in argv[0].split(",")]
    faults = argv[1].split(",") if len(argv) > 1 else ["self"]
    token = secrets.token_hex(8)
    with lab_server(token) as ref, lab_server(token) as cand:
        for fault in faults:
            change = _post(cand, token, FAULTS[fault]) if fault != "self" else None
            for seed in seeds:
                started = time.time()
                config = CompareConfig(
                    budget=64,
                    seed=seed,
                    max_tokens=MAX_TOKENS,
                    greedy_probes=GREEDY,
                    contexts=CONTEXTS,
                    n_resamples=500,
                    max_concurrency=16,
                )
                report = compare_endpoints(ref, cand, prompts=DEFAULT_PROMPTS, config=config)
                ids = report.reference.token_ids and report.candidate.token_ids
                print(
                    f"== {fault} seed {seed} differs={not report.equivalent} ids={ids} {time.time() - started:.0f}s "
                    f"load={os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                for t in report.tests:
                    details = t.result.details if t.name in SAMPLER else ""
                    print(f"  {t.name} p={t.result.pvalue:.3g} adj={t.adjusted_pvalue:.3g} {details}", flush=True)
            if change:
                _post(cand, token, {"kind": "rollback", "params": {"change_id": change}, "description": "undo"})


if __name__ == "__main__":
    main(sys.argv[1:])
