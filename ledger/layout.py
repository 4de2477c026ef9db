"""The file's schema against what this version's migrations make of an empty one.

Tables, indexes and triggers are derived from the migrations, so what a ledger file should
hold is what running them on an empty database gives. A file whose schema was changed
behind the ledger's back (a view table or index dropped, a guard trigger dropped or
rewritten, a trigger added that edits what a fold writes) differs from that:
:func:`drift` names each difference and :func:`mend` puts the expected objects back.

Every table, index and trigger the migrations make is checked, and a trigger added on
any of those tables. What can be put back without losing a record is put back: the
projectors' tables (rows derived from the log, which a rebuild refills), the
`checkpoints` table, the `erasures`, `api_keys` and `idempotency` tables when they are gone
(empty: a rebuild that verifies the log has no erasure it would need, and keys and
remembered answers lost are lost), their indexes, and every trigger. A table that holds
records (the log's, the keys, the remembered answers) is never made again over them: a
change to one is named, and left; one of the log's that is gone is for
:mod:`ledger.verify` to find.

SQLite's names are case-insensitive (`EVENTS` is `events`), and triggers have a namespace
of their own: objects are told apart by their kind and their name in lower case.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.migrations import migrate
from ledger.schema import APPEND_ONLY_TABLES, LOG_MIGRATIONS
from ledger.store import Projector

_RECORDS = frozenset({*APPEND_ONLY_TABLES, "api_keys", "idempotency", "_migrations"})
"""Tables that hold records nothing can make again: never dropped to free a name."""
REMADE_WHEN_GONE = frozenset({"erasures", "api_keys", "idempotency"})
"""Tables of records a rebuild makes again, empty, when they are gone (never over rows)."""
_SPACE = re.compile(r"\s+")

Key = tuple[str, str]
"""An object's kind and its name in lower case."""


@dataclass(frozen=True, slots=True)
class SchemaObject:
    kind: str  # "table", "index", "trigger" or "view"
    name: str
    table: str  # the table it belongs to, in lower case (a table's own name for a table)
    sql: str


def _objects(conn: sqlite3.Connection) -> dict[Key, SchemaObject]:
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM main.sqlite_master "
        "WHERE type IN ('table', 'index', 'trigger', 'view') AND sql IS NOT NULL"
    ).fetchall()
    return {
        (kind, name.lower()): SchemaObject(kind, name, table.lower(), sql)
        for kind, name, table, sql in rows
    }


def expected(projectors: Sequence[Projector]) -> dict[Key, SchemaObject]:
    """Every table, index and trigger the migrations give an empty database."""
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


def _scope(projectors: Sequence[Projector]) -> set[str]:
    """The tables a rebuild can make again (and those of `REMADE_WHEN_GONE` when gone)."""
    return {t.lower() for p in projectors for t in p.tables} | {"checkpoints"}


def drift(
    conn: sqlite3.Connection,
    projectors: Sequence[Projector],
    want: dict[Key, SchemaObject] | None = None,
) -> list[Drift]:
    """How the schema of `conn` differs from the migrations'.

    Tables first, then indexes, then triggers. An index or trigger of a table that will be
    made again whole is not named apart from it; nor is anything on a table that holds
    records and is gone (that is for :mod:`ledger.verify` to find), but those of
    `REMADE_WHEN_GONE`.
    """
    want = expected(projectors) if want is None else want
    have = _objects(conn)
    mendable = _scope(projectors)
    ours = {obj.table for obj in want.values() if obj.kind == "table"}
    there = {o.name.lower() for o in have.values() if o.kind == "table"}
    found: list[Drift] = []
    gone: set[str] = set()
    for kind in ("table", "index", "trigger"):
        for key, obj in sorted(want.items()):
            if obj.kind != kind or obj.table in gone:
                continue
            if obj.table not in there and obj.table not in mendable | REMADE_WHEN_GONE:
                continue  # a table of records gone: nothing to put back on
            now = have.get(key)
            if now is None:
                found.append(Drift("missing", kind, obj.name, obj.table))
            elif not _same(now.sql, obj.sql) or now.table != obj.table:
                found.append(Drift("changed", kind, obj.name, obj.table))
            else:
                continue
            if kind == "table" and (obj.table in mendable or obj.table in REMADE_WHEN_GONE):
                gone.add(obj.table)  # made again whole: what hangs on it is not named
        for key, obj in sorted(have.items()):
            if obj.kind == kind != "table" and obj.table in ours - gone and key not in want:
                found.append(Drift("unexpected", kind, obj.name, obj.table))
    return found


def mendable(item: Drift, projectors: Sequence[Projector]) -> bool:
    """Whether :func:`mend` puts `item` right: not a table of records that is there."""
    if item.kind != "table":
        return True
    if item.table in _scope(projectors):
        return True
    return item.table in REMADE_WHEN_GONE and item.what == "missing"


def mend(conn: sqlite3.Connection, projectors: Sequence[Projector]) -> list[Drift]:
    """Make the schema of `conn` what the migrations make, but for a table of records that
    is there (:func:`mendable`), in the caller's transaction; return what it put right.

    Everything that goes is dropped before anything is made, and a name an object must
    take is freed first (an index of a renamed table keeps its name, say). A table put
    back is empty: only a caller that refills the projectors' tables (a rebuild, in the
    same transaction) may call this.
    """
    want = expected(projectors)
    found = [d for d in drift(conn, projectors, want) if mendable(d, projectors)]
    made = {d.table for d in found if d.kind == "table"}
    for item in found:  # a table dropped takes its indexes and triggers with it
        if item.kind == "table" and item.what == "changed":
            conn.execute(f"DROP TABLE IF EXISTS {_quote(item.name)}")
    for item in found:
        if item.kind != "table" and item.what != "missing":
            conn.execute(f"DROP {item.kind.upper()} IF EXISTS {_quote(item.name)}")
    to_make = [obj for obj in want.values() if obj.table in made]
    to_make += [
        want[(d.kind, d.name.lower())]
        for d in found
        if d.kind != "table" and d.what != "unexpected" and d.table not in made
    ]
    to_make.sort(key=lambda obj: obj.kind != "table")  # tables before what hangs on them
    for obj in to_make:
        _free(conn, obj)
        conn.execute(obj.sql)
    return found


def _free(conn: sqlite3.Connection, obj: SchemaObject) -> None:
    """Drop whatever holds the name `obj` must take: an index or trigger of that name on
    another table, or a table, view or index that took a name of this schema."""
    if obj.kind == "trigger":
        conn.execute(f"DROP TRIGGER IF EXISTS {_quote(obj.name)}")
        return
    for kind, name in _holders(conn, obj.name):  # tables, indexes and views share names
        if kind == "table" and name.lower() in _RECORDS:
            raise LedgerError(f"cannot make {obj.kind} {obj.name} again: table {name} has its name")
        conn.execute(f"DROP {kind.upper()} {_quote(name)}")


def _holders(conn: sqlite3.Connection, name: str) -> Iterable[tuple[str, str]]:
    return conn.execute(
        "SELECT type, name FROM main.sqlite_master "
        "WHERE type IN ('table', 'index', 'view') AND lower(name) = lower(?)",
        (name,),
    ).fetchall()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
