"""A ledger SQLite cannot write beside: on a full disk, or on a read-only file system.

To read a WAL database SQLite creates and sizes two files beside it (`-wal`, `-shm`), so
on a full disk or a read-only mount every command failed to open the ledger, even those
that only read. Where the database file alone holds every commit (no `-wal`, or an empty
one) the store now opens it as an immutable snapshot: reads, views, proofs, `verify`,
`audit` and `backup` to another disk work, and appends are refused saying why. A `-wal`
that holds frames is refused by name, since reading without it would pass an older log
off as the whole one.

The real file systems (a full tmpfs, a read-only bind mount) need root and mount(8):
elsewhere those tests skip, saying so. The others fake SQLite's error and run anywhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from api import cli
from ledger import sqlite_store
from ledger.errors import LedgerUnavailable, SnapshotChanged
from ledger.health import health_report
from ledger.sqlite_store import SqliteStore, snapshot_reason
from ledger.verify import verify_log
from projections import all_projectors
from tests import api_helpers
from tests.api_helpers import (
    DEPLOYMENT,
    SEED,
    SEED_EVENTS,
    TROOPS,
    Ledger,
    assertion_body,
    problem,
)
from tests.reliability import live, store_of
from tests.store_contract import new_events

template, ledger = api_helpers.template, api_helpers.ledger

Mount = Callable[..., None]


@pytest.fixture
def mount() -> Iterator[Mount]:
    """`mount(*args, target=folder)` runs mount(8), and unmounts after the test."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to make a full or a read-only file system")
    mounted: list[Path] = []

    def run(*args: str, target: Path) -> None:
        done = subprocess.run(
            ["mount", *args, str(target)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"mount {' '.join(args)} failed here: {done.stderr.strip()}")
        mounted.append(target)

    yield run
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def _fill(folder: Path) -> None:
    """Write a file until the disk holding `folder` has no block left."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_on_a_full_disk_every_reading_command_works_and_appends_are_refused(
    tmp_path: Path, mount: Mount, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", target=disk)
    db = disk / "l.db"
    assert cli.main(["import", str(SEED), "--db", str(db)]) == 0
    assert not (disk / "l.db-wal").exists()  # closed cleanly: the file holds every commit
    _fill(disk)
    before = _digest(db)
    capsys.readouterr()

    assert cli.main(["verify", "--db", str(db)]) == 0
    assert f'"events":{SEED_EVENTS}' in capsys.readouterr().out
    assert cli.main(["events", "--after", str(SEED_EVENTS - 1), "--db", str(db)]) == 0
    assert f'"seq":{SEED_EVENTS}' in capsys.readouterr().out
    assert cli.main(["state", DEPLOYMENT, TROOPS, "--db", str(db)]) == 0
    assert '"estimate":{"low":13000,"high":15000' in capsys.readouterr().out
    assert cli.main(["audit", "--db", str(db)]) == 0
    assert '"projections_match":true' in capsys.readouterr().out
    copy = tmp_path / "copy.db"  # to another disk, which has room
    assert cli.main(["backup", str(copy), "--db", str(db)]) == 0
    assert '"ok":true' in capsys.readouterr().out

    assert cli.main(["keys", "list", "--db", str(db)]) == 0

    assert cli.main(["import", str(SEED), "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "appends are refused: the ledger is open as a read-only snapshot" in err
    assert "its disk is full" in err
    with pytest.raises(SystemExit) as refused:
        cli.main(["keys", "create", "--role", "reader", "--db", str(db)])
    assert refused.value.code == 1
    assert "key changes are refused: the ledger is open as a read-only snapshot" in (
        capsys.readouterr().err
    )
    assert _digest(db) == before
    (disk / "filler").unlink()  # with room again, the ledger opens as usual
    store = SqliteStore(db, all_projectors())
    try:
        assert (store.snapshot, store.write_refusal, store.size()) == (None, None, SEED_EVENTS)
    finally:
        store.close()


async def test_a_ledger_on_a_read_only_mount_is_served_for_reading(
    ledger: Ledger, tmp_path: Path, mount: Mount
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    mount("--bind", str(ledger.db.parent), target=archive)
    mount("-o", "remount,ro,bind", target=archive)
    on_archive = replace(ledger, db=archive / ledger.db.name)
    async with live(on_archive) as client:
        store = store_of(client)
        assert store.snapshot == "its file system is read-only"
        health = (await client.get("/v1/health")).json()
        assert health["status"] == "degraded"
        assert health["reason"] == (
            "appends are refused: the ledger is open as a read-only snapshot, since its file "
            "system is read-only"
        )
        reader, writer = ledger.auth("reader"), ledger.auth("writer")
        view = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
        assert view.status_code == 200
        assert view.json()["seq"] == SEED_EVENTS
        proof = await client.get(f"/v1/log/inclusion?seq=3&size={SEED_EVENTS}", headers=reader)
        assert proof.status_code == 200
        refused = await client.post("/v1/assertions", json=assertion_body(), headers=writer)
        assert problem(refused, 503)["detail"] == health["reason"]
    assert not list(archive.glob("*-shm"))


# ---- SQLite's failure faked: these run anywhere ----


def _cannot_write_beside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every usual connection fails as SQLite does when it cannot size the `-shm` file."""

    def fails(path: str | Path, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"
        raise exc

    monkeypatch.setattr(sqlite_store, "connect", fails)


def test_a_store_that_cannot_write_beside_its_file_reads_a_snapshot(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _digest(ledger.db)
    _cannot_write_beside(monkeypatch)
    store = SqliteStore(ledger.db, all_projectors())
    try:
        assert store.snapshot is not None
        assert store.snapshot.startswith("SQLite cannot write beside it (disk I/O error)")
        assert store.write_refusal == (
            f"appends are refused: the ledger is open as a read-only snapshot, since "
            f"{store.snapshot}"
        )
        assert store.size() == SEED_EVENTS
        assert verify_log(store.reader()).ok
        assert store.inclusion_proof(5, SEED_EVENTS).seq == 5
        with pytest.raises(LedgerUnavailable, match="read-only snapshot"):
            store.append_sync("subject:x", [], "test")  # refused before any rule runs
    finally:
        store.close()
    assert _digest(ledger.db) == before


def test_a_snapshot_whose_file_is_written_since_refuses_to_read(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once something writes the file (room again, a writer), the snapshot could mix the
    old state with the new or find the file malformed: every read is a SnapshotChanged
    (503), and health says why, with the size the log had when it was opened."""
    _cannot_write_beside(monkeypatch)
    snapshot = SqliteStore(ledger.db, all_projectors())
    monkeypatch.undo()
    try:
        assert snapshot.size() == SEED_EVENTS
        with pytest.raises(LedgerUnavailable, match="read-only snapshot"):
            snapshot.vacuum()  # a write of the file: refused as appends are
        writer = SqliteStore(ledger.db, all_projectors())
        try:
            assert writer.snapshot is None
            writer.append_sync("subject:later", new_events("subject:later", 1), "t")
        finally:
            writer.close()
        with pytest.raises(SnapshotChanged, match="changed since it was opened as a read-only"):
            snapshot.size()
        report = health_report(snapshot)
        assert (report.status, report.seq) == ("degraded", SEED_EVENTS)
        assert report.reason is not None
        assert "open it again" in report.reason
        assert snapshot.write_refusal is not None
        assert "changed since it was opened" in snapshot.write_refusal
    finally:
        snapshot.close()


def _wal_with_commits(db: Path) -> SqliteStore:
    """A ledger at `db` whose commits stay in its `-wal` (no checkpoint) while it is open."""
    store = SqliteStore(db, all_projectors(), background_checkpoints=False)
    store.run_sync(lambda txn: txn.sql.execute("PRAGMA wal_autocheckpoint = 0"))
    from api.importer import import_file

    assert import_file(store, SEED, "test").error is None
    assert db.with_name("l.db-wal").stat().st_size > 0
    return store


def test_a_wal_that_holds_commits_is_never_left_out(tmp_path: Path) -> None:
    """The last commits sit in the `-wal` until a checkpoint copies them: a snapshot of
    the database file alone would miss them, so it is refused, naming the file, whether
    the ledger is named by its path or through a link (SQLite follows the link, and the
    `-wal` is beside the file itself)."""
    real = tmp_path / "real"
    real.mkdir()
    db = real / "l.db"
    store = _wal_with_commits(db)
    linked = tmp_path / "elsewhere"
    linked.mkdir()
    (linked / "l.db").symlink_to(db)
    try:
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"
        for name in (db, linked / "l.db"):
            with pytest.raises(LedgerUnavailable, match=f"its last commits are in {db}-wal"):
                snapshot_reason(name, exc)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ("file is not a database", "SQLITE_NOTADB"),
        ("database is locked", "SQLITE_BUSY"),
    ],
)
def test_other_failures_are_not_read_as_a_snapshot(ledger: Ledger, message: str, name: str) -> None:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorname = name
    assert snapshot_reason(ledger.db, exc) is None
    full = sqlite3.OperationalError("disk I/O error")
    full.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"
    assert snapshot_reason(ledger.db.with_name("missing.db"), full) is None
    assert snapshot_reason(ledger.db, full) is not None
