"""Tests for ledger.times: accepted forms, period bounds, rejections, round trips."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.times import (
    MAX_US,
    MIN_US,
    TIME_PATTERN,
    TimeFormatError,
    TimeValue,
    cutoff,
    format_record_time,
    nanos_past,
    now_us,
    parse_record_time,
    parse_time,
    us_to_iso,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)


def us(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, f: int = 0) -> int:
    """Reference conversion (UTC wall time to µs) via datetime arithmetic."""
    return (datetime(y, mo, d, h, mi, s, f, tzinfo=UTC) - EPOCH) // ONE_US


# Non-ASCII digits, written as escapes (str.isdigit() accepts all of them).
FULLWIDTH_2025 = "\uff12\uff10\uff12\uff15"  # full-width 2025
ARABIC_INDIC_2025 = "\u0662\u0660\u0662\u0665"  # Arabic-Indic 2025
EXT_ARABIC_INDIC_2025 = "\u06f2\u06f0\u06f2\u06f5"
ARABIC_INDIC_01 = "\u0660\u0661"


def test_non_ascii_digit_fixtures_fool_isdigit() -> None:
    for s in (FULLWIDTH_2025, ARABIC_INDIC_2025, EXT_ARABIC_INDIC_2025, ARABIC_INDIC_01):
        assert s.isdigit()
        assert not s.isascii()


# --- accepted forms -------------------------------------------------------

VALID = [
    ("2025", "2025", "year", us(2025, 1, 1), us(2026, 1, 1) - 1),
    ("0001", "0001", "year", us(1, 1, 1), us(2, 1, 1) - 1),
    ("9999", "9999", "year", us(9999, 1, 1), MAX_US),
    ("2025-03", "2025-03", "month", us(2025, 3, 1), us(2025, 4, 1) - 1),
    ("2024-02", "2024-02", "month", us(2024, 2, 1), us(2024, 2, 29, 23, 59, 59, 999999)),
    ("2025-02", "2025-02", "month", us(2025, 2, 1), us(2025, 2, 28, 23, 59, 59, 999999)),
    ("2024-12", "2024-12", "month", us(2024, 12, 1), us(2025, 1, 1) - 1),
    ("9999-12", "9999-12", "month", us(9999, 12, 1), MAX_US),
    ("2024-02-29", "2024-02-29", "day", us(2024, 2, 29), us(2024, 3, 1) - 1),
    ("2000-02-29", "2000-02-29", "day", us(2000, 2, 29), us(2000, 3, 1) - 1),
    ("2024-12-31", "2024-12-31", "day", us(2024, 12, 31), us(2025, 1, 1) - 1),
    ("9999-12-31", "9999-12-31", "day", us(9999, 12, 31), MAX_US),
    ("0001-01-01", "0001-01-01", "day", MIN_US, us(1, 1, 2) - 1),
    ("1969-12-31", "1969-12-31", "day", -86_400_000_000, -1),
    ("1970-01-01", "1970-01-01", "day", 0, 86_400_000_000 - 1),
]


@pytest.mark.parametrize(("text", "echo", "precision", "start", "end"), VALID)
def test_reduced_precision(text: str, echo: str, precision: str, start: int, end: int) -> None:
    v = parse_time(text)
    assert v == TimeValue(echo, precision, start, end)  # type: ignore[arg-type]
    assert cutoff(text) == end


INSTANTS = [
    ("2025-04-28T09:00:00+09:00", "2025-04-28T09:00:00+09:00", us(2025, 4, 28)),
    ("2025-04-28T09:00:00Z", "2025-04-28T09:00:00Z", us(2025, 4, 28, 9)),
    ("2025-04-28T09:00:00", "2025-04-28T09:00:00", us(2025, 4, 28, 9)),  # no offset = UTC
    ("2025-04-28t09:00:00z", "2025-04-28T09:00:00Z", us(2025, 4, 28, 9)),
    ("2025-04-28t09:00:00+02:00", "2025-04-28T09:00:00+02:00", us(2025, 4, 28, 7)),
    ("2025-04-28T09:00", "2025-04-28T09:00", us(2025, 4, 28, 9)),
    ("2025-04-28T09:00Z", "2025-04-28T09:00Z", us(2025, 4, 28, 9)),
    ("2025-04-28T09:00-05:30", "2025-04-28T09:00-05:30", us(2025, 4, 28, 14, 30)),
    ("2025-04-28T09:00:00.5Z", "2025-04-28T09:00:00.5Z", us(2025, 4, 28, 9, 0, 0, 500000)),
    ("2025-04-28T09:00:00.123Z", "2025-04-28T09:00:00.123Z", us(2025, 4, 28, 9, 0, 0, 123000)),
    ("2025-04-28T09:00:00.000001Z", "2025-04-28T09:00:00.000001Z", us(2025, 4, 28, 9) + 1),
    ("2025-04-28T09:00:00.999999", "2025-04-28T09:00:00.999999", us(2025, 4, 28, 9) + 999999),
    ("2025-04-28T23:59:59+23:59", "2025-04-28T23:59:59+23:59", us(2025, 4, 28, 0, 0, 59)),
    ("2025-04-28T00:00:00-23:59", "2025-04-28T00:00:00-23:59", us(2025, 4, 28, 23, 59)),
    ("2025-04-28T09:00:00-00:00", "2025-04-28T09:00:00-00:00", us(2025, 4, 28, 9)),
    ("2025-01-01T00:30+01:00", "2025-01-01T00:30+01:00", us(2024, 12, 31, 23, 30)),
    ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z", MAX_US),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", MIN_US),
    ("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z", -1),
]


@pytest.mark.parametrize(("text", "echo", "start"), INSTANTS)
def test_instants(text: str, echo: str, start: int) -> None:
    v = parse_time(text)
    assert v == TimeValue(echo, "instant", start, start)
    assert cutoff(text) == start


def test_cutoff_is_end_of_period() -> None:
    assert format_record_time(cutoff("2025-03")) == "2025-03-31T23:59:59.999999Z"
    assert format_record_time(cutoff("2025")) == "2025-12-31T23:59:59.999999Z"
    assert format_record_time(cutoff("2024-02-29")) == "2024-02-29T23:59:59.999999Z"
    # as_of=2025-03 includes everything stated in March 2025, nothing in April.
    assert parse_time("2025-03-31T23:59:59.999999Z").start <= cutoff("2025-03")
    assert parse_time("2025-04").start > cutoff("2025-03")


def test_reduced_values_order_by_first_instant() -> None:
    vals = ["2025-01-01T00:00:01Z", "2025", "2024-12-31", "2025-01", "2024-12"]
    ordered = sorted(vals, key=lambda t: parse_time(t).start)
    assert ordered[:2] == ["2024-12", "2024-12-31"]
    assert parse_time("2025").start == parse_time("2025-01").start
    assert ordered[-1] == "2025-01-01T00:00:01Z"


# --- rejections -------------------------------------------------------------

INVALID = [
    "",
    "last fall",
    "2025-1",
    "25-01-01",
    "025",
    "20250",
    " 2025",
    "2025 ",
    "2025\n",
    "\t2025",
    FULLWIDTH_2025,
    ARABIC_INDIC_2025,
    EXT_ARABIC_INDIC_2025,
    "2025-" + ARABIC_INDIC_01,
    "0000",
    "0000-01-01",
    "2025-00",
    "2025-13",
    "2025-01-00",
    "2025-01-32",
    "2025-02-29",
    "2025-02-30",
    "2024-02-30",
    "1900-02-29",
    "2025-04-31",
    "2025-06-31",
    "2025-09-31",
    "2025-11-31",
    "2025-04-28T24:00:00Z",
    "2025-04-28T24:00",
    "2025-04-28T23:60:00Z",
    "2025-04-28T23:59:60Z",  # leap second
    "2025-04-28T09:00:00.1234567890Z",  # 10 fractional digits
    "2025-04-28T09:00:00.Z",
    "2025-04-28T09:00.5Z",
    "2025-04-28T09Z",
    "2025-04-28T9:00:00Z",
    "2025-04-28T09:00:00+24:00",
    "2025-04-28T09:00:00-24:00",
    "2025-04-28T09:00:00+09:60",
    "2025-04-28T09:00:00+0900",
    "2025-04-28T09:00:00+09",
    "2025-04-28T09:00:00ZZ",
    "2025-04-28T09:00:00Z+01:00",
    "2025-04-28 09:00:00Z",
    "2025-04-28_09:00:00Z",
    "2025-04-28T",
    "2025-04-28T09:00:00,5Z",
    "2025/04/28",
    "20250428",
    "2025-W17",
    "2025-118",
    "+2025",
    "-2025",
    "12025",
    "2025-04-28T09:00:00UTC",
    "2025-04-28T09:00:00 +09:00",
    "2025-04-28T09:00:00\u200b",
    "0001-01-01T00:00+01:00",  # before 0001-01-01 in UTC
    "9999-12-31T23:30-01:00",  # after 9999-12-31 in UTC
    "yesterday",
    "now",
    "Q1 2025",
]


@pytest.mark.parametrize("text", INVALID)
def test_rejects(text: str) -> None:
    with pytest.raises(TimeFormatError) as exc:
        parse_time(text)
    msg = str(exc.value)
    assert "YYYY-MM-DD" in msg
    assert "RFC 3339" in msg
    with pytest.raises(TimeFormatError):
        cutoff(text)


def test_error_is_value_error_and_message_names_input() -> None:
    with pytest.raises(ValueError, match=r"invalid time 'last fall'"):
        parse_time("last fall")
    with pytest.raises(TimeFormatError, match=r"2025-02 has no day 30"):
        parse_time("2025-02-30")


def test_error_message_truncates_huge_input() -> None:
    with pytest.raises(TimeFormatError) as exc:
        parse_time("9" * 100_000)
    assert len(str(exc.value)) < 500


# --- record times -----------------------------------------------------------


def test_record_time_examples() -> None:
    assert format_record_time(0) == "1970-01-01T00:00:00.000000Z"
    assert format_record_time(-1) == "1969-12-31T23:59:59.999999Z"
    assert format_record_time(MIN_US) == "0001-01-01T00:00:00.000000Z"
    assert format_record_time(MAX_US) == "9999-12-31T23:59:59.999999Z"
    assert format_record_time(us(2024, 2, 29, 12, 34, 56, 7)) == "2024-02-29T12:34:56.000007Z"
    assert us_to_iso(0) == format_record_time(0)
    assert parse_record_time("2024-02-29T12:34:56.000007Z") == us(2024, 2, 29, 12, 34, 56, 7)


@given(st.lists(st.integers(MIN_US, MAX_US), min_size=1, max_size=20), st.integers(0, 3))
def test_format_record_time_matches_datetime_in_any_order(stamps: list[int], near: int) -> None:
    """The text of the last second written is reused: each stamp still gets its own
    second, whether it shares the last one's second, neighbours it, or lies far from it."""
    for stamp in stamps:
        for value in (stamp, min(stamp + near, MAX_US), max(stamp - 1_000_000 * near, MIN_US)):
            expected = (EPOCH + value * ONE_US).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            assert format_record_time(value) == expected.rjust(27, "0")


