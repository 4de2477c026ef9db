"""Storage faults: a full disk and a broken log found at start-up.

A full disk is met on purpose with SQLite's `max_page_count` (`SqliteStore(max_pages=...)`
or `set_max_pages`): the append that needs room is a 507 problem, nothing of it is
stored, reads go on, and appends resume once there is room. A log whose tail does not
verify when the store opens makes the store refuse every append (503, saying why) while
reads go on, instead of chaining new events onto a broken one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from ledger import merkle, sqlite_store
from ledger.errors import LedgerUnavailable, StorageFull
from ledger.events import AssertionRecorded
from ledger.health import health_report
from ledger.replay import audit
from ledger.sqlite_store import SqliteStore, SqliteTransaction
from ledger.verify import verify_log
from projections import all_projectors
from tests import api_helpers
from tests.api_helpers import (
    DEPLOYMENT,
    SEED_EVENTS,
    TROOPS,
    Ledger,
    assertion_body,
    problem,
)
from tests.reliability import head, live, store_of, tamper
from tests.store_contract import new_events

template, ledger = api_helpers.template, api_helpers.ledger

BIG = {"quote": "q" * 4000, "note": "n" * 4000}


def _full_at_current_size(store: SqliteStore) -> int:
    return store.set_max_pages(store.page_count())


# ---- a full disk ----


async def test_full_disk_is_507_reads_go_on_and_writing_resumes(ledger: Ledger) -> None:
    writer, reader = ledger.auth("writer"), ledger.auth("reader")
    async with live(ledger) as client:
        store = store_of(client)
        await asyncio.to_thread(_full_at_current_size, store)
        for attempt in range(100):
            answer = await client.post(
                "/v1/assertions",
                json=assertion_body(quote=f"{attempt:03d}" + BIG["quote"][3:], note=BIG["note"]),
                headers=writer,
            )
            if answer.status_code != 201:
                break
        body = problem(answer, 507)
        assert "full" in body["detail"]
        full = await head(client, ledger)

        keyed = {**writer, "Idempotency-Key": "while-full"}
        refused = await client.post("/v1/assertions", json=assertion_body(**BIG), headers=keyed)
        problem(refused, 507)
        assert await head(client, ledger) == full  # nothing partial: no event, no key
        view = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
        assert view.status_code == 200
        events = await client.get("/v1/events", params={"after": full["size"] - 1}, headers=reader)
        assert [e["seq"] for e in events.json()["items"]] == [full["size"]]
        health = await client.get("/v1/health")
        assert health.status_code == 200
        assert health.json() == {
            "status": "degraded",
            "seq": full["size"],
            "reason": store.storage_problem,
        }

        await asyncio.to_thread(store.set_max_pages, None)
        resumed = await client.post("/v1/assertions", json=assertion_body(**BIG), headers=keyed)
        assert resumed.status_code == 201, resumed.text
        assert resumed.json()["seq"] == full["size"] + 1
        assert health_report(store).status == "ok"
        assert (await client.get("/v1/health")).json()["status"] == "ok"
        again = await client.post("/v1/assertions", json=assertion_body(**BIG), headers=keyed)
        assert again.content == resumed.content
        assert (await head(client, ledger))["size"] == full["size"] + 1

        report = await asyncio.to_thread(audit, store, all_projectors)
        assert report.ok, report.problems


def test_a_full_batch_fails_only_the_unit_that_needed_room(tmp_path: Path) -> None:
    """SQLITE_FULL makes SQLite roll back the whole transaction; the writer then runs the
    batch's other units again, so only the unit that needed room fails."""
    store = SqliteStore(tmp_path / "l.db", all_projectors())
    try:
        store.append_sync("subject:a", new_events("subject:a", 3), "t")
        _full_at_current_size(store)
        gate = threading.Event()
        blocker = store.submit(lambda txn: gate.wait(10))
        small = store.submit(lambda txn: txn.stream_version("subject:a"))
        huge = store.submit(_append_huge)
        after = store.submit(lambda txn: txn.stream_version("subject:a") + 100)
        gate.set()
        assert blocker.result(10) is True
        assert small.result(10) == 3
        with pytest.raises(StorageFull):
            huge.result(10)
        assert after.result(10) == 103
        assert store.size() == 3

        store.set_max_pages(None)
        [event] = store.append_sync("subject:a", new_events("subject:a", 1, 9), "t")
        assert (event.seq, event.version) == (4, 4)
        assert verify_log(store.reader()).ok
        assert store.storage_problem is None
    finally:
        store.close()


