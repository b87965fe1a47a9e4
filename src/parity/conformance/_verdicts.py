"""Verdicts: functions that run the implementation on one :class:`Case` and say what, if anything, is wrong.

Each verdict returns ``None`` when the implementation's answer is correct, else a :class:`Failure` naming the
row, what a correct implementation does and what came back. Verdicts are looked up by name, so a shrunk case
encoded in a reproduction line is judged again by exactly the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from parity.conformance._adapters import FilterView, Implementation
from parity.conformance._cases import Case
from parity.conformance._oracle import row_bounds, tie_tolerance
from parity.sampling import SamplingParams

__all__ = ["VERDICTS", "Failure", "judge"]

#: Draws per row and seed count of the sampler support verdict.
SUPPORT_SEEDS = 4


@dataclass(frozen=True)
class Failure:
    """What went wrong in one case: the row, the expectation and what the implementation did."""

    row: int
    expected: str
    got: str


Verdict = Callable[[Implementation, Case, Sequence[str]], Failure | None]


def _raised(impl: Implementation, err: BaseException, expected: str, row: int = 0) -> Failure:
    return Failure(row, expected, f"raised {type(err).__name__}: {err}")


def _kept_list(kept: NDArray[np.bool_]) -> str:
    idx = np.flatnonzero(kept)
    shown = ", ".join(str(int(i)) for i in idx[:8])
    return f"{idx.size} token{'' if idx.size == 1 else 's'} [{shown}{', ...' if idx.size > 8 else ''}]"


def _filter(impl: Implementation, case: Case, params: SamplingParams | None = None) -> FilterView:
    return impl.run_filter(case.logits, params or case.params)


def oracle_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Every row obeys the order rule, keeps an argmax, never keeps -inf, and keeps a count in ``[lo, hi]``."""
    p = case.params
    try:
        view = _filter(impl, case)
    except Exception as err:
        return _raised(impl, err, "a filtered batch (the input is legal)")
    for r in range(case.batch):
        bounds = row_bounds(
            case.logits[r], temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p, order=order
        )
        problems = view.problems[r] + bounds.violations(view.kept[r])
        if problems:
            return Failure(r, bounds.describe_expected(), f"kept {_kept_list(view.kept[r])}: " + "; ".join(problems))
    return None


def argmax_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Every row keeps at least one token, and a token tied (within tolerance) with its maximum."""
    p = case.params
    try:
        view = _filter(impl, case)
    except Exception as err:
        return _raised(impl, err, "a filtered batch (the input is legal)")
    x = case.logits.astype(np.float64)
    z = x if p.temperature == 0.0 else x / p.temperature
    z = np.where(np.isfinite(z), z, -np.inf)
    z_max = z.max(axis=1, keepdims=True)
    slack = 0.0 if p.temperature == 0.0 else tie_tolerance(0.0, 0.0, 0.0) * (4.0 * np.abs(z_max) + 1.0)
    near_top = z >= z_max - slack
    kept = view.kept & np.isfinite(z)
    ok = (kept & near_top).any(axis=1)
    if p.top_k > 0 and p.top_p >= 1.0 and p.min_p <= 0.0 and p.temperature > 0.0:
        need = np.minimum(p.top_k, np.isfinite(z).sum(axis=1))
        ok &= kept.sum(axis=1) >= need
    if ok.all():
        return None
    r = int(np.flatnonzero(~ok)[0])
    top = int(np.argmax(z[r]))
    expected = f"keeps the argmax (index {top}, scaled logit {float(z[r, top]):.7g})"
    if p.top_k > 0 and p.top_p >= 1.0 and p.min_p <= 0.0 and p.temperature > 0.0:
        expected += f" and at least {min(p.top_k, int(np.isfinite(z[r]).sum()))} tokens (top_k={p.top_k})"
    return Failure(r, expected, f"kept {_kept_list(view.kept[r])}")


def batch_invariance_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Each row's kept set is the same alone, in the batch, and at another position (batch reversed)."""
    try:
        together = _filter(impl, case).kept
        flipped = impl.run_filter(case.logits[::-1].copy(), case.params).kept[::-1]
    except Exception as err:
        return _raised(impl, err, "a filtered batch (the input is legal)")
    for r in range(case.batch):
        try:
            alone = impl.run_filter(case.logits[r : r + 1], case.params).kept[0]
        except Exception as err:
            return _raised(impl, err, "a filtered row (the input is legal)", r)
        for label, other in (("in the batch", together[r]), ("at another position", flipped[r])):
            if not np.array_equal(alone, other):
                return Failure(
                    r,
                    f"the same kept set alone and {label} (alone: {_kept_list(alone)})",
                    f"{label}: {_kept_list(other)}",
                )
    return None


