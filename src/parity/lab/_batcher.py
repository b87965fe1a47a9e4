"""The batcher: one worker thread owns the engines and runs every request in a continuous batch.

Requests arrive from the event loop with :meth:`MicroBatcher.submit` (a generation for one engine) or
:meth:`MicroBatcher.call` (any function run on the worker between decoding steps, e.g. scoring or loading an
engine). Each engine has one :class:`parity.lab.engine.ContinuousBatch`: a request joins it at the next decoding
step (at most ``max_batch`` running at once; more wait their turn in arrival order) and leaves it as soon as it is
done, so a short answer never waits for a long one. An idle worker waits up to ``max_wait_s`` after the first
request for others, so that requests arriving together are prefilled together. The queue is bounded: a full
queue raises :class:`QueueFullError` at once instead of letting latency grow without bound.

>>> import asyncio
>>> batcher = MicroBatcher(lambda key: None)
>>> asyncio.run(batcher.call(lambda: 6 * 7))
42
>>> batcher.close()
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from parity._exceptions import QueueFullError

__all__ = ["BatchStats", "MicroBatcher", "QueueFullError"]


@dataclass
class BatchStats:
    """Counters of the worker: decoding steps (``batches``) and requests finished; ``largest`` is the most
    requests running at once, ``sizes`` counts the steps by how many requests were running, ``joined`` counts
    requests that joined a batch already running (continuous batching at work), ``cancelled`` the requests
    dropped because their caller went away (a closed stream)."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    joined: int = 0
    cancelled: int = 0


@dataclass(eq=False)
class _Job:
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    key: Hashable | None = None
    request: Any = None
    on_token: Callable[[Any], None] | None = None
    fn: Callable[[], Any] | None = None


_STOP = object()


class MicroBatcher:
    """Runs engine work on one thread; ``engine_for(key)`` returns the engine for a key (called on the worker)."""

    def __init__(
        self,
        engine_for: Callable[[Hashable], Any],
        *,
        max_batch: int = 16,
        max_queue: int = 256,
        max_wait_s: float = 0.004,
    ) -> None:
        self.engine_for = engine_for
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._held: list[_Job] = []  # generations waiting for a free place in their engine's batch
        self._batches: dict[Hashable, tuple[Any, list[_Job]]] = {}  # key -> (ContinuousBatch, its jobs)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="parity-lab-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting (approximate; running generations excluded)."""
        return self._queue.qsize() + len(self._held)

    @property
    def running(self) -> int:
        """Generations holding a place in an engine's batch (approximate)."""
        return sum(len(jobs) for _, jobs in list(self._batches.values()))

    def _put(self, job: _Job) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"the server is saturated ({self.max_queue} requests queued); retry later") from None

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the worker thread and return its result (its exception is raised here)."""
        loop = asyncio.get_running_loop()
        job = _Job(future=loop.create_future(), loop=loop, fn=fn)
        self._put(job)
        return await job.future

    async def submit(self, key: Hashable, request: Any, on_token: Callable[[Any], None] | None = None) -> Any:
        """Generate ``request`` on the engine for ``key``; ``on_token(event)`` is called on the event loop."""
        loop = asyncio.get_running_loop()
        job = _Job(future=loop.create_future(), loop=loop, key=key, request=request, on_token=on_token)
        self._put(job)
        return await job.future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the generations it is running (waiting jobs are failed)."""
        if not self._thread.is_alive():
            return
        while True:
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                self._fail_waiting()
        self._thread.join(timeout)

    def _fail_waiting(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Job):
                _resolve(job, error=QueueFullError("the server is shutting down"))

    # -- worker ---------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not self.running and not self._held:
                if self._stopping:
                    return
                first = self._queue.get()  # idle: sleep until work arrives
                self._take(first)
                deadline = time.monotonic() + self.max_wait_s  # gather the requests that arrive together
                while not self._stopping and len(self._held) < self.max_batch:
                    remaining = deadline - time.monotonic()
                    try:
                        nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    self._take(nxt)
            else:
                # running: what arrived joins at this step; past max_batch waiting, the rest stays in the bounded
                # queue (so a saturated server answers 503 instead of queueing without limit)
                while not self._stopping and len(self._held) < self.max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    self._take(nxt)
            self._admit()
            for key in list(self._batches):
                self._step(key)

    def _take(self, job: Any) -> None:
        if job is _STOP:
            self._stopping = True
            for held in self._held:
                _resolve(held, error=QueueFullError("the server is shutting down"))
            self._held.clear()
            self._fail_waiting()
            return
        if self._stopping:
            _resolve(job, error=QueueFullError("the server is shutting down"))
        elif job.fn is not None:
            self._run_call(job)
        else:
            self._held.append(job)

    def _admit(self) -> None:
        """Move waiting generations into their engine's batch while it has room (arrival order per engine)."""
        waiting, self._held = self._held, []
        for job in waiting:
            entry = self._batches.get(job.key)
            if entry is None:
                try:
                    entry = self._batches[job.key] = (self.engine_for(job.key).batch(), [])
                except Exception as err:  # an engine that cannot load fails its requests, not the worker
                    _resolve(job, error=err)
                    continue
            batch, jobs = entry
            if len(jobs) >= self.max_batch:
                self._held.append(job)
                continue
            try:
                batch.add(job.request, on_token=self._dispatcher(job), tag=job)
            except Exception as err:  # a bad request fails alone
                _resolve(job, error=err)
                continue
            if batch.running:
                self.stats.joined += 1
            jobs.append(job)

    @staticmethod
    def _dispatcher(job: _Job) -> Callable[[Any], None] | None:
        on_token = job.on_token
        if on_token is None:
            return None

        def dispatch(event: Any) -> None:
            if not job.loop.is_closed():
                job.loop.call_soon_threadsafe(on_token, event)

        return dispatch

    def _step(self, key: Hashable) -> None:
        batch, jobs = self._batches[key]
        for job in [j for j in jobs if j.future.cancelled()]:  # the client went away: free its slot
            batch.cancel(job)
            jobs.remove(job)
            self.stats.cancelled += 1
        if not jobs:
            del self._batches[key]  # the engine's batch is idle
            return
        try:
            finished = batch.step()
        except Exception as err:  # every request of the batch gets the error; the batch is dropped
            del self._batches[key]
            for job in jobs:
                _resolve(job, error=err)
            return
        running = batch.running
        self.stats.batches += 1
        self.stats.largest = max(self.stats.largest, running + len(finished))
        size = running + len(finished)
        self.stats.sizes[size] = self.stats.sizes.get(size, 0) + 1
        for job, result in finished:
            jobs.remove(job)
            self.stats.requests += 1
            _resolve(job, result=result)

    def _run_call(self, job: _Job) -> None:
        assert job.fn is not None
        try:
            result = job.fn()
        except Exception as err:  # handed to the awaiting request, which turns it into an HTTP error
            _resolve(job, error=err)
            return
        _resolve(job, result=result)


def _resolve(job: _Job, *, result: Any = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    if not job.loop.is_closed():
        job.loop.call_soon_threadsafe(settle)
