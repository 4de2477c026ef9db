"""The write model: the little the domain rules must know before appending.

Folded from the log in the append transaction like any projection, but owned by the
ledger itself, so the rules in :mod:`ledger.domain` never depend on the read side.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ledger.domain import AssertionInfo, PropertyKind
from ledger.events import (
    AssertionRecorded,
    AssertionRetracted,
    Event,
    SourceRegistered,
    SourceUpdated,
)
from ledger.schema import LOG_MIGRATIONS


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
        for event in events:
            data = event.data
            if isinstance(data, AssertionRecorded):
                connection.execute(
                    "INSERT INTO wm_assertions (assertion_id, subject, property) VALUES (?, ?, ?)",
                    (data.assertion_id, data.subject, data.property),
                )
                connection.execute(
                    "INSERT OR IGNORE INTO wm_properties (subject, property, kind) "
                    "VALUES (?, ?, ?)",
                    (data.subject, data.property, data.value.kind),
                )
            elif isinstance(data, AssertionRetracted):
                connection.execute(
                    "UPDATE wm_assertions SET retracted = 1 WHERE assertion_id = ?",
                    (data.assertion_id,),
                )
            elif isinstance(data, SourceRegistered):
                connection.execute(
                    "INSERT INTO wm_sources (id, name, kind, country, reliability) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (data.id, data.name, data.kind, data.country, data.reliability),
                )
            elif isinstance(data, SourceUpdated):
                for column in ("name", "kind", "country", "reliability"):
                    value = getattr(data, column)
                    if value is not None:
                        connection.execute(
                            f"UPDATE wm_sources SET {column} = ? WHERE id = ?", (value, data.id)
                        )


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
