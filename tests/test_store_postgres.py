"""The PostgreSQL backend: the storage contract, plus what is its own (append-only
triggers, writers in two stores on one schema, projectors in the append transaction).

Runs on a throwaway server (`tests/pg_server.py`); skips, saying why, where no server can
be had.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.pg_server import postgres_dsn
from tests.store_contract import (
    StoreContract,
    appends_to,
    check_head,
    check_log,
    failed_at_start_once,
    fill,
    new_events,
    one_batch,
    read_all,
)

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -e '.[dev]')"
)

from psycopg.conninfo import make_conninfo  # noqa: E402

from ledger import postgres_store  # noqa: E402
from ledger.errors import LedgerError, LedgerUnavailable  # noqa: E402
from ledger.events import Event  # noqa: E402
from ledger.postgres_store import (  # noqa: E402
    MAX_IDLE_READERS,
    SCHEMA_VERSION,
    PostgresStore,
    PostgresTransaction,
)


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
        "TRUNCATE merkle_nodes",
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


def append_from_threads(stores: Sequence[PostgresStore], threads: int, each: int) -> None:
    """`threads` threads per store, each appending `each` one-event units at once."""
    errors: list[BaseException] = []

    def work(store: PostgresStore, n: int) -> None:
        try:
            for i in range(each):
                stream = f"subject:{n % 3}"
                store.append_sync(stream, new_events(stream, 1, i), f"thread-{n}")
        except BaseException as exc:
            errors.append(exc)

    running = [
        threading.Thread(target=work, args=(store, n)) for store in stores for n in range(threads)
    ]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    assert errors == []


async def test_concurrent_writers_in_two_stores_share_one_chain(dsn: str, schema: str) -> None:
    stores = [PostgresStore(dsn, schema=schema), PostgresStore(dsn, schema=schema)]
    try:
        await asyncio.to_thread(append_from_threads, stores, 6, 20)
        events = read_all(stores[0])
        assert len(events) == 2 * 6 * 20
        check_log(events)
        check_head(stores[1], events)
    finally:
        for store in stores:
            store.close()


async def test_writers_read_committed_whatever_the_database_default(dsn: str) -> None:
    name = f"ledger_rr_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        admin.execute(
            f"ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
        )
    other = make_conninfo(dsn, dbname=name)
    try:
        stores = [PostgresStore(other), PostgresStore(other)]
        try:
            await asyncio.to_thread(append_from_threads, stores, 4, 15)
            events = read_all(stores[0])
            assert len(events) == 2 * 4 * 15
            check_log(events)
        finally:
            for store in stores:
                store.close()
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def lose_commit_reply(store: PostgresStore, *, at_call: int, committed: bool) -> list[int]:
    """Make the writer's `at_call`-th COMMIT from now lose its connection, after the
    server committed (`committed`) or before it did; returns the call counter."""
    conn = store._conn
    real, calls = conn.commit, [0]

    def commit() -> None:
        calls[0] += 1
        if calls[0] != at_call:
            return real()
        if committed:
            real()
        conn.close()
        raise psycopg.OperationalError("server closed the connection unexpectedly (a test)")

    conn.commit = commit  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("committed", [True, False])
async def test_a_lost_commit_reply_neither_loses_nor_repeats_a_batch(
    pg: PostgresStore, committed: bool
) -> None:
    await fill(pg, 3)
    calls = lose_commit_reply(pg, at_call=2, committed=committed)  # the batch of three's
    results = await one_batch(pg)
    assert calls[0] >= 2
    assert all(isinstance(r, list) for r in results), results  # every caller: appended
    events = read_all(pg)
    assert [e.stream for e in events[3:]] == ["subject:block"] + [
        s for s in ("subject:p", "subject:q", "subject:r") for _ in range(2)
    ]
    assert sorted(e.seq for r in results for e in r) == list(range(4, 11))
    check_log(events)
    check_head(pg, events)
    more = await pg.append("subject:p", new_events("subject:p", 1), "t")
    assert [(e.seq, e.version) for e in more] == [(11, 3)]


@pytest.mark.parametrize("committed", [True, False])
async def test_a_lost_commit_is_looked_up_under_the_write_lock(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    """After a COMMIT whose reply was lost, the lost transaction may still be ending on
    the server; it holds the write lock until it has. So the writer looks up what was
    kept only once it holds the lock itself: checked here at the moment of the lookup."""
    await fill(pg, 2)
    held_at_lookup: list[int] = []
    real_connect = postgres_store.connect

    def connect(dsn: str, schema: str, *, autocommit: bool) -> Any:
        conn = real_connect(dsn, schema, autocommit=autocommit)
        if autocommit:
            return conn
        execute = conn.execute

        def watched(query: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(query, str) and "WHERE seq = ANY" in query:
                row = execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted"
                ).fetchone()
                held_at_lookup.append(-1 if row is None else int(row[0]))
            return execute(query, *args, **kwargs)

        conn.execute = watched  # type: ignore[method-assign]
        return conn

    monkeypatch.setattr(postgres_store, "connect", connect)
    lose_commit_reply(pg, at_call=1, committed=committed)
    appended = await pg.append("subject:a", new_events("subject:a", 1), "t")
    assert [e.seq for e in appended] == [3]  # kept, or run again: once either way
    assert held_at_lookup == [1]
    check_log(read_all(pg))


async def test_commits_lost_again_and_again_are_refused_not_retried_forever(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(pg, 2)
    attempts = [0]

    def losing(conn: Any) -> Any:
        def commit() -> None:  # the connection drops before the server commits
            attempts[0] += 1
            conn.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly (a test)")

        conn.commit = commit
        return conn

    real_connect = postgres_store.connect

    def connect(dsn: str, schema: str, *, autocommit: bool) -> Any:
        conn = real_connect(dsn, schema, autocommit=autocommit)
        return conn if autocommit else losing(conn)

    losing(pg._conn)
    monkeypatch.setattr(postgres_store, "connect", connect)
    with pytest.raises(LedgerUnavailable, match="3 times in a row"):
        await asyncio.wait_for(pg.append("subject:a", new_events("subject:a", 1), "t"), 30)
    assert attempts[0] == postgres_store.MAX_LOST_COMMITS
    monkeypatch.undo()
    pg._conn.close()  # the last losing connection: the writer opens a plain one
    before = read_all(pg)
    assert len(before) == 2  # nothing of the refused write was kept
    version = sum(e.stream == "subject:a" for e in before)
    later = await pg.append("subject:a", new_events("subject:a", 1), "t")
    assert [(e.seq, e.version) for e in later] == [(3, version + 1)]
    check_log(read_all(pg))


async def test_a_commit_that_cannot_be_checked_is_reported_unknown(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(pg, 2)
    lose_commit_reply(pg, at_call=1, committed=True)

    def no_server(*args: Any, **kwargs: Any) -> Any:
        raise LedgerUnavailable("cannot connect to PostgreSQL: (a test)")

    monkeypatch.setattr(postgres_store, "connect", no_server)
    with pytest.raises(LedgerUnavailable, match="unknown"):
        await pg.append("subject:a", new_events("subject:a", 1), "t")
    monkeypatch.undo()
    later = await pg.append("subject:a", new_events("subject:a", 1), "t")
    assert [e.seq for e in later] == [4]  # the lost write had committed: chained after it
    check_log(read_all(pg))


async def test_a_unit_that_hides_a_failed_statement_fails(pg: PostgresStore) -> None:
    await fill(pg, 2)
    head = pg.head()

    def hides(txn: PostgresTransaction) -> list[Event]:
        appended = txn.append("subject:x", new_events("subject:x", 2), "t")
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            txn.connection.execute("SELECT 1 / 0")  # now the transaction is failed, and
            # PostgreSQL would answer its COMMIT with a rollback
        return appended

    with pytest.raises(LedgerUnavailable, match=r"left the writer's transaction failed"):
        await pg.run(hides)
    assert pg.head() == head
    more = await pg.append("subject:x", new_events("subject:x", 1), "t")
    assert [(e.seq, e.version) for e in more] == [(3, 1)]
    check_log(read_all(pg))


async def test_projectors_catch_up_on_opening(dsn: str, schema: str) -> None:
    bare = PostgresStore(dsn, schema=schema)
    try:
        await fill(bare, 5, streams=("subject:a", "subject:b"))
    finally:
        bare.close()
    store = PostgresStore(dsn, [StreamCounts()], schema=schema)
    try:
        assert counts(dsn, schema) == {"subject:a": 3, "subject:b": 2}
        assert store.checkpoints() == {"stream_counts": 5}
    finally:
        store.close()


def connections_of(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (f"osint-ledger {schema}",),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_readers_on_many_threads_hold_few_connections(
    pg: PostgresStore, dsn: str, schema: str
) -> None:
    await fill(pg, 4)
    sizes: list[int] = []

    def read() -> None:
        sizes.append(pg.size())
        sizes.append(len(pg.read()))

    for _ in range(10):
        threads = [threading.Thread(target=read) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sizes == [4] * 240
    assert connections_of(dsn, schema) <= MAX_IDLE_READERS + 1  # and the writer's
    for _ in range(20):  # one thread after another: one read connection, kept
        assert pg.size() == 4
    assert connections_of(dsn, schema) >= 2
    pg.close()
    for _ in range(100):  # the server's backends end a moment after their clients go
        if connections_of(dsn, schema) == 0:
            break
        await asyncio.sleep(0.05)
    assert connections_of(dsn, schema) == 0


async def test_a_writer_held_out_by_another_fails_after_its_lock_timeout(
    dsn: str, schema: str
) -> None:
    store = PostgresStore(dsn, schema=schema, lock_timeout=0.2)
    try:
        await fill(store, 1)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (store._lock,))
            with pytest.raises(LedgerUnavailable, match=r"could not start.*lock timeout"):
                await store.append("subject:a", new_events("subject:a", 1), "t")
        more = await store.append("subject:a", new_events("subject:a", 1), "t")
        assert [e.seq for e in more] == [2]
    finally:
        store.close()


async def test_options_given_in_the_dsn_are_kept(dsn: str, schema: str) -> None:
    store = PostgresStore(make_conninfo(dsn, options="-c statement_timeout=1234"), schema=schema)
    try:
        with store._reading() as conn:
            row = conn.execute("SHOW statement_timeout").fetchone()
        assert row is not None
        assert row[0] == "1234ms"
        await fill(store, 2)
        assert store.size() == 2
    finally:
        store.close()


async def test_a_lost_commit_after_a_split_batch_runs_the_unit_again(dsn: str, schema: str) -> None:
    store = PostgresStore(dsn, [StreamCounts()], schema=schema)
    try:
        # the batch's fold fails (subject:refused), so each unit runs alone; the first
        # one's COMMIT (the 2nd from now: the blocker's is the 1st) loses its connection
        # before it took effect, so that unit must run again, and its caller hear once
        lose_commit_reply(store, at_call=2, committed=False)
        units = [appends_to(s) for s in ("subject:p", "subject:refused", "subject:r")]
        results = await one_batch(store, units)
        assert isinstance(results[2], LedgerUnavailable)
        assert [[e.stream for e in r] for r in (results[0], results[1], results[3])] == [
            ["subject:block"],
            ["subject:p"] * 2,
            ["subject:r"] * 2,
        ]
        events = read_all(store)
        assert [e.stream for e in events] == ["subject:block"] + ["subject:p"] * 2 + [
            "subject:r"
        ] * 2
        check_log(events)
        assert counts(dsn, schema) == {"subject:block": 1, "subject:p": 2, "subject:r": 2}
    finally:
        store.close()


async def test_a_lost_commit_that_cannot_be_checked_leaves_the_next_batch_whole(
    dsn: str, schema: str
) -> None:
    store = PostgresStore(dsn, schema=schema, lock_timeout=0.3)
    other = psycopg.connect(dsn, autocommit=True)
    try:
        await fill(store, 2)
        conn, real = store._conn, store._conn.commit

        calls = [0]

        def commit() -> None:  # the 2nd commits; then, before the writer can look, another
            real()  # session takes the write lock; then the reply is lost
            calls[0] += 1
            if calls[0] == 1:  # the blocker's batch
                return
            other.execute("SELECT pg_advisory_lock(%s)", (store._lock,))
            conn.close()
            raise psycopg.OperationalError("server closed the connection (a test)")

        conn.commit = commit  # type: ignore[method-assign]

        def refused(txn: PostgresTransaction) -> None:
            raise ValueError("a rule refused this unit")

        results = await one_batch(store, [appends_to("subject:p"), refused])
        other.execute("SELECT pg_advisory_unlock(%s)", (store._lock,))
        assert [e.stream for e in results[0]] == ["subject:block"]
        assert "unknown" in str(results[1])
        assert str(results[2]) == "a rule refused this unit"  # its own error, not unknown
        later = await store.append("subject:a", new_events("subject:a", 1), "t")
        events = read_all(store)
        assert later[0].seq == len(events) == 2 + 1 + 2 + 1  # the lost COMMIT had kept both
        check_log(events)
    finally:
        other.close()
        store.close()


ENDINGS = {
    "commit": ["commit"],
    "rollback": ["rollback"],
    "commit, then a statement": ["commit", "SELECT 1"],
    "commit, then a failing statement": ["commit", "SELECT 1 / 0"],
    "a failing statement": ["SELECT 1 / 0"],
}


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_a_unit_that_breaks_the_transaction_never_gets_a_write_repeated(
    pg: PostgresStore, ending: str
) -> None:
    await fill(pg, 2)

    def breaks(txn: PostgresTransaction) -> list[Event]:
        appended = txn.append("subject:x", new_events("subject:x", 1), "t")
        conn = txn.connection
        for step in ENDINGS[ending]:
            if step in ("commit", "rollback"):
                getattr(conn, step)()
            else:
                with contextlib.suppress(psycopg.errors.DivisionByZero):
                    conn.execute(step)
        return appended

    units = [appends_to("subject:p"), breaks, appends_to("subject:r")]
    results = await one_batch(pg, units)  # the blocker commits alone, then the three
    assert [e.stream for e in results[0]] == ["subject:block"]
    assert [e.stream for e in results[1]] == ["subject:p"] * 2  # kept, or run again
    assert isinstance(results[2], LedgerUnavailable)
    committed = ENDINGS[ending][0] == "commit"
    words = "was kept" if committed else "was not kept"
    assert f"what it wrote up to then {words}" in str(results[2])
    assert [e.stream for e in results[3]] == ["subject:r"] * 2  # run again, after
    events = read_all(pg)
    check_log(events)
    check_head(pg, events)
    x = ["subject:x"] if committed else []  # its own append went out with its COMMIT
    assert [e.stream for e in events[3:]] == ["subject:p"] * 2 + x + ["subject:r"] * 2


async def test_a_unit_whose_store_statement_failed_unseen_fails_alone(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement the store runs for a unit (here the stream version it looks up) fails
    and the unit hides the error, never touching the connection itself: the unit is
    refused for what it is, and the batch's other units are appended in a new
    transaction. (Were that check missing, the failed transaction would surface later,
    at the batch's writes, and the unit would be refused as a failed fold.)"""
    await fill(pg, 2)
    real = pg._version_of

    def version_of(stream: str) -> int:
        if stream == "subject:hidden":
            pg._conn.execute("SELECT 1 / 0")
        return real(stream)

    monkeypatch.setattr(pg, "_version_of", version_of)

    def hides(txn: PostgresTransaction) -> None:
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            txn.stream_version("subject:hidden")

    results = await one_batch(pg, [appends_to("subject:p"), hides, appends_to("subject:r")])
    assert isinstance(results[2], LedgerUnavailable)
    assert str(results[2]) == postgres_store._UNIT_FAILED
    assert [e.stream for e in results[1]] == ["subject:p"] * 2
    assert [e.stream for e in results[3]] == ["subject:r"] * 2
    events = read_all(pg)
    assert [e.stream for e in events[3:]] == ["subject:p"] * 2 + ["subject:r"] * 2
    check_log(events)
    check_head(pg, events)


