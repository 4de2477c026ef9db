"""The write model: the little the domain rules must know before appending.

Folded from the log in the append transaction like any projection, but owned by the
ledger itself, so the rules in :mod:`ledger.domain` never depend on the read side.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import msgspec

from ledger.domain import AssertionInfo, PropertyKind
from ledger.events import (
    AssertionRecorded,
    AssertionRetracted,
    ErasedAssertion,
    Event,
    NewEvent,
    SourceRegistered,
    SourceUpdated,
    updated,
)
from ledger.schema import LOG_MIGRATIONS

_SOURCE_COLUMNS = ("name", "kind", "country", "reliability")
_json = msgspec.json.Encoder()


class WriteModel:
    """Projector for the write model's tables (`wm_*`)."""

    name = "write_model"
    tables: tuple[str, ...] = ("wm_sources", "wm_assertions", "wm_properties")

    def migrate(self, connection: sqlite3.Connection) -> None:
        del connection  # created by the log's own migrations
        assert LOG_MIGRATIONS

    def reset(self, connection: sqlite3.Connection) -> None:
        for table in self.tables:
            connection.execute(f"DELETE FROM {table}")

    def apply(self, connection: sqlite3.Connection, events: Sequence[Event]) -> None:
        """Fold `events` with one statement per kind of write.

        Rows are inserted before any update runs, so an event that updates a row
        inserted earlier in the same batch finds it; updates keep their log order.
        """
        self._fold(connection, events, None)

    def replayer(self, connection: sqlite3.Connection) -> Callable[[Sequence[Event]], None]:
        """A fold for a long replay in which nothing else writes these tables: as
        :meth:`apply`, but each (subject, property) is offered to `wm_properties` once
        (its first claim fixes its kind), not once per assertion."""
        seen: set[tuple[str, str]] = set()

        def fold(events: Sequence[Event]) -> None:
            self._fold(connection, events, seen)

        return fold

    def _fold(
        self,
        connection: sqlite3.Connection,
        events: Sequence[Event],
        seen: set[tuple[str, str]] | None,
    ) -> None:
        assertions: list[tuple[str, str, str]] = []
        kinds: list[tuple[str, str, str]] = []
        sources: list[tuple[Any, ...]] = []
        updates: list[tuple[str, tuple[Any, ...]]] = []
        for event in events:
            data = event.data
            if isinstance(data, AssertionRecorded | ErasedAssertion):
                # an erased payload's kept facts fold as the payload did: the id stays taken
                assertions.append((data.assertion_id, data.subject, data.property))
                key = (data.subject, data.property)
                if seen is None or key not in seen:
                    kind = data.kind if isinstance(data, ErasedAssertion) else data.value.kind
                    kinds.append((data.subject, data.property, kind))
                    if seen is not None:
                        seen.add(key)
            elif isinstance(data, AssertionRetracted):
                updates.append(
                    (
                        "UPDATE wm_assertions SET retracted = 1 WHERE assertion_id = ?",
                        (data.assertion_id,),
                    )
                )
            elif isinstance(data, SourceRegistered):
                sources.append((data.id, data.name, data.kind, data.country, data.reliability))
            elif isinstance(data, SourceUpdated):
                for column in _SOURCE_COLUMNS:
                    value = getattr(data, column)
                    if value is not None:
                        updates.append(
                            (f"UPDATE wm_sources SET {column} = ? WHERE id = ?", (value, data.id))
                        )
                for column in data.cleared:
                    if column in _SOURCE_COLUMNS:
                        updates.append(
                            (f"UPDATE wm_sources SET {column} = NULL WHERE id = ?", (data.id,))
                        )
        if sources:
            connection.executemany(
                "INSERT INTO wm_sources (id, name, kind, country, reliability) "
                "VALUES (?, ?, ?, ?, ?)",
                sources,
            )
        if assertions:
            connection.executemany(
                "INSERT INTO wm_assertions (assertion_id, subject, property) VALUES (?, ?, ?)",
                assertions,
            )
        if kinds:
            connection.executemany(
                "INSERT OR IGNORE INTO wm_properties (subject, property, kind) VALUES (?, ?, ?)",
                kinds,
            )
        for sql, args in updates:
            connection.execute(sql, args)


K = TypeVar("K")
V = TypeVar("V")
_MISSING: Any = object()


