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

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = max(total, 1)
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < self.total):
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        width = 30
        bar = "#" * int(frac * width)
        rate = done / max(now - self._start, 1e-9)
        self.stream.write(
            f"\r{self.label} [{bar:<{width}}] {frac:6.1%} {done:,}/{self.total:,} {self.unit} "
            f"({rate:,.0f}/s)"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
