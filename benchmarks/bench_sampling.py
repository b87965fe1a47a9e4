"""Exact reference top-p filter (numpy and torch) vs a sort-based top-p in the style of Hugging Face's warper.

Run: ``.venv/bin/python -m benchmarks sampling``. For batch 1, 8, 64 and vocab 32000, 128256, 262144, float32
and bfloat16 input, top_p = 0.9, logits ``3 * N(0, 1)`` (seeded). Every implementation runs on the same input in
the same process, interleaved round-robin so machine noise hits all alike; the table gives medians.

* ``ref numpy``: :func:`parity.sampling.filter_logits` (float64, exact kept set, histogram search, no full sort);
* ``ref torch``: :func:`parity.sampling.torch.filter_logits_torch` (same kept sets);
* ``sort top-p``: the usual sort-based mask written here (torch sort + softmax + cumsum, float32, as the
  transformers warper does it);
* ``HF warper``: transformers' real ``TopPLogitsWarper`` when importable (on float32 scores).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import torch

from benchmarks._results import write_section
from parity.sampling import filter_logits
from parity.sampling.torch import filter_logits_torch

TOP_P = 0.9
BATCHES = (1, 8, 64)
VOCABS = (32000, 128256, 262144)


def sort_top_p(scores: torch.Tensor, top_p: float = TOP_P) -> torch.Tensor:
    """Sort-based top-p in the style of transformers' TopPLogitsWarper (float32; full sort of the vocabulary)."""
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cum <= (1 - top_p)
    remove[..., -1:] = False  # keep at least one token
    remove = remove.scatter(1, sorted_idx, remove)
    return scores.masked_fill(remove, -float("inf"))


def _hf_warper() -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        from transformers import TopPLogitsWarper
    except Exception:  # transformers missing or broken: the hand-written sort path still stands in
        return None
    warper = TopPLogitsWarper(top_p=TOP_P)
    dummy = torch.zeros((1, 1), dtype=torch.long)

    def run(scores: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = warper(dummy, scores)
        return out

    return run


def _repeats(batch: int, vocab: int) -> int:
    cells = batch * vocab
    return 7 if cells <= 300_000 else 5 if cells <= 3_000_000 else 3


def _time(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) * 1000.0 for name, v in samples.items()}


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(20250917)
    hf = _hf_warper()
    rows = []
    agree = True
    for dtype in ("float32", "bfloat16"):
        for vocab in VOCABS:
            for batch in BATCHES:
                x32 = (rng.standard_normal((batch, vocab)) * 3.0).astype(np.float32)
                if dtype == "bfloat16":
                    x_np: Any = x32.astype(ml_dtypes.bfloat16)
                    x_t = torch.from_numpy(x32).to(torch.bfloat16)
                else:
                    x_np, x_t = x32, torch.from_numpy(x32)
                fns: dict[str, Callable[[], Any]] = {
                    "ref numpy": lambda x_np=x_np: filter_logits(x_np, top_p=TOP_P),
                    "ref torch": lambda x_t=x_t: filter_logits_torch(x_t, top_p=TOP_P),
                    "sort top-p": lambda x_t=x_t: sort_top_p(x_t.float()),
                    # the physical floor: one max pass over the same logits (what any exact top-p must read)
                    "max numpy": lambda x_np=x_np: x_np.max(axis=1),
                    "max torch": lambda x_t=x_t: x_t.amax(dim=1),
                }
                if hf is not None:
                    fns["HF warper"] = lambda x_t=x_t, hf=hf: hf(x_t.float())
                ref = np.isfinite(filter_logits(x_np, top_p=TOP_P))
                agree &= bool(np.array_equal(ref, torch.isfinite(filter_logits_torch(x_t, top_p=TOP_P)).numpy()))
                med = _time(fns, _repeats(batch, vocab))
                rows.append((dtype, batch, vocab, med))
                print(dtype, batch, vocab, {k: round(v, 1) for k, v in med.items()}, flush=True)
    write_section("sampling", "Exact reference sampler vs sort-based top-p", _table(rows, hf is not None, agree))


