"""Exact reference kept sets (numpy and torch) vs a sort-based top-p, with one ``max`` pass as the floor.

Run: ``python -m benchmarks sampling``. Batch 1 and 64, vocab 32000, 128256 and 262144, float32 and bfloat16
input, top_p = 0.9, logits ``3 * N(0, 1)`` (seeded: a dense, high-entropy row, the hard case for an exact
top-p: about 5,000 tokens per row lie above the boundary and every token carries mass the decision needs).
Everything runs on one thread (``torch.set_num_threads(1)``; numpy's element-wise loops are single-threaded),
on the same input in the same process, interleaved round-robin so machine noise hits all alike; the table
gives medians of repeated runs.

* ``numpy mask`` / ``torch mask``: :func:`parity.sampling.kept_mask` / :func:`parity.sampling.torch.kept_mask_torch`
  (the exact kept set: float32 thresholds from the compiled top-p kernel, :mod:`parity.sampling._kernel`, float64
  only near the boundary; torch CPU tensors go through the same kernel);
* ``numpy filter``: :func:`parity.sampling.filter_logits` (the same set applied: float64 ``logits / T``, removed
  tokens ``-inf``; the float64 output alone is twice the input's bytes);
* ``float64 path``: the same kept set computed by the float64 path this round replaced (``kept_mask`` on the
  float64 upcast);
* ``sort top-p``: the usual sort-based mask (torch sort + softmax + cumsum in float32, as transformers'
  ``TopPLogitsWarper`` does it; not exact);
* ``k50``: ``kept_mask`` with top-k 50 before top-p (vLLM-style settings: the float32 path then needs no exp pass)
  and the float64 path on the same settings;
* ``max``: one ``max`` over the same logits (numpy and torch), the physical floor any exact top-p must pay.

At batch 64 x 128256 float32 a breakdown is timed in the same run (the max pass, numpy's float32 ``exp`` pass, the
kernel's own float32 ``exp`` pass, the top-p kernel alone, the final mask), and the kernel's float32 ``exp`` is
checked against float64 ``exp`` on every float32 in ``(-87, 0]`` (the error bound the kernel's guard assumes).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numba
import numpy as np
import torch

from benchmarks._results import write_section
from parity.sampling import filter_logits, kept_mask
from parity.sampling._fastpath import EXP32_ULPS, topp_thresholds_f32
from parity.sampling._kernel import COMPILED, exp32_array
from parity.sampling._kernel_njit import exp32
from parity.sampling.torch import kept_mask_torch

TOP_P = 0.9
BATCHES = (1, 64)
VOCABS = (32000, 128256, 262144)
#: Sessions sharing this machine's 2 cores while the figures were taken (from the coordinator's brief).
SHARED_BY = 4


@numba.njit(cache=True)
def _exp32_max_ulps(lo_bits: int, hi_bits: int) -> tuple[float, int]:
    """Largest error of the kernel's ``exp32`` in float32 ulps of the true value, over the float32 values with bit
    patterns ``lo_bits..hi_bits`` (negative floats: the sign bit set), and how many were checked."""
    worst = 0.0
    n = 0
    bits = np.empty(1, dtype=np.uint32)
    for b in range(lo_bits, hi_bits + 1):
        bits[0] = b
        d = bits.view(np.float32)[0]
        ref = math.exp(np.float64(d))
        _, e = math.frexp(np.float64(np.float32(ref)))
        err = abs(np.float64(exp32(d)) - ref) / 2.0 ** (e - 24)
        worst = max(worst, err)
        n += 1
    return worst, n


def _exp32_check() -> tuple[float, int]:
    """The kernel's float32 exp against float64 exp on every float32 in (-87, 0] (about 1.12e9 values)."""
    hi = int(np.array([-87.0], dtype=np.float32).view(np.uint32)[0]) - 1  # the float32 just above -87
    return _exp32_max_ulps(0x80000000, hi)


def _breakdown() -> dict[str, float]:
    """CPU ms of the pieces of the float32 path at batch 64 x 128256 (same data as the table's cell)."""
    x = (np.random.default_rng(20250917).standard_normal((64, 128256)) * 3.0).astype(np.float32)
    m = x.max(axis=1)
    tx = np.full(64, -np.inf, dtype=np.float32)
    flat = (x - m[:, None]).ravel()
    fns: dict[str, Callable[[], Any]] = {
        "max pass": lambda: x.max(axis=1),
        "numpy float32 exp pass": lambda: np.exp(flat),
        "kernel float32 exp pass": lambda: exp32_array(flat),
        "top-p kernel": lambda: topp_thresholds_f32(x, m, tx, TOP_P, 1.0),
        "final mask": lambda: x >= m[:, None],
    }
    return _time(fns, 7)[0]


def sort_top_p(scores: torch.Tensor, top_p: float = TOP_P) -> torch.Tensor:
    """Sort-based top-p in the style of transformers' TopPLogitsWarper (float32; full sort of the vocabulary)."""
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cum <= (1 - top_p)
    remove[..., -1:] = False  # keep at least one token
    remove = remove.scatter(1, sorted_idx, remove)
    return scores.masked_fill(remove, -float("inf"))


