"""The SQLite backend against the store contract, plus what only it offers."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from api.importer import import_file
from ledger.backend import Job, Outcome, settle
from ledger.commands import RegisterSource
from ledger.errors import ConcurrencyConflict, LedgerUnavailable
from ledger.replay import audit_projections
from ledger.service import execute_sync
from ledger.sqlite_store import (
    WRITER_AUTOCHECKPOINT,
    SqliteStore,
    SqliteTransaction,
    connect,
    log_size,
)
from ledger.times import parse_record_time
from ledger.writemodel import WriteModel
from projections import all_projectors
from tests.api_helpers import SEED, SEED_EVENTS
from tests.store_contract import (
    StoreContract,
    check_log,
    failed_at_start_once,
    fill,
    new_events,
    one_batch,
    read_all,
)


class TestSqliteStore(StoreContract):
    def make_store(self, path: Path) -> SqliteStore:
        return SqliteStore(path)


def test_append_sync_from_a_plain_thread(store: SqliteStore) -> None:
    first = store.append_sync("subject:a", new_events("subject:a", 2), "cli")
    second = store.append_sync("subject:a", new_events("subject:a", 1), "cli", expected_version=2)
    assert [(e.seq, e.version) for e in first + second] == [(1, 1), (2, 2), (3, 3)]
    check_log(read_all(store))


def test_a_unit_that_changed_the_schema_and_failed_leaves_nothing(store: SqliteStore) -> None:
    """SQLite's count of changed rows leaves out the schema: a unit that had the connection,
    changed the schema, then failed was taken for one that wrote nothing, and the rest of
    its batch committed its change (a rebuild that mended the schema, then met a name it
    could not take, left empty view tables behind their checkpoints)."""
    store.append_sync("subject:a", new_events("subject:a", 1), "cli")

    def work(txn: Any) -> None:
        txn.connection.execute("CREATE TABLE t_made_then_failed (a)")
        raise RuntimeError("after the schema changed")

    with pytest.raises(RuntimeError, match="after the schema changed"):
        store.run_sync(work)
    tables = {row[0] for row in store.reader().execute("SELECT name FROM sqlite_master")}
    assert "t_made_then_failed" not in tables
    assert store.append_sync("subject:a", new_events("subject:a", 1, 1), "cli")[0].seq == 2


async def test_checkpoints_follow_every_commit(store: SqliteStore) -> None:
    assert isinstance(store.projectors[0], WriteModel)
    await fill(store, 9)
    assert store.checkpoints() == {WriteModel.name: 9}


async def test_every_thread_reads_committed_events(store: SqliteStore) -> None:
    appended = await store.append("subject:a", new_events("subject:a", 3), "w")
    from_threads = await asyncio.gather(*(asyncio.to_thread(store.read) for _ in range(4)))
    assert all(events == appended for events in from_threads)


def test_two_stores_on_one_file_chain_onto_each_other(tmp_path: Path) -> None:
    """A second writer on the same file (another process, say) is noticed at the next
    batch: the tip is read again, so neither chains onto a stale hash."""
    path = tmp_path / "shared.db"
    first, second = SqliteStore(path), SqliteStore(path)
    try:
        first.append_sync("subject:a", new_events("subject:a", 2), "one")
        second.append_sync("subject:a", new_events("subject:a", 1), "two", expected_version=2)
        first.append_sync("subject:b", new_events("subject:b", 3), "one")
        second.append_sync("subject:a", new_events("subject:a", 1), "two", expected_version=3)
        events = read_all(first)
        assert [(e.seq, e.stream, e.version) for e in events] == [
            (1, "subject:a", 1),
            (2, "subject:a", 2),
            (3, "subject:a", 3),
            (4, "subject:b", 1),
            (5, "subject:b", 2),
            (6, "subject:b", 3),
            (7, "subject:a", 4),
        ]
        check_log(events)
        assert first.root(7) == second.root(7)
    finally:
        first.close()
        second.close()


def test_a_failed_follow_is_tried_again(tmp_path: Path) -> None:
    """Reading the moved tip fails once (a disk error, say): that batch fails, and the next
    one looks again instead of chaining onto the stale tip."""
    path = tmp_path / "shared.db"
    first, second = SqliteStore(path), SqliteStore(path)
    try:
        first.append_sync("subject:a", new_events("subject:a", 2), "one")
        real = second._load_tip
        failures: list[int] = []

        def flaky(depth: int) -> Any:
            if not failures:
                failures.append(depth)
                raise sqlite3.OperationalError("disk I/O error")
            return real(depth)

        second._load_tip = flaky  # type: ignore[method-assign,assignment]
        with pytest.raises(LedgerUnavailable, match="disk I/O error"):
            second.append_sync("subject:b", new_events("subject:b", 1), "two")
        appended = second.append_sync("subject:b", new_events("subject:b", 1), "two")
        assert [e.seq for e in appended] == [3]
        check_log(read_all(first))
    finally:
        first.close()
        second.close()


async def test_a_follow_that_fails_fails_its_batch_once(tmp_path: Path) -> None:
    """No unit is at fault when another writer's appends cannot be followed (folding them
    fails, say): the batch's units all get that error from one attempt, rather than the
    batch being split and the follow failing again for each unit."""
    store = SqliteStore(tmp_path / "l.db")
    try:
        filled = store.append_sync("subject:a", new_events("subject:a", 2), "t")
        assert [e.seq for e in filled] == [1, 2]
        real, calls, armed = store._follow_others, [0], threading.Event()

        def follow(*, fold: bool = True) -> None:
            if armed.is_set():
                calls[0] += 1
                raise sqlite3.OperationalError("disk I/O error (a test)")
            real(fold=fold)

        store._follow_others = follow  # type: ignore[method-assign]
        results = await one_batch(store, began=armed.set)  # failing from the batch of three
        failed_at_start_once(results)
        assert calls[0] == 1
        store._follow_others = real  # type: ignore[method-assign]
        later = store.append_sync("subject:p", new_events("subject:p", 1), "t")
        assert [e.seq for e in later] == [4]
        check_log(read_all(store))
    finally:
        store.close()


def test_an_import_beside_another_writer_leaves_every_projection_whole(tmp_path: Path) -> None:
    """`ledger import` folds its read side at the end; another writer (the serving child)
    appending meanwhile folds what the import left unfolded before it moves checkpoints."""
    path = tmp_path / "shared.db"
    importer, other = SqliteStore(path, all_projectors()), SqliteStore(path, all_projectors())
    interleaved: list[int] = []

    def progress(done: int, total: int) -> None:
        if not interleaved:
            source = RegisterSource(id="zz-src", name="Z", kind="media")
            execute_sync(other, source, "other")
        interleaved.append(done)

    try:
        result = import_file(importer, SEED, "test", progress, chunk_size=5)
        assert result.error is None
        assert len(interleaved) > 1
    finally:
        importer.close()
        other.close()
    conn = connect(path)
    try:
        assert audit_projections(conn, all_projectors) == []
        assert log_size(conn) == SEED_EVENTS + 1
    finally:
        conn.close()


class _CountingConnection:
    """The writer's connection, counting the transactions it tries to begin."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.begins = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("BEGIN"):
            self.begins += 1
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_write_lock_held_elsewhere_fails_the_batch_once(tmp_path: Path) -> None:
    """Another connection holds the write lock past the busy timeout: the batch's units
    all fail with one wait, not one wait each (a split would retry BEGIN per unit)."""
    path = tmp_path / "locked.db"
    store = SqliteStore(path)
    other = connect(path)
    try:
        store.run_sync(lambda txn: txn.sql.execute("PRAGMA busy_timeout = 50"))
        counting = _CountingConnection(store._conn)

        def unit(i: int) -> Any:
            stream = f"subject:{i}"
            return lambda txn: txn.append(stream, new_events(stream, 1), "w")

        jobs = [Job(unit(i)) for i in range(5)]
        for job in jobs:
            job.future = Future()
        other.execute("BEGIN IMMEDIATE")
        # the writer thread is idle (nothing queued), so the batch can run here
        store._conn = counting  # type: ignore[assignment]
        try:
            store._commit_batch(jobs)
        finally:
            store._conn = counting._conn
            other.execute("ROLLBACK")
        assert counting.begins == 1
        for job in jobs:
            assert job.future is not None
            with pytest.raises(LedgerUnavailable, match="could not start"):
                job.future.result(timeout=5)
        # and the store writes again once the lock is free
        appended = store.append_sync("subject:a", new_events("subject:a", 1), "w")
        assert [e.seq for e in appended] == [1]
    finally:
        other.close()
        store.close()