def isolation_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Row ``case.row`` is invalid (NaN or all -inf): either the call raises, or the bad row yields no valid-looking
    distribution and every other row is exactly what it is without the bad row."""
    bad = case.row
    try:
        view = _filter(impl, case)
    except Exception:
        return None  # rejecting invalid input is correct
    out_bad = view.raw[bad]
    if not np.isnan(out_bad).any() and view.kept[bad].any():
        what = "NaN" if np.isnan(case.logits[bad]).any() else "all -inf"
        return Failure(
            bad,
            f"an error, or no valid-looking distribution for a row that is {what}",
            f"a finite distribution over {_kept_list(view.kept[bad])}",
        )
    good = [r for r in range(case.batch) if r != bad]
    if not good:
        return None
    try:
        clean = impl.run_filter(case.logits[good], case.params).kept
    except Exception as err:
        return _raised(impl, err, "a filtered batch (the other rows are legal)", good[0])
    for i, r in enumerate(good):
        if not np.array_equal(clean[i], view.kept[r]):
            return Failure(
                r,
                f"the same kept set with and without the bad row {bad} ({_kept_list(clean[i])})",
                f"with the bad row in the batch: {_kept_list(view.kept[r])}",
            )
    return None


def _sweep_verdict(name: str, values: Sequence[float], grows: bool) -> Verdict:
    def verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
        x = case.logits.astype(np.float64)
        t = case.params.temperature
        z = x if t == 0.0 else x / t
        previous: tuple[float, NDArray[np.bool_]] | None = None
        for v in values:
            params = replace(case.params, **{name: type(getattr(case.params, name))(v)})
            try:
                kept = impl.run_filter(case.logits, params).kept
            except Exception as err:
                return _raised(impl, err, f"a filtered batch at {name}={v} (the input is legal)")
            if previous is not None:
                for r in range(case.batch):
                    a, b = (previous[1][r], kept[r]) if grows else (kept[r], previous[1][r])
                    small, large = (previous[0], v) if grows else (v, previous[0])
                    za, zb = z[r][a], z[r][b]
                    lowest_b = float(zb.min()) if zb.size else math.inf
                    lowest_a = float(za.min()) if za.size else math.inf
                    if a.sum() > b.sum() or (
                        za.size and zb.size and lowest_b > lowest_a + tie_tolerance(lowest_a, lowest_b, z[r].max())
                    ):
                        return Failure(
                            r,
                            f"the kept set at {name}={large} contains the one at {name}={small} ({_kept_list(a)})",
                            f"at {name}={large}: {_kept_list(b)}",
                        )
            previous = (v, kept)
        return None

    return verdict


def disabled_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Disabled settings are no-ops: top_k in {0, -1, V}, top_p=1, min_p=0 keep every finite token."""
    t = case.params.temperature
    variants = [
        SamplingParams(t, 0, 1.0, 0.0),
        SamplingParams(t, -1, 1.0, 0.0),
        SamplingParams(t, case.vocab, 1.0, 0.0),
    ]
    variants += [SamplingParams(t, 0, 1.0, -0.0)]
    finite = np.isfinite(case.logits)
    for params in variants:
        try:
            kept = impl.run_filter(case.logits, params).kept
        except Exception as err:
            return _raised(impl, err, f"a filtered batch at {params.describe()} (legal input)")
        rows = np.flatnonzero((kept != finite).any(axis=1))
        if rows.size:
            r = int(rows[0])
            return Failure(
                r,
                f"every finite token kept at {params.describe()} ({_kept_list(finite[r])})",
                _kept_list(kept[r]),
            )
    return None


