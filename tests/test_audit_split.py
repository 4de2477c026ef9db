"""The audit's split replay: tables folded apart, rows held in memory, one pass with verify.

A parallel audit verifies the log and, from the same decoded chunks, folds the write
model and the assertion projector's split tables (claimants and subject counts, held in
memory) while a child process folds the rest. Whatever it finds must be exactly what
the single-process audit finds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ledger.events import AssertionRecorded, Document, Event, Value
from ledger.replay import _held_equal, audit, read_chunks, split_tables
from ledger.sqlite_store import SqliteStore
from ledger.verify import UNDECODED, verify_log
from projections import all_projectors
from projections.projectors import AssertionsProjector, HeldRows
from tests.factories import ledger
from tests.test_projections import all_tables, table_rows
from tests.test_replay_folds import busy_ledger

SPLIT = AssertionsProjector.split_tables


def _busy(store: SqliteStore) -> None:
    busy_ledger(store, stated_at="2025-06-01T10:00:00Z", claimants=("ap", "kr-intel"))


def _events(store: SqliteStore) -> list[Event]:
    return [e for chunk in read_chunks(store.reader()) for e in chunk]


def test_the_split_tables_are_claimants_and_subject_counts() -> None:
    projector = AssertionsProjector()
    assert split_tables(projector) == ("proj_claimants", "proj_subject_counts")
    assert set(SPLIT) < set(projector.tables)
    with pytest.raises(ValueError, match="apart"):
        projector.replayer(sqlite3.connect(":memory:"), ["proj_claimants"])


@pytest.mark.parametrize("chunk", [1, 5, 10_000])
def test_the_two_parts_of_a_replay_write_what_the_whole_replay_writes(
    tmp_path: Path, chunk: int
) -> None:
    with ledger(tmp_path / "l.db") as store:
        _busy(store)
        events = _events(store)
        live = table_rows(store.reader(), all_tables())
    with ledger(tmp_path / "parts.db") as other:

        def work(txn: Any) -> None:
            conn = txn.connection
            for projector in other.projectors[1:]:
                projector.reset(conn)
            assertions = AssertionsProjector()
            rest = [t for t in assertions.tables if t not in SPLIT]
            folds = [
                other.projectors[1].apply,
                assertions.replayer(conn, SPLIT),
                assertions.replayer(conn, rest),
            ]
            for start in range(0, len(events), chunk):
                part = events[start : start + chunk]
                folds[0](conn, part)  # type: ignore[operator]
                folds[1](part)  # type: ignore[operator]
                folds[2](part)  # type: ignore[operator]

        other.run_sync(work)
        assert table_rows(other.reader(), all_tables()) == live


def test_held_rows_are_the_rows_apply_writes(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        _busy(store)
        events = _events(store)
        live = store.reader()
        held = HeldRows()
        for start in range(0, len(events), 3):
            held(events[start : start + 3])
        for table in SPLIT:
            columns = ", ".join(held.columns(table))
            rows = live.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2").fetchall()
            assert list(held.rows(table)) == rows
            assert rows  # the ledger has claimants and counts to compare
            assert _held_equal(live, held, table)


def test_a_claimant_named_twice_is_held_once() -> None:
    held = HeldRows()
    data = AssertionRecorded(
        assertion_id="x",
        subject="s",
        property="p",
        value=Value(low=1, high=1),
        claimants=("a", "a", "b"),
        stated_at="2025",
        document=Document(publisher="p", published_at="2025"),
        quote="q",
    )
    held([Event(7, "AssertionRecorded", "subject:s", 1, "t", "x", data, "", "")])
    assert list(held.rows("proj_claimants")) == [("a", 7), ("b", 7)]
    assert list(held.rows("proj_subject_counts")) == [("s", 7, 1)]


def test_a_held_table_that_differs_is_not_equal(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        _busy(store)
        held = HeldRows()
        held(_events(store))
    conn = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    try:
        conn.execute(
            "UPDATE proj_subject_counts SET assertions = assertions + 1 WHERE seq = ?",
            (conn.execute("SELECT max(seq) FROM proj_subject_counts").fetchone()[0],),
        )
        assert not _held_equal(conn, held, "proj_subject_counts")
        assert _held_equal(conn, held, "proj_claimants")
        conn.execute("INSERT INTO proj_claimants VALUES ('zz-extra', 1)")
        assert not _held_equal(conn, held, "proj_claimants")
    finally:
        conn.close()


def test_verify_hands_each_checked_chunk_to_a_consumer(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        expected = [e.data for e in _events(store)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER payloads_no_update")
    conn.execute("DROP TRIGGER payloads_no_delete")
    conn.execute("UPDATE payloads SET data = x'7b7d' WHERE seq = 3")
    conn.execute("DELETE FROM payloads WHERE seq = 5")
    seen: list[Any] = []
    sizes: list[int] = []

    def consume(rows: list[Any], payloads: list[Any]) -> None:
        assert [r[0] for r in rows] == list(range(len(seen) + 1, len(seen) + len(rows) + 1))
        sizes.append(len(rows))
        seen.extend(payloads)

    report = verify_log(conn, chunk=4, consume=consume)
    conn.close()
    assert report.first_bad_seq == 3
    assert report.erased == 0  # seq 5's payload was deleted, not erased: a problem
    assert len(seen) == len(expected)
    assert max(sizes) == 4
    assert seen[2] is UNDECODED
    assert seen[4] is None
    assert [p for i, p in enumerate(seen) if i not in (2, 4)] == [
        p for i, p in enumerate(expected) if i not in (2, 4)
    ]


_FIRST_CLAIMANT = "(SELECT min(claimant) FROM proj_claimants)"
_TAMPERINGS = [
    "DELETE FROM proj_subject_counts WHERE seq = (SELECT max(seq) FROM proj_subject_counts)",
    "UPDATE proj_subject_counts SET assertions = 99"
    " WHERE seq = (SELECT min(seq) FROM proj_subject_counts)",
    "INSERT INTO proj_claimants VALUES ('nobody', 2)",
    f"UPDATE proj_claimants SET claimant = 'zz' WHERE claimant = {_FIRST_CLAIMANT}"
    f" AND recorded_seq = (SELECT min(recorded_seq) FROM proj_claimants"
    f" WHERE claimant = {_FIRST_CLAIMANT})",
    "UPDATE proj_assertions SET note = 'n'"
    " WHERE recorded_seq = (SELECT min(recorded_seq) FROM proj_assertions)",
    "DELETE FROM wm_assertions WHERE assertion_id = (SELECT max(assertion_id) FROM wm_assertions)",
    "UPDATE proj_properties SET first_seq = first_seq + 1000",
]


@pytest.mark.parametrize("edits", [[], *[[e] for e in _TAMPERINGS], _TAMPERINGS])
def test_a_parallel_audit_finds_what_a_single_process_audit_finds(
    tmp_path: Path, edits: list[str]
) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
    conn = sqlite3.connect(path, isolation_level=None)
    for sql in edits:
        assert conn.execute(sql).rowcount > 0, sql
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        alone = audit(conn, all_projectors, parallel_from=10**9)
        beside = audit(conn, all_projectors, parallel_from=0)
    finally:
        conn.close()
    assert beside == alone
    assert beside.ok is not bool(edits)
    if edits:
        tables = {line.split(":")[0] for line in beside.problems}
        assert len(tables) == len(beside.problems)  # one line per table that differs


def test_absent_values_are_stored_as_null(tmp_path: Path) -> None:
    # the projector binds NaN for None (cheaper to bind); SQLite must store NULL
    with ledger(tmp_path / "l.db") as store:
        _busy(store)
        rows = (
            store.reader()
            .execute(
                "SELECT kind, typeof(value_low), typeof(value_best), typeof(status), typeof(mode),"
                " typeof(credibility), typeof(note) FROM proj_assertions"
            )
            .fetchall()
        )
    kinds = {row[0] for row in rows}
    assert kinds == {"quantity", "status"}
    for kind, low, best, status, mode, credibility, note in rows:
        assert (low, status) == (("integer", "null") if kind == "quantity" else ("null", "text"))
        assert best in ("integer", "null")
        assert {mode, credibility, note} <= {"null", "text", "integer"}
        assert "real" not in (low, best, status, mode, credibility, note)
    assert any(row[2] == "null" for row in rows)
    assert any(row[6] == "null" for row in rows)