def _append_huge(txn: SqliteTransaction) -> Any:
    events = new_events("subject:a", 200, 1)
    return txn.append("subject:a", events, "t")


def test_max_pages_option_caps_the_file(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "l.db", max_pages=1)
    try:
        assert store.set_max_pages(1) == store.page_count()  # never below the file's size
        with pytest.raises(StorageFull):
            store.append_sync("subject:a", new_events("subject:a", 50), "t")
        assert store.size() == 0
    finally:
        store.close()


# ---- a broken log at start-up ----


def _last(db: Path) -> int:
    store = SqliteStore(db)
    try:
        return store.size()
    finally:
        store.close()


def _frontier_node(size: int) -> merkle.NodeId:
    return merkle.frontier_nodes(size)[0]


NOT_UTF8 = b'{"assertion_id":"\xff"}'
"""JSON whose string holds a byte that is not UTF-8 (msgspec raises UnicodeDecodeError)."""

Tamper = Callable[[int], list[str | tuple[str, tuple[Any, ...]]]]
TAMPERS: dict[str, Tamper] = {
    "last hash rewritten": lambda n: [
        ("UPDATE events SET hash = ? WHERE seq = ?", ("ab" * 32, n)),
    ],
    "last envelope edited": lambda n: [
        ("UPDATE events SET actor = 'mallory' WHERE seq = ?", (n,)),
    ],
    "last payload edited": lambda n: [
        ("UPDATE payloads SET data = CAST(CAST(data AS TEXT) || ' ' AS BLOB) WHERE seq = ?", (n,)),
    ],
    "a frontier node rewritten": lambda n: [
        (
            "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = ? AND idx = ?",
            _frontier_node(n),
        ),
    ],
    "last event cut off, its leaf kept": lambda n: [
        ("DELETE FROM events WHERE seq = ?", (n,)),
    ],
    "last payload not UTF-8 inside a string, its digest matching": lambda n: [
        ("UPDATE payloads SET data = ? WHERE seq = ?", (NOT_UTF8, n)),
        (
            "UPDATE events SET data_sha256 = ? WHERE seq = ?",
            (hashlib.sha256(NOT_UTF8).hexdigest(), n),
        ),
    ],
    "a payload deleted, with no erasure record": lambda n: [
        ("DELETE FROM payloads WHERE seq = ?", (n - 1,)),
    ],
    "a middle event missing": lambda n: [
        ("DELETE FROM events WHERE seq = ?", (n - 3,)),
        ("DELETE FROM payloads WHERE seq = ?", (n - 3,)),
    ],
}