def _file_size_after_appends(path: Path, background: bool) -> tuple[int, int]:
    """The database file's size before and after some appends that stay in the WAL
    (far fewer pages than SQLite's own checkpoint waits for), polled for up to 10 s."""
    store = SqliteStore(path, background_checkpoints=background)
    thread = store._checkpointer
    assert (thread is not None) == background
    try:
        before = path.stat().st_size
        for i in range(40):
            store.append_sync(f"subject:{i}", new_events(f"subject:{i}", 3, i), "w")
        deadline = time.monotonic() + (10 if background else 0.5)
        while path.stat().st_size == before and time.monotonic() < deadline:
            time.sleep(0.02)
        return before, path.stat().st_size
    finally:
        store.close()
        assert thread is None or not thread.is_alive()


def test_committed_pages_reach_the_database_file_off_the_writers_path(tmp_path: Path) -> None:
    """The checkpointer thread copies committed WAL pages into the database file while
    appends go on, so the writer's own checkpoint (inside a COMMIT) finds little to do;
    without it the pages wait in the WAL. Closing the store stops the thread."""
    before, after = _file_size_after_appends(tmp_path / "off.db", background=False)
    assert after == before
    before, after = _file_size_after_appends(tmp_path / "on.db", background=True)
    assert after > before
    check_log(read_all(reopened := SqliteStore(tmp_path / "on.db")))
    reopened.close()


