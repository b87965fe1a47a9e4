"""The streams of the statistics bank, compiled: every stream's Bernoulli CUSUM as one row of two arrays of the bank
of its kind (``KINDS``: scores, rates, and invariants, whose baseline is fixed), updated by a numba-compiled kernel,
a run of records' updates in one call (:func:`feed`), each row counting the zeros it has seen since it last moved
(``pend``) and applying them as one chunk at its next non-zero or read, as the object bank's clocks do.

A score is rarely exactly 0, so every score signal updates every segment with at most ``score_max_order`` fixed
dimensions on every record (~29 CUSUM updates per record at the defaults), and every rate signal counts a zero on
each of the record's 64 segments; in the interpreter those cost most of the monitor's time
(``benchmarks/RESULTS.md``). Here a row holds exactly the state of a
:class:`~parity.stats.sequential.BernoulliCUSUM` (its counts, sums, checkpoints, pending zeros, the CUSUM bank and
each excursion's start and support), and the kernels run the same arithmetic in the same order (IEEE double, no
fast-math, the same libm ``log`` and ``sqrt``), so a stream reads exactly as the object would: the equivalence tests
compare the alerts and the streams' states of both banks on the replay. :class:`ScoreStream` is a row's view with
the sequential test's interface the monitor reads (``n``, ``mean``, ``statistic``, ``estimate()``, ...).

numba is in the ``monitor`` extra; without it (:data:`COMPILED` false) the statistics bank keeps one
``BernoulliCUSUM`` object per stream, with the same results, slower.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np

from parity._exceptions import InvalidInputError
from parity.stats.sequential import (
    BASELINE_Z,
    DEFAULT_RATIOS,
    MAX_RATE,
    MIN_RATE,
    QUIET_FOLD_EVERY,
    SUPPORT_LEVEL,
    SUSPICION_FRACTION,
    BernoulliCUSUM,
    ChangeEstimate,
)

__all__ = ["COMPILED", "KINDS", "PlanTable", "ScoreBank", "ScoreStream", "feed"]

_numba_njit: Any
try:  # numba is optional (the `monitor` extra): without it the bank keeps BernoulliCUSUM objects
    from numba import njit as _numba_njit
except ImportError:  # pragma: no cover - exercised where numba is not installed
    _numba_njit = None

#: Whether the score streams are compiled (numba is installed).
COMPILED = _numba_njit is not None


_F = TypeVar("_F", bound=Callable[..., Any])


def njit(**kwargs: Any) -> Callable[[_F], _F]:
    """numba's ``njit`` (cached on disk), or the plain function without numba (never called then: see
    :data:`COMPILED`)."""

    def wrap(fn: _F) -> _F:
        if _numba_njit is None:  # pragma: no cover
            return fn
        return cast(_F, _numba_njit(**kwargs)(fn))

    return wrap


# Row layout. Floats: s, base_s, ck_s, ck_next_s, p0, then G each of stats, start_times (NaN: none), start_s,
# late_times (NaN: none), jumps, decays. Integers: n, base_n, ck_n, ck_next_n, zeros, drift, fired (-1: none),
# then G each of starts, late.
_S, _BASE_S, _CK_S, _CKN_S, _P0, _FG = 0, 1, 2, 3, 4, 5
_N, _BASE_N, _CK_N, _CKN_N, _ZEROS, _DRIFT, _FIRED, _IG = 0, 1, 2, 3, 4, 5, 6, 7
# Constants: threshold, warmup, baseline_z, min_rate, max_rate, support level, suspicion fraction, quiet fold,
# prior weight, prior rate, fixed baseline (0: learned).
_C_THRESHOLD, _C_WARMUP, _C_Z, _C_MIN, _C_MAX, _C_SUPPORT, _C_SUSP, _C_QUIET, _C_PW, _C_PR, _C_FIXED = range(11)
#: The kinds of bank (``SignalValue.kind``), in the order :func:`feed` takes them.
KINDS = ("mean", "rate", "invariant")


@njit(cache=True)
def _set_rates(f: Any, row: int, p0: float, ratios: Any) -> None:
    g = ratios.shape[0]
    f[row, _P0] = p0
    for i in range(g):
        q = ratios[i] * p0
        half = (1.0 + p0) / 2
        if half < q:
            q = half
        f[row, _FG + 4 * g + i] = math.log(q / p0)
        f[row, _FG + 5 * g + i] = -math.log((1 - q) / (1 - p0))


@njit(cache=True)
def _set_baseline(f: Any, n_arr: Any, row: int, c: Any, ratios: Any) -> None:
    if c[_C_FIXED] > 0.0:
        _set_rates(f, row, c[_C_FIXED], ratios)
        return
    n = n_arr[row, _BASE_N] + c[_C_PW]
    s = f[row, _BASE_S] + c[_C_PR] * c[_C_PW]
    rate = (s + 1.0 + c[_C_Z] * math.sqrt(s + 1.0)) / (n + 1.0)
    if c[_C_MIN] > rate:
        rate = c[_C_MIN]
    if c[_C_MAX] < rate:
        rate = c[_C_MAX]
    _set_rates(f, row, rate, ratios)


@njit(cache=True)
def _reset(f: Any, n_arr: Any, row: int, c: Any, ratios: Any) -> None:
    g = ratios.shape[0]
    f[row, :] = 0.0
    n_arr[row, :] = 0
    n_arr[row, _CKN_N] = 1
    for i in range(g):
        f[row, _FG + g + i] = np.nan
        f[row, _FG + 3 * g + i] = np.nan
    n_arr[row, _FIRED] = -1
    _set_baseline(f, n_arr, row, c, ratios)


@njit(cache=True)
def _apply_zeros(f: Any, n_arr: Any, row: int, g: int) -> None:
    k = n_arr[row, _ZEROS]
    if k:
        for i in range(g):
            w = f[row, _FG + i] - k * f[row, _FG + 5 * g + i]
            f[row, _FG + i] = w if w > 0.0 else 0.0
        n_arr[row, _ZEROS] = 0


@njit(cache=True)
def _refresh_baseline(f: Any, n_arr: Any, row: int, c: Any, ratios: Any) -> None:
    if c[_C_FIXED] > 0.0:  # an invariant: the baseline never moves
        return
    g = ratios.shape[0]
    n = n_arr[row, _N]
    if n >= 2 * n_arr[row, _CKN_N]:
        n_arr[row, _CK_N] = n_arr[row, _CKN_N]
        f[row, _CK_S] = f[row, _CKN_S]
        n_arr[row, _CKN_N] = n
        f[row, _CKN_S] = f[row, _S]
    cut_n = n
    cut_s = f[row, _S]
    level = c[_C_SUSP] * c[_C_THRESHOLD]
    top = f[row, _FG]
    for i in range(1, g):
        if f[row, _FG + i] > top:
            top = f[row, _FG + i]
    if top >= level:
        for i in range(g):
            start = n_arr[row, _IG + i]
            if f[row, _FG + i] >= level and start < cut_n:
                cut_n = start
                cut_s = f[row, _FG + 2 * g + i]
    if cut_n < n_arr[row, _CK_N]:
        cut_n = n_arr[row, _CK_N]
        cut_s = f[row, _CK_S]
    base_n = n_arr[row, _BASE_N]
    step = base_n >> 6
    if step < 32:
        step = 32
    if cut_n < base_n or cut_n - base_n >= step:
        n_arr[row, _BASE_N] = cut_n
        f[row, _BASE_S] = cut_s
        _set_baseline(f, n_arr, row, c, ratios)


@njit(cache=True)
def _add_zeros(f: Any, n_arr: Any, row: int, k: int, c: Any, ratios: Any) -> None:
    if k <= 0:
        return
    if n_arr[row, _DRIFT]:
        _reset(f, n_arr, row, c, ratios)
    before = n_arr[row, _N]
    n_arr[row, _N] = before + k
    n_arr[row, _ZEROS] += k
    quiet = np.int64(c[_C_QUIET])
    if (before + k) // quiet != before // quiet:
        _apply_zeros(f, n_arr, row, ratios.shape[0])
        _refresh_baseline(f, n_arr, row, c, ratios)


@njit(cache=True)
def _update(f: Any, n_arr: Any, row: int, x: float, t: float, c: Any, ratios: Any) -> bool:
    """One non-zero observation ``x`` in (0, 1] (``BernoulliCUSUM.update``); True when it alarms."""
    g = ratios.shape[0]
    if n_arr[row, _DRIFT]:
        _reset(f, n_arr, row, c, ratios)
    if n_arr[row, _ZEROS]:
        _apply_zeros(f, n_arr, row, g)
    _refresh_baseline(f, n_arr, row, c, ratios)
    idx = n_arr[row, _N]
    n_arr[row, _N] = idx + 1
    f[row, _S] += x
    s = f[row, _S]
    support = c[_C_SUPPORT]
    for i in range(g):
        w = f[row, _FG + i]
        if w == 0.0:
            n_arr[row, _IG + i] = idx
            f[row, _FG + g + i] = t
            f[row, _FG + 2 * g + i] = s - x
        if w <= support:
            n_arr[row, _IG + g + i] = idx
            f[row, _FG + 3 * g + i] = t
        w += x * f[row, _FG + 4 * g + i] - (1.0 - x) * f[row, _FG + 5 * g + i]
        f[row, _FG + i] = w if w > 0.0 else 0.0
    if n_arr[row, _BASE_N] >= c[_C_WARMUP] or c[_C_FIXED] > 0.0:
        top = f[row, _FG]
        at = 0
        for i in range(1, g):
            if f[row, _FG + i] > top:
                top = f[row, _FG + i]
                at = i
        if top >= c[_C_THRESHOLD]:
            n_arr[row, _DRIFT] = 1
            n_arr[row, _FIRED] = at
            return True
    return False


@njit(cache=True)
def _top(f: Any, n_arr: Any, row: int, g: int) -> float:
    """The largest CUSUM of row ``row``, its zeros applied (``BernoulliCUSUM.statistic``)."""
    _apply_zeros(f, n_arr, row, g)
    top = f[row, _FG]
    for i in range(1, g):
        if f[row, _FG + i] > top:
            top = f[row, _FG + i]
    return float(top)


@njit(cache=True)
def _step(f: Any, n_arr: Any, pend: Any, row: int, x: float, t: float, c: Any, ratios: Any) -> bool:
    """One observation of row ``row``: a zero is one more pending zero; a non-zero first applies the row's pending
    zeros (``_add_zeros``, as one chunk, as the object bank's clocks would) then updates it. True when it alarms."""
    if x == 0.0:
        pend[row] += 1
        return False
    k = pend[row]
    pend[row] = 0
    _add_zeros(f, n_arr, row, k, c, ratios)
    return _update(f, n_arr, row, x, t, c, ratios)


@njit(cache=True)
def _feed(
    f0: Any,
    i0: Any,
    p0: Any,
    c0: Any,
    r0: Any,
    f1: Any,
    i1: Any,
    p1: Any,
    c1: Any,
    r1: Any,
    f2: Any,
    i2: Any,
    p2: Any,
    c2: Any,
    r2: Any,
    plan: Any,
    rec_plan: Any,
    xs: Any,
    offsets: Any,
    ts: Any,
    n_rec: int,
    out: Any,
) -> tuple[int, int]:
    """A run of records' updates, in record order, up to the first record that alarms. Record ``r`` follows plan
    ``p = rec_plan[r]`` (see :class:`PlanTable`): for each of its groups ``g`` (one signal: its value
    ``xs[offsets[r] + plan.pos[p, g]]``, its kind's bank ``f<kind>, i<kind>, p<kind>`` (pending zeros), constants
    and ratios), every row ``plan.rows[p, j]`` of the group (``j`` up to ``plan.end[p, g]``) takes the value (a zero
    as one more pending zero; see :func:`_step`). Returns ``(r, k)``: the first record with ``k`` > 0 alarms
    (``out[:k]``: the ``plan.order`` of each, the object path's order of its stream), or ``(n_rec, 0)``."""
    rows, order, gpos, gend, gkind, ngroups = plan
    for r in range(n_rec):
        p = rec_plan[r]
        t = ts[r]
        base = offsets[r]
        hits = 0
        start = 0
        for g in range(ngroups[p]):
            end = gend[p, g]
            x = xs[base + gpos[p, g]]
            kind = gkind[p, g]
            if x == 0.0:  # the usual case (a flag that did not fire, on each of the record's segments)
                if kind == 0:
                    for j in range(start, end):
                        p0[rows[p, j]] += 1
                elif kind == 1:
                    for j in range(start, end):
                        p1[rows[p, j]] += 1
                else:
                    for j in range(start, end):
                        p2[rows[p, j]] += 1
            else:
                for j in range(start, end):
                    row = rows[p, j]
                    if kind == 0:
                        hit = _step(f0, i0, p0, row, x, t, c0, r0)
                    elif kind == 1:
                        hit = _step(f1, i1, p1, row, x, t, c1, r1)
                    else:
                        hit = _step(f2, i2, p2, row, x, t, c2, r2)
                    if hit:
                        out[hits] = order[p, j]
                        hits += 1
            start = end
        if hits:
            return r, hits
    return n_rec, 0


class PlanTable:
    """What each plan (a record's finest segment and signals) updates, as arrays the kernel reads: row ``p`` is plan
    ``p``'s updates grouped by signal, in the order of the record's signals (``pos[p, g]``: the signal's position
    among the record's values; ``kind[p, g]``: its bank; ``end[p, g]``: where its group ends in ``rows[p]``, the bank
    rows), and ``order[p, j]``: each update's place in the object path's order (segment, then signal)."""

    def __init__(self) -> None:
        self.count = 0
        self.rows = np.zeros((16, 8), dtype=np.int64)
        self.order = np.zeros((16, 8), dtype=np.int64)
        self.pos = np.zeros((16, 4), dtype=np.int64)
        self.end = np.zeros((16, 4), dtype=np.int64)
        self.kind = np.zeros((16, 4), dtype=np.int64)
        self.groups = np.zeros(16, dtype=np.int64)
        #: the alarms of the record that alarmed in the last :func:`feed`
        self.out = np.zeros(8, dtype=np.int64)

    def add(self, updates: list[tuple[int, int, int, int]]) -> int:
        """A new plan of ``updates`` ``(position of the signal, kind, bank row, order)`` grouped by signal; its
        index."""
        index = self.count
        self.count += 1
        groups: list[tuple[int, int, int]] = []  # (pos, kind, end)
        for j, (pos, kind, _, _) in enumerate(updates):
            if groups and groups[-1][0] == pos:
                groups[-1] = (pos, kind, j + 1)
            else:
                groups.append((pos, kind, j + 1))
        size = self.groups.shape[0] if index < self.groups.shape[0] else 2 * self.groups.shape[0]
        width, ng = max(self.rows.shape[1], len(updates)), max(self.pos.shape[1], len(groups))
        if (size, width, ng) != (self.groups.shape[0], self.rows.shape[1], self.pos.shape[1]):
            self.rows, self.order = self._grown(self.rows, size, width), self._grown(self.order, size, width)
            self.pos, self.end = self._grown(self.pos, size, ng), self._grown(self.end, size, ng)
            self.kind = self._grown(self.kind, size, ng)
            groups_all = np.zeros(size, dtype=np.int64)
            groups_all[: self.groups.shape[0]] = self.groups
            self.groups = groups_all
            self.out = np.zeros(width, dtype=np.int64)
        n, ng = len(updates), len(groups)
        if n:
            self.rows[index, :n] = [u[2] for u in updates]
            self.order[index, :n] = [u[3] for u in updates]
        if ng:
            self.pos[index, :ng] = [g[0] for g in groups]
            self.kind[index, :ng] = [g[1] for g in groups]
            self.end[index, :ng] = [g[2] for g in groups]
        self.groups[index] = ng
        return index

    @staticmethod
    def _grown(a: Any, size: int, width: int) -> Any:
        table = np.zeros((size, width), dtype=np.int64)
        table[: a.shape[0], : a.shape[1]] = a
        return table


def feed(
    banks: tuple[ScoreBank, ScoreBank, ScoreBank],
    plan: PlanTable,
    rec_plan: Any,
    xs: Any,
    offsets: Any,
    ts: Any,
    n_rec: int,
) -> tuple[int, int]:
    """Run ``n_rec`` records' updates on the banks of each kind (``KINDS`` order; see :func:`_feed`) up to the first
    record that alarms; return its index and its number of alarms (``plan.out``), or ``(n_rec, 0)``."""
    m, r, v = banks
    at, hits = _feed(
        m.f,
        m.i,
        m.pend,
        m._c,
        m._ratios,
        r.f,
        r.i,
        r.pend,
        r._c,
        r._ratios,
        v.f,
        v.i,
        v.pend,
        v._c,
        v._ratios,
        (plan.rows, plan.order, plan.pos, plan.end, plan.kind, plan.groups),
        rec_plan,
        xs,
        offsets,
        ts,
        n_rec,
        plan.out,
    )
    return int(at), int(hits)


class ScoreBank:
    """Every stream of one kind of one statistics bank: one row each (see the module docstring). ``baseline``
    fixes the pre-change rate instead of learning it (the ``"invariant"`` streams, as ``BernoulliCUSUM(baseline=...)``);
    ``kind`` is the bank's index in ``KINDS`` (where :func:`feed` finds its rows)."""

    def __init__(
        self,
        *,
        threshold: float,
        warmup: int,
        ratios: tuple[float, ...] = DEFAULT_RATIOS,
        baseline: float | None = None,
        kind: int = 0,
    ) -> None:
        if baseline is not None and not MIN_RATE <= baseline <= MAX_RATE:
            raise InvalidInputError("baseline", f"must be in [{MIN_RATE}, {MAX_RATE}] (or None to learn it)", baseline)
        self.threshold = threshold
        self.warmup = warmup
        self.baseline = baseline
        self.kind = kind
        self.ratios = tuple(float(r) for r in ratios)
        self._ratios = np.array(self.ratios, dtype=np.float64)
        self._c = self._constants()
        g = len(self.ratios)
        self.f = np.zeros((16, _FG + 6 * g), dtype=np.float64)
        self.i = np.zeros((16, _IG + 2 * g), dtype=np.int64)
        #: zeros each row has seen since it last moved (applied, as one chunk, at its next non-zero or read)
        self.pend = np.zeros(16, dtype=np.int64)
        self.rows = 0

    def _constants(self) -> Any:
        return np.array(
            [
                self.threshold,
                self.warmup,
                BASELINE_Z,
                MIN_RATE,
                MAX_RATE,
                SUPPORT_LEVEL,
                SUSPICION_FRACTION,
                QUIET_FOLD_EVERY,
                1.0,  # prior weight (BernoulliCUSUM's default)
                0.0,  # prior rate
                0.0 if self.baseline is None else self.baseline,
            ],
            dtype=np.float64,
        )

    def _grow(self) -> int:
        row = self.rows
        if row == self.f.shape[0]:
            self.f = np.concatenate([self.f, np.zeros_like(self.f)])
            self.i = np.concatenate([self.i, np.zeros_like(self.i)])
            self.pend = np.concatenate([self.pend, np.zeros_like(self.pend)])
        self.rows = row + 1
        return row

    def _fresh_row(self) -> tuple[Any, Any]:
        """A row's initial state (``_reset``: the same for every row of the bank), computed here with the same
        arithmetic as the kernel, so that creating streams loads no compiled code (a process's first load of a kernel
        takes a good part of a second; the worker thread that pays it also holds the write-ahead log's next sync)."""
        g = len(self.ratios)
        f = np.zeros(_FG + 6 * g, dtype=np.float64)
        n = np.zeros(_IG + 2 * g, dtype=np.int64)
        n[_CKN_N] = 1
        n[_FIRED] = -1
        f[_FG + g : _FG + 2 * g] = np.nan
        f[_FG + 3 * g : _FG + 4 * g] = np.nan
        if self.baseline is not None:
            p0 = float(self.baseline)
        else:
            base_n, prior_weight, prior_rate = 0.0, 1.0, 0.0
            count = base_n + prior_weight
            ones = 0.0 + prior_rate * prior_weight
            rate = (ones + 1.0 + BASELINE_Z * math.sqrt(ones + 1.0)) / (count + 1.0)
            p0 = min(max(rate, MIN_RATE), MAX_RATE)
        f[_P0] = p0
        for i, ratio in enumerate(self.ratios):
            q = ratio * p0
            half = (1.0 + p0) / 2
            if half < q:
                q = half
            f[_FG + 4 * g + i] = math.log(q / p0)
            f[_FG + 5 * g + i] = -math.log((1 - q) / (1 - p0))
        return f, n

    def new(self) -> ScoreStream:
        """A fresh stream (a new row, in its initial state)."""
        row = self._grow()
        fresh = self.__dict__.get("_fresh")
        if fresh is None:
            fresh = self._fresh = self._fresh_row()
        self.f[row] = fresh[0]
        self.i[row] = fresh[1]
        self.pend[row] = 0
        return ScoreStream(self, row)

    def adopt(self, det: BernoulliCUSUM, pending: int = 0) -> ScoreStream:
        """A new row holding the state of ``det`` (a stream of a checkpoint from before this bank kept its kind),
        with ``pending`` zeros it has not seen yet."""
        if det.ratios != self.ratios or det.threshold != self.threshold or det.fixed_baseline != self.baseline:
            raise InvalidInputError(
                "checkpoint",
                "holds a stream whose test differs from this bank's",
                detail="was it made with another config?",
            )
        row = self._grow()
        g = len(self.ratios)
        f, n = self.f[row], self.i[row]
        f[:] = 0.0
        n[:] = 0
        f[_S], f[_BASE_S], f[_CK_S], f[_CKN_S], f[_P0] = det._s, det._base_s, det._ck[1], det._ck_next[1], det._p0
        for i in range(g):
            start_time, late_time = det._start_times[i], det._late_times[i]
            f[_FG + i] = det._stats[i]
            f[_FG + g + i] = math.nan if start_time is None else start_time
            f[_FG + 2 * g + i] = det._start_s[i]
            f[_FG + 3 * g + i] = math.nan if late_time is None else late_time
            f[_FG + 4 * g + i] = det._jumps[i]
            f[_FG + 5 * g + i] = det._decays[i]
            n[_IG + i] = det._starts[i]
            n[_IG + g + i] = det._late[i]
        n[_N], n[_BASE_N], n[_CK_N], n[_CKN_N] = det._n, det._base_n, det._ck[0], det._ck_next[0]
        n[_ZEROS], n[_DRIFT], n[_FIRED] = det._zeros, det._drift, -1 if det._fired is None else det._fired
        self.pend[row] = pending
        return ScoreStream(self, row)

    def flush(self, row: int) -> None:
        """Apply row ``row``'s pending zeros (before it is read, or fed from outside :func:`feed`)."""
        k = int(self.pend.item(row))
        if k:
            self.pend[row] = 0
            _add_zeros(self.f, self.i, row, k, self._c, self._ratios)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_c"]
        state.pop("_fresh", None)
        state["f"] = self.f[: self.rows].copy()
        state["i"] = self.i[: self.rows].copy()
        state["pend"] = self.pend[: self.rows].copy()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.pop("buf_out", None)  # a checkpoint from before the banks of every kind: rebuilt below
        self.__dict__.update(state)
        self.__dict__.setdefault("baseline", None)
        self.__dict__.setdefault("kind", 0)
        self._c = self._constants()
        if "pend" not in state:  # a checkpoint from before the pending zeros moved here (see SegmentStatistics)
            self.pend = np.zeros(self.f.shape[0], dtype=np.int64)
        if self.f.shape[0] == 0:  # an empty bank: room for the first rows
            self.f = np.zeros((16, self.f.shape[1]), dtype=np.float64)
            self.i = np.zeros((16, self.i.shape[1]), dtype=np.int64)
            self.pend = np.zeros(16, dtype=np.int64)


class ScoreStream:
    """One score stream of a :class:`ScoreBank`, with the interface of ``BernoulliCUSUM`` the monitor reads."""

    __slots__ = ("bank", "row")

    def __init__(self, bank: ScoreBank, row: int) -> None:
        self.bank = bank
        self.row = row

    def __getstate__(self) -> tuple[ScoreBank, int]:
        return self.bank, self.row

    def __setstate__(self, state: tuple[ScoreBank, int]) -> None:
        self.bank, self.row = state

    @property
    def fixed_baseline(self) -> float | None:
        """The fixed pre-change rate of an invariant stream, ``None`` when the baseline is learned."""
        return self.bank.baseline

    @property
    def _g(self) -> int:
        return len(self.bank.ratios)

    @property
    def threshold(self) -> float:
        return self.bank.threshold

    @property
    def warmup(self) -> int:
        return self.bank.warmup

    @property
    def ratios(self) -> tuple[float, ...]:
        return self.bank.ratios

    @property
    def n(self) -> int:
        """Observations since the last reset."""
        return int(self.bank.i.item(self.row, _N))

    @property
    def baseline(self) -> float:
        """The baseline rate used in the likelihood ratios."""
        return float(self.bank.f.item(self.row, _P0))

    @property
    def mean(self) -> float:
        """The mean of every observation since the last reset (0 before any)."""
        n = self.n
        return float(self.bank.f.item(self.row, _S)) / n if n else 0.0

    @property
    def drift_detected(self) -> bool:
        """Whether the last update raised an alarm."""
        return bool(self.bank.i.item(self.row, _DRIFT))

    def _stats(self) -> list[float]:
        bank = self.bank
        _apply_zeros(bank.f, bank.i, self.row, self._g)
        return [float(v) for v in bank.f[self.row, _FG : _FG + self._g]]

    @property
    def statistic(self) -> float:
        """The largest CUSUM in the bank (brought up to date)."""
        bank = self.bank
        return float(_top(bank.f, bank.i, self.row, len(bank.ratios)))

    def add_zeros(self, k: int) -> None:
        """The same as ``k`` zero observations (``BernoulliCUSUM.add_zeros``)."""
        bank = self.bank
        _add_zeros(bank.f, bank.i, self.row, int(k), bank._c, bank._ratios)

    def update(self, x: float, t: float | None = None) -> None:
        """One observation in [0, 1] (``BernoulliCUSUM.update``; a zero is :meth:`add_zeros` of 1)."""
        if not x:
            self.add_zeros(1)
            return
        x = float(x)
        if not 0.0 <= x <= 1.0:
            raise InvalidInputError("x", "must be in [0, 1]", x)
        bank = self.bank
        _update(bank.f, bank.i, self.row, x, math.nan if t is None else float(t), bank._c, bank._ratios)

    def estimate(self) -> ChangeEstimate | None:
        """The change estimate of the alarming CUSUM (or of the largest while none has alarmed)."""
        stats = self._stats()
        bank, row, g = self.bank, self.row, self._g
        fired = int(bank.i[row, _FIRED])
        i = fired if fired >= 0 else max(range(g), key=stats.__getitem__)
        if stats[i] <= 0.0:
            return None
        start = int(bank.i[row, _IG + i])
        n_after = self.n - start
        ones = float(bank.f[row, _S]) - float(bank.f[row, _FG + 2 * g + i])
        start_time = float(bank.f[row, _FG + g + i])
        late_time = float(bank.f[row, _FG + 3 * g + i])
        return ChangeEstimate(
            change_point=start,
            change_time=None if math.isnan(start_time) else start_time,
            n_after=n_after,
            baseline=float(bank.f[row, _P0]),
            current=ones / n_after,
            statistic=stats[i],
            latest_change_point=int(bank.i[row, _IG + g + i]),
            latest_change_time=None if math.isnan(late_time) else late_time,
        )