class HidesAFailure(StreamCounts):
    """Folds as :class:`StreamCounts`, but for `subject:hidden` runs a statement that fails
    and hides the error, leaving the transaction failed."""

    def apply(self, connection: Any, events: Sequence[Event]) -> None:
        if any(e.stream == "subject:hidden" for e in events):
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                connection.execute("SELECT 1 / 0")
            return
        super().apply(connection, events)


async def test_a_fold_that_hides_a_failed_statement_appends_nothing(dsn: str, schema: str) -> None:
    """PostgreSQL answers the COMMIT of a failed transaction with a rollback and no
    error: after a fold that left the transaction failed, the writer must refuse the
    append (the checkpoint statement that follows the folds fails, and the writer checks
    the transaction's state before COMMIT too), or it would answer an append that was
    never stored."""
    store = PostgresStore(dsn, [HidesAFailure()], schema=schema)
    try:
        await fill(store, 3, streams=("subject:a",))
        head = store.head()
        with pytest.raises(LedgerUnavailable, match="rolled back"):
            await store.append("subject:hidden", new_events("subject:hidden", 1), "t")
        assert store.head() == head
        assert len(read_all(store)) == 3
        assert counts(dsn, schema) == {"subject:a": 3}
        more = await store.append("subject:a", new_events("subject:a", 1), "t")
        assert [(e.seq, e.version) for e in more] == [(4, 4)]
        check_log(read_all(store))
    finally:
        store.close()


