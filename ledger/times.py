"""Time values for the ledger: parsing, period bounds and record-time text.

Internal instants are ``int`` microseconds since the Unix epoch, UTC.
Every instant produced here lies in ``[MIN_US, MAX_US]``, i.e. between
0001-01-01T00:00:00.000000Z and 9999-12-31T23:59:59.999999Z, so it can
always be written back with :func:`format_record_time`.

Accepted statement/valid-time forms (see :func:`parse_time`)::

    YYYY  YYYY-MM  YYYY-MM-DD  YYYY-MM-DDTHH:MM[:SS[.f{1,9}]][Z|±HH:MM]

A reduced value stands for its whole period: ``start`` is its first
instant and ``end`` its last (the next period's start minus 1 µs).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Final, Literal

__all__ = [
    "MAX_US",
    "MIN_US",
    "TIME_PATTERN",
    "Precision",
    "TimeFormatError",
    "TimeValue",
    "cutoff",
    "format_record_time",
    "now_us",
    "parse_record_time",
    "parse_time",
    "us_to_iso",
]

Precision = Literal["year", "month", "day", "instant"]

US_PER_SECOND: Final = 1_000_000
US_PER_MINUTE: Final = 60 * US_PER_SECOND
US_PER_HOUR: Final = 60 * US_PER_MINUTE
US_PER_DAY: Final = 24 * US_PER_HOUR

# Proleptic Gregorian ordinal (date.toordinal) of 1970-01-01.
_EPOCH_ORDINAL: Final = 719_163

MIN_US: Final = (1 - _EPOCH_ORDINAL) * US_PER_DAY
"""0001-01-01T00:00:00.000000Z in µs since the epoch."""
MAX_US: Final = (date.max.toordinal() + 1 - _EPOCH_ORDINAL) * US_PER_DAY - 1
"""9999-12-31T23:59:59.999999Z in µs since the epoch."""

# Days before the first of month m (index m) in a common year.
_DAYS_BEFORE_MONTH: Final = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_DAYS_IN_MONTH: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_ACCEPTED: Final = (
    "expected YYYY, YYYY-MM, YYYY-MM-DD, or an RFC 3339 date-time "
    "YYYY-MM-DDTHH:MM[:SS[.f]] (1 to 9 fractional digits) optionally followed by Z or ±HH:MM "
    "(no offset means UTC), e.g. 2025, 2025-03, 2025-03-14, "
    "2025-03-14T09:30:00Z, 2025-03-14T09:30:00.5+09:00"
)

# Range-checked pieces; ASCII-only classes (never \d, which matches any
# Unicode decimal digit).
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH = "(?:0[1-9]|1[0-2])"
_DAY = "(?:0[1-9]|[12][0-9]|3[01])"
_HOUR = "(?:[01][0-9]|2[0-3])"
_MIN_SEC = "[0-5][0-9]"

TIME_PATTERN: Final[str] = (
    f"^{_YEAR}(?:-{_MONTH}(?:-{_DAY}(?:[Tt]{_HOUR}:{_MIN_SEC}"
    f"(?::{_MIN_SEC}(?:\\.[0-9]{{1,9}})?)?"
    f"(?:[Zz]|[+-]{_HOUR}:{_MIN_SEC})?)?)?)?$"
)
"""Regex (ECMA-262 / JSON Schema compatible) for the accepted shapes.

It checks field ranges but not calendar validity (2025-02-30 matches);
:func:`parse_time` remains the authority.
"""

# Same grammar with capture groups; used with fullmatch (no trailing-newline
# leniency as with ``$``).
_TIME_RE: Final = re.compile(
    f"({_YEAR})(?:-({_MONTH})(?:-({_DAY})(?:[Tt]({_HOUR}):({_MIN_SEC})"
    f"(?::({_MIN_SEC})(?:\\.([0-9]{{1,9}}))?)?"
    f"(?:([Zz])|([+-])({_HOUR}):({_MIN_SEC}))?)?)?)?",
    re.ASCII,
)

_RECORD_RE: Final = re.compile(
    f"({_YEAR})-({_MONTH})-({_DAY})T({_HOUR}):({_MIN_SEC}):({_MIN_SEC})\\.([0-9]{{6}})Z",
    re.ASCII,
)


class TimeFormatError(ValueError):
    """A time value is not in an accepted form; the message says which are."""


@dataclass(frozen=True, slots=True)
class TimeValue:
    """A parsed time value and the period it stands for.

    ``text`` is the echo form (input with ``t``/``z`` upper-cased).
    ``start <= end``; for precision ``"instant"``, ``end == start``.
    """

    text: str
    precision: Precision
    start: int
    end: int


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (no checks)."""
    y1 = y - 1
    days = y1 * 365 + y1 // 4 - y1 // 100 + y1 // 400 + _DAYS_BEFORE_MONTH[m] + d
    if m > 2 and _is_leap(y):
        days += 1
    return days - _EPOCH_ORDINAL


def _show(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:64] + "…")


def _bad(text: str, why: str = "") -> TimeFormatError:
    detail = f" ({why})" if why else ""
    return TimeFormatError(f"invalid time {_show(text)}{detail}: {_ACCEPTED}")


