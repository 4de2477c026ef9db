"""The PostgreSQL backend: the storage contract, plus what is its own (append-only
triggers, writers in two stores on one schema, projectors in the append transaction).

Runs on a throwaway server (`tests/pg_server.py`); skips, saying why, where no server can
be had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.pg_server import postgres_dsn
from tests.store_contract import StoreContract, check_head, check_log, fill, new_events, read_all

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -e '.[dev]')"
)

from ledger.errors import LedgerError, LedgerUnavailable  # noqa: E402
from ledger.events import Event  # noqa: E402
from ledger.postgres_store import SCHEMA_VERSION, PostgresStore  # noqa: E402


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with postgres_dsn() as found:
        yield found


def schema_of(path: Path) -> str:
    """One schema per test (the contract reopens a store by its path)."""
    return "t_" + hashlib.sha256(str(path).encode()).hexdigest()[:20]


class TestPostgresStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, dsn: str) -> None:
        self.dsn = dsn

    def make_store(self, path: Path) -> PostgresStore:
        return PostgresStore(self.dsn, schema=schema_of(path))


@pytest.fixture
def schema(tmp_path: Path) -> str:
    return schema_of(tmp_path)


@pytest.fixture
def pg(dsn: str, schema: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(dsn, schema=schema)
    yield opened
    opened.close()


class StreamCounts:
    """A projector for PostgreSQL: events per stream, folded in the append transaction;
    it refuses to fold a stream named `subject:refused`."""

    name = "stream_counts"
    tables: tuple[str, ...] = ("stream_counts",)

    def migrate(self, connection: Any) -> None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS stream_counts (stream text PRIMARY KEY, n bigint)"
        )

    def reset(self, connection: Any) -> None:
        connection.execute("DELETE FROM stream_counts")

    def apply(self, connection: Any, events: Sequence[Event]) -> None:
        if any(e.stream == "subject:refused" for e in events):
            raise RuntimeError("this fold fails")
        with connection.cursor() as cur:
            cur.executemany(
                "INSERT INTO stream_counts (stream, n) VALUES (%s, 1) "
                "ON CONFLICT (stream) DO UPDATE SET n = stream_counts.n + 1",
                [(e.stream,) for e in events],
            )


def counts(dsn: str, schema: str) -> dict[str, int]:
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        return dict(conn.execute("SELECT stream, n FROM stream_counts").fetchall())


async def test_the_log_tables_refuse_update_delete_and_truncate(
    pg: PostgresStore, dsn: str, schema: str
) -> None:
    await fill(pg, 5)
    head = pg.head()
    statements = [
        "UPDATE events SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM events WHERE seq = 5",
        "TRUNCATE events CASCADE",
        "UPDATE payloads SET data = NULL WHERE seq = 1",
        "DELETE FROM payloads",
        "TRUNCATE payloads",
        "UPDATE merkle_nodes SET hash = '\\x00' WHERE level = 0 AND idx = 0",
        "DELETE FROM merkle_nodes",
    ]
    with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
        for statement in statements:
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
    assert pg.head() == head
    check_log(read_all(pg))


async def test_two_stores_on_one_schema_chain_onto_each_other(dsn: str, schema: str) -> None:
    first, second = PostgresStore(dsn, schema=schema), PostgresStore(dsn, schema=schema)
    try:
        for round_ in range(4):
            await fill(first, 3, streams=("subject:a",))
            await fill(second, 2 + round_, streams=("subject:a", "subject:b"))
        events = read_all(first)
        assert len(events) == 4 * 3 + 2 + 3 + 4 + 5
        check_log(events)  # seqs without a gap, versions per stream, one chain
        check_head(first, events)
        check_head(second, events)
    finally:
        first.close()
        second.close()


async def test_projectors_fold_in_the_append_transaction(dsn: str, schema: str) -> None:
    store = PostgresStore(dsn, [StreamCounts()], schema=schema)
    try:
        await fill(store, 7, streams=("subject:a", "subject:b"))
        assert counts(dsn, schema) == {"subject:a": 4, "subject:b": 3}
        head = store.head()
        with pytest.raises(LedgerUnavailable, match="rolled back"):
            await store.append("subject:refused", new_events("subject:refused", 2), "t")
        assert store.head() == head  # the fold failed, so the append did not happen
        assert counts(dsn, schema) == {"subject:a": 4, "subject:b": 3}
        assert store.checkpoints() == {"stream_counts": 7}
        more = await store.append("subject:a", new_events("subject:a", 1), "t")
        assert [(e.seq, e.version) for e in more] == [(8, 5)]
    finally:
        store.close()


async def test_projectors_catch_up_on_what_another_writer_appended(dsn: str, schema: str) -> None:
    with_counts = PostgresStore(dsn, [StreamCounts()], schema=schema)
    bare = PostgresStore(dsn, schema=schema)
    try:
        await fill(with_counts, 2, streams=("subject:a",))
        await fill(bare, 5, streams=("subject:b",))  # a writer without the projector
        await with_counts.append("subject:c", new_events("subject:c", 1), "t")
        assert counts(dsn, schema) == {"subject:a": 2, "subject:b": 5, "subject:c": 1}
        assert with_counts.checkpoints()["stream_counts"] == 8
        check_log(read_all(bare))
    finally:
        with_counts.close()
        bare.close()


async def test_the_writer_reconnects_when_its_connection_is_lost(
    pg: PostgresStore, dsn: str
) -> None:
    await fill(pg, 3)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pg._conn.info.backend_pid,))
    more = await pg.append("subject:a", new_events("subject:a", 2), "t")
    assert [e.seq for e in more] == [4, 5]
    events = read_all(pg)
    check_log(events)
    check_head(pg, events)


async def test_a_newer_ledger_schema_is_refused(dsn: str, schema: str) -> None:
    PostgresStore(dsn, schema=schema).close()
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        conn.execute("UPDATE ledger_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(LedgerUnavailable, match="newer than this program"):
        PostgresStore(dsn, schema=schema)


@pytest.mark.parametrize("name", ["", "Ledger", "1ledger", "led-ger", "a" * 64, "x;drop"])
def test_a_bad_schema_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresStore("host=/nonexistent", schema=name)


def test_a_server_that_cannot_be_reached_is_named() -> None:
    with pytest.raises(LedgerUnavailable, match="cannot connect to PostgreSQL"):
        PostgresStore("host=/nonexistent-ledger-socket-dir port=1 user=x dbname=x")


async def test_a_closed_store_refuses_work(pg: PostgresStore) -> None:
    pg.close()
    with pytest.raises(LedgerError, match="closed"):
        await pg.append("subject:a", new_events("subject:a", 1), "t")
