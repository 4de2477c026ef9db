"""structlog, configured once: JSON lines off a terminal, readable lines on one."""

from __future__ import annotations

import logging
import os
import sys
from json import JSONEncoder
from typing import Any, TextIO, cast

import structlog

_configured = False

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def level_from_env(default: str) -> str:
    """`$LEDGER_LOG_LEVEL` in any case (`default` when unset or empty); ValueError, naming
    the variable, for anything that is not a level."""
    text = os.environ.get("LEDGER_LOG_LEVEL", "").strip()
    if not text:
        return default
    if text.upper() not in LEVELS:
        raise ValueError(f"$LEDGER_LOG_LEVEL: {text!r} is not a level ({', '.join(LEVELS)})")
    return text.upper()


class _JsonDumps:
    """`json.dumps(obj, **kw)`, with the encoder built once rather than for every line.

    `JSONRenderer` always passes `default=`, and `json.dumps` builds a new `JSONEncoder`
    whenever it is given any option; the text is the same.
    """

    __slots__ = ("_encode", "_kw")

    def __init__(self) -> None:
        self._kw: dict[str, Any] | None = None
        self._encode = JSONEncoder().encode

    def __call__(self, obj: Any, **kw: Any) -> str:
        if kw != self._kw:
            self._encode = JSONEncoder(**kw).encode
            self._kw = kw
        return self._encode(obj)


class _CurrentStderr:
    """Standard error as it is when a line is written, not when logging was set up: code
    that swaps `sys.stderr` (a test's capture, a wrapper) gets the lines that follow."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Set up structlog and the stdlib root logger (idempotent)."""
    global _configured
    if _configured:
        return
    _configured = True
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(_JsonDumps()) if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(cast("TextIO", _CurrentStderr())),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")
