"""The projectors: fold events into the history tables of :mod:`projections.schema`.

They run inside the store's append transaction (never BEGIN or COMMIT here), so every view
is exactly as current as the log. `apply` batches each kind of write into one
`executemany`, because it also runs inside bulk imports of tens of thousands of events.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import msgspec

from ledger.events import (
    AssertionRanked,
    AssertionRecorded,
    AssertionRetracted,
    Event,
    SourceRegistered,
    SourceUpdated,
)
from ledger.migrations import migrate
from ledger.replay import catch_up_on_open
from ledger.store import Projector
from ledger.times import parse_time
from projections.schema import (
    ASSERTION_MIGRATIONS,
    ASSERTION_TABLES,
    DEFERRED_INDEXES,
    SOURCE_MIGRATIONS,
    SOURCE_TABLES,
)

_json = msgspec.json.Encoder()

_INSERT_ASSERTION = (
    "INSERT INTO proj_assertions (recorded_seq, assertion_id, subject, property, kind, "
    "recorded_at, value_low, value_high, value_best, status, mode, qualifier, claimants, "
    "stated_at, stated_start, stated_end, valid_from, valid_from_start, valid_to, valid_to_end, "
    "document, quote, credibility, supersedes, note) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RETRACT = (
    "UPDATE proj_assertions SET retracted_seq = ?, retracted_reason = ?, retracted_at = ? "
    "WHERE assertion_id = ? AND retracted_seq IS NULL"
)
_RANK = (
    "INSERT INTO proj_ranks (subject, property, seq, assertion_id, rank, reason) "
    "SELECT subject, property, ?, assertion_id, ?, ? FROM proj_assertions WHERE assertion_id = ?"
)


@lru_cache(maxsize=4096)
def _bounds(text: str) -> tuple[int, int]:
    value = parse_time(text)
    return value.start, value.end


def _counts_so_far(connection: sqlite3.Connection, subjects: list[str]) -> dict[str, int]:
    """Each subject's latest assertion count, one index probe each, in one statement."""
    rows = connection.execute(
        "SELECT s.value, (SELECT c.assertions FROM proj_subject_counts c WHERE c.subject = s.value"
        " ORDER BY c.seq DESC LIMIT 1) FROM json_each(?) s",
        (_json.encode(subjects).decode(),),
    )
    return {subject: int(count or 0) for subject, count in rows}


class _Rows:
    """The rows a batch of events adds to the assertion tables, one list per statement."""

    __slots__ = ("claimants", "counted", "properties", "ranks", "recorded", "retractions")

    def __init__(self) -> None:
        self.recorded: list[tuple[Any, ...]] = []
        self.claimants: list[tuple[str, int]] = []
        self.properties: list[tuple[str, str, str, int]] = []
        self.retractions: list[tuple[int, str, str, str]] = []
        self.ranks: list[tuple[int, str, str, str]] = []
        self.counted: list[tuple[str, int]] = []  # (subject, seq) of each record, in order


_claimant_json: dict[tuple[str, ...], str] = {}


def _claimants_text(claimants: tuple[str, ...]) -> str:
    """The claimants as JSON; the same few lists recur, so each is encoded once."""
    if type(claimants) is not tuple:  # built by hand, not decoded: maybe a list
        return _json.encode(claimants).decode()
    text = _claimant_json.get(claimants)
    if text is None:
        text = _json.encode(claimants).decode()
        if len(_claimant_json) < 65_536:
            _claimant_json[claimants] = text
    return text


def _collect(events: Sequence[Event]) -> _Rows:
    rows = _Rows()
    recorded, claimants, properties = rows.recorded, rows.claimants, rows.properties
    counted = rows.counted
    encode, bounds = _json.encode, _bounds
    for event in events:
        data = event.data
        if isinstance(data, AssertionRecorded):
            seq = event.seq
            value = data.value
            value_kind = "status" if value.status is not None else "quantity"
            stated_start, stated_end = bounds(data.stated_at)
            valid_from, valid_to = data.valid_from, data.valid_to
            recorded.append(
                (
                    seq,
                    data.assertion_id,
                    data.subject,
                    data.property,
                    value_kind,
                    event.recorded_at,
                    value.low,
                    value.high,
                    value.best,
                    value.status,
                    data.mode,
                    data.qualifier,
                    _claimants_text(data.claimants),
                    data.stated_at,
                    stated_start,
                    stated_end,
                    valid_from,
                    None if valid_from is None else bounds(valid_from)[0],
                    valid_to,
                    None if valid_to is None else bounds(valid_to)[1],
                    encode(data.document).decode(),
                    data.quote,
                    data.credibility,
                    data.supersedes,
                    data.note,
                )
            )
            claimants.extend((c, seq) for c in data.claimants)
            properties.append((data.subject, data.property, value_kind, seq))
            counted.append((data.subject, seq))
        elif isinstance(data, AssertionRetracted):
            rows.retractions.append((event.seq, data.reason, event.recorded_at, data.assertion_id))
        elif isinstance(data, AssertionRanked):
            rows.ranks.append((event.seq, data.rank, data.reason, data.assertion_id))
    return rows