#: What the two recorded runs say together (written from them).
MACHINES = (
    "Which backend wins at batch 64 depends on the machine. The run of 2026-11-22 (an Intel Xeon, 2 cores shared "
    "with a training run, load ~12) found numpy 2.7-6.2x and torch 0.7-0.9x in these cells; on the AMD EPYC here "
    "at low load the sort-based filter itself is about twice as fast (SORT_MS ms here against 943 ms there at "
    "64 x 128256 float32), torch's two-threaded elementwise passes beat numpy's single-threaded ones, and the numpy "
    "reference - about ten memory passes over a float64 copy of the batch - is memory-bound. Both do the same "
    "O(V) work per row with no sort of the vocabulary; on an accelerator the torch backend's passes run on the "
    "device (not measured here: no GPU)."
)


def _table(rows: list[tuple[str, int, int, dict[str, float]]], with_hf: bool, agree: bool) -> str:
    head = "| input | batch | vocab | ref numpy ms | ref torch ms | sort top-p ms |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if with_hf:
        head += " HF warper ms |"
        sep += "---:|"
    head += " max numpy ms | max torch ms | sort / ref numpy | sort / ref torch | ref numpy / max | ref torch / max |"
    sep += "---:|---:|---:|---:|---:|---:|"
    lines = [head, sep]
    target = []
    ratios: list[tuple[float, float]] = []
    sort_ms = float("nan")
    for dtype, batch, vocab, med in rows:
        cells = [dtype, str(batch), str(vocab)] + [f"{med[k]:.1f}" for k in ("ref numpy", "ref torch", "sort top-p")]
        if with_hf:
            cells.append(f"{med['HF warper']:.1f}")
        r_np = med["sort top-p"] / med["ref numpy"]
        r_t = med["sort top-p"] / med["ref torch"]
        f_np = med["ref numpy"] / med["max numpy"]
        f_t = med["ref torch"] / med["max torch"]
        cells += [f"{med['max numpy']:.2f}", f"{med['max torch']:.2f}"]
        cells += [f"{r_np:.2f}x", f"{r_t:.2f}x", f"{f_np:.1f}x", f"{f_t:.1f}x"]
        lines.append("| " + " | ".join(cells) + " |")
        if batch == 64 and vocab >= 128256:
            target.append(
                f"{dtype} vocab {vocab}: numpy {r_np:.2f}x the sort ({f_np:.0f}x its max pass), torch {r_t:.2f}x "
                f"({f_t:.0f}x its max pass)"
            )
            ratios.append((r_np, r_t))
            if dtype == "float32" and vocab == 128256:
                sort_ms = med["sort top-p"]
    intro = (
        f"top_p = {TOP_P}, logits 3 * N(0, 1), medians of 3-7 interleaved runs in one process, torch 2 threads. "
        "The reference decides in float64 with an exact kept set; the sort-based filters work in float32. "
        f"numpy and torch reference kept sets identical on every input here: {agree}.\n\n"
    )
    verdict = (
        "\n\nTargets at batch 64, vocab >= 128256: the old one, reference >= 3x faster than the sort-based filter, "
        "and issue 14's, >= 10x faster and within 5x of one max pass over the same logits (measured in the same run "
        "as the floor; the fast float32 path that goal needs is not built yet): " + "; ".join(target) + ".\n"
    )
    if ratios:
        met_np = sum(r >= 3 for r, _ in ratios)
        met_t = sum(r >= 3 for _, r in ratios)
        load = os.getloadavg()[0]
        verdict += (
            f"\nMet in {met_t} of {len(ratios)} target cells by the torch reference (lowest "
            f"{min(r for _, r in ratios):.2f}x) and {met_np} of {len(ratios)} by the numpy reference (lowest "
            f"{min(r for r, _ in ratios):.2f}x); 1-minute load average {load:.1f} at the end of the run. "
            + MACHINES.replace("SORT_MS", f"{sort_ms:.0f}")
            + "\n"
        )
    return intro + "\n".join(lines) + verdict