@pytest.mark.parametrize("bad", [MIN_US - 1, MAX_US + 1])
def test_format_record_time_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        format_record_time(bad)


@pytest.mark.parametrize(
    "text",
    [
        "2025-04-28T09:00:00Z",
        "2025-04-28T09:00:00.12345Z",
        "2025-04-28T09:00:00.1234567Z",
        "2025-04-28T09:00:00.000000+00:00",
        "2025-04-28T09:00:00.000000",
        "2025-04-28t09:00:00.000000Z",
        "2025-04-28T09:00:00.000000z",
        "2025-02-29T09:00:00.000000Z",
        "2025-04-28T24:00:00.000000Z",
        "2025-04-28T23:59:60.000000Z",
        "2025-04-28",
        " 2025-04-28T09:00:00.000000Z",
        "2025-04-28T09:00:00.000000Z\n",
        FULLWIDTH_2025 + "-04-28T09:00:00.000000Z",
        "0000-12-31T23:59:59.999999Z",
        "",
    ],
)
def test_parse_record_time_is_strict(text: str) -> None:
    with pytest.raises(TimeFormatError, match=re.escape("YYYY-MM-DDTHH:MM:SS.ffffffZ")):
        parse_record_time(text)


@given(st.integers(min_value=MIN_US, max_value=MAX_US))
def test_record_time_round_trip(n: int) -> None:
    s = format_record_time(n)
    assert len(s) == 27
    assert parse_record_time(s) == n
    assert parse_time(s) == TimeValue(s, "instant", n, n)
    assert s == (EPOCH + n * ONE_US).strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0")


