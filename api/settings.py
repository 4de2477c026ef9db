"""Everything the app is built from, in one place (`create_app(settings)`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, slots=True)
class Settings:
    db: Path
    public_read: bool = False
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    max_body_bytes: int = 1024 * 1024
    rate_limit_per_minute: int = 0  # 0: off
    sse_heartbeat_seconds: float = 15.0
    # while a stream waits, how often to look for events other processes appended (a second
    # server on the file, `ledger import` into it), which this server's writer never hears of
    other_writers_seconds: float = 1.0
    auth_cache_seconds: float = 1.0
    writer_process: bool = False  # appends in a child process (api.writer) instead of a thread
