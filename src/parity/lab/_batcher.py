"""The micro-batcher: one worker thread owns the engines and groups concurrent requests into batches.

Requests arrive from the event loop with :meth:`MicroBatcher.submit` (a generation for one engine) or
:meth:`MicroBatcher.call` (any function run on the worker, e.g. scoring or loading an engine). The worker takes
the first waiting job, waits up to ``max_wait_s`` for more, then runs every waiting generation for the same
engine as one ``engine.generate`` batch (at most ``max_batch`` requests). The queue is bounded: a full queue
raises :class:`QueueFullError` at once instead of letting latency grow without bound.

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
    """Counters of the worker: batches run, requests generated, and the largest batch seen."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


@dataclass
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
        self._held: list[_Job] = []
        self._thread = threading.Thread(target=self._run, name="parity-lab-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting (approximate)."""
        return self._queue.qsize() + len(self._held)

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
        """Stop the worker after the jobs it is running (waiting jobs are failed)."""
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
            job = self._held.pop(0) if self._held else self._queue.get()
            if job is _STOP:
                for held in self._held:
                    _resolve(held, error=QueueFullError("the server is shutting down"))
                return
            if job.fn is not None:
                self._run_call(job)
                continue
            batch = [job]
            for held in [h for h in self._held if h is not _STOP and h.fn is None and h.key == job.key]:
                if len(batch) < self.max_batch:
                    self._held.remove(held)
                    batch.append(held)
            deadline = time.monotonic() + self.max_wait_s
            stop_seen = False
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_seen = True
                    break
                if nxt.fn is None and nxt.key == job.key:
                    batch.append(nxt)
                else:
                    self._held.append(nxt)
            self._run_batch(batch)
            if stop_seen:
                self._held.append(_STOP)  # type: ignore[arg-type]

    def _run_call(self, job: _Job) -> None:
        assert job.fn is not None
        try:
            result = job.fn()
        except Exception as err:  # handed to the awaiting request, which turns it into an HTTP error
            _resolve(job, error=err)
            return
        _resolve(job, result=result)

    def _run_batch(self, batch: list[_Job]) -> None:
        def dispatch(index: int, event: Any) -> None:
            job = batch[index]
            if job.on_token is not None and not job.loop.is_closed():
                job.loop.call_soon_threadsafe(job.on_token, event)

        try:
            engine = self.engine_for(batch[0].key)
            results = engine.generate([j.request for j in batch], on_token=dispatch)
        except Exception as err:  # every request of the batch gets the error
            for job in batch:
                _resolve(job, error=err)
            return
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        self.stats.sizes[len(batch)] = self.stats.sizes.get(len(batch), 0) + 1
        for job, result in zip(batch, results, strict=True):
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