async def test_a_follow_that_fails_fails_its_batch_once(pg: PostgresStore) -> None:
    """Another writer's appends cannot be followed (a projector cannot fold them, say): no
    unit is at fault, so the batch fails once, not once more for each unit."""
    await fill(pg, 2)
    real, calls, armed = pg._follow_others, [0], threading.Event()

    def follow(last: Any) -> None:
        if armed.is_set():
            calls[0] += 1
            raise LedgerUnavailable("cannot fold another writer's events (a test)")
        real(last)

    pg._follow_others = follow  # type: ignore[method-assign]
    results = await one_batch(pg, began=armed.set)  # failing from the batch of three on
    failed_at_start_once(results)
    assert calls[0] == 1
    pg._follow_others = real  # type: ignore[method-assign]
    more = await pg.append("subject:p", new_events("subject:p", 1), "t")
    assert [(e.seq, e.version) for e in more] == [(4, 1)]
    check_log(read_all(pg))


async def test_a_connection_lost_before_the_follow_begins_the_batch_again(
    pg: PostgresStore,
) -> None:
    """The connection is lost after the lock was taken, before another writer's appends
    were followed: nothing of the batch ran, so it begins again (once) on a new one."""
    await fill(pg, 2)
    real, calls, armed = pg._follow_others, [0], threading.Event()

    def follow(last: Any) -> None:
        if armed.is_set():
            calls[0] += 1
            if calls[0] == 1:
                pg._conn.close()
                raise psycopg.OperationalError("server closed the connection (a test)")
        real(last)

    pg._follow_others = follow  # type: ignore[method-assign]
    results = await one_batch(pg, began=armed.set)  # lost in the batch of three
    assert all(isinstance(r, list) for r in results), results
    assert calls[0] == 2
    pg._follow_others = real  # type: ignore[method-assign]
    events = read_all(pg)
    assert [e.stream for e in events[2:]] == ["subject:block"] + [
        s for s in ("subject:p", "subject:q", "subject:r") for _ in range(2)
    ]
    check_log(events)
    check_head(pg, events)