@pytest.mark.parametrize("background", [True, False])
def test_the_wal_starts_over_under_continuous_commits(tmp_path: Path, background: bool) -> None:
    """With the checkpointer thread the writer's own checkpoint waits for
    `WRITER_AUTOCHECKPOINT` pages of WAL (SQLite's 1,000 without it), and it still lets
    the WAL start over: commits of ~100 pages each, four times that many pages in all,
    never take the WAL far past the threshold. Without the thread, one commit past it.
    With the thread, which is woken after each commit as an append wakes it, further:
    while a pass of the thread copies frames, the writer's own checkpoint finds the
    checkpoint lock taken and skips, and back-to-back commits go on (up to ~1.7x the
    threshold, measured; the test allows 3x); a WAL that never started over would reach
    four times the threshold."""
    store = SqliteStore(tmp_path / "wal.db", background_checkpoints=background)
    wal = Path(f"{store.path}-wal")
    threshold = WRITER_AUTOCHECKPOINT if background else 1000

    def pragma(txn: SqliteTransaction, name: str) -> int:
        return int(txn.sql.execute(f"PRAGMA {name}").fetchone()[0])

    try:
        assert store.run_sync(lambda txn: pragma(txn, "wal_autocheckpoint")) == threshold
        page = store.run_sync(lambda txn: pragma(txn, "page_size"))
        store.run_sync(lambda txn: txn.sql.execute("CREATE TABLE filler (b BLOB)"))
        largest, written = 0, 0
        while written < 4 * threshold:
            store.run_sync(
                lambda txn: txn.sql.executemany(
                    "INSERT INTO filler VALUES (zeroblob(?))", [(page - 100,)] * 100
                )
            )
            store._appended.set()  # what an append does after its commit
            written += 100
            largest = max(largest, wal.stat().st_size // (page + 24))
        assert threshold <= largest <= (3 * threshold if background else threshold + 500)
    finally:
        store.close()


def test_seq_at_bisects_record_times_without_an_index(store: SqliteStore) -> None:
    """`seq_at` answers from the log's order (record times never go back): the last seq
    recorded at or before a time, for times on, between, before and after the records,
    with several events sharing one time; and no index on recorded_at is kept."""
    for i in range(7):
        store.append_sync(f"subject:{i % 3}", new_events(f"subject:{i % 3}", 1 + i % 3, i), "w")
    events = read_all(store)
    times = [parse_record_time(e.recorded_at) for e in events]
    assert len(set(times)) < len(times)  # appends of several events share their time
    probes = {0, times[0] - 1, times[-1] + 1, *times, *(t + 1 for t in times)}
    for moment in sorted(probes):
        recorded = [e.seq for e, t in zip(events, times, strict=True) if t <= moment]
        expected = max(recorded, default=0)
        assert store.seq_at(moment) == expected, moment
    indexes = store.reader().execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
    )
    assert "events_recorded_at" not in {name for (name,) in indexes}


def _appending(stream: str, expected: int | None = None) -> Any:
    """A unit of work that appends one event to `stream` and says on which thread it ran."""

    def work(txn: Any) -> tuple[int, int]:
        txn.append(stream, new_events(stream, 1), "w", expected)
        return threading.get_ident(), txn.stream_version(stream)

    return work


def _append_on_the_writer_thread(store: SqliteStore) -> None:
    store.append_sync("subject:a", new_events("subject:a", 1), "w")