@pytest.mark.parametrize("how", sorted(TAMPERS))
async def test_a_broken_tail_refuses_writes_with_503(ledger: Ledger, how: str) -> None:
    tamper(ledger.db, TAMPERS[how](_last(ledger.db)))
    writer, reader = ledger.auth("writer"), ledger.auth("reader")
    async with live(ledger) as client:
        store = store_of(client)
        assert store.write_refusal is not None
        size = store.size()
        body = problem(
            await client.post("/v1/assertions", json=assertion_body(), headers=writer), 503
        )
        assert body["detail"] == store.write_refusal
        assert "seq" in body["detail"]
        retract = await client.post(
            "/v1/assertions/ap-2025-04-28.troops-fall-2024/retract",
            json={"reason": "no"},
            headers=writer,
        )
        problem(retract, 503)
        assert store.size() == size  # nothing appended after the break

        view = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
        assert view.status_code == 200
        assert (await client.get("/v1/events", headers=reader)).status_code == 200
        health = await client.get("/v1/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["reason"] == store.write_refusal
        assert health.json()["seq"] == size
        # the roots and proofs are refused only when it is the stored tree that is broken
        head_now = await client.get("/v1/log/head", headers=reader)
        proof = await client.get("/v1/log/inclusion?seq=1&size=1", headers=reader)
        if how in TREE_TAMPERS:
            assert store.tree_refusal is not None
            assert problem(head_now, 503)["detail"] == store.tree_refusal
            assert problem(proof, 503)["detail"] == store.tree_refusal
        else:
            assert store.tree_refusal is None
            assert (head_now.status_code, proof.status_code) == (200, 200)
    assert not verify_log_of(ledger.db).ok  # the full check agrees


TREE_TAMPERS = {"a frontier node rewritten"}


@pytest.mark.parametrize(
    ("how", "said"),
    [
        (
            "UPDATE payloads SET data = CAST(replace(CAST(data AS TEXT), '{\"', '{ \"') AS BLOB)",
            "payload is not stored in its canonical form",
        ),
        ("UPDATE payloads SET data = CAST(data AS TEXT)", "payload stored as str, not bytes"),
    ],
)
def test_the_start_up_check_names_a_payload_as_verify_does(
    ledger: Ledger, how: str, said: str
) -> None:
    last = _last(ledger.db)
    tamper(ledger.db, [(f"{how} WHERE seq = ?", (last,))])
    store = SqliteStore(ledger.db)
    try:
        assert store.write_refusal is not None
        assert f"seq {last}: {said}" in store.write_refusal
        assert any(p.startswith(f"seq {last}: {said}") for p in verify_log(store.reader()).problems)
    finally:
        store.close()


def test_a_frontier_node_is_named_at_its_first_leaf_as_verify_names_it(ledger: Ledger) -> None:
    node = _frontier_node(_last(ledger.db))
    tamper(ledger.db, TAMPERS["a frontier node rewritten"](_last(ledger.db)))
    store = SqliteStore(ledger.db)
    try:
        first_leaf = (node[1] << node[0]) + 1
        said = f"seq {first_leaf}: stored Merkle node {node} is not its children's hash"
        assert said in (store.write_refusal or "")
        assert said in (store.tree_refusal or "")
        assert verify_log(store.reader()).first_bad_seq == first_leaf
    finally:
        store.close()


async def test_a_proof_that_would_not_hold_is_never_given_out(ledger: Ledger) -> None:
    """A node edited inside the tree, below the frontier the start-up check reads: the
    proofs that pass through it are refused (503), not handed to an outsider who would
    then blame intact events; from then on every root and proof is, and health says so."""
    size = _last(ledger.db)
    assert size >= 16
    tamper(ledger.db, [("UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level=2 AND idx=1", ())])
    reader = ledger.auth("reader")
    async with live(ledger) as client:
        store = store_of(client)
        assert (store.write_refusal, store.tree_refusal) == (None, None)  # out of its reach
        # a proof that does not pass through the node holds, and is given out
        good = await client.get(f"/v1/log/inclusion?seq=17&size={size}", headers=reader)
        assert good.status_code == 200
        path = [bytes.fromhex(p) for p in good.json()["path"]]
        root = bytes.fromhex((await client.get("/v1/log/head", headers=reader)).json()["root"])
        leaf = bytes.fromhex(good.json()["leaf_hash"])
        assert merkle.verify_inclusion(leaf, 16, size, path, root)
        # one that passes through it (leaf 0's path holds node (2, 1)) is refused
        bad = problem(await client.get("/v1/log/inclusion?seq=1&size=16", headers=reader), 503)
        assert (
            "the inclusion proof of seq 1 does not lead to the root of the tree of 16"
            in (bad["detail"])
        )
        assert bad["detail"] == store.tree_refusal
        assert "ledger verify" in bad["detail"]
        for path_and_query in ("/v1/log/head", f"/v1/log/inclusion?seq=17&size={size}"):
            refused = await client.get(path_and_query, headers=reader)
            assert problem(refused, 503)["detail"] == store.tree_refusal
        health = (await client.get("/v1/health")).json()
        assert (health["status"], health["reason"]) == ("degraded", store.tree_refusal)
        assert (await client.get("/v1/events", headers=reader)).status_code == 200


@pytest.mark.parametrize(
    ("how", "read", "said"),
    [
        (  # deleted inside the tree: it was a 400 blaming the request
            "DELETE FROM merkle_nodes WHERE level = 2 AND idx = 1",
            lambda store: store.inclusion_proof(1, 16),
            "the tree of 16 lacks nodes it needs",
        ),
        (  # a node both on a proof's path and in the frontier of its size: the proof
            # agrees with the root read from it (and is given out); that root, asked for
            # (`GET /v1/log/head?size=3`, as an outsider checking it does), is refused
            "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 0",
            lambda store: (store.inclusion_proof(3, 3), store.root(3)),
            "stored Merkle node (1, 0) is not its children's hash",
        ),
    ],
)
def test_what_a_read_of_the_tree_finds_broken_is_refused(
    ledger: Ledger, how: str, read: Callable[[SqliteStore], Any], said: str
) -> None:
    tamper(ledger.db, [how])
    store = SqliteStore(ledger.db)
    try:
        assert store.tree_refusal is None  # below what the start-up check reads
        assert store.inclusion_proof(20, 24).path  # a proof that does not read the node
        with pytest.raises(LedgerUnavailable, match=re.escape(said)):
            read(store)
        assert said in (store.tree_refusal or "")
        assert health_report(store).status == "degraded"
    finally:
        store.close()


def test_a_root_read_again_after_an_edit_is_checked_again(ledger: Ledger) -> None:
    """What a root reads is checked at each read, not once per process: an edit made to the
    file while the server runs is met as well as one made before it started."""
    store = SqliteStore(ledger.db)
    try:
        before = store.root(16)
        tamper(ledger.db, ["UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level=4 AND idx=0"])
        with pytest.raises(LedgerUnavailable, match=re.escape("node (4, 0) is not its children")):
            store.root(16)
        assert before != "00" * 32
    finally:
        store.close()


def test_a_frontier_node_deleted_is_named_missing_as_verify_names_it(ledger: Ledger) -> None:
    node = _frontier_node(_last(ledger.db))
    tamper(ledger.db, [("DELETE FROM merkle_nodes WHERE level = ? AND idx = ?", node)])
    store = SqliteStore(ledger.db)
    try:
        said = f"seq {(node[1] << node[0]) + 1}: Merkle node {node} is missing"
        assert said in (store.tree_refusal or "")
        assert any(p.startswith(said) for p in verify_log(store.reader()).problems)
    finally:
        store.close()


def test_a_consistency_proof_that_would_not_hold_is_refused(ledger: Ledger) -> None:
    tamper(ledger.db, [("UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level=2 AND idx=1", ())])
    store = SqliteStore(ledger.db)
    try:
        assert store.consistency_proof(5, 16).path  # its path and roots miss node (2, 1)
        with pytest.raises(LedgerUnavailable, match="from 4 to 16 does not join their roots"):
            store.consistency_proof(4, 16)  # its path is node (2, 1), then (3, 1)
        assert store.tree_refusal is not None
        assert health_report(store).reason == store.tree_refusal
    finally:
        store.close()


def test_opening_never_folds_a_forged_tail_into_the_views(ledger: Ledger) -> None:
    """An event added at the end of the file by hand (its payload and digest consistent,
    its chain link and leaf not): the views, behind it, are not brought up to it on
    opening (which any command does, `ledger verify` too), so it never reaches them."""
    conn = sqlite3.connect(ledger.db, isolation_level=None)
    size = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    _seq, etype, stream, data = conn.execute(
        "SELECT e.seq, e.type, e.stream, p.data FROM events e JOIN payloads p USING (seq) "
        "WHERE e.type = 'AssertionRecorded' ORDER BY e.seq DESC LIMIT 1"
    ).fetchone()
    conn.close()
    forged = bytes(data).replace(b'"assertion_id":"', b'"assertion_id":"forged.', 1)
    version = f"(SELECT max(version) + 1 FROM events WHERE stream = '{stream}')"
    tamper(
        ledger.db,
        [
            (
                "INSERT INTO events (seq, type, stream, version, recorded_at, actor, "
                f"data_sha256, hash) VALUES (?, ?, ?, {version}, "
                "'2026-11-29T00:00:00.000000Z', 'mallory', ?, ?)",
                (size + 1, etype, stream, hashlib.sha256(forged).hexdigest(), "ab" * 32),
            ),
            ("INSERT INTO payloads (seq, data) VALUES (?, ?)", (size + 1, forged)),
        ],
    )
    store = SqliteStore(ledger.db, projectors=all_projectors())
    try:
        assert store.write_refusal is not None
        assert f"seq {size + 1}" in store.write_refusal
        assert store.views_reach() == size  # left behind it, not folded
        conn = store.reader()
        rows = conn.execute(
            "SELECT count(*) FROM proj_assertions WHERE assertion_id LIKE 'forged.%'"
        )
        assert rows.fetchone()[0] == 0
        assert conn.execute("SELECT max(seq) FROM checkpoints").fetchone()[0] == size
    finally:
        store.close()


def verify_log_of(db: Path) -> Any:
    store = SqliteStore(db)
    try:
        return verify_log(store.reader())
    finally:
        store.close()


async def test_an_intact_log_is_healthy(ledger: Ledger) -> None:
    async with live(ledger) as client:
        assert store_of(client).write_refusal is None
        health = await client.get("/v1/health")
        assert health.json()["status"] == "ok"
        assert health.json()["seq"] == SEED_EVENTS


def test_the_start_up_check_reads_only_the_tail(ledger: Ledger) -> None:
    """An edit deeper than the checked tail is left to `ledger verify` (a full pass)."""
    tamper(ledger.db, [("UPDATE events SET actor = 'mallory' WHERE seq = 2", ())])
    shallow = SqliteStore(ledger.db, tail_check=10)
    try:
        assert shallow.write_refusal is None
        report = verify_log(shallow.reader())
        assert not report.ok
        assert report.first_bad_seq == 2
    finally:
        shallow.close()
    deep = SqliteStore(ledger.db)  # the default depth covers the whole seed
    try:
        assert deep.write_refusal is not None
        assert "seq 2" in deep.write_refusal
        with pytest.raises(LedgerUnavailable):
            deep.append_sync("subject:x", new_events("subject:x", 1), "t")
        assert deep.size() == SEED_EVENTS
    finally:
        deep.close()


# ---- a file that cannot be written, a path that cannot hold a ledger ----


def _read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection the store opens sees its file read-only, as for an immutable file or
    for a file the process may not write (as root, file modes alone would not stop it)."""
    opened = sqlite_store.connect

    def read_only(path: str | Path, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = opened(path, *args, **kwargs)  # the pragmas, on a connection that can write
        conn.close()
        ro = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        ro.execute(f"PRAGMA busy_timeout = {sqlite_store.BUSY_TIMEOUT_MS}")
        return ro

    monkeypatch.setattr(sqlite_store, "connect", read_only)


async def test_a_read_only_file_serves_reads_and_refuses_appends(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _read_only(monkeypatch)
    writer, reader = ledger.auth("writer"), ledger.auth("reader")
    async with live(ledger) as client:
        store = store_of(client)
        assert store.write_refusal == "appends are refused: the database file is read-only"
        health = (await client.get("/v1/health")).json()
        assert (health["status"], health["reason"]) == ("degraded", store.write_refusal)
        refused = await client.post("/v1/assertions", json=assertion_body(), headers=writer)
        assert problem(refused, 503)["detail"] == store.write_refusal
        view = await client.get(f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", headers=reader)
        assert view.status_code == 200
        assert store.size() == SEED_EVENTS
    monkeypatch.undo()
    writable = SqliteStore(ledger.db)
    try:
        assert writable.write_refusal is None  # the check itself wrote nothing
        assert writable.size() == SEED_EVENTS
    finally:
        writable.close()


def test_a_read_only_file_with_a_broken_tail_says_it_is_broken(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    tamper(ledger.db, TAMPERS["last hash rewritten"](_last(ledger.db)))
    _read_only(monkeypatch)
    store = SqliteStore(ledger.db)
    try:
        assert store.write_refusal is not None
        assert "the stored log is broken" in store.write_refusal  # the graver reason wins
    finally:
        store.close()


@pytest.mark.parametrize("where", ["no-such-folder/l.db", "."], ids=["no folder", "a folder"])
def test_a_path_that_cannot_hold_a_ledger_is_a_clear_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / where
    with pytest.raises(LedgerUnavailable, match=f"cannot open a ledger at {path}: "):
        SqliteStore(path)


def test_an_import_that_fills_the_disk_stops_at_a_chunk_and_says_which_lines_are_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chunk that needs room appends nothing, and neither does any chunk after it, so
    the lines in the log are exactly 1..N; the command names N, not "nothing was
    appended". With room again, `--from-line N+1` puts the rest of the file in, and the
    ledger verifies."""
    from api import cli, importer
    from bench import gen

    source = tmp_path / "in.jsonl"
    lines = gen.write(source, 900)
    db = tmp_path / "l.db"
    opened = cli.open_store

    def capped(*args: Any, **kwargs: Any) -> SqliteStore:
        store = opened(*args, **kwargs)
        store.set_max_pages(store.page_count() + 120)
        return store

    monkeypatch.setattr(cli, "open_store", capped)
    monkeypatch.setattr(importer, "CHUNK", 100)
    code = cli.main(["import", str(source), "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 1
    found = re.search(r"lines 1\.\.(\d+) are in the log \((\d+) events appended", err)
    assert found is not None, err
    done, appended = int(found[1]), int(found[2])
    assert 0 < done < lines
    assert done % 100 == 0  # a whole number of chunks
    assert appended == done  # one event a line: nothing from a later chunk slipped in
    assert f"nothing from line {done + 1} on was appended (`--from-line {done + 1}`" in err
    assert "the database is full" in err

    monkeypatch.setattr(cli, "open_store", opened)
    resume = ["import", str(source), "--from-line", str(done + 1), "--db", str(db)]
    assert cli.main(resume) == 0
    assert capsys.readouterr().out == (
        f"imported lines {done + 1}..{lines}: {lines - done} events appended "
        f"(seq {done + 1}..{lines})\n"
    )
    store = SqliteStore(db, all_projectors())
    try:
        assert store.size() == lines
        assert verify_log(store.reader()).ok
        assert audit(store, all_projectors).ok
    finally:
        store.close()


def test_a_full_disk_at_the_views_fold_still_says_every_line_went_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every line is appended; the fold of the views that ends the import finds the disk
    full, and then (as on a full tmpfs, where even an empty unit's commit fails) so does
    the unit that puts the projectors back. The command still says every line is in and
    the views lag, not "nothing was appended"; opened with room, the views catch up."""
    from api import cli, importer
    from bench import gen

    source = tmp_path / "in.jsonl"
    lines = gen.write(source, 300)
    db = tmp_path / "l.db"
    from ledger.replay import catch_up as fold

    opened = cli.open_store

    def full_before_folding(conn: sqlite3.Connection, *args: Any, **kwargs: Any) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return fold(conn, *args, **kwargs)

    def nothing_commits_once_full(*args: Any, **kwargs: Any) -> SqliteStore:
        store = opened(*args, **kwargs)
        run_sync = store.run_sync

        def refusing(work: Callable[[SqliteTransaction], Any]) -> Any:
            if getattr(work, "__name__", "") == "_put_back":
                raise StorageFull("the database is full: nothing was appended")
            return run_sync(work)

        monkeypatch.setattr(store, "run_sync", refusing)
        return store

    monkeypatch.setattr(importer, "catch_up", full_before_folding)
    monkeypatch.setattr(cli, "open_store", nothing_commits_once_full)
    code = cli.main(["import", str(source), "--db", str(db)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == f"imported {lines} lines: {lines} events appended (seq 1..{lines})\n"
    assert (
        "ledger import: the views could not be brought up to date (the database is full); "
        "they catch up at the next append or when the ledger is next opened"
    ) in err
    assert "nothing was appended" not in err

    store = SqliteStore(db, all_projectors())
    try:
        assert store.size() == lines
        assert store.views_reach() == lines
        assert audit(store, all_projectors).ok
    finally:
        store.close()


def _append_beside_the_views(ledger: Ledger, count: int) -> None:
    """Append `count` claims through a store with the write model alone, as an import
    does before its fold: the views stay at the seed."""
    from tests.factories import quantity, run

    bare = SqliteStore(ledger.db)
    try:
        run(
            bare,
            *(quantity(n, n + 1, stated_at="2025", claimants=("us-intel",)) for n in range(count)),
        )
    finally:
        bare.close()


class _CommitFails:
    """A connection whose COMMIT finds the disk full, as a real one does when the write
    ahead log cannot grow (SQLite's page cap fails the writes before it instead)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_views_that_cannot_commit_their_catch_up_let_the_ledger_open(ledger: Ledger) -> None:
    """On a full disk, opening a ledger whose views lag (an import's fold that did not
    commit) leaves them lagging: every command that reads still works."""
    from ledger.replay import catch_up_on_open, checkpoint_of

    _append_beside_the_views(ledger, 3)
    conn = sqlite3.connect(ledger.db, isolation_level=None)
    try:
        projector = all_projectors()[1]
        done = catch_up_on_open(cast(sqlite3.Connection, _CommitFails(conn)), projector)
        assert done == 0
        assert not conn.in_transaction
        assert checkpoint_of(conn, projector.name) == SEED_EVENTS
        assert catch_up_on_open(conn, projector) == 3  # with room, it does
        assert checkpoint_of(conn, projector.name) == SEED_EVENTS + 3
    finally:
        conn.close()


def test_views_left_behind_on_opening_are_caught_up_by_the_next_append(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their catch-up on opening did not commit (a full disk); room again, the next append
    through the same store folds what they lack before its own events, so no checkpoint
    moves past an event the views never saw."""
    from ledger import replay
    from ledger.replay import audit_projections
    from tests.factories import quantity, run

    _append_beside_the_views(ledger, 3)
    real = replay.catch_up

    def full(conn: sqlite3.Connection, *args: Any, **kwargs: Any) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(replay, "catch_up", full)
    store = SqliteStore(ledger.db, all_projectors())
    try:
        assert store.views_reach() == SEED_EVENTS
        monkeypatch.setattr(replay, "catch_up", real)
        run(store, quantity(7, 8, stated_at="2025", claimants=("us-intel",)))
        assert store.views_reach() == store.size() == SEED_EVENTS + 4
        assert audit_projections(store.reader(), all_projectors) == []
    finally:
        store.close()


def test_views_behind_on_a_file_that_cannot_be_written_are_left_to_lag(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where appends are refused (a read-only file) nothing can fold them: a unit that
    appends nothing (a page count, a cap) must not try, and fail on the write."""
    from ledger import replay

    _append_beside_the_views(ledger, 1)

    def never(*args: Any, **kwargs: Any) -> int:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(SqliteStore, "_writable", lambda self: False)
    monkeypatch.setattr(replay, "catch_up", never)  # as on a file that cannot be written
    store = SqliteStore(ledger.db, all_projectors())
    try:
        assert store.write_refusal is not None
        assert store.views_reach() == SEED_EVENTS < store.size()
        assert store.page_count() > 0  # a unit that appends nothing still runs
    finally:
        store.close()


def test_a_chunk_before_the_one_that_filled_the_disk_is_never_counted_unless_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two chunks in one batch: the later one fills the disk while it writes the batch's
    rows, the batch rolls back, and the writer runs the earlier chunk again alone. That
    chunk must run (not be skipped as after a failure), so every line counted as done is
    in the log."""
    import json

    from api import importer
    from bench import gen

    source = tmp_path / "in.jsonl"
    gen.write(source, 200)
    store = SqliteStore(tmp_path / "l.db", all_projectors())
    release = threading.Event()
    submit = importer._Run.submit

    def held(self: Any, st: SqliteStore, chunk: list[Any]) -> Any:
        first = chunk[0][0]
        if first == 41:  # hold the writer so chunks 41.. and 81.. are taken as one batch
            st.set_max_pages(st.page_count() + 10)
            started = threading.Event()

            def hold(txn: SqliteTransaction) -> bool:
                started.set()
                return release.wait(10)

            st.submit(hold)
            started.wait(10)
        future = submit(self, st, chunk)
        if first == 81:
            release.set()
        return future

    monkeypatch.setattr(importer._Run, "submit", held)
    try:
        result = importer.import_file(store, source, "t", chunk_size=40)
        assert isinstance(result.failure, StorageFull)
        recorded = {
            e.data.assertion_id
            for e in store.read(0, 10_000)
            if isinstance(e.data, AssertionRecorded)
        }
        lines = source.read_bytes().splitlines()
        claimed = [json.loads(lines[i]).get("assertion_id") for i in range(result.done_lines)]
        assert [a for a in claimed if a is not None and a not in recorded] == []
        assert result.appended == store.size() == result.done_lines
    finally:
        store.close()


def test_side_files_left_read_only_are_named_as_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger read while its file was read-only gets `-wal` and `-shm` files with the
    same permissions; made writable again, the file still refuses writes because of them.
    Saying "the database file is read-only" then sends the operator to the wrong file.
    (Root writes whatever the permissions say, so `os.access` stands in for them here.)"""
    from ledger import sqlite_store

    db = tmp_path / "l.db"
    for name in ("l.db", "l.db-wal", "l.db-shm"):
        (tmp_path / name).write_bytes(b"")
    stuck = {"l.db-shm"}
    real_access = os.access

    def access(path: Any, mode: int) -> bool:
        return Path(path).name not in stuck and real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    assert sqlite_store.read_only_cause(db) == (
        "the database file is writable but l.db-shm beside it is not (made so by a read "
        "while the file was read-only): make it writable (chmod u+w) while nothing has the "
        "ledger open"
    )
    stuck = {"l.db-wal", "l.db-shm"}
    assert sqlite_store.read_only_cause(db).startswith(
        "the database file is writable but l.db-wal and l.db-shm beside it are not"
    )
    stuck = {"l.db", "l.db-shm"}
    assert sqlite_store.read_only_cause(db) == "the database file is read-only"
    stuck = set()
    assert sqlite_store.read_only_cause(db) == "the database file is read-only"
