from __future__ import annotations

import asyncio

import pytest
from swaprtc.rtc.mailbox import MailboxClosed, NewestMailbox


async def test_keeps_only_the_newest_and_counts_drops() -> None:
    box: NewestMailbox[int] = NewestMailbox()
    for i in range(5):
        box.put(i)
    assert await box.get() == 4
    assert box.dropped == 4
    assert box.posted == 5
    box.put(7)
    assert await box.get() == 7
    assert box.dropped == 4  # a taken item is not a drop


async def test_get_waits_until_an_item_is_posted() -> None:
    box: NewestMailbox[str] = NewestMailbox()
    waiter = asyncio.ensure_future(box.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    box.put("frame")
    assert await asyncio.wait_for(waiter, 1.0) == "frame"


async def test_close_wakes_waiters_after_the_last_item() -> None:
    box: NewestMailbox[int] = NewestMailbox()
    box.put(1)
    box.close()
    assert await box.get() == 1  # an item posted before close is still delivered
    with pytest.raises(MailboxClosed):
        await box.get()
    other: NewestMailbox[int] = NewestMailbox()
    waiting = asyncio.ensure_future(other.get())
    await asyncio.sleep(0.01)
    other.close()
    with pytest.raises(MailboxClosed):
        await asyncio.wait_for(waiting, 1.0)


async def test_put_after_close_is_ignored() -> None:
    box: NewestMailbox[int] = NewestMailbox()
    box.close()
    box.put(3)
    with pytest.raises(MailboxClosed):
        await box.get()
