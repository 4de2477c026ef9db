"""The log's tables refuse every way SQL has of changing or removing a row.

The statements run on a second, raw connection to a real store's file, with
`recursive_triggers` on as on the store's own connections (that is what makes REPLACE
fire the delete trigger).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.schema import APPEND_ONLY_TABLES
from ledger.sqlite_store import SqliteStore
from tests.store_contract import new_events

# (table, a full row equal in key to the first row, another full row)
EVENT_ROW = "(1, 'SourceUpdated', 'source:x', 1, '2025-01-01T00:00:00.000000Z', 'eve', 'ab', 'cd')"
ATTEMPTS: dict[str, list[str]] = {
    "events": [
        "UPDATE events SET actor = 'eve' WHERE seq = 1",
        "UPDATE events SET hash = hash",
        "DELETE FROM events WHERE seq = 1",
        "DELETE FROM events",
        f"REPLACE INTO events VALUES {EVENT_ROW}",
        f"INSERT OR REPLACE INTO events VALUES {EVENT_ROW}",
        # a new seq that takes an existing (stream, version): REPLACE would drop that row
        "INSERT OR REPLACE INTO events SELECT 999, type, stream, version, recorded_at, actor,"
        " data_sha256, hash FROM events WHERE seq = 1",
        f"INSERT INTO events VALUES {EVENT_ROW} ON CONFLICT (seq) DO UPDATE SET actor = 'eve'",
        f"INSERT INTO events VALUES {EVENT_ROW} ON CONFLICT DO UPDATE SET actor = excluded.actor",
        "UPDATE OR REPLACE events SET seq = 2 WHERE seq = 1",
    ],
    "payloads": [
        "UPDATE payloads SET data = x'00' WHERE seq = 1",
        "DELETE FROM payloads WHERE seq = 2",
        "REPLACE INTO payloads (seq, data) VALUES (1, x'00')",
        "INSERT OR REPLACE INTO payloads (seq, data) VALUES (1, x'00')",
        "INSERT INTO payloads (seq, data) VALUES (1, x'00')"
        " ON CONFLICT (seq) DO UPDATE SET data = excluded.data",
    ],
    "merkle_nodes": [
        "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = 0",
        "DELETE FROM merkle_nodes WHERE level = 1",
        "REPLACE INTO merkle_nodes (level, idx, hash) VALUES (0, 0, zeroblob(32))",
        "INSERT OR REPLACE INTO merkle_nodes (level, idx, hash) VALUES (0, 0, zeroblob(32))",
        "INSERT INTO merkle_nodes (level, idx, hash) VALUES (0, 0, zeroblob(32))"
        " ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash",
    ],
}
CASES = [(table, sql) for table, statements in ATTEMPTS.items() for sql in statements]


@pytest.fixture(scope="module")
def ledger_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("append-only") / "ledger.db"
    store = SqliteStore(path)
    store.append_sync("source:x", new_events("source:x", 3), "alice")
    store.append_sync("subject:y", new_events("subject:y", 4), "bob")
    yield path
    store.close()


@pytest.fixture(params=["ON", "OFF"], ids=["recursive-triggers", "plain-connection"])
def raw(ledger_file: Path, request: pytest.FixtureRequest) -> Iterator[sqlite3.Connection]:
    """A second connection, as the store opens them and as any other client would."""
    conn = sqlite3.connect(ledger_file, isolation_level=None)
    conn.execute(f"PRAGMA recursive_triggers = {request.param}")
    conn.execute("PRAGMA busy_timeout = 5000")
    yield conn
    conn.close()


def snapshot(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in ATTEMPTS}


def test_every_append_only_table_is_attacked() -> None:
    assert set(ATTEMPTS) == set(APPEND_ONLY_TABLES)


@pytest.mark.parametrize(("table", "sql"), CASES)
def test_change_is_refused(raw: sqlite3.Connection, table: str, sql: str) -> None:
    before = snapshot(raw)
    assert all(before.values())
    with pytest.raises(sqlite3.DatabaseError, match=f"{table} is append-only"):
        raw.execute(sql)
    assert not raw.in_transaction
    assert snapshot(raw) == before
