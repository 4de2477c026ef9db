"""The writer's cache of the write model: it always agrees with the tables it stands for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger.errors import InvalidInput, LedgerError
from ledger.service import apply_command
from ledger.sqlite_store import SqliteStore, SqliteTransaction
from ledger.writemodel import SqliteWriteState
from tests.factories import ledger, quantity, run, source, status


def _uncached(store: SqliteStore) -> SqliteWriteState:
    return SqliteWriteState(store.reader())


def test_a_unit_that_fails_after_writing_leaves_nothing_in_the_cache(db_path: Path) -> None:
    with ledger(db_path) as store:

        def registers_then_fails(txn: SqliteTransaction) -> None:
            apply_command(txn, source("src-gone"), "test")
            apply_command(txn, quantity(1, 2, stated_at="2025", claimants=("src-gone",)), "t")
            raise RuntimeError("this unit fails after appending")

        with pytest.raises(RuntimeError):
            store.run_sync(registers_then_fails)
        assert store.size() == 0
        assert _uncached(store).source("src-gone") is None
        with pytest.raises(InvalidInput, match="unknown source 'src-gone'"):
            run(store, quantity(1, 2, stated_at="2025", claimants=("src-gone",)))
        run(store, source("src-a"))
        # the kind the failed unit gave (s, troops) was undone too: a status is welcome
        run(store, status("reported", stated_at="2025", prop="troops"))
        assert store.size() == 2


def test_a_unit_refused_by_the_rules_keeps_what_earlier_units_taught_the_cache(
    db_path: Path,
) -> None:
    with ledger(db_path) as store:
        futures = [
            store.submit(lambda txn: apply_command(txn, source("src-a"), "t")),
            store.submit(lambda txn: apply_command(txn, quantity(1, 2, stated_at="2025"), "t")),
            store.submit(
                lambda txn: apply_command(
                    txn, status("reported", stated_at="2025", prop="troops"), "t"
                )
            ),
        ]
        errors = [f.exception(10) for f in futures]
        assert errors[:2] == [None, None]
        assert isinstance(errors[2], InvalidInput)
        assert _uncached(store).property_kind("s", "troops") == "quantity"
        assert store.size() == 2


def test_writes_through_the_raw_connection_make_the_writer_forget(db_path: Path) -> None:
    with ledger(db_path) as store:
        run(store, source("src-a"), quantity(1, 2, stated_at="2025"))

        def forget_kinds(txn: SqliteTransaction) -> None:
            txn.connection.execute("DELETE FROM wm_properties")
            txn.connection.execute("DELETE FROM wm_sources")

        store.run_sync(forget_kinds)
        # the cache knew (s, troops) as a quantity and src-a as registered; the tables no
        # longer do, and the rules follow the tables
        with pytest.raises(InvalidInput, match="unknown source 'src-a'"):
            run(store, quantity(3, 4, stated_at="2025"))
        run(store, source("src-a"), status("reported", stated_at="2025", prop="troops"))


def test_a_source_update_is_seen_by_the_next_decision(db_path: Path) -> None:
    from ledger.commands import SourceChanges, UpdateSource

    with ledger(db_path) as store:
        run(store, source("src-a", reliability="B"))
        run(store, UpdateSource(id="src-a", changes=SourceChanges(reliability="A")))
        again = run(store, UpdateSource(id="src-a", changes=SourceChanges(reliability="A")))
        assert again.existing, "the second identical update changes nothing"
        with pytest.raises(LedgerError, match="other details"):
            run(store, source("src-a", reliability="B"))


def test_a_batch_run_again_after_a_rollback_rebuilds_the_cache(db_path: Path) -> None:
    """One unit fails after writing: the others run again and the cache follows them."""
    import threading

    with ledger(db_path) as store:
        run(store, source("src-a"))
        started, release = threading.Event(), threading.Event()

        def blocker(txn: SqliteTransaction) -> None:
            started.set()
            release.wait(10)

        def bad(txn: SqliteTransaction) -> Any:
            apply_command(txn, source("src-bad"), "t")
            raise RuntimeError("fails after writing")

        first = store.submit(blocker)
        assert started.wait(10)
        futures = [
            store.submit(lambda txn: apply_command(txn, source("src-b"), "t")),
            store.submit(bad),
            store.submit(
                lambda txn: apply_command(
                    txn, quantity(1, 2, stated_at="2025", claimants=("src-b",)), "t"
                )
            ),
        ]
        release.set()
        first.result(10)
        assert futures[0].exception(10) is None
        assert isinstance(futures[1].exception(10), RuntimeError)
        assert futures[2].exception(10) is None
        state = _uncached(store)
        assert state.source("src-b") is not None
        assert state.source("src-bad") is None
        with pytest.raises(InvalidInput, match="unknown source 'src-bad'"):
            run(store, quantity(1, 2, stated_at="2025", claimants=("src-bad",)))
        assert [e.seq for e in store.read()] == [1, 2, 3]