async def test_a_server_gone_at_the_start_of_a_batch_is_tried_once(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is lost and no new one can be opened: taking the lock (which opens
    one) fails, and the batch fails then; it is not begun again, as it is after a loss
    between the lock and the follow."""
    await fill(pg, 2)
    attempts = [0]

    def no_server(*args: Any, **kwargs: Any) -> Any:
        attempts[0] += 1
        raise LedgerUnavailable("cannot connect to PostgreSQL: (a test)")

    pg._conn.close()
    monkeypatch.setattr(postgres_store, "connect", no_server)
    with pytest.raises(LedgerUnavailable, match="could not start"):
        await pg.append("subject:a", new_events("subject:a", 1), "t")
    assert attempts[0] == 1
    monkeypatch.undo()
    later = await pg.append("subject:a", new_events("subject:a", 1), "t")
    assert [e.seq for e in later] == [3]


async def test_a_broken_transaction_whose_outcome_cannot_be_looked_up_answers_everyone(
    pg: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(pg, 2)

    def commits(txn: PostgresTransaction) -> None:
        txn.append("subject:x", new_events("subject:x", 1), "t")
        txn.connection.commit()

    def no_lookup(seqs: Sequence[int]) -> dict[int, str]:
        raise LedgerUnavailable("cannot connect to PostgreSQL: (a test)")

    monkeypatch.setattr(pg, "_look_up", no_lookup)
    units = [appends_to("subject:p"), commits, appends_to("subject:r")]
    results = await one_batch(pg, units)  # a caller never waits forever
    assert "unknown" in str(results[1])
    assert "unknown" in str(results[2])
    assert [e.stream for e in results[3]] == ["subject:r"] * 2
    monkeypatch.undo()
    events = read_all(pg)
    assert [e.stream for e in events[3:]] == ["subject:p"] * 2 + ["subject:x"] + [
        "subject:r"
    ] * 2  # what the unit committed was kept, and nothing was appended twice
    check_log(events)


async def test_a_role_that_only_owns_its_schema_can_open_it(dsn: str, schema: str) -> None:
    role = f"owner_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
    store = PostgresStore(make_conninfo(dsn, user=role), schema=schema)
    try:
        await fill(store, 3)
        check_log(read_all(store))
    finally:
        store.close()
    with pytest.raises(LedgerUnavailable, match="cannot open the ledger in PostgreSQL schema"):
        PostgresStore(make_conninfo(dsn, user=role), schema=f"{schema}_other")


async def test_reads_and_appends_go_on_after_the_server_drops_every_connection(
    pg: PostgresStore, dsn: str, schema: str
) -> None:
    await fill(pg, 3)
    assert pg.size() == 3
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"osint-ledger {schema}",),
        )
    assert len(pg.read()) == 3
    more = await pg.append("subject:a", new_events("subject:a", 1), "t")
    assert [e.seq for e in more] == [4]
    check_log(read_all(pg))