def _append_here(store: SqliteStore) -> None:
    store.commit_here([_appending("subject:a")])[0].result()


@pytest.mark.parametrize("append", [_append_on_the_writer_thread, _append_here])
def test_a_fault_in_the_writer_answers_its_callers_and_refuses_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, append: Callable[[SqliteStore], None]
) -> None:
    """A bug in the writer itself (outside any unit of work) must not leave callers
    waiting forever: the batch's callers hear it, later appends are refused with the
    reason (the writer's tip and cache can no longer be trusted), reads go on. The same
    whether the batch runs on the writer thread or in the caller's (`commit_here`)."""
    store = SqliteStore(tmp_path / "l.db")
    try:
        store.append_sync("subject:a", new_events("subject:a", 2), "w")

        def broken(self: SqliteStore, batch: Any) -> Any:
            raise TypeError("a bug")

        monkeypatch.setattr(SqliteStore, "_try_batch", broken)
        with pytest.raises(LedgerUnavailable, match="the write failed: a bug"):
            append(store)
        monkeypatch.undo()
        with pytest.raises(LedgerUnavailable, match=r"refused: the writer failed \(TypeError"):
            append(store)
        assert store.write_refusal is not None
        check_log(read_all(store))
        assert store.size() == 2
    finally:
        store.close()


def test_commit_here_runs_units_in_the_callers_thread_as_one_commit(tmp_path: Path) -> None:
    """What the API's writer process runs its commands through: the units run in the
    calling thread, one commit for all (one notice), each future answered in order, and
    a unit that fails a rule fails alone."""
    store = SqliteStore(tmp_path / "l.db", all_projectors())
    notices: list[int] = []
    store.add_listener(notices.append)
    try:
        futures = store.commit_here(
            [_appending("subject:a"), _appending("subject:a", expected=5), _appending("subject:b")]
        )
        assert all(f.done() for f in futures)
        assert futures[0].result() == (threading.get_ident(), 1)
        assert isinstance(futures[1].exception(), ConcurrencyConflict)
        assert futures[2].result() == (threading.get_ident(), 1)
        assert notices == [2]
        assert store.checkpoints() == {p.name: 2 for p in store.projectors}
        check_log(read_all(store))
        # what the writer thread appends next chains onto what was committed here
        store.append_sync("subject:a", new_events("subject:a", 1), "w", expected_version=1)
        check_log(read_all(store))
        assert store.size() == 3
    finally:
        store.close()


