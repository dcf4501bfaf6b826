"""A first-come, first-served limit on how many coroutines hold something at once.

asyncpg's pool hands out connections through an asyncio.Queue: a connection released while
others wait can be taken by a newcomer before the woken waiter runs, and that waiter then
queues again at the back. Under load a few requests wait very long (bench/README.md: p99
×4 at 64 connections on a pool of 10). This gate hands each released permit straight to
the longest waiter, so nobody overtakes, and the pool behind it never has to queue.
"""

from __future__ import annotations

import asyncio
from collections import deque


class FifoGate:
    """At most `permits` holders at a time, admitted strictly in order of arrival."""

    def __init__(self, permits: int) -> None:
        self._free = permits
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        """Wait for a permit; a cancelled waiter gives up its place (or its permit)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a permit just as it was cancelled: pass it on
            elif waiter in self._waiters:  # release() may already have passed it over
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give the permit to the longest waiter still waiting, else back to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
