"""The executor uploads run on: decoding a photo and preparing the source face.

Uploads get their own few threads, never the inference executor live video runs on, so a burst of
uploads queues behind itself instead of in front of every session's frames. At most
``max_queued`` uploads wait for a thread; more are refused (503 busy, Retry-After) rather than
holding their bodies in memory while they wait.
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
    def __init__(self, threads: int = 1, max_queued: int = 8) -> None:
        self.threads = max(1, threads)
        self.max_queued = max(1, max_queued)
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="swaprtc-upload")
        self.in_flight = 0  # running or waiting for a thread

    @contextmanager
    def reserve(self) -> Iterator[None]:
        """A place in the queue, taken before the body is read (bodies of refused uploads are
        never buffered); 503 ``busy`` when every place is taken."""
        if self.in_flight >= self.threads + self.max_queued:
            raise UploadsBusyError(
                "the server is busy with other uploads; try again in a moment",
                retry_after_s=BUSY_RETRY_AFTER_S,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def run(self, fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
        return asyncio.get_running_loop().run_in_executor(self.executor, partial(fn, *args))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
