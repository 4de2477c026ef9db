"""The write model: the little the domain rules must know before appending.

Folded from the log in the append transaction like any projection, but owned by the
ledger itself, so the rules in :mod:`ledger.domain` never depend on the read side.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from ledger.domain import AssertionInfo, PropertyKind
from ledger.events import (
    AssertionRecorded,
    AssertionRetracted,
    Event,
    NewEvent,
    SourceRegistered,
    SourceUpdated,
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
        assertions: list[tuple[str, str, str]] = []
        kinds: list[tuple[str, str, str]] = []
        sources: list[tuple[Any, ...]] = []
        updates: list[tuple[str, tuple[Any, ...]]] = []
        for event in events:
            data = event.data
            if isinstance(data, AssertionRecorded):
                assertions.append((data.assertion_id, data.subject, data.property))
                kinds.append((data.subject, data.property, data.value.kind))
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
            connection.executemany(
                "INSERT OR IGNORE INTO wm_properties (subject, property, kind) VALUES (?, ?, ?)",
                kinds,
            )
        for sql, args in updates:
            connection.execute(sql, args)


class SqliteWriteState:
    """:class:`ledger.domain.WriteState` read from the write model on one connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection

    def source(self, source_id: str) -> SourceRegistered | None:
        row = self._conn.execute(
            "SELECT id, name, kind, country, reliability FROM wm_sources WHERE id = ?",
            (source_id,),
        ).fetchone()
        if row is None:
            return None
        return SourceRegistered(
            id=row[0], name=row[1], kind=row[2], country=row[3], reliability=row[4]
        )

    def missing_sources(self, source_ids: list[str]) -> list[str]:
        marks = ",".join("?" * len(source_ids))
        found = {
            r[0]
            for r in self._conn.execute(
                f"SELECT id FROM wm_sources WHERE id IN ({marks})", source_ids
            )
        }
        return [s for s in source_ids if s not in found]

    def assertion(self, assertion_id: str) -> AssertionInfo | None:
        row = self._conn.execute(
            "SELECT subject, property, retracted FROM wm_assertions WHERE assertion_id = ?",
            (assertion_id,),
        ).fetchone()
        if row is None:
            return None
        return AssertionInfo(assertion_id, row[0], row[1], bool(row[2]))

    def property_kind(self, subject: str, prop: str) -> PropertyKind | None:
        row = self._conn.execute(
            "SELECT kind FROM wm_properties WHERE subject = ? AND property = ?", (subject, prop)
        ).fetchone()
        if row is None:
            return None
        kind: PropertyKind = row[0]
        return kind


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
                    self._sources[data.id] = SourceRegistered(
                        id=current.id,
                        name=data.name if data.name is not None else current.name,
                        kind=data.kind if data.kind is not None else current.kind,
                        country=data.country if data.country is not None else current.country,
                        reliability=(
                            data.reliability
                            if data.reliability is not None
                            else current.reliability
                        ),
                    )


def stream_versions(connection: sqlite3.Connection, streams: Iterable[str]) -> dict[str, int]:
    """The current version of each of `streams` (0 for a new one), in one statement."""
    rows = connection.execute(
        # one probe of UNIQUE (stream, version) per stream; a GROUP BY would read them all
        "SELECT s.value, (SELECT max(e.version) FROM events e WHERE e.stream = s.value)"
        " FROM json_each(?) s",
        (_json_list(dict.fromkeys(streams)),),
    )
    return {stream: int(version or 0) for stream, version in rows}
