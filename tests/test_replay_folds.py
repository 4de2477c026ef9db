"""Bulk folds: replayers equal `apply`, catch-up of lagging views, imports that fold at the end."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from api.importer import import_file
from ledger.replay import (
    audit,
    audit_projections,
    catch_up,
    checkpoint_of,
    read_chunks,
    rebuild,
    replay_folds,
    same_table,
)
from ledger.sqlite_store import SqliteStore, log_size
from ledger.writemodel import WriteModel
from projections import all_projectors, views
from tests.factories import (
    DEPLOYMENT,
    SEED,
    at,
    ledger,
    quantity,
    rank,
    run,
    seed_commands,
)
from tests.test_projections import all_tables, rebuild_in, run_revised_history, table_rows

WRITE_MODEL_TABLES = WriteModel.tables


def busy_ledger(
    store: SqliteStore, stated_at: str = "2025-06", claimants: tuple[str, ...] = ("ap",)
) -> None:
    """The seed's revised history, another subject's claim and a deprecation."""
    run_revised_history(
        store,
        quantity(
            3,
            4,
            stated_at=stated_at,
            subject="other-subject",
            prop="troops.deployed",
            claimants=claimants,
        ),
        rank("ap-2025-04-28.casualties-kr-jcs", "deprecated"),
    )


@pytest.mark.parametrize("chunk", [1, 3, 7, 10_000])
def test_replay_folds_give_the_rows_apply_gives(tmp_path: Path, chunk: int) -> None:
    with ledger(tmp_path / "l.db") as store:
        busy_ledger(store)
        events = store.read(limit=10_000)
        live = table_rows(store.reader(), all_tables() + WRITE_MODEL_TABLES)
    scratch = rebuild_in(tmp_path / "apply.db", events)
    assert table_rows(scratch, all_tables()) == {t: live[t] for t in all_tables()}
    scratch.close()

    # the same log folded by the replayers, a few events at a time, state kept between
    with ledger(tmp_path / "replayed.db") as other:

        def work(txn: Any) -> None:
            projectors = [WriteModel(), *all_projectors()]
            folds = replay_folds(txn.connection, projectors)
            for start in range(0, len(events), chunk):
                for fold in folds:
                    fold(events[start : start + chunk])

        other.run_sync(work)
        assert table_rows(other.reader(), all_tables() + WRITE_MODEL_TABLES) == live


def test_rebuild_equals_the_incremental_tables(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        busy_ledger(store)
        live = table_rows(store.reader(), all_tables() + WRITE_MODEL_TABLES)
        assert rebuild(store, chunk=4) == store.size()
        assert table_rows(store.reader(), all_tables() + WRITE_MODEL_TABLES) == live
        assert set(store.checkpoints().values()) == {store.size()}
        assert audit(store, all_projectors).ok


def test_views_behind_the_log_catch_up_when_the_ledger_opens(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        run(store, *seed_commands()[:10])
        expected_size = store.size()
    # the log grows without the read side, as when an import dies before its views fold
    bare = SqliteStore(path, synchronous="NORMAL")
    try:
        run(bare, *seed_commands()[10:])
        size = bare.size()
    finally:
        bare.close()
    assert size > expected_size
    conn = sqlite3.connect(path)
    assert checkpoint_of(conn, "projections.assertions") == expected_size
    conn.close()

    with ledger(path) as store:
        assert set(store.checkpoints().values()) == {size}
        assert audit(store, all_projectors).ok
        view = views.quantity_view(store.reader(), DEPLOYMENT, "troops.deployed", at(store))
        assert view.basis  # answered from tables that hold the whole log


def test_catch_up_folds_only_what_each_projector_lacks(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        busy_ledger(store)
        live = table_rows(store.reader(), all_tables())
        size = store.size()

        def rewind_and_catch_up(txn: Any) -> int:
            conn = txn.connection
            # take the assertions' tables back to seq 20 by refolding them from nothing
            projector = store.projectors[2]
            projector.reset(conn)
            for events in read_chunks(conn, until=20):
                projector.apply(conn, events)
            conn.execute(
                "UPDATE checkpoints SET seq = 20 WHERE name = ?",
                (projector.name,),
            )
            return catch_up(conn, store.projectors[1:], chunk=3)

        assert store.run_sync(rewind_and_catch_up) == size - 20
        assert table_rows(store.reader(), all_tables()) == live
        assert set(store.checkpoints().values()) == {size}


def test_an_import_folds_its_views_at_the_end(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        result = import_file(store, SEED, "test", chunk_size=4)
        assert result.error is None
        assert result.appended == store.size()
        assert len(store.projectors) == 3  # the read side is back on the store
        assert set(store.checkpoints().values()) == {store.size()}
        assert audit(store, all_projectors).ok
        # appends after the import are folded as they commit again
        run(
            store,
            quantity(5, 6, stated_at="2025-07", subject="late", prop="x", claimants=("ap",)),
        )
        assert audit_projections(store.reader(), all_projectors) == []


def test_an_import_that_stops_leaves_views_that_agree_with_the_log(tmp_path: Path) -> None:
    lines = SEED.read_bytes().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join([*lines[:12], b'{"record": "rank", "assertion_id": "nope"}']))
    with ledger(tmp_path / "l.db") as store:
        result = import_file(store, bad, "test", chunk_size=5)
        assert result.error is not None
        assert result.appended == store.size() > 0
        assert set(store.checkpoints().values()) == {store.size()}
        assert audit(store, all_projectors).ok


def test_an_import_into_a_large_ledger_keeps_its_view_indexes(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        run(store, *seed_commands())
        small = tmp_path / "small.jsonl"
        small.write_bytes(
            b'{"record": "retraction", "assertion_id": "ap-2025-04-28.casualties-us-gov",'
            b' "reason": "wrong"}\n'
        )
        assert import_file(store, small, "test").error is None
        names = {
            row[0]
            for row in store.reader().execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert {"proj_assertions_view", "proj_ranks_assertion"} <= names
        assert audit(store, all_projectors).ok


def test_the_audit_compares_in_sql_and_still_names_a_difference(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        busy_ledger(store)
        assert audit(store, all_projectors).ok
    conn = sqlite3.connect(path, isolation_level=None)
    edited = conn.execute(
        "UPDATE proj_assertions SET quote = 'edited'"
        " WHERE recorded_seq = (SELECT max(recorded_seq) FROM proj_assertions)"
    )
    assert edited.rowcount == 1
    conn.close()
    with ledger(path) as store:
        report = audit(store, all_projectors)
        assert not report.ok
        assert report.problems
        assert report.problems[0].startswith("proj_assertions: row")
        assert "quote is 'edited' live" in report.problems[0]
        # the scratch database is detached again: a second audit attaches its own
        assert not audit(store, all_projectors).ok
        attached = [row[1] for row in store.reader().execute("PRAGMA database_list")]
        assert [name for name in attached if name != "temp"] == ["main"]  # SQLite's own


def test_same_table(tmp_path: Path) -> None:
    live = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    live.execute(f"ATTACH DATABASE '{tmp_path / 'b.db'}' AS other")
    for schema in ("main", "other"):
        live.execute(f"CREATE TABLE {schema}.t (k INTEGER PRIMARY KEY, v TEXT)")
        live.execute(f"CREATE TABLE {schema}.n (v TEXT)")
        live.executemany(f"INSERT INTO {schema}.t VALUES (?, ?)", [(1, "a"), (2, None)])
    assert same_table(live, "other", "t")
    assert not same_table(live, "other", "n")  # no key: left to the row-by-row comparison
    live.execute("UPDATE other.t SET v = 'b' WHERE k = 2")
    assert not same_table(live, "other", "t")
    live.execute("UPDATE other.t SET v = NULL WHERE k = 2")
    live.execute("INSERT INTO other.t VALUES (3, 'c')")
    assert not same_table(live, "other", "t")
    live.close()


def test_the_audit_replays_each_projector_to_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        run(store, *seed_commands()[:10])
    bare = SqliteStore(path, synchronous="NORMAL")
    try:
        run(bare, *seed_commands()[10:])
        # an import in another process is part-way: its views have not folded yet
        conn = bare.reader()
        assert log_size(conn) > (checkpoint_of(conn, "projections.assertions") or 0)
        assert audit(conn, all_projectors).ok
    finally:
        bare.close()


def test_the_audit_can_replay_in_a_second_process(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        busy_ledger(store)
        calls: list[tuple[int, int]] = []
        size = store.size()
        report = audit(store, all_projectors, lambda d, t: calls.append((d, t)), parallel_from=0)
        assert report.ok
        assert report.events == size
        assert calls[-1] == (2 * size, 2 * size)
        # a factory that cannot be pickled is replayed here instead
        assert audit(store, lambda: all_projectors(), parallel_from=0).ok
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "DELETE FROM proj_claimants"
        " WHERE recorded_seq = (SELECT max(recorded_seq) FROM proj_claimants)"
    )
    conn.close()
    with ledger(path) as store:
        report = audit(store, all_projectors, parallel_from=0)
        assert not report.ok
        assert report.problems[-1].startswith("proj_claimants: ")


def test_a_parallel_audit_names_a_payload_that_does_not_decode(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        busy_ledger(store)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER payloads_no_update")
    conn.execute("UPDATE payloads SET data = x'7b7d' WHERE seq = 3")
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    report = audit(conn, all_projectors, parallel_from=0)
    conn.close()
    assert (report.ok, report.first_bad_seq, report.projections_match) == (False, 3, False)
    assert report.problems[-1].startswith(
        "projections not compared: the log cannot be replayed: seq 3: payload does not decode"
    )
