"""A one-slot mailbox that keeps only the newest item.

aiortc's ``RemoteStreamTrack`` queues every decoded frame without bound; a consumer slower than
the camera falls further behind each second. A reader task posts every frame here instead and the
consumer always takes the newest one: older frames are dropped (and counted), so latency stays
bounded by one processing time.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class MailboxClosed(Exception):
    """The producer ended; no further items will arrive."""


class NewestMailbox(Generic[T]):
    def __init__(self) -> None:
        self._item: T | None = None
        self._has_item = False
        self._closed = False
        self._event = asyncio.Event()
        self.posted = 0
        self.dropped = 0

    def put(self, item: T) -> None:
        """Store ``item``, replacing (and counting as dropped) one that was never taken."""
        if self._closed:
            return
        if self._has_item:
            self.dropped += 1
        self._item = item
        self._has_item = True
        self.posted += 1
        self._event.set()

    def close(self) -> None:
        """Wake waiters; ``get`` raises ``MailboxClosed`` once the last item was taken."""
        self._closed = True
        self._event.set()

    def _take(self) -> T:
        item = self._item
        self._item, self._has_item = None, False
        self._event.clear()
        return item  # type: ignore[return-value]

    async def get(self) -> T:
        """Wait for and take the newest item."""
        while not self._has_item:
            if self._closed:
                raise MailboxClosed()
            self._event.clear()
            await self._event.wait()
        return self._take()