def test_commit_here_splits_a_long_run_into_batches_of_max_batch(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db", max_batch=2)
    notices: list[int] = []
    store.add_listener(notices.append)
    try:
        futures = store.commit_here([_appending(f"subject:{i}") for i in range(5)])
        assert [f.result()[1] for f in futures] == [1] * 5
        assert notices == [2, 4, 5]
    finally:
        store.close()


def test_commit_here_waits_for_the_writer_threads_batch(tmp_path: Path) -> None:
    """Units run here and units queued for the writer thread never share the connection:
    a batch here starts only once the writer's batch has committed."""
    store = SqliteStore(tmp_path / "l.db")
    order: list[str] = []
    started, release = threading.Event(), threading.Event()

    def queued(txn: Any) -> None:
        started.set()
        release.wait(10)
        txn.append("subject:a", new_events("subject:a", 1), "w")
        order.append("queued")

    def here(txn: Any) -> None:
        txn.append("subject:a", new_events("subject:a", 1, 1), "w", 1)
        order.append("here")

    try:
        first = store.submit(queued)
        assert started.wait(10)
        second = threading.Thread(target=lambda: store.commit_here([here])[0].result())
        second.start()
        time.sleep(0.1)
        assert order == []
        release.set()
        second.join(10)
        first.result(10)
        assert order == ["queued", "here"]
        check_log(read_all(store))
        assert store.size() == 2
    finally:
        release.set()
        store.close()


def test_close_waits_for_a_commit_here_under_way(tmp_path: Path) -> None:
    """A store closed from another thread while a batch runs here lets the batch commit
    first, instead of pulling the connection from under it."""
    store = SqliteStore(tmp_path / "l.db")
    started, release = threading.Event(), threading.Event()

    def slow(txn: Any) -> int:
        started.set()
        release.wait(10)
        txn.append("subject:a", new_events("subject:a", 1), "w")
        return 1

    outcomes: list[Outcome[int]] = []
    here = threading.Thread(target=lambda: outcomes.extend(store.commit_here([slow])))
    here.start()
    assert started.wait(10)
    closing = threading.Thread(target=store.close)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive()
    release.set()
    here.join(10)
    closing.join(10)
    assert not closing.is_alive()
    assert outcomes[0].result() == 1
    assert store.write_refusal is None
    reopened = SqliteStore(tmp_path / "l.db")
    try:
        assert reopened.size() == 1
    finally:
        reopened.close()


def test_commit_here_on_a_closed_store_refuses_each_unit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db")
    store.close()
    (future,) = store.commit_here([_appending("subject:a")])
    with pytest.raises(LedgerUnavailable, match="the store is closed"):
        future.result()


def test_an_outcome_answers_as_a_done_future_would() -> None:
    """commit_here's answers: the first one settled stays, a failure raises from
    result(), and one read before it is settled is a bug that says so."""
    ok, failed, early = Outcome[int](), Outcome[int](), Outcome[int]()
    problem = ConcurrencyConflict("subject:a", 1, 2)
    settle(
        [(Job(lambda _: 1, outcome=ok), 7, None), (Job(lambda _: 1, outcome=failed), None, problem)]
    )
    settle([(Job(lambda _: 1, outcome=ok), 8, None)])  # answered already: kept as it was
    assert ok.done()
    assert ok.result() == 7
    assert ok.exception() is None
    assert failed.exception() is problem
    with pytest.raises(ConcurrencyConflict):
        failed.result()
    assert not early.done()
    with pytest.raises(RuntimeError, match="no answer yet"):
        early.result()


class _Recorder:
    """Stands in for the store's logger: keeps (level, event) of every line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **_: self.lines.append((level, event))


def _before_each_checkpoint(monkeypatch: pytest.MonkeyPatch, call: Callable[[], None]) -> None:
    """Have the checkpointer thread's connection (opened with a 1 MiB cache) call `call`
    before each checkpoint it runs; what `call` raises, the checkpoint raises."""
    from ledger import sqlite_store

    real_connect = sqlite_store.connect

    class Watched:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: Any) -> Any:
            if "wal_checkpoint" in sql:
                call()
            return self._conn.execute(sql, *args)

        def close(self) -> None:
            self._conn.close()

    def connect(path: Any, synchronous: Any = "FULL", cache_mib: int = 8) -> Any:
        conn = real_connect(path, synchronous, cache_mib)
        return Watched(conn) if cache_mib == 1 else conn

    monkeypatch.setattr(sqlite_store, "connect", connect)


def test_closing_ends_the_checkpointers_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two checkpoints the thread pauses; closing the store ends the pause at once
    instead of waiting it out (here a minute, against the 30 s the close is given)."""
    from ledger import sqlite_store

    checkpointing = threading.Event()
    _before_each_checkpoint(monkeypatch, checkpointing.set)
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_PAUSE", 60.0)
    store = SqliteStore(tmp_path / "pause.db")
    thread = store._checkpointer
    assert thread is not None
    closing = threading.Thread(target=store.close, daemon=True)
    try:
        store.append_sync("subject:1", new_events("subject:1", 1, 0), "w")
        assert checkpointing.wait(10)  # the thread checkpoints, then pauses
        closing.start()
        closing.join(30)
        assert not closing.is_alive()
        assert not thread.is_alive()
    finally:
        if not closing.is_alive():
            store.close()


def test_a_failing_background_checkpoint_is_logged_once_until_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint that keeps failing (a full disk, say) does not log a line at every pause:
    once when it starts failing, once when it works again; appends go on meanwhile."""
    from ledger import sqlite_store

    broken = [True]
    attempts: list[bool] = []

    def attempt() -> None:
        attempts.append(broken[0])
        if broken[0]:
            raise sqlite3.OperationalError("disk I/O error")

    _before_each_checkpoint(monkeypatch, attempt)
    recorder = _Recorder()
    monkeypatch.setattr(sqlite_store, "log", recorder)
    store = SqliteStore(tmp_path / "l.db")
    try:

        def appends_until(tries: int) -> None:
            deadline = time.monotonic() + 10
            i = len(attempts)
            while len(attempts) < tries and time.monotonic() < deadline:
                store.append_sync(f"subject:{i}", new_events(f"subject:{i}", 1, i), "w")
                i += 1
                time.sleep(0.02)
            assert len(attempts) >= tries

        appends_until(4)
        broken[0] = False
        appends_until(len(attempts) + 2)
        assert attempts[:4] == [True] * 4
        assert attempts[-1] is False
        checkpoints = [line for line in recorder.lines if "checkpoint" in line[1]]
        assert checkpoints == [
            ("warning", "background_checkpoint_failed"),
            ("info", "background_checkpoint_recovered"),
        ]
        check_log(read_all(store))
    finally:
        store.close()


def _assert_views_match_the_log(path: Path) -> None:
    """Every projection equals a replay of the log (an audit of the closed ledger)."""
    conn = connect(path)
    try:
        assert audit_projections(conn, all_projectors) == []
    finally:
        conn.close()


def test_an_interrupted_import_says_exactly_which_lines_are_in(tmp_path: Path) -> None:
    """Ctrl-C stops reading; the chunks already handed to the writer commit, and the result
    names the last line in the log, so importing the lines after it finishes the job."""
    path = tmp_path / "l.db"
    store = SqliteStore(path, all_projectors())
    calls = 0

    def progress(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, between two chunks

    try:
        result = import_file(store, SEED, "test", progress, chunk_size=5)
        assert result.interrupted
        assert result.error is None
        assert 0 < result.done_lines < len(SEED.read_bytes().splitlines())
        assert result.appended == store.size() == result.last_seq
    finally:
        store.close()
    rest = tmp_path / "rest.jsonl"
    rest.write_bytes(b"".join(SEED.read_bytes().splitlines(keepends=True)[result.done_lines :]))
    store = SqliteStore(path, all_projectors())
    try:
        again = import_file(store, rest, "test")
        assert (again.error, again.interrupted) == (None, False)
        assert store.size() == SEED_EVENTS  # nothing twice, nothing missing
    finally:
        store.close()
    _assert_views_match_the_log(path)


def test_a_second_ctrl_c_leaves_the_views_fold_to_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first Ctrl-C stops the reading; a second, before the fold of the views that
    ends the import has run, skips that fold (stopped at its next chunk when it has begun;
    checked by hand, since a signal to a main thread blocked on the writer is not one a
    test can time): the lines in the log are still exactly known, and the views catch up
    when the ledger is next opened."""
    from api import importer
    from bench import gen

    monkeypatch.setattr(importer, "CATCH_UP_CHUNK", 50)
    source = tmp_path / "in.jsonl"
    lines = gen.write(source, 1500)
    path = tmp_path / "l.db"
    store = SqliteStore(path, all_projectors())
    reads = folds = 0

    def progress(done: int, total: int) -> None:  # on this (the main) thread
        nonlocal reads
        reads += 1
        if reads in (2, 3):  # a real Ctrl-C between two chunks, then another
            os.kill(os.getpid(), signal.SIGINT)

    def fold_progress(done: int, total: int) -> None:
        nonlocal folds
        folds += 1

    try:
        result = import_file(
            store, source, "test", progress, fold_progress=fold_progress, chunk_size=100
        )
        assert (result.interrupted, result.views_skipped, result.error) == (True, True, None)
        assert folds == 0  # the fold did not run
        assert 0 < result.done_lines < lines
        assert result.appended == store.size() == result.done_lines
        assert store.views_reach() < store.size()
    finally:
        store.close()
    store = SqliteStore(path, all_projectors())
    try:
        assert store.views_reach() == store.size() == result.done_lines
    finally:
        store.close()
    _assert_views_match_the_log(path)


def test_an_interrupt_beside_a_bad_line_reports_the_bad_line(tmp_path: Path) -> None:
    """The chunk in flight when Ctrl-C comes meets a line the rules refuse: its lines before
    that one are in the log, and the bad line is what is reported."""
    lines = SEED.read_bytes().splitlines(keepends=True)
    bad_at = 8  # a retraction of an assertion nobody recorded, inside the second chunk
    bad = b'{"record":"retraction","assertion_id":"no-such-assertion","reason":"x"}\n'
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"".join([*lines[: bad_at - 1], bad, *lines[bad_at - 1 :]]))
    store = SqliteStore(tmp_path / "l.db", all_projectors())
    sent = False

    def progress(done: int, total: int) -> None:
        nonlocal sent
        if not sent:  # once: a second Ctrl-C would stop at once
            sent = True
            os.kill(os.getpid(), signal.SIGINT)

    try:
        result = import_file(store, source, "test", progress, chunk_size=5)
        assert result.error is not None
        assert result.error.line == bad_at
        assert result.done_lines == bad_at - 1
        assert store.size() == result.appended
    finally:
        store.close()
