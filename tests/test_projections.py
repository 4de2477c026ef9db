"""The projectors: their tables, rebuilds, and the indexes the views rely on."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ledger.events import Event
from ledger.migrations import applied
from ledger.sqlite_store import SqliteStore, connect
from projections import all_projectors, views
from tests.factories import (
    DEPLOYMENT,
    at,
    ledger,
    quantity,
    rank,
    retract,
    run,
    seed_commands,
    source,
)


def table_rows(conn: sqlite3.Connection, tables: tuple[str, ...]) -> dict[str, list[Any]]:
    return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


def all_tables() -> tuple[str, ...]:
    return tuple(t for p in all_projectors() for t in p.tables)


def rebuild_in(path: Path, events: list[Event]) -> sqlite3.Connection:
    """A scratch database holding only the projections, fed `events` in one batch."""
    conn = connect(path)
    for projector in all_projectors():
        projector.migrate(conn)
        conn.execute("BEGIN")
        projector.apply(conn, events)
        conn.execute("COMMIT")
    return conn


def test_all_projectors_are_fresh_and_named_apart() -> None:
    first, second = all_projectors(), all_projectors()
    assert all(a is not b for a, b in zip(first, second, strict=True))
    names = [p.name for p in first]
    assert len(set(names)) == len(names)
    tables = all_tables()
    assert len(set(tables)) == len(tables)
    assert all(t.startswith("proj_") for t in tables)


def test_migrations_are_recorded_and_run_once(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        run(store, source("src-a"))
    with ledger(tmp_path / "l.db") as store:
        names = applied(store.reader())
        assert {"projections-0001-sources", "projections-0001-assertions"} <= names
        assert views.get_source(store.reader(), "src-a", at(store)) is not None


def test_reads_see_the_write_that_just_returned(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        run(store, source("src-a"))
        for i in range(5):
            receipt = run(store, quantity(i, i, stated_at="2025-01", assertion_id=f"x{i}"))
            view = views.quantity_view(store.reader(), "s", "troops", at(store))
            assert view.basis == [f"x{i}"]
            assert view.seq == receipt.events[0].seq


def run_revised_history(store: SqliteStore, *more: Any) -> None:
    """The seed, then a retraction, a ranking, a superseding value and any `more` commands."""
    run(store, *seed_commands())
    run(
        store,
        retract("ap-2025-04-28.casualties-us-gov"),
        rank("ap-2025-04-28.casualties-kr-jcs", "preferred"),
        quantity(
            1,
            2,
            stated_at="2025-05",
            subject=DEPLOYMENT,
            prop="troops.deployed",
            claimants=("ap",),
            supersedes="ap-2025-04-28.troops-fall-2024",
        ),
        *more,
    )


def test_a_rebuild_from_the_log_equals_the_incremental_tables(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        run_revised_history(store)
        live = table_rows(store.reader(), all_tables())
        events = store.read(limit=10_000)
        scratch = rebuild_in(tmp_path / "scratch.db", events)
        assert table_rows(scratch, all_tables()) == live
        scratch.close()

        def reset_and_replay(txn: Any) -> None:
            for projector in store.projectors[1:]:
                projector.reset(txn.connection)
            assert all(not rows for rows in table_rows(txn.connection, all_tables()).values())
            for projector in store.projectors[1:]:
                projector.apply(txn.connection, events)

        store.run_sync(reset_and_replay)
        assert table_rows(store.reader(), all_tables()) == live


def test_an_erased_payload_is_skipped(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        run(store, source("src-a"))
        event = store.read()[0]
    conn = rebuild_in(tmp_path / "scratch.db", [Event(**{**_fields(event), "data": None})])
    assert all(not rows for rows in table_rows(conn, all_tables()).values())
    conn.close()


def _fields(event: Event) -> dict[str, Any]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


@pytest.fixture
def seeded(tmp_path: Path) -> Any:
    with ledger(tmp_path / "l.db") as store:
        run(store, *seed_commands())
        yield store


def _plans(store: SqliteStore, work: Any) -> list[str]:
    """Every query plan line of the statements `work` runs on the reader."""
    conn = store.reader()
    plans: list[str] = []

    def trace(sql: str) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            plans.extend(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))

    # expand the statement's bound values by tracing the expanded SQL
    conn.set_trace_callback(trace)
    try:
        work(conn)
    finally:
        conn.set_trace_callback(None)
    return plans


def test_views_never_scan_a_whole_table(seeded: SqliteStore) -> None:
    pit = at(seeded, "2025-03", seq=20)
    for work in (
        lambda c: views.quantity_view(c, DEPLOYMENT, "troops.deployed", pit),
        lambda c: views.status_view(c, DEPLOYMENT, "deployment.status", pit),
        lambda c: views.timeline(c, DEPLOYMENT, pit),
        lambda c: views.assertion_detail(c, "ap-2025-04-28.troops-fall-2024", pit),
        lambda c: views.list_assertions(c, pit, subject=DEPLOYMENT, limit=3),
        lambda c: views.list_assertions(c, pit, claimant="us-intel", limit=3),
        lambda c: views.get_source(c, "ap", pit),
    ):
        plans = _plans(seeded, work)
        assert plans
        scans = [p for p in plans if p.startswith("SCAN")]
        assert scans == [], scans


def test_quantity_and_status_views_read_only_the_covering_index(seeded: SqliteStore) -> None:
    pit = at(seeded)
    plans = _plans(seeded, lambda c: views.quantity_view(c, DEPLOYMENT, "troops.deployed", pit))
    assert any("COVERING INDEX proj_assertions_view" in p for p in plans), plans
