"""The projectors: fold events into the history tables of :mod:`projections.schema`.

They run inside the store's append transaction (never BEGIN or COMMIT here), so every view
is exactly as current as the log. `apply` batches each kind of write into one
`executemany`, because it also runs inside bulk imports of tens of thousands of events.
"""

from __future__ import annotations

import math
import sqlite3
from array import array
from collections.abc import Callable, Collection, Iterator, Sequence
from operator import itemgetter
from typing import Any

import msgspec

from ledger.events import (
    AssertionRanked,
    AssertionRecorded,
    AssertionRetracted,
    ErasedAssertion,
    Event,
    SourceRegistered,
    SourceUpdated,
    updated,
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


_period_bounds: dict[str, tuple[int, int]] = {}
_PERIODS_KEPT = 16_384


def _bounds(text: str) -> tuple[int, int]:
    """The time's first and last microsecond. Years, months and days recur (a log of a
    million assertions states ~5,000 distinct ones), so their bounds are kept; instants
    rarely do, and are parsed each time."""
    found = _period_bounds.get(text)
    if found is None:
        value = parse_time(text)
        found = (value.start, value.end)
        if len(text) <= 10 and len(_period_bounds) < _PERIODS_KEPT:
            _period_bounds[text] = found
    return found


def _counts_so_far(connection: sqlite3.Connection, subjects: list[str]) -> dict[str, int]:
    """Each subject's latest assertion count, one index probe each, in one statement."""
    rows = connection.execute(
        "SELECT s.value, (SELECT c.assertions FROM proj_subject_counts c WHERE c.subject = s.value"
        " ORDER BY c.seq DESC LIMIT 1) FROM json_each(?) s",
        (_json.encode(subjects).decode(),),
    )
    return {subject: int(count or 0) for subject, count in rows}


def _count_from_table(
    connection: sqlite3.Connection, counts: dict[str, int], counted: list[tuple[str, int]]
) -> None:
    """Add to a replay's running `counts` the subjects of `counted` it has not met yet,
    with their counts as the table holds them."""
    new = [s for s in dict.fromkeys(s for s, _ in counted) if s not in counts]
    if new:
        counts.update(_counts_so_far(connection, new))


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


_NULL = math.nan
"""Bound in place of None: SQLite stores a NaN bound as a double as NULL. Python's sqlite3
looks for an adapter for every None it binds (~0.8 us each), and an assertion row holds
five to eight of them; NaN is bound directly. No column of these rows holds a float."""


def _collect(events: Sequence[Event], claimants: bool = True) -> _Rows:
    """The rows `events` add; without the claimants' when `claimants` is false."""
    rows = _Rows()
    add_recorded, add_claimant = rows.recorded.append, rows.claimants.append
    add_property, add_counted = rows.properties.append, rows.counted.append
    encode, bounds, null = _json.encode, _bounds, _NULL
    for event in events:
        data = event.data
        if isinstance(data, AssertionRecorded):
            seq = event.seq
            value = data.value
            status = value.status
            value_kind = "quantity" if status is None else "status"
            stated_start, stated_end = bounds(data.stated_at)
            valid_from, valid_to = data.valid_from, data.valid_to
            low, high, best = value.low, value.high, value.best
            mode, credibility = data.mode, data.credibility
            supersedes, note = data.supersedes, data.note
            subject, prop = data.subject, data.property
            add_recorded(
                (
                    seq,
                    data.assertion_id,
                    subject,
                    prop,
                    value_kind,
                    event.recorded_at,
                    null if low is None else low,
                    null if high is None else high,
                    null if best is None else best,
                    null if status is None else status,
                    null if mode is None else mode,
                    data.qualifier,
                    encode(data.claimants).decode(),
                    data.stated_at,
                    stated_start,
                    stated_end,
                    null if valid_from is None else valid_from,
                    null if valid_from is None else bounds(valid_from)[0],
                    null if valid_to is None else valid_to,
                    null if valid_to is None else bounds(valid_to)[1],
                    encode(data.document).decode(),
                    data.quote,
                    null if credibility is None else credibility,
                    null if supersedes is None else supersedes,
                    null if note is None else note,
                )
            )
            if claimants:
                for claimant in data.claimants:
                    add_claimant((claimant, seq))
            add_property((subject, prop, value_kind, seq))
            add_counted((subject, seq))
        elif isinstance(data, ErasedAssertion):  # its text is gone; its place stays
            add_property((data.subject, data.property, data.kind, event.seq))
            add_counted((data.subject, event.seq))
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


_first = itemgetter(0)


def _property_order(row: tuple[str, str, str, int]) -> tuple[str, str, int]:
    return row[0], row[1], row[3]


def _write(
    connection: sqlite3.Connection,
    rows: _Rows,
    counts: dict[str, int] | None,
    properties: list[tuple[str, str, str, int]],
) -> None:
    """Write a batch's rows; `counts` holds each recorded subject's count before it
    (None: the subject counts are not written)."""
    count_rows = [] if counts is None else _count_rows(rows.counted, counts)
    # records first: a retraction or rank in the same batch names an assertion before it.
    # The keyed rows go in key order (the rows are the same in any order, and the first of
    # a (subject, property) stays first): neighbours share B-tree pages. The claimant and
    # count rows were made in seq order, so a stable sort on their first column alone puts
    # them in key order, and compares strings instead of tuples.
    # (an erased assertion, folded from what its erasure kept, has a property and a count
    # row but no assertion row: a batch may hold those alone)
    if rows.recorded:
        connection.executemany(_INSERT_ASSERTION, rows.recorded)
    if rows.claimants:
        connection.executemany(_INSERT_CLAIMANT, sorted(rows.claimants, key=_first))
    if properties:
        properties.sort(key=_property_order)
        connection.executemany(_INSERT_PROPERTY, properties)
    if count_rows:
        connection.executemany(_INSERT_COUNT, count_rows)
    if rows.retractions:
        connection.executemany(_RETRACT, rows.retractions)
    if rows.ranks:
        connection.executemany(_RANK, rows.ranks)


def _count_rows(
    counted: list[tuple[str, int]], counts: dict[str, int]
) -> list[tuple[str, int, int]]:
    """The `proj_subject_counts` rows of the records `counted`, in key order; `counts`
    holds each subject's count before them, and is moved on past them."""
    count_rows: list[tuple[str, int, int]] = []
    for subject, seq in counted:
        counts[subject] += 1
        count_rows.append((subject, seq, counts[subject]))
    count_rows.sort(key=_first)
    return count_rows


_HELD_COLUMNS = {
    "proj_claimants": ("claimant", "recorded_seq"),
    "proj_subject_counts": ("subject", "seq", "assertions"),
}
_HELD_INSERTS = {"proj_claimants": _INSERT_CLAIMANT, "proj_subject_counts": _INSERT_COUNT}


class HeldRows:
    """A fold of a replay from seq 1 into :attr:`AssertionsProjector.split_tables` that
    keeps their rows in memory instead of writing them: the seqs of each claimant's and
    each subject's records, in order (a subject's count is the position in its list).

    The rows are exactly those :meth:`AssertionsProjector.apply` writes from empty tables;
    an audit compares them with the live tables without a scratch copy, and writes them
    (:meth:`write`) only to describe a difference.
    """

    tables: tuple[str, ...] = tuple(_HELD_COLUMNS)

    def __init__(self) -> None:
        self.claimants: dict[str, array[int]] = {}
        self.subjects: dict[str, array[int]] = {}

    def __call__(self, events: Sequence[Event]) -> None:
        claimants, subjects = self.claimants, self.subjects
        for event in events:
            data = event.data
            if isinstance(data, AssertionRecorded):
                seq = event.seq
                seqs = subjects.get(data.subject)
                if seqs is None:
                    seqs = subjects[data.subject] = array("q")
                seqs.append(seq)
                for claimant in data.claimants:
                    seqs = claimants.get(claimant)
                    if seqs is None:
                        seqs = claimants[claimant] = array("q")
                    if not seqs or seqs[-1] != seq:  # a claimant named twice: one row
                        seqs.append(seq)
            elif isinstance(data, ErasedAssertion):  # counted, with no claimant rows
                seqs = subjects.get(data.subject)
                if seqs is None:
                    seqs = subjects[data.subject] = array("q")
                seqs.append(event.seq)

    def columns(self, table: str) -> tuple[str, ...]:
        """The table's columns, primary key first, in the order :meth:`rows` gives them."""
        return _HELD_COLUMNS[table]

    def rows(self, table: str) -> Iterator[tuple[str, int] | tuple[str, int, int]]:
        """The table's rows in primary-key order (keys sort as SQLite's BINARY collation)."""
        if table == "proj_claimants":
            for claimant in sorted(self.claimants):
                for seq in self.claimants[claimant]:
                    yield claimant, seq
        elif table == "proj_subject_counts":
            for subject in sorted(self.subjects):
                for count, seq in enumerate(self.subjects[subject], 1):
                    yield subject, seq, count
        else:
            raise KeyError(table)

    def check(self, table: str) -> tuple[str, list[tuple[Any, ...]]]:
        """A query of the live table (`main`) and what it returns if the table holds
        exactly :meth:`rows`: per key group in key order, its row count and its other
        columns' values listed in key order."""
        if table == "proj_claimants":
            held = self.claimants
            sql = (
                "SELECT claimant, count(*), group_concat(recorded_seq) FROM main.proj_claimants"
                " GROUP BY claimant ORDER BY claimant"
            )
            return sql, [(c, len(held[c]), ",".join(map(str, held[c]))) for c in sorted(held)]
        if table == "proj_subject_counts":
            held = self.subjects
            sql = (
                "SELECT subject, count(*), group_concat(seq || ':' || assertions)"
                " FROM main.proj_subject_counts GROUP BY subject ORDER BY subject"
            )
            return sql, [
                (s, len(held[s]), ",".join(f"{q}:{n}" for n, q in enumerate(held[s], 1)))
                for s in sorted(held)
            ]
        raise KeyError(table)

    def write(self, connection: sqlite3.Connection, table: str) -> None:
        """Insert the table's rows on `connection` (in the caller's transaction)."""
        connection.executemany(_HELD_INSERTS[table], self.rows(table))


def _split_fold(connection: sqlite3.Connection) -> Callable[[Sequence[Event]], None]:
    """A replayer of :attr:`AssertionsProjector.split_tables` alone, writing their rows."""
    counts: dict[str, int] = {}

    def fold(events: Sequence[Event]) -> None:
        rows = _collect(events)
        _count_from_table(connection, counts, rows.counted)
        if rows.claimants:
            connection.executemany(_INSERT_CLAIMANT, sorted(rows.claimants, key=_first))
        if rows.counted:
            connection.executemany(_INSERT_COUNT, _count_rows(rows.counted, counts))

    return fold


class AssertionsProjector:
    """Assertions, their retractions and rankings, claimants and each subject's properties."""

    name = "projections.assertions"
    tables: tuple[str, ...] = ASSERTION_TABLES
    deferred_indexes: tuple[str, ...] = DEFERRED_INDEXES
    split_tables: tuple[str, ...] = HeldRows.tables
    """Tables :meth:`replayer` can fold apart from the others, in another process, and
    :meth:`split_holder` in memory."""

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

    def replayer(
        self, connection: sqlite3.Connection, tables: Collection[str] | None = None
    ) -> Callable[[Sequence[Event]], None]:
        """A fold for a long replay in which nothing else writes these tables.

        Folds exactly as :meth:`apply` does, batch after batch, but keeps each subject's
        running count and the properties already written in memory, so a batch reads
        nothing back and writes each (subject, property) once.

        With `tables`, only those are folded: :attr:`split_tables`, or every other table.
        """
        wanted = set(self.tables if tables is None else tables)
        split = set(self.split_tables)
        if wanted == split:
            return _split_fold(connection)
        if wanted not in (set(self.tables), set(self.tables) - split):
            raise ValueError(f"cannot fold {sorted(wanted)} apart from the other tables")
        whole = wanted == set(self.tables)
        counts: dict[str, int] | None = {} if whole else None
        seen: set[tuple[str, str]] = set()

        def fold(events: Sequence[Event]) -> None:
            rows = _collect(events, whole)
            if counts is not None:
                _count_from_table(connection, counts, rows.counted)
            properties = []
            for row in rows.properties:
                key = (row[0], row[1])
                if key not in seen:
                    seen.add(key)
                    properties.append(row)
            _write(connection, rows, counts, properties)

        return fold

    def erase(self, connection: sqlite3.Connection, event: Event) -> None:
        """Drop what these tables hold of the assertion recorded by `event`, whose payload
        is being erased: its row (with the text), its claimant rows and its rankings.

        What is left is what a replay gives once the payload is gone (it folds an
        :class:`ErasedAssertion` there): the subject's counts and the property's first
        seq stay, and later retractions and rankings of the assertion find no row.
        """
        data = event.data
        if not isinstance(data, AssertionRecorded):
            return
        connection.execute("DELETE FROM proj_assertions WHERE recorded_seq = ?", (event.seq,))
        connection.executemany(
            "DELETE FROM proj_claimants WHERE claimant = ? AND recorded_seq = ?",
            [(claimant, event.seq) for claimant in dict.fromkeys(data.claimants)],
        )
        connection.execute("DELETE FROM proj_ranks WHERE assertion_id = ?", (data.assertion_id,))

    def split_holder(self) -> HeldRows:
        """A fold of :attr:`split_tables` from an empty start that holds their rows in
        memory (see :class:`HeldRows`)."""
        return HeldRows()


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
                now = updated(SourceRegistered(data.id, *row), data)
                state = (now.name, now.kind, now.country, now.reliability)
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
