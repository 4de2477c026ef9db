"""A progress bar on a terminal's stderr; silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, *, unit: str = "events"
    ) -> None:
        self.label = label
        self.unit = unit
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0
        self._start = time.monotonic()
        self.done = 0
        self._base: int | None = None  # the first count reported: the rate counts from it

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = max(total, 1)
        self.done = done
        if self._base is None:
            self._base = done
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < self.total):
            return
        self._draw(now)

    def flush(self) -> None:
        """Draw the latest count, which the 0.1 s throttle may have held back."""
        if self.enabled:
            self._draw(time.monotonic())

    def restart(self, label: str, total: int) -> None:
        """End this line and count a new phase from zero on the next."""
        self.finish()
        self.label, self.total = label, max(total, 1)
        self._start, self._last, self.done, self._base = time.monotonic(), 0.0, 0, None

    def _draw(self, now: float) -> None:
        self._last = now
        done = self.done
        frac = min(done / self.total, 1.0)
        width = 30
        bar = "#" * int(frac * width)
        counted = done - (self._base or 0)
        # no rate before a second count: a phase that ends at its first report (a small
        # file) or starts part-way (a resumed one) has measured none
        rate = f" ({counted / max(now - self._start, 1e-9):,.0f}/s)" if counted else ""
        self.stream.write(
            f"\r{self.label} [{bar:<{width}}] {frac:6.1%} {done:,}/{self.total:,} {self.unit}{rate}"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