def _repeats(batch: int, vocab: int) -> int:
    return 9 if batch * vocab <= 300_000 else 5


def _time(fns: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median (CPU ms, wall ms) of each function: CPU time of this thread (everything here runs on it, one
    thread) is what the code costs; wall time adds the waits of a machine shared by other sessions."""
    for fn in fns.values():  # warm-up
        fn()
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    wall: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            fn()
            cpu[name].append(time.thread_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) * 1000.0 for name, v in cpu.items()}
    return med, {name: statistics.median(v) * 1000.0 for name, v in wall.items()}


def main() -> None:
    torch.set_num_threads(1)
    assert COMPILED, "the sampling benchmark measures the compiled kernel: install numba"
    c0 = time.thread_time()
    exp_ulps, exp_n = _exp32_check()
    exp_s = time.thread_time() - c0
    print(f"exp32: max {exp_ulps:.3f} ulp over {exp_n} float32 values ({exp_s:.0f} s)", flush=True)
    parts = _breakdown()
    print("breakdown", {k: round(v, 2) for k, v in parts.items()}, flush=True)
    rng = np.random.default_rng(20250917)
    rows = []
    agree = True
    load0 = os.getloadavg()[0]
    t_start = time.strftime("%H:%M", time.gmtime())
    for dtype in ("float32", "bfloat16"):
        for vocab in VOCABS:
            for batch in BATCHES:
                x32 = (rng.standard_normal((batch, vocab)) * 3.0).astype(np.float32)
                if dtype == "bfloat16":
                    x_np: Any = x32.astype(ml_dtypes.bfloat16)
                    x_t = torch.from_numpy(x32).to(torch.bfloat16)
                else:
                    x_np, x_t = x32, torch.from_numpy(x32)
                x64 = np.asarray(x_np, dtype=np.float64)
                fns: dict[str, Callable[[], Any]] = {
                    "numpy mask": lambda x_np=x_np: kept_mask(x_np, top_p=TOP_P),
                    "torch mask": lambda x_t=x_t: kept_mask_torch(x_t, top_p=TOP_P),
                    "numpy filter": lambda x_np=x_np: filter_logits(x_np, top_p=TOP_P),
                    "float64 path": lambda x64=x64: kept_mask(x64, top_p=TOP_P),
                    "k50 numpy mask": lambda x_np=x_np: kept_mask(x_np, top_k=50, top_p=TOP_P),
                    "k50 float64 path": lambda x64=x64: kept_mask(x64, top_k=50, top_p=TOP_P),
                    "sort top-p": lambda x_t=x_t: sort_top_p(x_t.float()),
                    "max numpy": lambda x_np=x_np: x_np.max(axis=1),
                    "max torch": lambda x_t=x_t: x_t.amax(dim=1),
                }
                ref = kept_mask(x64, top_p=TOP_P)
                agree &= bool(np.array_equal(ref, kept_mask(x_np, top_p=TOP_P)))
                agree &= bool(np.array_equal(ref, kept_mask_torch(x_t, top_p=TOP_P).numpy()))
                med, wall = _time(fns, _repeats(batch, vocab))
                rows.append((dtype, batch, vocab, med, wall))
                print(dtype, batch, vocab, {k: round(v, 2) for k, v in med.items()}, flush=True)
    load1 = os.getloadavg()[0]
    span = f"{t_start}-{time.strftime('%H:%M', time.gmtime())} UTC"
    text = _table(rows, agree, (load0, load1), span)
    pieces = ", ".join(f"{k} {v:.1f} ms" for k, v in parts.items())
    text += (
        f"\nWhere the float32 path's time goes at batch 64 x 128256 float32 (CPU ms, medians of 7, same process): "
        f"{pieces}. The kernel's float32 exp (Cephes expf, vectorised) against float64 exp on all {exp_n:,} float32 "
        f"values in (-87, 0]: largest error {exp_ulps:.3f} ulp (the guard assumes at most {EXP32_ULPS}).\n"
    )
    write_section("sampling", "Exact reference sampler vs sort-based top-p", text)


def _table(
    rows: list[tuple[str, int, int, dict[str, float], dict[str, float]]],
    agree: bool,
    load: tuple[float, float],
    span: str,
) -> str:
    head = (
        "| input | batch | vocab | numpy mask ms | torch mask ms | numpy filter ms | float64 path ms | sort top-p ms "
        "| max numpy ms | max torch ms | sort / numpy mask | sort / torch mask | numpy mask / max | "
        "torch mask / max | k50 numpy mask ms | k50 float64 path ms | k50 mask / max |"
    )
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    lines = [head, sep]
    verdicts = []
    met_sort = met_floor = cells = 0
    walls = []
    for dtype, batch, vocab, med, wall in rows:
        r_np = med["sort top-p"] / med["numpy mask"]
        r_t = med["sort top-p"] / med["torch mask"]
        # the floor: the faster of the two max passes over the same logits, in the same run
        floor = min(med["max numpy"], med["max torch"])
        f_np = med["numpy mask"] / floor
        f_t = med["torch mask"] / floor
        cells_txt = [dtype, str(batch), str(vocab)]
        cells_txt += [f"{med[k]:.1f}" for k in ("numpy mask", "torch mask", "numpy filter", "float64 path")]
        cells_txt += [f"{med['sort top-p']:.0f}", f"{med['max numpy']:.2f}", f"{med['max torch']:.2f}"]
        cells_txt += [f"{r_np:.1f}x", f"{r_t:.1f}x", f"{f_np:.1f}x", f"{f_t:.1f}x"]
        cells_txt += [f"{med['k50 numpy mask']:.1f}", f"{med['k50 float64 path']:.1f}"]
        cells_txt += [f"{med['k50 numpy mask'] / floor:.1f}x"]
        lines.append("| " + " | ".join(cells_txt) + " |")
        if batch == 64 and vocab >= 128256:
            cells += 2
            met_sort += (r_np >= 10) + (r_t >= 10)
            met_floor += (f_np <= 5) + (f_t <= 5)
            walls.append(
                f"{dtype} {vocab}: numpy mask {wall['numpy mask']:.0f} ms, torch mask {wall['torch mask']:.0f} ms, "
                f"sort {wall['sort top-p']:.0f} ms, max {min(wall['max numpy'], wall['max torch']):.1f} ms"
            )
            verdicts.append(
                f"{dtype} vocab {vocab}: numpy {r_np:.1f}x the sort and {f_np:.0f}x the max pass, torch {r_t:.1f}x "
                f"and {f_t:.0f}x (float64 path {med['float64 path']:.0f} ms, now {med['numpy mask']:.0f} ms)"
            )
    intro = (
        f"top_p = {TOP_P}, logits 3 * N(0, 1), one thread everywhere (torch.set_num_threads(1)), medians of 5-9 "
        f"interleaved runs in one process ({span}); times are CPU time of the one thread doing the work (wall "
        "times, inflated by waiting for a core, are listed below the table). The reference decides exactly (the "
        "float64 reference's kept "
        "sets); the sort-based filter works in float32 and is not exact. Kept sets of the float32 path (numpy and "
        f"torch) identical to the float64 path on every input here: {agree}. **Measured under load:** the "
        f"machine's 2 cores were shared by {SHARED_BY} sessions (1-minute load average {load[0]:.1f} at the start, "
        f"{load[1]:.1f} at the end), so every absolute time is inflated (caches shared with other jobs) and "
        "noisy; the ratios come from "
        "interleaved runs of the same process and are the figures to read.\n\n"
    )
    verdict = (
        f"\n\nIssue 14's targets at batch 64, vocab >= 128256 (both backends, float32 and bfloat16): >= 10x the "
        f"sort-based top-p, met in {met_sort} of {cells} cells; within 5x of one max pass, met in {met_floor} of "
        f"{cells}. " + "; ".join(verdicts) + ".\n\n"
        "Why the floor is out of reach on these rows: every token of a 3 * N(0, 1) row carries mass the exact "
        "decision needs (none lies more than ~30 nats below the maximum, so none can be bounded away by counting), "
        "so an exact top-p evaluates one exp per token, and numpy's float32 exp alone costs 5-13x a max pass. The "
        "compiled kernel (parity.sampling._kernel: numba, one thread, rows one after another) uses its own "
        "vectorised float32 exp instead (3-4x cheaper than numpy's, see the breakdown) and does, per row: a "
        "1,024-value strided subsample placing four candidate cuts; one pass in chunks of 2,048 values computing "
        "the float32 weights, their float64 sum and that of w|d| (for the error bound), and a branch-free copy of "
        "the values above the lowest cut; the copied head's float32 weights recomputed bit for bit and summed above "
        "each cut, so each cut's tail is the total minus its head; then float64 weights (the reference's own "
        "computation) only for the survivors above the highest cut whose tail is at most 3/4 of 1 - top_p, a "
        "histogram of their log-probabilities, and a sort of the boundary bucket only. Beyond the max that is two "
        "passes over every value (the exp with its sums, the copy), work on the ~20,000 copied values per row "
        "(their float32 and ~11,000 float64 exps), and the final mask; the float64 sums cannot be replaced by "
        "float32 accumulation without widening the error "
        "bound until rows defer to the float64 path. Rows within the bound, or whose head does not reach the "
        "target, still go to the float64 path, so the kept set is always the reference's. torch on the CPU shares "
        "the kernel (zero-copy for float32, bfloat16 through a float32 copy), so its column differs only by that "
        "copy and the mask; on an accelerator the torch backend keeps its float64 device passes (measured on an "
        "H200 in the GPU section).\n"
    )
    wall_txt = "\nWall-clock medians at batch 64 in the same run: " + "; ".join(walls) + ".\n"
    return intro + "\n".join(lines) + verdict + wall_txt