@given(
    st.integers(min_value=MIN_US, max_value=MAX_US),
    st.integers(min_value=MIN_US, max_value=MAX_US),
)
def test_record_time_text_order_is_numeric_order(a: int, b: int) -> None:
    fa, fb = format_record_time(a), format_record_time(b)
    assert (fa < fb) == (a < b)
    assert (fa == fb) == (a == b)


@given(st.lists(st.integers(min_value=MIN_US, max_value=MAX_US), max_size=50))
def test_record_time_sorting(xs: list[int]) -> None:
    assert sorted(format_record_time(x) for x in xs) == [format_record_time(x) for x in sorted(xs)]


def test_now_us() -> None:
    a = now_us()
    b = (datetime.now(UTC) - EPOCH) // ONE_US
    c = now_us()
    assert a <= c
    assert abs(b - a) < 5_000_000
    assert parse_record_time(format_record_time(a)) == a


# --- property: parse_time agrees with datetime arithmetic -------------------

offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
inner_datetimes = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
TIMESPECS = ["minutes", "seconds", "milliseconds", "microseconds", "auto"]


def _truncate(dt: datetime, spec: str) -> datetime:
    if spec == "minutes":
        return dt.replace(second=0, microsecond=0)
    if spec == "seconds":
        return dt.replace(microsecond=0)
    if spec == "milliseconds":
        return dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    return dt


