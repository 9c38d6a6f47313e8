"""Cross-session batching: one scheduler per model per process.

Streams submit requests (a few faces each) through their own ``ScheduledRunner``. The scheduler
thread waits at most ``window_ms`` after the oldest waiting request for others to arrive, then
runs one batched model call and hands each stream its rows back. Requests are taken round-robin
across streams, one request per stream per turn, so a stream that floods the queue cannot starve
another. A request whose caller stopped waiting (its frame's swap deadline passed and the frame
went out with faces hidden) is dropped before it reaches the model.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from swaprtc.inference.runner import ModelRunner, TensorSpec, describe_runner


class InferenceTimeout(Exception):
    """The model call did not finish within the caller's deadline; its result is not coming."""


@dataclass
class _Request:
    key: Hashable
    feeds: dict[str, np.ndarray]
    rows: int
    deadline: float | None
    future: Future[list[np.ndarray]] = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters a test, /api/info and the benchmark can read (under the scheduler's lock)."""

    calls: int = 0  # model calls made
    requests: int = 0  # requests served
    rows: int = 0  # faces (batch rows) served
    expired: int = 0  # requests dropped because their caller had given up
    largest: int = 0  # most rows in one call
    sizes: dict[int, int] = field(default_factory=dict)  # rows per call -> how many calls

    def snapshot(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "requests": self.requests,
            "rows": self.rows,
            "expired": self.expired,
            "largest_batch": self.largest,
            "mean_batch": round(self.rows / self.calls, 2) if self.calls else 0.0,
            "batch_sizes": dict(sorted(self.sizes.items())),
        }


class BatchScheduler:
    """Wraps a ModelRunner. Thread-safe; its worker thread starts with the first request."""

    def __init__(
        self, runner: ModelRunner, window_ms: float, max_batch: int | None = None, name: str = ""
    ) -> None:
        self.runner = runner
        self.name = name
        self.window_s = max(0.0, window_ms) / 1000.0
        self.limit = max(1, min(max_batch or runner.max_batch, runner.max_batch))
        self.inputs: list[TensorSpec] = runner.inputs
        self.outputs: list[TensorSpec] = runner.outputs
        self.max_batch = self.limit
        self.stats = BatchStats()
        self._queues: OrderedDict[Hashable, deque[_Request]] = OrderedDict()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the ModelRunner face (one shared anonymous client) ------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.submit(feeds, key=None).result()

    def client(self, key: Hashable, timeout_s: float | None = None) -> ScheduledRunner:
        """A ModelRunner for one stream: its requests queue under ``key``."""
        return ScheduledRunner(self, key, timeout_s)

    def describe(self) -> dict[str, object]:
        with self._cv:
            stats = self.stats.snapshot()
        return {
            **describe_runner(self.runner),
            "max_batch": self.limit,
            "batching": {"window_ms": self.window_s * 1000.0, **stats},
        }

    # -- queueing ------------------------------------------------------------------------------
    def submit(
        self, feeds: dict[str, np.ndarray], key: Hashable, deadline: float | None = None
    ) -> Future[list[np.ndarray]]:
        """Queue one request (``rows`` = its batch size). ``deadline`` is a ``time.monotonic()``
        value after which the request is dropped unrun."""
        rows = int(next(iter(feeds.values())).shape[0]) if feeds else 1
        request = _Request(key, feeds, rows, deadline)
        with self._cv:
            if self._closed:
                raise RuntimeError(f"batch scheduler {self.name!r} is closed")
            self._queues.setdefault(key, deque()).append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"batch-{self.name}", daemon=True)
                self._thread.start()
            self._cv.notify()
        return request.future

    def close(self) -> None:
        with self._cv:
            self._closed = True
            pending = [r for q in self._queues.values() for r in q]
            self._queues.clear()
            self._cv.notify_all()
        for request in pending:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("batch scheduler closed"))

    def _waiting_rows(self) -> int:
        return sum(r.rows for q in self._queues.values() for r in q)

    def _take(self) -> list[_Request]:
        """Round-robin, one request per stream per turn, up to ``limit`` rows (a request larger
        than the limit goes alone). Streams served move to the back of the rotation."""
        taken: list[_Request] = []
        rows = 0
        now = time.monotonic()
        while self._queues:
            progressed = False
            for key in list(self._queues):
                queue = self._queues[key]
                while queue and (queue[0].deadline is not None and queue[0].deadline < now):
                    self._expire(queue.popleft())
                if not queue:
                    del self._queues[key]
                    continue
                if taken and rows + queue[0].rows > self.limit:
                    continue
                request = queue.popleft()
                if not request.future.set_running_or_notify_cancel():
                    self.stats.expired += 1  # the caller gave up (cancelled) before its turn
                    continue
                taken.append(request)
                rows += request.rows
                progressed = True
                self._queues.move_to_end(key)
                if not queue:
                    del self._queues[key]
                if rows >= self.limit:
                    return taken
            if not progressed:
                break
        return taken

    def _expire(self, request: _Request) -> None:
        self.stats.expired += 1
        if request.future.set_running_or_notify_cancel():
            request.future.set_exception(InferenceTimeout("deadline passed before the model ran"))

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queues and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                # The window starts when the first request of this batch is there: a lone stream
                # waits at most window_ms; a full batch goes at once.
                end = time.monotonic() + self.window_s
                while self._waiting_rows() < self.limit and not self._closed:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                batch = self._take()
            if batch:
                self._execute(batch)

    def _execute(self, batch: list[_Request]) -> None:
        try:
            if len(batch) == 1:
                results = [self.runner.run(batch[0].feeds)]
            else:
                names = list(batch[0].feeds)
                stacked = {n: np.concatenate([r.feeds[n] for r in batch]) for n in names}
                outs = self.runner.run(stacked)
                results, start = [], 0
                for r in batch:
                    results.append([o[start : start + r.rows] for o in outs])
                    start += r.rows
        except Exception as exc:  # the model failed: every caller in the batch gets the error
            for r in batch:
                r.future.set_exception(exc)
            return
        rows = sum(r.rows for r in batch)
        with self._cv:
            self.stats.calls += 1
            self.stats.requests += len(batch)
            self.stats.rows += rows
            self.stats.largest = max(self.stats.largest, rows)
            self.stats.sizes[rows] = self.stats.sizes.get(rows, 0) + 1
        for r, result in zip(batch, results, strict=True):
            r.future.set_result(result)


class ScheduledRunner:
    """One stream's view of a BatchScheduler: a ModelRunner whose calls queue under its key and
    give up (InferenceTimeout) after ``timeout_s``."""

    def __init__(self, scheduler: BatchScheduler, key: Hashable, timeout_s: float | None) -> None:
        self.scheduler = scheduler
        self.key = key
        self.timeout_s = timeout_s
        self.inputs = scheduler.inputs
        self.outputs = scheduler.outputs
        self.max_batch = scheduler.limit

    def describe(self) -> dict[str, object]:
        return self.scheduler.describe()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        future = self.scheduler.submit(feeds, self.key, deadline)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise InferenceTimeout(f"no result within {self.timeout_s:.3f} s") from None
