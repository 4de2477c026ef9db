"""Wakes the SSE streams when the writer commits new events, and ends them at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class Tail:
    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self.latest = size
        self.closed = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def waiting(self) -> bool:
        """Whether any stream is waiting for new events."""
        return bool(self._waiters)

    def committed(self, seq: int) -> None:
        """Called on the writer thread."""
        self._loop.call_soon_threadsafe(self._wake, seq)

    def close(self) -> None:
        """End every stream (from any thread), so a graceful shutdown need not wait on them."""
        self._loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        self.closed = True
        self._wake(self.latest)

    def _wake(self, seq: int) -> None:
        self.latest = max(self.latest, seq)
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_beyond(self, position: int, seconds: float) -> bool:
        """True once the log holds more than `position` events; False after `seconds` or
        once closed."""
        if self.latest > position:
            return True
        if self.closed:
            return False
        waiter = self._loop.create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            self._waiters.discard(waiter)
            return False
        return self.latest > position


async def watch_other_writers(tail: Tail, size: Callable[[], int], every: float) -> None:
    """Wake the streams for events appended by other processes, at most `every` seconds
    late: this server's writer announces only its own commits. The head is read only while
    a stream waits, off the event loop."""
    while not tail.closed:
        await asyncio.sleep(every)
        if not tail.waiting:
            continue
        try:
            head = await asyncio.to_thread(size)
        except Exception as exc:  # a busy or failing disk: the streams still end up waking
            log.warning("tail_head_unread", error=str(exc))
            continue
        if head > tail.latest:
            tail.committed(head)