def support_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Sampler: every drawn id lies in ``[0, V)`` and in the set some correct implementation may keep."""
    p = case.params
    allowed = np.stack(
        [
            row_bounds(
                case.logits[r], temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p, order=order
            ).may_keep()
            for r in range(case.batch)
        ]
    )
    for s in range(case.seed, case.seed + SUPPORT_SEEDS):
        try:
            ids = impl.call_sampler(case.logits, p, s)
        except Exception as err:
            return _raised(impl, err, "token ids (the input is legal)")
        for r, i in enumerate(ids.tolist()):
            if not 0 <= i < case.vocab or not allowed[r, i]:
                return Failure(
                    r,
                    f"a token from the kept set ({_kept_list(allowed[r])})",
                    f"token {i} with seed {s}" + ("" if 0 <= i < case.vocab else " (not a valid id)"),
                )
    return None


def sampler_greedy_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Sampler at temperature 0 (or a near-one-hot row at tiny temperature): draws the argmax."""
    try:
        ids = impl.call_sampler(case.logits, case.params, case.seed)
    except Exception as err:
        return _raised(impl, err, "token ids (the input is legal)")
    x = case.logits.astype(np.float64)
    for r, i in enumerate(ids.tolist()):
        best = np.flatnonzero(x[r] == x[r].max())
        if i not in best.tolist():
            return Failure(r, f"the argmax {best[:4].tolist()}", f"token {i}")
    return None


def sampler_isolation_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Sampler: with an invalid row in the batch, either it raises or every other row draws from its support."""
    bad = case.row
    try:
        ids = impl.call_sampler(case.logits, case.params, case.seed)
    except Exception:
        return None
    p = case.params
    for r, i in enumerate(ids.tolist()):
        if not 0 <= i < case.vocab:
            return Failure(r, "a valid token id", f"token {i}")
        if r == bad:
            continue
        allowed = row_bounds(
            case.logits[r], temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p, order=order
        ).may_keep()
        if not allowed[i]:
            return Failure(r, f"a token from row {r}'s kept set ({_kept_list(allowed)})", f"token {i}")
    return None


def determinism_verdict(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Sampler: the same seed gives the same draws."""
    try:
        first = impl.call_sampler(case.logits, case.params, case.seed)
        second = impl.call_sampler(case.logits, case.params, case.seed)
    except Exception as err:
        return _raised(impl, err, "token ids (the input is legal)")
    diff = np.flatnonzero(first != second)
    if diff.size:
        r = int(diff[0])
        return Failure(r, f"the same token twice with seed {case.seed}", f"{int(first[r])} then {int(second[r])}")
    return None


VERDICTS: dict[str, Verdict] = {
    "oracle": oracle_verdict,
    "argmax": argmax_verdict,
    "batch_invariance": batch_invariance_verdict,
    "isolation": isolation_verdict,
    "monotone_top_p": _sweep_verdict("top_p", (0.05, 0.2, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0), True),
    "monotone_top_k": _sweep_verdict("top_k", (1, 2, 3, 5, 10, 50, 100, 1000), True),
    "monotone_min_p": _sweep_verdict("min_p", (0.0, 0.001, 0.01, 0.05, 0.1, 0.3, 0.7, 1.0), False),
    "disabled": disabled_verdict,
    "support": support_verdict,
    "sampler_greedy": sampler_greedy_verdict,
    "sampler_isolation": sampler_isolation_verdict,
    "determinism": determinism_verdict,
}


def judge(impl: Implementation, case: Case, order: Sequence[str]) -> Failure | None:
    """Run the case's verdict."""
    return VERDICTS[case.verdict](impl, case, order)