def _day_ok(y: int, m: int, d: int) -> bool:
    return d <= 28 or d <= (29 if m == 2 and _is_leap(y) else _DAYS_IN_MONTH[m])


def _no_such_day(y: int, m: int, d: int) -> str:
    return f"{y:04d}-{m:02d} has no day {d:02d}"


@lru_cache(maxsize=8192)
def parse_time(text: str) -> TimeValue:
    """Parse a statement/valid time; raise TimeFormatError for anything else.

    Holds: the result's ``start``/``end`` are µs UTC within
    ``[MIN_US, MAX_US]``; an offset is applied (UTC = local time minus offset);
    no offset means UTC; the precision is that of the input.
    """
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise _bad(text)
    ys, ms, ds, hs, mins, ss, fs, zs, sign, ohs, oms = m.groups()
    y = int(ys)
    if ms is None:
        start = _days_from_civil(y, 1, 1) * US_PER_DAY
        end = _days_from_civil(y + 1, 1, 1) * US_PER_DAY - 1
        return TimeValue(text, "year", start, end)
    mo = int(ms)
    if ds is None:
        start = _days_from_civil(y, mo, 1) * US_PER_DAY
        nxt = _days_from_civil(y + 1, 1, 1) if mo == 12 else _days_from_civil(y, mo + 1, 1)
        return TimeValue(text, "month", start, nxt * US_PER_DAY - 1)
    d = int(ds)
    if not _day_ok(y, mo, d):
        raise _bad(text, _no_such_day(y, mo, d))
    start = _days_from_civil(y, mo, d) * US_PER_DAY
    if hs is None:
        return TimeValue(text, "day", start, start + US_PER_DAY - 1)
    start += int(hs) * US_PER_HOUR + int(mins) * US_PER_MINUTE
    if ss is not None:
        start += int(ss) * US_PER_SECOND
        if fs is not None:  # up to nanoseconds are taken; instants are microseconds
            micros = fs[:6]
            start += int(micros) * 10 ** (6 - len(micros))
    if sign is not None:
        offset = int(ohs) * US_PER_HOUR + int(oms) * US_PER_MINUTE
        start = start - offset if sign == "+" else start + offset
    if not MIN_US <= start <= MAX_US:
        raise _bad(text, "outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59.999999Z")
    echo = text.upper() if "t" in text or zs == "z" else text
    return TimeValue(echo, "instant", start, start)


def nanos_past(text: str) -> int:
    """The nanoseconds an instant's text gives past its microsecond (0-999): instants are
    ordered to the microsecond, and this tells apart two that share one where a rule must
    (`valid_from` after `valid_to`). 0 for a text without them; the text must parse."""
    m = _TIME_RE.fullmatch(text)
    fraction = m.group(7) if m is not None else None
    return int(fraction[6:].ljust(3, "0")) if fraction is not None and len(fraction) > 6 else 0


def cutoff(text: str) -> int:
    """Inclusive cutoff for ``as_of``/``known_at``: the END of the period.

    ``2025-03`` gives 2025-03-31T23:59:59.999999Z; an instant gives itself.
    """
    return parse_time(text).end


_last_second: tuple[int, str] = (MIN_US - 1, "")  # the last second written, and its text


def format_record_time(us: int) -> str:
    """Write µs since the epoch as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    Fixed width, so text order equals numeric order. ValueError if ``us``
    is outside ``[MIN_US, MAX_US]``.
    """
    global _last_second
    if not MIN_US <= us <= MAX_US:
        raise ValueError(f"record time {us} µs is outside 0001..9999")
    second, frac = divmod(us, US_PER_SECOND)
    last_second, text = _last_second
    if second != last_second:  # the writer stamps many units within one second
        days, secs = divmod(second, US_PER_DAY // US_PER_SECOND)
        dt = date.fromordinal(days + _EPOCH_ORDINAL)
        mins, s = divmod(secs, 60)
        h, mi = divmod(mins, 60)
        text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{h:02d}:{mi:02d}:{s:02d}."
        _last_second = (second, text)
    return f"{text}{frac:06d}Z"


def us_to_iso(us: int) -> str:
    """Same as :func:`format_record_time` (canonical UTC text for an instant)."""
    return format_record_time(us)


def parse_record_time(s: str) -> int:
    """Inverse of :func:`format_record_time`; accepts only its exact form.

    Raises TimeFormatError for anything else (lowercase t/z, offsets,
    fewer/more fractional digits, invalid dates...).
    """
    m = _RECORD_RE.fullmatch(s)
    why = ""
    if m is not None:
        ys, ms, ds, hs, mins, ss, fs = m.groups()
        y, mo, d = int(ys), int(ms), int(ds)
        if _day_ok(y, mo, d):
            return (
                _days_from_civil(y, mo, d) * US_PER_DAY
                + int(hs) * US_PER_HOUR
                + int(mins) * US_PER_MINUTE
                + int(ss) * US_PER_SECOND
                + int(fs)
            )
        why = f" ({_no_such_day(y, mo, d)})"
    raise TimeFormatError(
        f"invalid record time {_show(s)}{why}: "
        "expected exactly YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC, 6 fractional digits)"
    )


def now_us() -> int:
    """Current time in µs since the epoch, UTC (server clock)."""
    return time.time_ns() // 1000
