"""`verify_log` finds every kind of edit to the file, at the right seq; the audit replays views.

Tampering goes the way an attacker with the file would: a raw connection (without
`recursive_triggers`) drops the append-only triggers, then edits rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from ledger import merkle
from ledger.errors import LedgerError
from ledger.events import Event
from ledger.replay import AuditReport, audit, audit_projections, rebuild
from ledger.schema import APPEND_ONLY_TABLES
from ledger.sqlite_store import SqliteStore
from ledger.verify import VerifyReport, verify_log
from ledger.writemodel import WriteModel
from tests.store_contract import fill, new_events

SIZE = 40
CHUNKS = (1, 3, 16, 10_000)


class StreamCounts:
    """A small projector of the kind `projections/` holds: events and last seq per stream."""

    name = "stream_counts"
    tables: tuple[str, ...] = ("t_stream_counts",)

    def migrate(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS t_stream_counts "
            "(stream TEXT PRIMARY KEY, events INTEGER NOT NULL, last_seq INTEGER NOT NULL)"
        )

    def reset(self, connection: sqlite3.Connection) -> None:
        connection.execute("DELETE FROM t_stream_counts")

    def apply(self, connection: sqlite3.Connection, events: Sequence[Event]) -> None:
        connection.executemany(
            "INSERT INTO t_stream_counts (stream, events, last_seq) VALUES (?, 1, ?) "
            "ON CONFLICT (stream) DO UPDATE SET events = events + 1, last_seq = excluded.last_seq",
            [(e.stream, e.seq) for e in events],
        )


def factory() -> list[StreamCounts]:
    return [StreamCounts()]


@pytest.fixture
def live(db_path: Path) -> Iterator[SqliteStore]:
    """An open store of SIZE events with one read-side projector."""
    store = SqliteStore(db_path, projectors=[StreamCounts()])
    for i in range(SIZE // 5):
        stream = ("source:a", "subject:b", "subject:c")[i % 3]
        store.append_sync(stream, new_events(stream, 5, 5 * i), f"actor-{i % 2}")
    yield store
    store.close()


@pytest.fixture
def ledger_file(live: SqliteStore, db_path: Path) -> Path:
    """The file of `live`, closed, for tampering."""
    live.close()
    return db_path


def attacker(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for table in APPEND_ONLY_TABLES:
        conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    return conn


def verify(path: Path, chunk: int = 10_000) -> VerifyReport:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return verify_log(conn, chunk=chunk)
    finally:
        conn.close()


# ---- an untouched ledger ----


@pytest.mark.parametrize("chunk", CHUNKS)
def test_untouched_ledger_verifies(live: SqliteStore, chunk: int) -> None:
    calls: list[tuple[int, int]] = []
    report = verify_log(live.reader(), lambda done, total: calls.append((done, total)), chunk=chunk)
    assert report == VerifyReport(
        ok=True, events=SIZE, root=live.head().root, first_bad_seq=None, problems=[]
    )
    assert calls[-1] == (SIZE, SIZE)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})


def test_empty_ledger_verifies(store: SqliteStore) -> None:
    report = verify_log(store.reader())
    assert report.ok
    assert (report.events, report.root) == (0, merkle.EMPTY_ROOT.hex())


async def test_verifies_at_sizes_around_powers_of_two(store: SqliteStore) -> None:
    for size in (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33):
        await fill(store, size - store.head().size)
        for chunk in (1, 2, 5, 64):
            report = verify_log(store.reader(), chunk=chunk)
            assert report.ok, (size, chunk, report.problems)
            assert (report.events, report.root) == (size, store.head().root)


# ---- tampering ----


def _edit_payload(conn: sqlite3.Connection, seq: int, digest_too: bool = False) -> None:
    data = json.loads(conn.execute("SELECT data FROM payloads WHERE seq = ?", (seq,)).fetchone()[0])
    key = next(k for k, v in data.items() if isinstance(v, str))
    data[key] = data[key] + " (edited)"
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    conn.execute("UPDATE payloads SET data = ? WHERE seq = ?", (raw, seq))
    if digest_too:
        conn.execute(
            "UPDATE events SET data_sha256 = ? WHERE seq = ?",
            (hashlib.sha256(raw).hexdigest(), seq),
        )


Tamper = Callable[[sqlite3.Connection], object]
TAMPERING: dict[str, tuple[Tamper, int | None, str]] = {
    "payload": (lambda c: _edit_payload(c, 7), 7, "data_sha256"),
    "payload and its digest": (lambda c: _edit_payload(c, 8, True), 8, "chain"),
    "undecodable payload": (
        lambda c: c.execute("UPDATE payloads SET data = x'7b7d' WHERE seq = 3"),
        3,
        "decode",
    ),
    "actor": (lambda c: c.execute("UPDATE events SET actor = 'mallory' WHERE seq = 9"), 9, "chain"),
    "recorded_at": (
        lambda c: c.execute(
            "UPDATE events SET recorded_at = '2000-01-01T00:00:00.000000Z' WHERE seq = 12"
        ),
        12,
        "Merkle leaf (0, 11)",
    ),
    "stream and version": (
        lambda c: c.execute("UPDATE events SET stream = 'subject:z', version = 1 WHERE seq = 33"),
        33,
        "chain",
    ),
    "deleted event": (lambda c: c.execute("DELETE FROM events WHERE seq = 10"), 10, "missing"),
    "deleted event and payload": (
        lambda c: c.executescript(
            "DELETE FROM events WHERE seq IN (10, 11); DELETE FROM payloads WHERE seq IN (10, 11)"
        ),
        10,
        "missing: seq 10..11",
    ),
    "deleted first event": (lambda c: c.execute("DELETE FROM events WHERE seq = 1"), 1, "missing"),
    "deleted last event": (
        lambda c: c.execute("DELETE FROM events WHERE seq = ?", (SIZE,)),
        SIZE,
        "beyond a tree of 39",
    ),
    "deleted last event and its nodes": (
        lambda c: c.executescript(
            f"DELETE FROM events WHERE seq = {SIZE}; DELETE FROM payloads WHERE seq = {SIZE};"
            f"DELETE FROM merkle_nodes WHERE (level = 0 AND idx = {SIZE - 1})"
            f" OR (level = 1 AND idx = {SIZE // 2 - 1}) OR (level = 2 AND idx = {SIZE // 4 - 1})"
            f" OR (level = 3 AND idx = {SIZE // 8 - 1})"
        ),
        None,  # a clean truncation: only a witness of the old root can tell
        "",
    ),
    "interior Merkle node": (
        lambda c: c.execute("UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level=2 AND idx=1"),
        5,
        "node (2, 1)",
    ),
    "Merkle leaf": (
        lambda c: c.execute("UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level=0 AND idx=14"),
        15,
        "leaf (0, 14)",
    ),
    "deleted Merkle node": (
        lambda c: c.execute("DELETE FROM merkle_nodes WHERE level = 1 AND idx = 3"),
        7,
        "missing",
    ),
    "extra Merkle node": (
        lambda c: c.execute("INSERT INTO merkle_nodes VALUES (0, ?, zeroblob(32))", (SIZE,)),
        SIZE + 1,
        "beyond a tree",
    ),
    "payload written again with spaces": (
        lambda c: c.execute(
            "UPDATE payloads SET data = CAST(replace(CAST(data AS TEXT), '{\"', '{ \"') AS BLOB)"
            " WHERE seq = 8"
        ),
        8,
        "not stored in its canonical form",
    ),
    "payload stored as text": (
        lambda c: c.execute("UPDATE payloads SET data = CAST(data AS TEXT) WHERE seq = 9"),
        9,
        "payload stored as str, not bytes",
    ),
    "chain hash": (
        lambda c: c.execute("UPDATE events SET hash = ? WHERE seq = 20", ("00" * 32,)),
        20,
        "chain",
    ),
    "chain hash not hex": (
        lambda c: c.execute("UPDATE events SET hash = 'zz' WHERE seq = 21"),
        21,
        "not hex",
    ),
}


@pytest.mark.parametrize("chunk", [1, 4, 10_000])
@pytest.mark.parametrize("case", list(TAMPERING))
def test_finds_tampering(ledger_file: Path, case: str, chunk: int) -> None:
    tamper, first_bad, words = TAMPERING[case]
    conn = attacker(ledger_file)
    tamper(conn)
    conn.close()
    report = verify(ledger_file, chunk)
    assert report.first_bad_seq == first_bad, report.problems
    if first_bad is None:
        assert report.ok
        assert report.events == SIZE - 1
        return
    assert not report.ok
    assert any(words in p for p in report.problems), report.problems
    assert any(p.startswith(f"seq {first_bad}:") for p in report.problems)


def test_a_payload_edit_leaves_the_root_alone(ledger_file: Path) -> None:
    root = verify(ledger_file).root
    conn = attacker(ledger_file)
    _edit_payload(conn, 5)
    conn.close()
    assert verify(ledger_file).root == root


def test_a_payload_deleted_without_a_logged_erasure_is_a_problem(ledger_file: Path) -> None:
    """The envelopes still commit to what is gone, so every hash and the root hold; but a
    lawful erasure is logged in the chain (`ledger erase`), and these were not."""
    root = verify(ledger_file).root
    conn = attacker(ledger_file)
    conn.execute("DELETE FROM payloads WHERE seq IN (3, 17)")
    conn.close()
    report = verify(ledger_file)
    assert not report.ok
    assert (report.erased, report.first_bad_seq, report.events) == (0, 3, SIZE)  # not erased
    assert report.root == root
    assert report.problems == [
        f"seq {seq}: payload not there, and no erasure of it is logged or recorded "
        "(deleted by other means)"
        for seq in (3, 17)
    ]


def test_problems_are_capped(ledger_file: Path) -> None:
    conn = attacker(ledger_file)
    for seq in range(1, SIZE + 1):
        _edit_payload(conn, seq)
    conn.execute("UPDATE events SET actor = 'mallory'")
    conn.close()
    report = verify(ledger_file)
    assert report.first_bad_seq == 1
    assert len(report.problems) == 101
    assert report.problems[-1].startswith("... and ")


# ---- projections ----


def test_audit_projections_agree_on_an_untouched_ledger(live: SqliteStore) -> None:
    assert audit_projections(live.reader(), factory) == []
    assert audit_projections(live.reader(), list) == []  # the write model alone


def test_audit_finds_an_edited_projection_row(live: SqliteStore) -> None:
    conn = sqlite3.connect(live.path, isolation_level=None)
    source_id, name = conn.execute("SELECT id, name FROM wm_sources ORDER BY id").fetchone()
    conn.execute("UPDATE wm_sources SET name = 'Forged' WHERE id = ?", (source_id,))
    conn.close()
    problems = audit_projections(live.reader(), list)
    assert problems == [
        f"wm_sources: row {{id={source_id!r}}} differs: name is 'Forged' live, {name!r} replayed"
        " (live has 8 rows, the replay 8)"
    ]


def test_audit_finds_missing_and_extra_rows(live: SqliteStore) -> None:
    conn = sqlite3.connect(live.path, isolation_level=None)
    conn.execute("DELETE FROM t_stream_counts WHERE stream = 'subject:b'")
    conn.execute("INSERT INTO wm_properties VALUES ('ghost', 'troops', 'quantity')")
    conn.close()
    problems = audit_projections(live.reader(), factory)
    assert len(problems) == 2
    assert problems[0].startswith("wm_properties: live row {")
    assert "not in the replay" in problems[0]
    assert problems[1].startswith("t_stream_counts: replayed row {")
    assert "stream='subject:b'" in problems[1]


def test_audit_report(live: SqliteStore) -> None:
    calls: list[tuple[int, int]] = []
    report = audit(live, factory, lambda done, total: calls.append((done, total)))
    assert report == AuditReport(
        ok=True,
        events=SIZE,
        root=live.head().root,
        first_bad_seq=None,
        projections_match=True,
        problems=[],
    )
    assert calls[-1] == (2 * SIZE, 2 * SIZE)


@pytest.mark.parametrize(
    "stored",
    [b"{}", b'{"assertion_id":"\xff"}', b'{"\xff"', 42, 4.5, "{}"],
    ids=["other JSON", "not UTF-8 in a string", "not UTF-8, not JSON", "int", "real", "text"],
)
def test_audit_and_rebuild_of_an_undecodable_payload(ledger_file: Path, stored: object) -> None:
    """Whatever a payload was changed into, the checks name its seq: never a traceback
    (a byte that is not UTF-8 raises UnicodeDecodeError in msgspec, a number TypeError)."""
    conn = attacker(ledger_file)
    conn.execute("UPDATE payloads SET data = ? WHERE seq = 3", (stored,))
    conn.close()
    conn = sqlite3.connect(ledger_file, isolation_level=None)
    report = audit(conn, factory)
    conn.close()
    assert (report.ok, report.first_bad_seq, report.projections_match) == (False, 3, False)
    assert report.problems[-1].startswith(
        "projections not compared: the log cannot be replayed: seq 3: payload does not decode"
    )
    store = SqliteStore(ledger_file, projectors=[StreamCounts()])
    try:
        with pytest.raises(LedgerError, match=r"^seq 3: "):
            rebuild(store)
        [event] = store.read(after=2, limit=1, as_stored=True)  # read as it is stored
        assert event.seq == 3
    finally:
        store.close()


@pytest.mark.parametrize("column", ["actor", "type", "recorded_at", "data_sha256", "hash"])
def test_an_envelope_byte_that_is_not_utf8_is_named_at_its_seq(
    ledger_file: Path, column: str
) -> None:
    """SQLite hands such text to Python as an error for the whole read: the checks read it
    with U+FFFD in its place, so the digest or the chain names the seq instead."""
    conn = attacker(ledger_file)
    conn.execute(f"UPDATE events SET {column} = CAST(x'ff41' AS TEXT) WHERE seq = 7")
    conn.close()
    assert verify(ledger_file).first_bad_seq == 7
    conn = sqlite3.connect(ledger_file, isolation_level=None)
    report = audit(conn, factory)
    conn.close()
    assert (report.ok, report.first_bad_seq) == (False, 7)
    store = SqliteStore(ledger_file, projectors=[StreamCounts()])
    try:
        assert store.write_refusal is not None  # the start-up check reads it too
        with pytest.raises(LedgerError, match=r"seq 7\b"):
            rebuild(store)
        [event] = store.read(after=6, limit=1, as_stored=True)
        assert "\ufffd" in getattr(event, column)
    finally:
        store.close()


def test_guards_dropped_from_the_file_are_noted(ledger_file: Path) -> None:
    """Dropping the triggers alters nothing in the log, but the file would then take an
    edit without a word: verify says so, beside an ok log."""
    assert verify(ledger_file).notes == []
    conn = attacker(ledger_file)  # drops the update and delete guards of the log's tables
    conn.close()
    report = verify(ledger_file)
    assert report.ok
    [note] = report.notes
    assert note.startswith("the log's append-only guards are gone (events_no_delete, ")
    assert "merkle_nodes_no_update" in note
    assert "events_no_replace" not in note  # still there
    for parallel_from in (10**9, 1):  # the audit in one process, and beside a child's replay
        conn = sqlite3.connect(ledger_file, isolation_level=None)
        audited = audit(conn, factory, parallel_from=parallel_from)
        conn.close()
        assert (audited.ok, audited.notes, audited.erased) == (True, [note], 0)


def test_audit_report_of_a_tampered_ledger(ledger_file: Path) -> None:
    conn = attacker(ledger_file)
    conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 9")
    conn.execute("UPDATE t_stream_counts SET events = 99")
    conn.close()
    conn = sqlite3.connect(ledger_file, isolation_level=None)
    report = audit(conn, factory)
    conn.close()
    assert not report.ok
    assert (report.first_bad_seq, report.projections_match) == (9, False)
    assert report.problems[-1].startswith("t_stream_counts:")


# ---- rebuild ----


async def test_rebuild_restores_projections(live: SqliteStore) -> None:
    conn = sqlite3.connect(live.path, isolation_level=None)
    conn.execute("UPDATE wm_sources SET name = 'Forged'")
    conn.execute("DELETE FROM t_stream_counts")
    conn.close()
    assert len(audit_projections(live.reader(), factory)) == 2
    calls: list[tuple[int, int]] = []
    assert rebuild(live, progress=lambda d, t: calls.append((d, t)), chunk=7) == SIZE
    assert calls == [(7, SIZE), (14, SIZE), (21, SIZE), (28, SIZE), (35, SIZE), (40, SIZE)]
    assert audit_projections(live.reader(), factory) == []
    assert live.checkpoints() == {WriteModel.name: SIZE, StreamCounts.name: SIZE}
    await fill(live, 3)
    assert audit(live, factory).ok


def test_rebuild_of_an_empty_log(store: SqliteStore) -> None:
    assert rebuild(store) == 0
    assert store.checkpoints() == {WriteModel.name: 0}


async def test_rebuild_while_appending(live: SqliteStore) -> None:
    appends = [live.append("subject:b", new_events("subject:b", 1, i), "w") for i in range(50)]
    rebuilt, *_ = await asyncio.gather(asyncio.to_thread(rebuild, live), *appends)
    assert isinstance(rebuilt, int)
    assert SIZE <= rebuilt <= SIZE + 50
    report = audit(live, factory)
    assert report.ok, report.problems
    assert report.events == SIZE + 50


def test_every_table_a_rebuild_makes_again_has_a_note_when_gone() -> None:
    from ledger import verify
    from ledger.layout import REMADE_WHEN_GONE

    assert set(verify._GONE) == REMADE_WHEN_GONE
