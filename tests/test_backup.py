"""`ledger backup DEST`: a copy of the ledger as of one moment, taken while appends go on,
verified against the ledger, never replacing a file and never carrying deleted bytes."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest

from api.cli import main
from ledger import sqlite_store
from ledger.erasure import EraseRequest, erase
from ledger.errors import LedgerError
from ledger.files import abandoned
from ledger.sqlite_store import connect
from ledger.verify import verify_log
from tests.factories import DEPLOYMENT, leave_in_free_page, ledger, quantity, run, seed_commands
from tests.test_projections import all_tables, table_rows


def _seeded(path: Path) -> None:
    with ledger(path) as store:
        run(store, *seed_commands())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_the_copy_holds_the_same_log_and_views(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, dest = tmp_path / "l.db", tmp_path / "copy.db"
    _seeded(source)
    assert main(["backup", str(dest), "--db", str(source)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["backup"] == str(dest)
    assert report["bytes"] == dest.stat().st_size
    assert report["problems"] == []
    assert main(["verify", "--db", str(source)]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert (
        (report["events"], report["root"])
        == (verified["events"], verified["root"])
        == (
            27,
            verified["root"],
        )
    )
    assert main(["audit", "--db", str(dest)]) == 0
    capsys.readouterr()
    tables = (*all_tables(), "events", "payloads", "merkle_nodes", "api_keys")
    a, b = sqlite3.connect(source), sqlite3.connect(dest)
    try:
        assert table_rows(a, tables) == table_rows(b, tables)
    finally:
        a.close()
        b.close()
    assert _leftovers(tmp_path) == []


def test_a_backup_while_appends_go_on_is_one_moment_of_the_log(tmp_path: Path) -> None:
    source, dest = tmp_path / "l.db", tmp_path / "copy.db"
    _seeded(source)
    with ledger(source) as store:
        before = store.size()
        stop = threading.Event()

        def append() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                run(
                    store,
                    quantity(
                        n,
                        n + 1,
                        stated_at="2025-06",
                        subject=DEPLOYMENT,
                        prop="troops.deployed",
                        claimants=("kr-intel",),
                    ),
                )

        writer = threading.Thread(target=append)
        writer.start()
        try:
            while store.size() < before + 20:
                stop.wait(0.01)
            store.backup(dest)
        finally:
            stop.set()
            writer.join()
        after = store.size()
        copy = connect(dest)
        try:
            report = verify_log(copy)
        finally:
            copy.close()
        assert report.ok, report.problems
        assert before + 20 <= report.events <= after
        assert report.root == store.root(report.events)


def test_a_backup_never_replaces_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, dest = tmp_path / "l.db", tmp_path / "copy.db"
    _seeded(source)
    dest.write_bytes(b"someone's file")
    (tmp_path / "folder").mkdir()
    for argv, message in [
        ([str(dest), "--db", str(source)], "already exists"),
        ([str(tmp_path / "folder"), "--db", str(source)], "already exists"),
        ([str(tmp_path / "none" / "c.db"), "--db", str(source)], "no such folder"),
        ([str(tmp_path / "c.db"), "--db", str(tmp_path / "absent.db")], "no ledger there"),
        ([f"{source}-wal", "--db", str(source)], "the ledger's own -wal file"),
        ([f"{tmp_path}/./l.db-shm", "--db", str(source)], "the ledger's own -shm file"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            main(["backup", *argv])
        assert stopped.value.code == 2
        assert message in capsys.readouterr().err
    assert dest.read_bytes() == b"someone's file"
    assert not (tmp_path / "c.db").exists()
    assert not (tmp_path / "absent.db").exists()
    assert _leftovers(tmp_path) == []
    # a file that appears while the copy is written stays as it is
    with ledger(source) as store, pytest.raises(LedgerError, match="appeared"):
        store.backup(dest)
    assert dest.read_bytes() == b"someone's file"
    assert _leftovers(tmp_path) == []


def test_a_backup_carries_no_erased_text(tmp_path: Path) -> None:
    """Free pages of the ledger may still hold an erased quote until a vacuum; the copy is
    built from live rows and holds none of it."""
    source, dest = tmp_path / "l.db", tmp_path / "copy.db"
    quote = "words that a court ordered out of the ledger, 2026-11-27"
    with ledger(source) as store:
        run(store, *seed_commands())
        command = quantity(
            5,
            6,
            stated_at="2025-06",
            subject=DEPLOYMENT,
            prop="troops.deployed",
            claimants=("kr-intel",),
        )
        seq = run(store, msgspec.structs.replace(command, quote=quote)).events[0].seq
    leave_in_free_page(source, quote)
    with ledger(source) as store:
        erase(store, EraseRequest(seq, "court order"), "dpo")
        assert quote.encode() in source.read_bytes()  # the free page still holds it
        store.backup(dest)
    assert quote.encode() not in dest.read_bytes()
    copy = connect(dest)
    try:
        report = verify_log(copy)
    finally:
        copy.close()
    assert report.ok
    assert report.erased == 1


def test_a_ctrl_c_during_the_copy_is_an_interrupt_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, dest = tmp_path / "l.db", tmp_path / "copy.db"
    _seeded(source)
    monkeypatch.setattr(sqlite_store, "BACKUP_PROGRESS_STEPS", 100)  # a small file reports too

    def interrupted(done: int) -> None:
        raise KeyboardInterrupt  # as a Ctrl-C arrives while SQLite calls back

    with ledger(source) as store, pytest.raises(KeyboardInterrupt):
        store.backup(dest, interrupted)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_what_a_killed_backup_left_is_swept_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup killed mid-copy leaves its temporary copy beside DEST; the next backup to
    DEST removes it, and never one a running backup holds. What tells them apart is the
    lock a backup holds on its copy, which every process sharing the file sees (in another
    container, or on another machine of a shared folder), not the process id in its name."""
    import fcntl

    dest = tmp_path / "copy.db"
    stale = [
        tmp_path / ".copy.db.partial-4242",
        tmp_path / ".copy.db.partial-4242-journal",
        tmp_path / ".copy.db.partial-\u00b2",  # any name at all: nothing is parsed
        tmp_path / ".copy.db.partial-99999999999999999999",
    ]
    running = tmp_path / ".copy.db.partial-1"  # pid 1 runs, but what counts is the lock
    kept = [running, tmp_path / ".copy.db.partial-1-journal"]
    for path in (*stale, *kept):
        path.write_bytes(b"x" * 1000)
    held = os.open(running, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    seen: list[bool] = []
    monkeypatch.setattr(sqlite_store, "BACKUP_PROGRESS_STEPS", 50)  # asked during the copy
    try:
        with ledger(tmp_path / "l.db") as store:
            run(store, *seed_commands())
            partial = sqlite_store._partial(dest)
            store.backup(dest, lambda done: seen.append(abandoned(partial)))
    finally:
        os.close(held)
    assert dest.exists()
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert seen
    assert not any(seen)  # the backup held its own copy's lock while it wrote it
    assert not partial.exists()


def test_without_file_locks_a_backup_still_runs_and_keeps_what_it_cannot_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where `fcntl` does not exist (Windows), nothing tells a running backup's copy from an
    abandoned one: the sweep keeps every copy, and the backup itself still works."""
    import sys

    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` raises ImportError
    left = tmp_path / ".copy.db.partial-4242"
    left.write_bytes(b"x" * 1000)
    with ledger(tmp_path / "l.db") as store:
        run(store, *seed_commands())
        store.backup(tmp_path / "copy.db")
    assert (tmp_path / "copy.db").exists()
    assert left.exists()
    assert abandoned(tmp_path / ".copy.db.partial-gone")  # no file: nothing kept
