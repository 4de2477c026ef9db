"""Wakes the SSE streams when the writer commits new events."""

from __future__ import annotations

import asyncio


class Tail:
    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self.latest = size
        self._waiters: set[asyncio.Future[None]] = set()

    def committed(self, seq: int) -> None:
        """Called on the writer thread."""
        self._loop.call_soon_threadsafe(self._wake, seq)

    def _wake(self, seq: int) -> None:
        self.latest = max(self.latest, seq)
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_beyond(self, position: int, seconds: float) -> bool:
        """True once the log holds more than `position` events; False after `seconds`."""
        if self.latest > position:
            return True
        waiter = self._loop.create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            self._waiters.discard(waiter)
            return False
        return self.latest > position
