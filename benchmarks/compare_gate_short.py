"""A short check of ``bench_compare_gate``'s budget-64 cells: whole ``parity compare`` runs, one fault per process.

Not a ``bench_*`` topic (it writes no section): it prints, per run, the verdict and the sampler tests' details
(violations / decided tokens on each side), the figures of the addendum in ``results/compare_gate.md``.

Run: ``python -m benchmarks.compare_gate_short 0,1,2 self`` (or ``"threshold mismatch"``, ``"corruption 1%"``, any
``bench_compare_gate.FAULTS`` name; several names comma-separated run one after another on the same servers).
``python -m benchmarks.compare_gate_short summarise LOG...`` turns such runs' printed output into the markdown
table of the addendum (one row per run, then k/n per candidate).
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import sys
import time

from benchmarks.bench_compare_gate import CONTEXTS, FAULTS, GREEDY, MAX_TOKENS, _post, lab_server
from parity.compare import DEFAULT_PROMPTS, CompareConfig, compare_endpoints

SAMPLER = ("support", "greedy", "calibration")


def summarise(paths: list[str]) -> str:
    """The markdown table of runs printed by :func:`main` (read back from its output files)."""
    runs: list[dict[str, object]] = []
    for path in paths:
        with open(path) as f:
            for line in f:
                head = re.match(r"== (.+) seed (\d+) differs=(\w+) ids=(\w+) (\d+)s load=([\d.]+)", line)
                if head:
                    runs.append({"fault": head[1], "seed": int(head[2]), "differs": head[3] == "True",
                                 "s": int(head[5]), "load": float(head[6])})  # fmt: skip
                    continue
                test = re.match(r"  (\S+) p=(\S+) adj=(\S+) ?(.*)", line)
                if test and runs:
                    text = re.sub(r"np\.\w+\(([^()]*)\)", r"\1", test[4])  # numpy scalars print as np.float64(x)
                    details = ast.literal_eval(text) if text.startswith("{") else {}
                    runs[-1][test[1]] = (float(test[3]), details)
    runs.sort(key=lambda r: (str(r["fault"]), int(str(r["seed"]))))
    lines = [
        "| candidate (budget 64) | seed | parity | support: violations / decided (ref; cand) | support adj. p "
        "| greedy: violations / decided (ref; cand) | greedy adj. p | other tests rejecting | s | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        cells = []
        for name in ("support", "greedy"):
            adj, d = r.get(name, (float("nan"), {}))  # type: ignore[misc]
            cells += [
                f"{d.get('reference_violations', '?')}/{d.get('reference_decided', '?')}; "
                f"{d.get('candidate_violations', '?')}/{d.get('candidate_decided', '?')}"
                + (" (fallback)" if "fallback" in d else ""),
                f"{adj:.2g}",
            ]
        others = [k for k, v in r.items() if isinstance(v, tuple) and k not in ("support", "greedy") and v[0] <= 0.05]
        verdict = "differs" if r["differs"] else "equivalent"
        lines.append(f"| {r['fault']} | {r['seed']} | {verdict} | " + " | ".join(cells)
                     + f" | {', '.join(others) or '-'} | {r['s']} | {r['load']:.1f} |")  # fmt: skip
    lines.append("")
    for fault in dict.fromkeys(str(r["fault"]) for r in runs):
        mine = [r for r in runs if r["fault"] == fault]
        per = {n: sum(1 for r in mine if isinstance(r.get(n), tuple) and r[n][0] <= 0.05)  # type: ignore[index]
               for n in ("support", "greedy", "calibration")}  # fmt: skip
        lines.append(
            f"- {fault}: differs in {sum(bool(r['differs']) for r in mine)}/{len(mine)} runs (support "
            f"{per['support']}, greedy {per['greedy']}, calibration {per['calibration']} of {len(mine)})"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "summarise":
        print(summarise(argv[1:]))
        return
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