class WriteCache:
    """What the writer remembers of the write model between units of work.

    Sources, the kind of each (subject, property) and the version of each stream, read
    from the tables on a miss and kept up to date by every append, so deciding a command
    usually needs no statement at all; and the assertions recorded or retracted in the
    open transaction, whose rows the store writes only just before it commits. Only the
    writer thread touches it. Every change made inside the open transaction is
    journaled: :meth:`undo` takes the cache back to a :meth:`mark` when the work after
    it is rolled back. Code that writes the tables
    by other means must call :meth:`clear` (the store does, after any unit that used
    the raw connection).
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self.sources: dict[str, SourceRegistered | None] = {}
        self.kinds: dict[tuple[str, str], PropertyKind | None] = {}
        self.versions: dict[str, int] = {}
        # assertions looked up or recorded in this transaction, and retractions in it; only
        # for the transaction's life, as the store writes the tables once before its commit
        self.assertions: dict[str, AssertionInfo | None] = {}
        self.retracted: dict[str, bool] = {}
        self._journal: list[tuple[dict[Any, Any], Any, Any]] = []

    def clear(self) -> None:
        self.sources.clear()
        self.kinds.clear()
        self.versions.clear()
        self.assertions.clear()
        self.retracted.clear()
        self._journal.clear()

    def mark(self) -> int:
        return len(self._journal)

    def undo(self, mark: int = 0) -> None:
        """Restore every entry changed since `mark`, newest first."""
        while len(self._journal) > mark:
            table, key, old = self._journal.pop()
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old

    def committed(self) -> None:
        """The transaction committed: its changes stay and the journal starts afresh."""
        self._journal.clear()
        self.assertions.clear()
        self.retracted.clear()
        if max(len(self.sources), len(self.kinds), len(self.versions)) > self.limit:
            self.clear()

    def _set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._journal.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def version(self, connection: sqlite3.Connection, stream: str) -> int:
        version = self.versions.get(stream)
        if version is None:
            row = connection.execute(
                "SELECT max(version) FROM events WHERE stream = ?", (stream,)
            ).fetchone()
            version = self.versions[stream] = int(row[0] or 0)
        return version

    def appended(self, events: Sequence[Event], connection: sqlite3.Connection) -> None:
        """Take in events just appended (and folded into the tables by :class:`WriteModel`)."""
        for event in events:
            self._set(self.versions, event.stream, event.version)
            data = event.data
            if isinstance(data, AssertionRecorded):
                key = (data.subject, data.property)
                if self.kinds.get(key) is None:
                    self._set(self.kinds, key, data.value.kind)
                info = AssertionInfo(data.assertion_id, data.subject, data.property, False)
                self._set(self.assertions, data.assertion_id, info)
            elif isinstance(data, AssertionRetracted):
                self._set(self.retracted, data.assertion_id, True)
            elif isinstance(data, SourceRegistered):
                self._set(self.sources, data.id, data)
            elif isinstance(data, SourceUpdated):
                if data.id not in self.sources:  # not pending, so the table has it as it is
                    self.sources[data.id] = SqliteWriteState(connection).source(data.id)
                current = self.sources[data.id]
                if current is not None:
                    self._set(self.sources, data.id, updated(current, data))


class SqliteWriteState:
    """:class:`ledger.domain.WriteState` read from the write model on one connection.

    With a :class:`WriteCache` (the writer's), sources and property kinds come from it
    and only misses are read.
    """

    def __init__(self, connection: sqlite3.Connection, cache: WriteCache | None = None) -> None:
        self._conn = connection
        self._cache = cache

    def _read_sources(self, source_ids: list[str]) -> dict[str, SourceRegistered]:
        marks = ",".join("?" * len(source_ids))
        rows = self._conn.execute(
            f"SELECT id, name, kind, country, reliability FROM wm_sources WHERE id IN ({marks})",
            source_ids,
        )
        return {
            r[0]: SourceRegistered(id=r[0], name=r[1], kind=r[2], country=r[3], reliability=r[4])
            for r in rows
        }

    def _read_source(self, source_id: str) -> SourceRegistered | None:
        return self._read_sources([source_id]).get(source_id)

    def source(self, source_id: str) -> SourceRegistered | None:
        cache = self._cache
        return _through(None if cache is None else cache.sources, source_id, self._read_source)

    def missing_sources(self, source_ids: list[str]) -> list[str]:
        cache = self._cache
        if cache is None:
            found = self._read_sources(source_ids)
            return [s for s in source_ids if s not in found]
        known = cache.sources
        unknown = [s for s in source_ids if s not in known]
        if unknown:  # the cache has every source appended in this transaction
            found = self._read_sources(unknown)
            for s in unknown:
                known[s] = found.get(s)
        return [s for s in source_ids if known[s] is None]

    def _read_assertion(self, assertion_id: str) -> AssertionInfo | None:
        row = self._conn.execute(
            "SELECT subject, property, retracted FROM wm_assertions WHERE assertion_id = ?",
            (assertion_id,),
        ).fetchone()
        if row is None:
            return None
        return AssertionInfo(assertion_id, row[0], row[1], bool(row[2]))

    def assertion(self, assertion_id: str) -> AssertionInfo | None:
        cache = self._cache
        table = None if cache is None else cache.assertions
        info = _through(table, assertion_id, self._read_assertion)
        if info is None or info.retracted or cache is None or assertion_id not in cache.retracted:
            return info
        return AssertionInfo(info.assertion_id, info.subject, info.property, True)

    def _read_kind(self, key: tuple[str, str]) -> PropertyKind | None:
        row = self._conn.execute(
            "SELECT kind FROM wm_properties WHERE subject = ? AND property = ?", key
        ).fetchone()
        if row is None:
            return None
        kind: PropertyKind = row[0]
        return kind

    def property_kind(self, subject: str, prop: str) -> PropertyKind | None:
        cache = self._cache
        return _through(None if cache is None else cache.kinds, (subject, prop), self._read_kind)


def _through(table: dict[K, V] | None, key: K, read: Callable[[K], V]) -> V:
    """`read(key)`, remembered in `table` when there is one (the writer's cache)."""
    if table is None:
        return read(key)
    if key not in table:
        table[key] = read(key)
    return table[key]


def _json_list(items: Iterable[Any]) -> str:
    return _json.encode(list(items)).decode()


class BatchWriteState:
    """The write state for many commands decided in a row, before any of them is appended.

    Reads the write model in a few bulk queries (:meth:`prefetch`), answers from memory,
    and folds in the events each decision makes (:meth:`fold`), so the next command sees
    them exactly as it would after they were appended. Lives for one unit of work: what
    it holds is only true inside the writer's transaction that read it.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        self._one = SqliteWriteState(connection)
        self._sources: dict[str, SourceRegistered | None] = {}
        self._assertions: dict[str, AssertionInfo | None] = {}
        self._kinds: dict[tuple[str, str], PropertyKind | None] = {}

    def prefetch(
        self,
        source_ids: Iterable[str] = (),
        assertion_ids: Iterable[str] = (),
        properties: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Load these sources, assertions and (subject, property) kinds in bulk.

        Each list goes in as one JSON parameter and each item is one key probe, so a
        chunk of thousands of commands costs three statements.
        """
        conn = self._conn
        wanted = [s for s in dict.fromkeys(source_ids) if s not in self._sources]
        if wanted:
            self._sources.update(dict.fromkeys(wanted))
            for row in conn.execute(
                "SELECT id, name, kind, country, reliability FROM wm_sources"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (_json_list(wanted),),
            ):
                self._sources[row[0]] = SourceRegistered(
                    id=row[0], name=row[1], kind=row[2], country=row[3], reliability=row[4]
                )
        ids = [a for a in dict.fromkeys(assertion_ids) if a not in self._assertions]
        if ids:
            self._assertions.update(dict.fromkeys(ids))
            for aid, subject, prop, retracted in conn.execute(
                "SELECT assertion_id, subject, property, retracted FROM wm_assertions"
                " WHERE assertion_id IN (SELECT value FROM json_each(?))",
                (_json_list(ids),),
            ):
                self._assertions[aid] = AssertionInfo(aid, subject, prop, bool(retracted))
        pairs = [p for p in dict.fromkeys(properties) if p not in self._kinds]
        if pairs:
            self._kinds.update(dict.fromkeys(pairs))
            for subject, prop, kind in conn.execute(
                "SELECT w.subject, w.property, w.kind FROM json_each(?) j"
                " JOIN wm_properties w ON w.subject = json_extract(j.value, '$[0]')"
                " AND w.property = json_extract(j.value, '$[1]')",
                (_json_list(pairs),),
            ):
                self._kinds[(subject, prop)] = kind

    def source(self, source_id: str) -> SourceRegistered | None:
        if source_id not in self._sources:
            self._sources[source_id] = self._one.source(source_id)
        return self._sources[source_id]

    def missing_sources(self, source_ids: list[str]) -> list[str]:
        if any(s not in self._sources for s in source_ids):
            self.prefetch(source_ids=source_ids)
        return [s for s in source_ids if self._sources[s] is None]

    def assertion(self, assertion_id: str) -> AssertionInfo | None:
        if assertion_id not in self._assertions:
            self._assertions[assertion_id] = self._one.assertion(assertion_id)
        return self._assertions[assertion_id]

    def property_kind(self, subject: str, prop: str) -> PropertyKind | None:
        key = (subject, prop)
        if key not in self._kinds:
            self._kinds[key] = self._one.property_kind(subject, prop)
        return self._kinds[key]

    def fold(self, events: Iterable[NewEvent]) -> None:
        """Take in events just decided, as :class:`WriteModel` will when they are appended."""
        for new in events:
            data = new.payload
            if isinstance(data, AssertionRecorded):
                self._assertions[data.assertion_id] = AssertionInfo(
                    data.assertion_id, data.subject, data.property, False
                )
                key = (data.subject, data.property)
                if self.property_kind(*key) is None:
                    self._kinds[key] = data.value.kind
            elif isinstance(data, AssertionRetracted):
                info = self.assertion(data.assertion_id)
                if info is not None:
                    self._assertions[data.assertion_id] = AssertionInfo(
                        info.assertion_id, info.subject, info.property, True
                    )
            elif isinstance(data, SourceRegistered):
                self._sources[data.id] = data
            elif isinstance(data, SourceUpdated):
                current = self.source(data.id)
                if current is not None:
                    self._sources[data.id] = updated(current, data)


def stream_versions(connection: sqlite3.Connection, streams: Iterable[str]) -> dict[str, int]:
    """The current version of each of `streams` (0 for a new one), in one statement."""
    rows = connection.execute(
        # one probe of UNIQUE (stream, version) per stream; a GROUP BY would read them all
        "SELECT s.value, (SELECT max(e.version) FROM events e WHERE e.stream = s.value)"
        " FROM json_each(?) s",
        (_json_list(dict.fromkeys(streams)),),
    )
    return {stream: int(version or 0) for stream, version in rows}
