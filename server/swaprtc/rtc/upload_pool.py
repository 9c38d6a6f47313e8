"""The executor uploads run on: decoding a photo and preparing the source face.

Uploads get their own few threads, never the inference executor live video runs on, so a burst of
uploads queues behind itself instead of in front of every session's frames. Two bounds keep a
burst (or a slow sender) from costing more than that:

- each client address reads at most ``per_client`` upload bodies at once (``429 busy``), so slow
  senders tie up their own places only, and buffered bodies are bounded per client;
- at most ``max_queued`` read uploads wait for a thread (``503 busy``), so the queue in front of
  the decoder stays short and its wait bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from swaprtc.http.errors import RetryLaterError

R = TypeVar("R")
BUSY_RETRY_AFTER_S = 2.0


class UploadsBusyError(RetryLaterError):
    code = "busy"
    http_status = 503


class UploadPool:
    def __init__(self, threads: int = 1, max_queued: int = 8, per_client: int = 2) -> None:
        self.threads = max(1, threads)
        self.max_queued = max(1, max_queued)
        self.per_client = max(1, per_client)
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="swaprtc-upload")
        self.queued = 0  # running or waiting for a thread
        self.clients: dict[str, int] = {}  # uploads in progress per client address

    @contextmanager
    def reserve(self, client: str) -> Iterator[None]:
        """A place for one upload of ``client``, taken before its body is read."""
        held = self.clients.get(client, 0)
        if held >= self.per_client:
            busy = UploadsBusyError(
                f"your address already has {held} uploads in progress; wait for them",
                retry_after_s=BUSY_RETRY_AFTER_S,
            )
            busy.http_status = 429
            raise busy
        self.clients[client] = held + 1
        try:
            yield
        finally:
            left = self.clients.pop(client, 1) - 1
            if left > 0:
                self.clients[client] = left

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn`` on an upload thread; 503 ``busy`` when the queue in front of it is full."""
        if self.queued >= self.threads + self.max_queued:
            raise UploadsBusyError(
                "the server is busy with other uploads; try again in a moment",
                retry_after_s=BUSY_RETRY_AFTER_S,
            )
        self.queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, partial(fn, *args))
        finally:
            self.queued -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