@given(inner_datetimes, offsets, st.sampled_from(TIMESPECS))
def test_parse_time_matches_datetime_with_offset(dt: datetime, tz: timezone, spec: str) -> None:
    aware = dt.replace(tzinfo=tz)
    text = aware.isoformat(timespec=spec)
    expected = (_truncate(aware, spec) - EPOCH) // ONE_US
    v = parse_time(text)
    assert v == TimeValue(text, "instant", expected, expected)
    assert parse_time(text.replace("T", "t")).text == text


@given(inner_datetimes, st.sampled_from(TIMESPECS))
def test_parse_time_naive_is_utc(dt: datetime, spec: str) -> None:
    text = dt.isoformat(timespec=spec)
    expected = (_truncate(dt.replace(tzinfo=UTC), spec) - EPOCH) // ONE_US
    assert parse_time(text).start == expected
    assert parse_time(text + "Z").start == expected
    assert parse_time(text + "+00:00").start == expected


@given(st.dates())
def test_parse_time_dates_years_months(d: date) -> None:
    day_start = (datetime(d.year, d.month, d.day, tzinfo=UTC) - EPOCH) // ONE_US
    v = parse_time(d.isoformat())
    assert (v.precision, v.start, v.end) == ("day", day_start, day_start + 86_400_000_000 - 1)

    m = parse_time(d.isoformat()[:7])
    assert m.precision == "month"
    assert m.start == (datetime(d.year, d.month, 1, tzinfo=UTC) - EPOCH) // ONE_US
    assert m.start <= v.start <= v.end <= m.end
    assert m.end + 1 == (
        MAX_US + 1
        if (d.year, d.month) == (9999, 12)
        else parse_time(
            (d.replace(day=28) + timedelta(days=4)).replace(day=1).isoformat()[:7]
        ).start
    )

    y = parse_time(d.isoformat()[:4])
    assert y.precision == "year"
    assert y.start == (datetime(d.year, 1, 1, tzinfo=UTC) - EPOCH) // ONE_US
    assert y.start <= m.start <= m.end <= y.end
    assert format_record_time(y.end) == f"{d.year:04d}-12-31T23:59:59.999999Z"


