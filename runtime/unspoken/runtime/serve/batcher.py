"""Micro-batching: items from concurrent requests wait in one bounded queue and a single worker thread scores them
together, up to ``max_batch`` at a time, waiting at most ``max_wait_s`` after the oldest item arrived.

The queue never grows past ``max_queue`` items: ``submit`` raises QueueFull instead, and the service answers 429.
A request's items are admitted all or none. Each item's ``Job`` carries a ``concurrent.futures.Future``
(an asyncio handler awaits it with ``asyncio.wrap_future``) and its queue and scoring times. Pure Python: no web
framework here.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class QueueFull(Exception):
    """The queue cannot take these items now; retry after ``retry_after_s`` seconds."""

    def __init__(self, depth: int, capacity: int, retry_after_s: float) -> None:
        super().__init__(f"the scoring queue is full ({depth} of {capacity} items waiting)")
        self.retry_after_s = retry_after_s


class ShuttingDown(Exception):
    """The batcher is closing and takes no new items."""


@dataclass
class Job(Generic[Item]):
    """One queued item with its future and timestamps (seconds, ``time.perf_counter``)."""

    item: Item
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    started: float = 0.0
    finished: float = 0.0
    batch_size: int = 0


class MicroBatcher(Generic[Item, Result]):
    """Groups queued items into batches for ``score_batch`` (one call per batch, on one worker thread).

    Args:
        score_batch: maps a list of items to a list of results of the same length; an exception fails every
            future of that batch.
        max_batch: items per call at most.
        max_wait_s: how long the oldest waiting item may wait for more to arrive before its batch runs anyway.
        max_queue: items waiting at most (not counting the batch being scored).
        on_batch: called after each batch with (size, seconds) for metrics.
    """

    def __init__(
        self,
        score_batch: Callable[[list[Item]], Sequence[Result]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], Any] | None = None,
    ) -> None:
        self._score_batch = score_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: deque[Job[Item]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._seconds_per_item = 0.0  # running estimate, for Retry-After
        self._thread = threading.Thread(target=self._run, name="unspoken-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Items waiting now."""
        return len(self._queue)

    def submit(self, items: Sequence[Item]) -> list[Job[Item]]:
        """Queue ``items`` together (all or none); raises QueueFull or ShuttingDown. Await ``job.future``."""
        jobs = [Job(item) for item in items]
        with self._cond:
            if self._closing:
                raise ShuttingDown("the service is shutting down")
            if len(self._queue) + len(jobs) > self.max_queue:
                wait = (len(self._queue) + len(jobs)) * self._seconds_per_item
                raise QueueFull(len(self._queue), self.max_queue, max(1.0, wait))
            self._queue.extend(jobs)
            self._cond.notify()
        return jobs

    def close(self, timeout: float | None = None) -> None:
        """Stop taking items, finish the ones already queued, and stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- worker -------------------------------------------------------------------------------------------------
    def _next_batch(self) -> list[Job[Item]] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = self._queue[0].enqueued + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._closing:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if not live:
                continue
            start = time.perf_counter()
            try:
                results = self._score_batch([j.item for j in live])
                if len(results) != len(live):
                    raise RuntimeError(f"score_batch returned {len(results)} results for {len(live)} items")
            except BaseException as e:  # noqa: BLE001 - handed to every waiting request, never lost
                for j in live:
                    j.future.set_exception(e)
                continue
            end = time.perf_counter()
            self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * (end - start) / len(live)
            for j, r in zip(live, results):
                j.started, j.finished, j.batch_size = start, end, len(live)
                j.future.set_result(r)
            if self._on_batch is not None:
                self._on_batch(len(live), end - start)
