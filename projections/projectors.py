"""The projectors: fold events into the history tables of :mod:`projections.schema`.

They run inside the store's append transaction (never BEGIN or COMMIT here), so every view
is exactly as current as the log. `apply` batches each kind of write into one
`executemany`, because it also runs inside bulk imports of tens of thousands of events.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
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


def _start(text: str | None) -> int | None:
    return None if text is None else _bounds(text)[0]


def _end(text: str | None) -> int | None:
    return None if text is None else _bounds(text)[1]


def _counts_so_far(connection: sqlite3.Connection, subjects: list[str]) -> dict[str, int]:
    """Each subject's latest assertion count, one index probe each, in one statement."""
    rows = connection.execute(
        "SELECT s.value, (SELECT c.assertions FROM proj_subject_counts c WHERE c.subject = s.value"
        " ORDER BY c.seq DESC LIMIT 1) FROM json_each(?) s",
        (_json.encode(subjects).decode(),),
    )
    return {subject: int(count or 0) for subject, count in rows}


class AssertionsProjector:
    """Assertions, their retractions and rankings, claimants and each subject's properties."""

    name = "projections.assertions"
    tables: tuple[str, ...] = ASSERTION_TABLES
    deferred_indexes: tuple[str, ...] = DEFERRED_INDEXES

    def migrate(self, connection: sqlite3.Connection) -> None:
        migrate(connection, ASSERTION_MIGRATIONS)

    def reset(self, connection: sqlite3.Connection) -> None:
        for table in self.tables:
            connection.execute(f"DELETE FROM {table}")

    def apply(self, connection: sqlite3.Connection, events: Sequence[Event]) -> None:
        recorded: list[tuple[Any, ...]] = []
        claimants: list[tuple[str, int]] = []
        properties: list[tuple[str, str, str, int]] = []
        retractions: list[tuple[int, str, str, str]] = []
        ranks: list[tuple[int, str, str, str]] = []
        count_rows: list[tuple[str, int, int]] = []
        for event in events:
            data = event.data
            if isinstance(data, AssertionRecorded):
                seq = event.seq
                value = data.value
                value_kind = "status" if value.status is not None else "quantity"
                stated_start, stated_end = _bounds(data.stated_at)
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
                        _json.encode(data.claimants).decode(),
                        data.stated_at,
                        stated_start,
                        stated_end,
                        data.valid_from,
                        _start(data.valid_from),
                        data.valid_to,
                        _end(data.valid_to),
                        _json.encode(data.document).decode(),
                        data.quote,
                        data.credibility,
                        data.supersedes,
                        data.note,
                    )
                )
                claimants.extend((c, seq) for c in data.claimants)
                properties.append((data.subject, data.property, value_kind, seq))
                count_rows.append((data.subject, seq, 0))
            elif isinstance(data, AssertionRetracted):
                retractions.append((event.seq, data.reason, event.recorded_at, data.assertion_id))
            elif isinstance(data, AssertionRanked):
                ranks.append((event.seq, data.rank, data.reason, data.assertion_id))
        # records first: a retraction or rank in the same batch names an assertion before it
        if recorded:
            counts = _counts_so_far(connection, list({row[0]: None for row in count_rows}))
            for i, (subject, seq, _) in enumerate(count_rows):
                counts[subject] += 1
                count_rows[i] = (subject, seq, counts[subject])
            connection.executemany(_INSERT_ASSERTION, recorded)
            connection.executemany(
                "INSERT OR IGNORE INTO proj_claimants (claimant, recorded_seq) VALUES (?, ?)",
                claimants,
            )
            connection.executemany(
                "INSERT OR IGNORE INTO proj_properties (subject, property, kind, first_seq) "
                "VALUES (?, ?, ?, ?)",
                properties,
            )
            connection.executemany(
                "INSERT INTO proj_subject_counts (subject, seq, assertions) VALUES (?, ?, ?)",
                count_rows,
            )
        if retractions:
            connection.executemany(_RETRACT, retractions)
        if ranks:
            connection.executemany(_RANK, ranks)


class SourcesProjector:
    """Every version of every source, so a source reads as it stood at any seq."""

    name = "projections.sources"
    tables: tuple[str, ...] = SOURCE_TABLES

    def migrate(self, connection: sqlite3.Connection) -> None:
        migrate(connection, SOURCE_MIGRATIONS)

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