@given(st.text(max_size=40))
def test_arbitrary_text_never_crashes_otherwise(s: str) -> None:
    try:
        v = parse_time(s)
    except TimeFormatError:
        return
    assert MIN_US <= v.start <= v.end <= MAX_US
    assert re.search(TIME_PATTERN, s)


# --- TIME_PATTERN -------------------------------------------------------------


def test_time_pattern_accepts_every_valid_example() -> None:
    pat = re.compile(TIME_PATTERN)
    for text, *_ in VALID + INSTANTS:
        assert pat.search(text), text


@given(inner_datetimes, offsets, st.sampled_from(TIMESPECS))
def test_time_pattern_accepts_generated_values(dt: datetime, tz: timezone, spec: str) -> None:
    assert re.search(TIME_PATTERN, dt.replace(tzinfo=tz).isoformat(timespec=spec))
    assert re.search(TIME_PATTERN, dt.isoformat(timespec=spec))
    assert re.search(TIME_PATTERN, format_record_time((dt.replace(tzinfo=UTC) - EPOCH) // ONE_US))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "last fall",
        "2025-1",
        "25-01-01",
        " 2025",
        "2025 ",
        FULLWIDTH_2025,
        ARABIC_INDIC_2025,
        "2025-13",
        "0000",
        "2025-04-28T24:00Z",
        "2025-04-28T23:59:60Z",
        "2025-04-28T09:00:00.1234567890Z",
        "2025-04-28T09:00:00+24:00",
        "2025-04-28 09:00",
    ],
)
def test_time_pattern_rejects_bad_shapes(text: str) -> None:
    assert re.search(TIME_PATTERN, text) is None


def test_time_pattern_is_portable() -> None:
    re.compile(TIME_PATTERN)
    assert TIME_PATTERN.startswith("^")
    assert TIME_PATTERN.endswith("$")
    # No Python-only or non-ECMA constructs: lookbehind, named groups,
    # inline flags, \A/\Z anchors, \d (Unicode digits), possessive/atomic groups.
    for banned in (
        "(?<",
        "(?P",
        "(?i",
        "(?a",
        "(?x",
        "(?>",
        "\\A",
        "\\Z",
        "\\d",
        "\\s",
        "++",
        "*+",
    ):
        assert banned not in TIME_PATTERN, banned
    # Only non-capturing groups (?:...) are used among (? constructs.
    assert re.findall(r"\(\?(.)", TIME_PATTERN) == [":"] * TIME_PATTERN.count("(?")


def test_time_pattern_works_with_msgspec() -> None:
    ts = Annotated[str, msgspec.Meta(pattern=TIME_PATTERN)]
    assert msgspec.json.decode(b'"2025-03"', type=ts) == "2025-03"
    assert msgspec.json.decode(b'"2025-04-28t09:00:00z"', type=ts) == "2025-04-28t09:00:00z"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'"last fall"', type=ts)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'"2025-1"', type=ts)


@pytest.mark.parametrize("digits", ["1234567", "12345678", "123456789", "123456999"])
def test_a_fraction_finer_than_a_microsecond_is_kept_and_ordered_to_the_microsecond(
    digits: str,
) -> None:
    """RFC 3339 clients (Go, Java) send nanoseconds: the text is kept as sent, and the
    instant is the microsecond it falls in."""
    text = f"2025-04-28T09:00:00.{digits}Z"
    value = parse_time(text)
    assert value.text == text
    assert value.start == value.end == parse_time("2025-04-28T09:00:00.123456Z").start
    assert re.search(TIME_PATTERN, text) is not None


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("2025-04-28T09:00:00.123456789Z", 789),
        ("2025-04-28T09:00:00.1234567+02:00", 700),
        ("2025-04-28T09:00:00.12345608Z", 80),
        ("2025-04-28T09:00:00.123456Z", 0),
        ("2025-04-28T09:00:00Z", 0),
        ("2025-04-28T09:00Z", 0),
        ("2025-04", 0),
    ],
)
def test_nanos_past_the_microsecond(text: str, nanos: int) -> None:
    """What tells apart two instants in one microsecond where a rule must."""
    assert nanos_past(text) == nanos
