"""The file's schema against what this version's migrations make of an empty one.

Tables, indexes and triggers are derived from the migrations, so what a ledger file should
hold is what running them on an empty database gives. A file whose schema was changed
behind the ledger's back (a view table or index dropped, a guard trigger dropped or
rewritten, a trigger added that edits what a fold writes) differs from that:
:func:`drift` names each difference and :func:`mend` puts the expected objects back.

Only what can be put back without losing a record is in scope: the projectors' tables
(rows derived from the log, which a rebuild refills), their indexes and triggers, the
`checkpoints` table, and every trigger on the log's own tables. A log table, the keys or
the remembered answers that are gone cannot be made again from anything; the checks of
:mod:`ledger.verify` report what is missing from the log.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.migrations import migrate
from ledger.schema import APPEND_ONLY_TABLES, LOG_MIGRATIONS
from ledger.store import Projector

_LOG_TABLES = (*APPEND_ONLY_TABLES, "erasures")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class SchemaObject:
    kind: str  # "table", "index" or "trigger"
    name: str
    table: str  # the table it belongs to (a table's own name for a table)
    sql: str


def _objects(conn: sqlite3.Connection) -> dict[str, SchemaObject]:
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE type IN ('table', 'index', 'trigger') AND sql IS NOT NULL"
    ).fetchall()
    return {name: SchemaObject(kind, name, table, sql) for kind, name, table, sql in rows}


def expected(projectors: Sequence[Projector]) -> dict[str, SchemaObject]:
    """Every table, index and trigger the migrations give an empty database, by name."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn, LOG_MIGRATIONS)
        for projector in projectors:
            projector.migrate(conn)
        return _objects(conn)
    finally:
        conn.close()


def _same(a: str, b: str) -> bool:
    return _SPACE.sub(" ", a).strip() == _SPACE.sub(" ", b).strip()


@dataclass(frozen=True, slots=True)
class Drift:
    """One object of the file that is not what the migrations make."""

    what: str  # "missing", "changed" or "unexpected"
    kind: str
    name: str
    table: str

    def __str__(self) -> str:
        return f"{self._object()} is {self.what}"

    def mended(self) -> str:
        """What :func:`mend` did about it."""
        if self.what == "unexpected":
            return f"dropped {self._object()} (this version does not make it)"
        how = " as this version writes it" if self.what == "changed" else ""
        return f"made {self._object()} again{how} (it was {self.what})"

    def _object(self) -> str:
        where = "" if self.kind == "table" else f" on {self.table}"
        return f"{self.kind} {self.name}{where}"


def _scope(projectors: Sequence[Projector]) -> tuple[set[str], set[str]]:
    """The tables that can be made again, and the tables whose triggers are checked."""
    derived = {t for p in projectors for t in p.tables} | {"checkpoints"}
    return derived, derived | set(_LOG_TABLES)


def drift(
    conn: sqlite3.Connection,
    projectors: Sequence[Projector],
    want: dict[str, SchemaObject] | None = None,
) -> list[Drift]:
    """How the schema of `conn` differs from the migrations', within the scope above.

    Tables first, then indexes, then triggers; an index or trigger of a table that is
    missing or changed is not named apart from it.
    """
    want = expected(projectors) if want is None else want
    have = _objects(conn)
    derived, guarded = _scope(projectors)
    there = derived | {n for n, o in have.items() if o.kind == "table"}
    found: list[Drift] = []
    gone: set[str] = set()
    for kind, tables in (("table", derived), ("index", derived), ("trigger", guarded)):
        for name, obj in sorted(want.items()):
            if obj.kind != kind or obj.table not in tables or obj.table in gone:
                continue
            if obj.table not in there:  # a log table gone: nothing to put back on
                continue
            now = have.get(name)
            if now is None or now.kind != kind:
                found.append(Drift("missing", kind, name, obj.table))
            elif not _same(now.sql, obj.sql) or now.table != obj.table:
                found.append(Drift("changed", kind, name, obj.table))
            else:
                continue
            if kind == "table":
                gone.add(name)
        for name, obj in sorted(have.items()):
            if obj.kind == kind != "table" and obj.table in tables - gone and name not in want:
                found.append(Drift("unexpected", kind, name, obj.table))
    return found


def mend(conn: sqlite3.Connection, projectors: Sequence[Projector]) -> list[Drift]:
    """Make the schema of `conn` what the migrations make, within the scope above, in the
    caller's transaction; return what differed.

    A table put back is empty: only a caller that refills the projectors' tables (a
    rebuild, in the same transaction) may call this.
    """
    want = expected(projectors)
    found = drift(conn, projectors, want)
    made = {item.name for item in found if item.kind == "table"}
    for name in sorted(made):  # dropping a table drops its indexes and triggers too
        conn.execute(f"DROP TABLE IF EXISTS {_quote(name)}")
        conn.execute(want[name].sql)
    for obj in want.values():  # so a table made again gets them all back
        if obj.kind != "table" and obj.table in made:
            conn.execute(obj.sql)
    for item in found:
        if item.kind == "table":
            continue
        if item.what != "missing":
            conn.execute(f"DROP {item.kind.upper()} IF EXISTS {_quote(item.name)}")
        if item.what != "unexpected":
            conn.execute(want[item.name].sql)
    return found


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