_INSERT_CLAIMANT = "INSERT OR IGNORE INTO proj_claimants (claimant, recorded_seq) VALUES (?, ?)"
_INSERT_PROPERTY = (
    "INSERT OR IGNORE INTO proj_properties (subject, property, kind, first_seq) VALUES (?, ?, ?, ?)"
)
_INSERT_COUNT = "INSERT INTO proj_subject_counts (subject, seq, assertions) VALUES (?, ?, ?)"


def _property_order(row: tuple[str, str, str, int]) -> tuple[str, str, int]:
    return row[0], row[1], row[3]


def _write(
    connection: sqlite3.Connection,
    rows: _Rows,
    counts: dict[str, int],
    properties: list[tuple[str, str, str, int]],
) -> None:
    """Write a batch's rows; `counts` holds each recorded subject's count before it."""
    count_rows: list[tuple[str, int, int]] = []
    for subject, seq in rows.counted:
        counts[subject] += 1
        count_rows.append((subject, seq, counts[subject]))
    # records first: a retraction or rank in the same batch names an assertion before it.
    # The keyed rows go in key order (the rows are the same in any order, and the first of
    # a (subject, property) stays first): neighbours share B-tree pages.
    if rows.recorded:
        connection.executemany(_INSERT_ASSERTION, rows.recorded)
        connection.executemany(_INSERT_CLAIMANT, sorted(rows.claimants))
        if properties:
            properties.sort(key=_property_order)
            connection.executemany(_INSERT_PROPERTY, properties)
        count_rows.sort()
        connection.executemany(_INSERT_COUNT, count_rows)
    if rows.retractions:
        connection.executemany(_RETRACT, rows.retractions)
    if rows.ranks:
        connection.executemany(_RANK, rows.ranks)


class AssertionsProjector:
    """Assertions, their retractions and rankings, claimants and each subject's properties."""

    name = "projections.assertions"
    tables: tuple[str, ...] = ASSERTION_TABLES
    deferred_indexes: tuple[str, ...] = DEFERRED_INDEXES

    def migrate(self, connection: sqlite3.Connection) -> None:
        migrate(connection, ASSERTION_MIGRATIONS)
        catch_up_on_open(connection, self)

    def reset(self, connection: sqlite3.Connection) -> None:
        for table in self.tables:
            connection.execute(f"DELETE FROM {table}")

    def apply(self, connection: sqlite3.Connection, events: Sequence[Event]) -> None:
        rows = _collect(events)
        counts: dict[str, int] = {}
        if rows.counted:
            counts = _counts_so_far(connection, list(dict.fromkeys(s for s, _ in rows.counted)))
        _write(connection, rows, counts, rows.properties)

    def replayer(self, connection: sqlite3.Connection) -> Callable[[Sequence[Event]], None]:
        """A fold for a long replay in which nothing else writes these tables.

        Folds exactly as :meth:`apply` does, batch after batch, but keeps each subject's
        running count and the properties already written in memory, so a batch reads
        nothing back and writes each (subject, property) once.
        """
        counts: dict[str, int] = {}
        seen: set[tuple[str, str]] = set()

        def fold(events: Sequence[Event]) -> None:
            rows = _collect(events)
            new = [s for s in dict.fromkeys(s for s, _ in rows.counted) if s not in counts]
            if new:
                counts.update(_counts_so_far(connection, new))
            properties = []
            for row in rows.properties:
                key = (row[0], row[1])
                if key not in seen:
                    seen.add(key)
                    properties.append(row)
            _write(connection, rows, counts, properties)

        return fold


class SourcesProjector:
    """Every version of every source, so a source reads as it stood at any seq."""

    name = "projections.sources"
    tables: tuple[str, ...] = SOURCE_TABLES

    def migrate(self, connection: sqlite3.Connection) -> None:
        migrate(connection, SOURCE_MIGRATIONS)
        catch_up_on_open(connection, self)

    def reset(self, connection: sqlite3.Connection) -> None:
        for table in self.tables:
            connection.execute(f"DELETE FROM {table}")

    def apply(self, connection: sqlite3.Connection, events: Sequence[Event]) -> None:
        for event in events:
            data = event.data
            state: tuple[Any, ...]
            if isinstance(data, SourceRegistered):
                state = (data.name, data.kind, data.country, data.reliability)
            elif isinstance(data, SourceUpdated):
                row = connection.execute(
                    "SELECT name, kind, country, reliability FROM proj_source_versions "
                    "WHERE id = ? ORDER BY seq DESC LIMIT 1",
                    (data.id,),
                ).fetchone()
                if row is None:  # an update of a source whose registration was erased
                    continue
                state = tuple(
                    new if new is not None else old
                    for new, old in zip(
                        (data.name, data.kind, data.country, data.reliability), row, strict=True
                    )
                )
                connection.execute(
                    "UPDATE proj_source_versions SET until_seq = ? "
                    "WHERE id = ? AND until_seq IS NULL",
                    (event.seq, data.id),
                )
            else:
                continue
            connection.execute(
                "INSERT INTO proj_source_versions "
                "(id, seq, until_seq, recorded_at, name, kind, country, reliability) "
                "VALUES (?, ?, NULL, ?, ?, ?, ?, ?)",
                (data.id, event.seq, event.recorded_at, *state),
            )


def all_projectors() -> list[Projector]:
    """Fresh instances of every read-side projector, in the order they are applied."""
    return [SourcesProjector(), AssertionsProjector()]
