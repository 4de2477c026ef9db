"""Lawful erasure: the payload's text goes everywhere, the envelope and every proof stay,
and every replay (rebuild, catch-up, audit) gives exactly the tables the erasure left."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

from api.cli import main
from ledger import replay as replay_module
from ledger import sqlite_store
from ledger.codec import encode_json
from ledger.commands import RecordAssertion
from ledger.erasure import EraseRequest, copies_left, erase, erasures, still_cited
from ledger.errors import InvalidInput, LedgerError
from ledger.events import AssertionRecorded, NewEvent, PayloadErased
from ledger.replay import audit, rebuild
from ledger.sqlite_store import SqliteStore
from ledger.text import one_line_problem
from ledger.verify import verify_log
from projections import all_projectors
from projections.details import assertion_detail
from projections.pit import resolve
from tests.api_helpers import verify_consistency
from tests.factories import DEPLOYMENT, leave_in_free_page, ledger, quantity, run
from tests.test_projections import all_tables, table_rows
from tests.test_replay_folds import WRITE_MODEL_TABLES, busy_ledger

KR = "ap-2025-04-28.casualties-kr-jcs"  # ranked preferred, then deprecated
US = "ap-2025-04-28.casualties-us-gov"  # retracted
FALL = "ap-2025-04-28.troops-fall-2024"  # superseded; the first claim of its property
TABLES = all_tables() + WRITE_MODEL_TABLES


def _seq_of(store: SqliteStore, assertion_id: str, *, subject: str | None = None) -> int:
    """The seq of the assertion `assertion_id`, or of the first one on `subject`."""
    for event in store.read(limit=10_000):
        data = event.data
        if isinstance(data, AssertionRecorded) and (
            data.assertion_id == assertion_id if subject is None else data.subject == subject
        ):
            return event.seq
    raise AssertionError(assertion_id)


def _erase(store: SqliteStore, assertion_id: str, reason: str = "court order") -> int:
    seq = _seq_of(store, assertion_id)
    result = erase(store, EraseRequest(seq, reason), "dpo")
    assert result.erasure.kept.assertion_id == assertion_id
    return seq


def _busy(store: SqliteStore) -> None:
    busy_ledger(store, claimants=("ap", "kr-intel"))


def _claim(quote: str = "a figure", note: str | None = None, **fields: Any) -> RecordAssertion:
    """A claim on the deployment's troops, with its own quote and note."""
    command = quantity(
        5,
        6,
        stated_at="2025-06",
        subject=DEPLOYMENT,
        prop="troops.deployed",
        claimants=("ap",),
        **fields,
    )
    return msgspec.structs.replace(command, quote=quote, note=note)


@pytest.fixture
def erased(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A busy ledger with three assertions erased: ranked, retracted, superseded."""
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        seqs = {a: _erase(store, a) for a in (KR, US, FALL)}
    return path, seqs


def test_the_payload_goes_and_every_hash_and_proof_stays(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        head = store.head()
        seq = _seq_of(store, KR)
        proof = store.inclusion_proof(seq, head.size)
        before = store.read(seq - 1, 1)[0]
        _erase(store, KR, "a court order of 2026-11-27")
        after = store.read(seq - 1, 1)[0]
        # the erasure is logged: one event more, and the old head's proofs all hold
        assert store.head().size == head.size + 1
        assert store.root(head.size) == head.root
        assert store.inclusion_proof(seq, head.size) == proof
        grown = store.consistency_proof(head.size, head.size + 1)
        assert verify_consistency(
            head.size,
            head.size + 1,
            bytes.fromhex(head.root),
            bytes.fromhex(store.head().root),
            [bytes.fromhex(node) for node in grown.path],
        )
        assert after.data is None
        assert (after.hash, after.data_sha256) == (before.hash, before.data_sha256)
        (logged,) = store.read(head.size, 10)
        report = verify_log(store.reader())
        record = erasures(store.reader())[seq]
    assert report.ok
    assert report.erased == 1
    assert (logged.type, logged.actor, logged.stream) == ("PayloadErased", "dpo", after.stream)
    assert logged.data == PayloadErased(seq=seq, reason="a court order of 2026-11-27")
    assert (record.actor, record.reason) == ("dpo", "a court order of 2026-11-27")
    assert (record.erased_at, record.logged_seq) == (logged.recorded_at, logged.seq)
    assert report.notes == [
        f"seq {seq}: payload erased at {record.erased_at} by dpo (a court order of "
        f"2026-11-27), logged at seq {logged.seq}; its data_sha256 still commits to it"
    ]
    with ledger(path) as store:
        audited = audit(store, all_projectors)
    assert (audited.ok, audited.erased, audited.notes) == (True, 1, report.notes)


def test_the_views_forget_it_and_the_subject_keeps_its_counts(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        conn = store.reader()
        now = resolve(conn, None, None, None)
        assert assertion_detail(conn, KR, now) is not None
        counts = conn.execute("SELECT * FROM proj_subject_counts ORDER BY 1, 2").fetchall()
        claimants = conn.execute("SELECT count(*) FROM proj_claimants").fetchone()[0]
        seq = _erase(store, KR)
        assert assertion_detail(conn, KR, resolve(conn, None, None, None)) is None
        assert assertion_detail(conn, KR, resolve(conn, None, None, seq)) is None
        assert conn.execute("SELECT * FROM proj_subject_counts ORDER BY 1, 2").fetchall() == counts
        assert conn.execute("SELECT count(*) FROM proj_claimants").fetchone()[0] == claimants - 1
        assert conn.execute(
            "SELECT count(*) FROM proj_ranks WHERE assertion_id = ?", (KR,)
        ).fetchone() == (0,)


def test_a_rebuild_gives_the_tables_the_erasure_left(
    erased: tuple[Path, dict[str, int]],
) -> None:
    path, _ = erased
    with ledger(path) as store:
        left = table_rows(store.reader(), TABLES)
        rebuild(store, store.projectors)
        assert table_rows(store.reader(), TABLES) == left


def test_the_erased_ids_stay_taken_after_a_rebuild(erased: tuple[Path, dict[str, int]]) -> None:
    path, _ = erased
    with ledger(path) as store:
        rebuild(store, store.projectors)
        for assertion_id in (KR, US, FALL):
            with pytest.raises(LedgerError, match="already taken"):
                run(store, _claim(assertion_id=assertion_id))


def test_views_behind_the_log_catch_up_over_an_erasure(
    erased: tuple[Path, dict[str, int]],
) -> None:
    path, _ = erased
    with ledger(path) as store:
        left = table_rows(store.reader(), TABLES)
    conn = sqlite3.connect(path, isolation_level=None)
    for table in all_tables():
        conn.execute(f"DELETE FROM {table}")
    conn.execute("UPDATE checkpoints SET seq = 0 WHERE name LIKE 'projections.%'")
    conn.close()
    with ledger(path) as store:  # opening folds the whole log again
        assert table_rows(store.reader(), TABLES) == left


@pytest.mark.parametrize("parallel_from", [0, 10**9], ids=["two processes", "one process"])
def test_an_audit_after_an_erasure_passes(
    erased: tuple[Path, dict[str, int]], parallel_from: int
) -> None:
    path, _ = erased
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        report = audit(conn, all_projectors, parallel_from=parallel_from)
    finally:
        conn.close()
    assert report.problems == []
    assert report.ok


def test_an_audit_still_sees_a_read_side_that_kept_the_text(
    erased: tuple[Path, dict[str, int]],
) -> None:
    path, seqs = erased
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO proj_claimants (claimant, recorded_seq) VALUES ('kr-jcs', ?)", (seqs[KR],)
    )
    try:
        report = audit(conn, all_projectors, parallel_from=0)
    finally:
        conn.close()
    assert not report.projections_match
    assert [p.split(":")[0] for p in report.problems] == ["proj_claimants"]


def test_refusals_name_the_seq_and_write_nothing(tmp_path: Path) -> None:
    with ledger(tmp_path / "l.db") as store:
        _busy(store)
        seq = _erase(store, KR)
        size = store.size()  # the erasure's own event is the last
        before = table_rows(store.reader(), (*TABLES, "erasures", "payloads"))
        retraction = next(e.seq for e in store.read() if e.type == "AssertionRetracted")
        cases = {
            0: f"seq 0 is not in the log \\(1..{size}\\)",  # a caller that skipped the edge
            retraction: f"seq {retraction} is an AssertionRetracted; only the payload",
            size + 1: f"seq {size + 1} is not in the log \\(1..{size}\\)",
            1: "seq 1 is a SourceRegistered; only the payload of an AssertionRecorded",
            size: f"seq {size} is a PayloadErased; only the payload",
            seq: f"the payload of seq {seq} was already erased at .* by dpo \\(if that "
            "command was stopped before it finished, `ledger vacuum` makes sure",
        }
        for target, message in cases.items():
            with pytest.raises(InvalidInput, match=message) as caught:
                erase(store, EraseRequest(target, "why"), "dpo")
            assert [e.field for e in caught.value.errors] == ["seq"]
        assert table_rows(store.reader(), (*TABLES, "erasures", "payloads")) == before


def test_only_an_erasure_lets_a_payload_go_and_its_record_is_append_only(
    erased: tuple[Path, dict[str, int]],
) -> None:
    path, seqs = erased
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="payloads is append-only"):
            conn.execute("DELETE FROM payloads WHERE seq = 1")
        for sql in (
            "UPDATE erasures SET reason = 'changed'",
            "DELETE FROM erasures",
            f"INSERT OR REPLACE INTO erasures VALUES ({seqs[KR]}, 'x', 'x', 'x', '{{}}')",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="erasures is append-only"):
                conn.execute(sql)
    finally:
        conn.close()


def test_the_text_is_gone_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    quote = "an unmistakable sentence that names a private person, Jane Q. Example"
    with ledger(path) as store:
        _busy(store)
        receipt = run(store, _claim(quote, "private note 0042"))
        assert receipt.events[0].seq
        store.empty_wal()
        assert copies_left(path, [quote]) == [quote]
        result = erase(store, EraseRequest(receipt.events[0].seq, "privacy"), "dpo")
        assert result.wal_emptied
        assert set(result.texts) == {quote, "private note 0042"}
        assert still_cited(store.reader(), result.texts) == []
        wal = Path(f"{path}-wal")
        assert wal.stat().st_size == 0  # emptied while the store is still open
        assert copies_left(path, result.texts) == []
    raw = path.read_bytes()
    assert quote.encode() not in raw
    assert b"private note 0042" not in raw


def test_copies_left_finds_a_text_across_two_chunks(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 10 + 'caf\u00e9 "quoted" text'.encode() + b"y" * 10)
    found = copies_left(path, ['caf\u00e9 "quoted" text', "absent text"], chunk=12)
    assert found == ['caf\u00e9 "quoted" text']
    path.write_bytes(b'{"quote":"caf\\u00e9 \\"quoted\\" text"}')  # escaped as JSON
    assert copies_left(path, ['caf\u00e9 \\"quoted\\" text']) == []
    path.write_bytes(b'{"quote":"cafe \\"quoted\\" text"}')
    assert copies_left(path, ['cafe "quoted" text'], chunk=5) == ['cafe "quoted" text']


def test_the_command_line_erases_checks_and_refuses(
    erased: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, seqs = erased
    with ledger(path) as store:
        target = run(store, _claim("a quote to erase by law"))
    seq = target.events[0].seq
    db = ["--db", str(path)]
    assert main(["erase", *db, "--seq", str(seq), "--reason", "order 7", "--actor", "dpo"]) == 0
    out = capsys.readouterr().out
    assert f"erased the payload of seq {seq}" in out
    assert "none is left" in out
    for argv, message in (
        (["--seq", str(seq), "--reason", "again"], f"--seq: the payload of seq {seq} was"),
        (["--seq", "0", "--reason", "x"], "--seq: Expected `int` >= 1"),
        (
            ["--seq", "1", "--reason", "  "],
            "--reason: why the payload is erased: must not be blank",
        ),
        (["--seq", "1", "--reason", "x"], "--seq: seq 1 is a SourceRegistered"),
    ):
        assert main(["erase", *db, *argv]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["erase", "--db", str(path.parent / "nothing.db"), "--seq", "3", "--reason", "x"])
    assert stopped.value.code == 2
    assert not (path.parent / "nothing.db").exists()
    assert main(["vacuum", *db]) == 0
    assert "rewrote" in capsys.readouterr().out
    with ledger(path) as store:
        assert sorted(erasures(store.reader())) == sorted([*seqs.values(), seq])
        assert verify_log(store.reader()).erased == 4


def test_the_command_line_says_when_free_space_still_holds_the_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.db"
    quote = "a quote that an earlier write left in a free page"
    with ledger(path) as store:
        _busy(store)
        seq = run(store, _claim(quote)).events[0].seq
    leave_in_free_page(path, quote)
    assert path.read_bytes().count(quote.encode()) == 3  # payload, read side, free page
    code = main(["erase", "--db", str(path), "--seq", str(seq), "--reason", "x"])
    err = capsys.readouterr().err
    assert code == 1
    assert "still in the file" in err
    assert f"ledger vacuum --db {path}" in err
    assert main(["vacuum", "--db", str(path)]) == 0
    assert copies_left(path, [quote]) == []


def test_every_assertion_erased_still_replays_to_the_same_tables(tmp_path: Path) -> None:
    """A replay chunk may hold erased assertions alone: their property and count rows
    are written all the same."""
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        for event in store.read(limit=10_000):
            if isinstance(event.data, AssertionRecorded):
                erase(store, EraseRequest(event.seq, "all of them"), "dpo")
        left = table_rows(store.reader(), TABLES)
        assert left["proj_assertions"] == []
        assert left["proj_subject_counts"] != []
        rebuild(store, store.projectors, chunk=1)
        assert table_rows(store.reader(), TABLES) == left
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for parallel_from in (0, 10**9):
            report = audit(conn, all_projectors, parallel_from=parallel_from)
            assert report.problems == []
    finally:
        conn.close()


def test_an_erasure_between_the_audit_and_its_child_is_reported_not_misread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "l.db"
    quote = "a quote erased while the audit's child was starting"
    with ledger(path) as store:
        _busy(store)
        seq = run(store, _claim(quote)).events[0].seq
    start = replay_module._start_replay

    def erase_first(*args: Any, **kwargs: Any) -> Any:
        with ledger(path) as other:  # commits after the audit's snapshot was taken
            erase(other, EraseRequest(seq, "during the audit"), "dpo")
        return start(*args, **kwargs)

    monkeypatch.setattr(replay_module, "_start_replay", erase_first)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        report = audit(conn, all_projectors, parallel_from=0)
    finally:
        conn.close()
    assert not report.ok
    assert report.problems == [
        f"projections not compared: a payload was erased while the audit ran (seq {seq}); "
        "run the audit again"
    ]
    assert quote not in repr(report)


def test_a_long_text_split_over_pages_is_still_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.db"
    quote = "\u00e9t\u00e9 " * 1_000  # 4,000 characters, 6,000 bytes: over a page
    with ledger(path) as store:
        _busy(store)
        seq = run(store, _claim(quote)).events[0].seq
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA secure_delete = OFF")
    conn.execute("CREATE TABLE scratch (text TEXT)")
    conn.execute("INSERT INTO scratch VALUES (?)", (quote,))
    conn.execute("DROP TABLE scratch")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert quote.encode() not in path.read_bytes()  # never in one run of bytes
    assert main(["erase", "--db", str(path), "--seq", str(seq), "--reason", "x"]) == 1
    assert "still in the file" in capsys.readouterr().err
    assert main(["vacuum", "--db", str(path)]) == 0
    assert copies_left(path, [quote]) == []


def test_a_piece_another_payload_holds_is_not_a_copy_left(tmp_path: Path) -> None:
    long_text = "".join(f"sentence {i} of a long quote. " for i in range(60))
    piece = long_text.encode()[256:320]
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 100 + piece + b"y" * 100)
    assert copies_left(path, [long_text]) == [long_text]
    assert copies_left(path, [long_text], cited=lambda needle: needle == piece) == []
    assert copies_left(path, [long_text], cited=lambda needle: False) == [long_text]


def _kr_erased(path: Path) -> tuple[int, dict[str, Any]]:
    """A busy ledger at `path` with KR's assertion erased: its seq, and the write model."""
    with ledger(path) as store:
        _busy(store)
        kr = _erase(store, KR)
        return kr, table_rows(store.reader(), WRITE_MODEL_TABLES)


def test_an_unsound_erasure_record_is_a_problem_not_a_phantom(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    kr, wm_before = _kr_erased(path)
    conn = sqlite3.connect(path, isolation_level=None)
    phantom = '{"assertion_id":"ghost","subject":"ghost","property":"p","kind":"quantity"}'
    with pytest.raises(sqlite3.IntegrityError, match="only an AssertionRecorded payload"):
        conn.execute("INSERT INTO erasures VALUES (1, 't', 'a', 'r', ?)", (phantom,))
    conn.execute("DROP TRIGGER erasures_only_assertions")
    conn.execute("INSERT INTO erasures VALUES (1, 't', 'a', 'r', ?)", (phantom,))
    conn.execute("DELETE FROM payloads WHERE seq = 1")
    conn.close()
    with ledger(path) as store:
        report = verify_log(store.reader())
        assert not report.ok
        assert report.first_bad_seq == 1
        assert report.problems == [
            "seq 1: an erasure is recorded for a SourceRegistered, whose payload cannot be erased"
        ]
        with pytest.raises(LedgerError, match="does not verify at seq 1"):
            rebuild(store, store.projectors)  # refused, and rolled back
        wm_after = table_rows(store.reader(), WRITE_MODEL_TABLES)
    assert [r for r in wm_after["wm_assertions"] if r[0] == "ghost"] == []
    assert wm_after["wm_assertions"] == wm_before["wm_assertions"]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER erasures_no_update")
    conn.execute("UPDATE erasures SET kept = 'not json' WHERE seq = ?", (kr,))
    conn.close()
    with ledger(path) as store:
        report = verify_log(store.reader())
    assert f"seq {kr}: its erasure record does not decode" in " ".join(report.problems)
    assert report.erased == 0  # not counted, nor noted, as lawful
    assert not [note for note in report.notes if note.startswith(f"seq {kr}:")]


def test_an_erasure_whose_record_is_gone_is_a_problem_and_no_rebuild_drops_its_facts(
    tmp_path: Path,
) -> None:
    """The record keeps what the rules need of the erased assertion (its id, never taken
    again; the subject's counts): deleted, verify says so and a rebuild refuses, instead of
    a rebuild without it that frees the id."""
    path = tmp_path / "l.db"
    kr, wm_before = _kr_erased(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER erasures_no_delete")
    conn.execute("DELETE FROM erasures")
    conn.close()
    with ledger(path) as store:
        report = verify_log(store.reader())
        assert (report.ok, report.first_bad_seq, report.erased) == (False, kr, 0)
        assert report.problems[0].startswith(
            f"seq {kr}: payload erased (logged at seq {store.size()}), but its erasure record "
            "is not there"
        )
        with pytest.raises(LedgerError, match=f"does not verify at seq {kr}"):
            rebuild(store, store.projectors)
        assert table_rows(store.reader(), WRITE_MODEL_TABLES) == wm_before


def test_a_ledger_from_a_newer_version_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.db"
    with ledger(path):
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO _migrations VALUES ('ledger-9999-future', 'then')")
    conn.close()
    with pytest.raises(LedgerError, match=r"'ledger-9999-future'.* newer version"):
        SqliteStore(path)
    assert main(["verify", "--db", str(path)]) == 1
    assert "written by a newer version of the ledger" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--seq", "\u0661\u0666", "--reason", "x"], None),  # Arabic-Indic digits
        (["--seq", "1_6", "--reason", "x"], None),
        (["--seq", " 16 ", "--reason", "x"], None),
        (["--seq", "16", "--reason", "\u200b"], "--reason"),
        (["--seq", "16", "--reason", "two\nlines"], "--reason"),
        (["--seq", "16", "--reason", "\x1b[31mred"], "--reason"),
        (["--seq", "16", "--reason", "ok", "--actor", "a\u202eb"], "--actor"),
    ],
)
def test_the_flags_are_checked_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], field: str | None
) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
    before = path.read_bytes()
    if field is None:  # refused by the parser itself
        with pytest.raises(SystemExit) as stopped:
            main(["erase", "--db", str(path), *argv])
        assert stopped.value.code == 2
        assert "--seq" in capsys.readouterr().err
    else:
        assert main(["erase", "--db", str(path), *argv]) == 2
        assert capsys.readouterr().err.startswith(f"ledger: {field}: ")
    assert path.read_bytes() == before


def test_a_passage_another_assertion_still_quotes_is_not_a_copy_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = " ".join(f'he said "word {i}" again' for i in range(100))  # ~2,100 bytes
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        run(store, _claim(f"First: {shared}"))
        seq = run(store, _claim(f"Second: {shared}")).events[0].seq
    code = main(["erase", "--db", str(path), "--seq", str(seq), "--reason", "x"])
    said = capsys.readouterr()
    assert code == 0, said
    assert "none is left" in said.out


@pytest.mark.parametrize("size", [190, 400, 640, 990, 1_001, 3_000])
def test_a_text_split_by_a_page_header_is_found_wherever_the_split(
    tmp_path: Path, size: int
) -> None:
    text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(size))
    data = text.encode()
    path = tmp_path / "blob"
    for cut in range(1, size, 13):
        path.write_bytes(b"x" * 50 + data[:cut] + b"\0\0\x0f\xa0" + data[cut:] + b"y" * 50)
        assert copies_left(path, [text]) == [text], cut


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for sql in statements:
            conn.execute(sql)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("kept", "problem", "refusal"),
    [
        (
            '{"assertion_id":"fresh","subject":"elsewhere","property":"p","kind":"quantity"}',
            "its erasure record names subject 'elsewhere', its event 'subject:other-subject'",
            "does not verify",
        ),
        (
            '{"assertion_id":"' + KR + '","subject":"other-subject","property":"p",'
            '"kind":"quantity"}',
            f"its erasure record names assertion '{KR}', which another assertion holds",
            "cannot be replayed",
        ),
    ],
    ids=["another subject", "a taken id"],
)
def test_a_record_whose_facts_do_not_fit_is_reported_and_never_crashes_a_replay(
    tmp_path: Path, kept: str, problem: str, refusal: str
) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        seq = _seq_of(store, "a", subject="other-subject")
    _tamper(
        path,
        f"INSERT INTO erasures VALUES ({seq}, 't', 'a', 'r', '{kept}')",
        f"DELETE FROM payloads WHERE seq = {seq}",
    )
    with ledger(path) as store:
        report = verify_log(store.reader())
        assert report.problems == [f"seq {seq}: {problem}"]
        before = table_rows(store.reader(), TABLES)
        # a log that does not verify is never rebuilt (a record whose id is taken stops
        # the fold first); either way everything is rolled back
        with pytest.raises(LedgerError, match=refusal):
            rebuild(store, store.projectors)
        assert table_rows(store.reader(), TABLES) == before
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for parallel_from in (0, 10**9):
            assert not audit(conn, all_projectors, parallel_from=parallel_from).ok
    finally:
        conn.close()


def test_a_record_whose_payload_is_still_there_is_finished_by_erase(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        seq = _seq_of(store, KR)
    kept = '{"assertion_id":"%s","subject":"%s","property":"casualties.killed_or_wounded",'
    kept = (kept + '"kind":"quantity"}') % (KR, DEPLOYMENT)
    _tamper(path, f"INSERT INTO erasures VALUES ({seq}, 'then', 'dpo', 'first', '{kept}')")
    with ledger(path) as store:
        assert verify_log(store.reader()).notes == [
            f"seq {seq}: an erasure is recorded, but its payload is still there"
        ]
        result = erase(store, EraseRequest(seq, "again"), "someone")
        assert (result.erasure.erased_at, result.erasure.reason) == ("then", "first")
        assert store.read(seq - 1, 1)[0].data is None
        assert verify_log(store.reader()).erased == 1


def test_a_ledger_that_took_step_0006_early_gets_its_trigger(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path):
        pass
    _tamper(
        path,
        "DROP TRIGGER erasures_only_assertions",
        "DELETE FROM _migrations WHERE name = 'ledger-0007-erasures-of-assertions-only'",
    )
    with ledger(path):
        pass
    with pytest.raises(sqlite3.IntegrityError, match="only an AssertionRecorded"):
        _tamper(path, "INSERT INTO erasures VALUES (1, 't', 'a', 'r', '{}')")


def test_a_vacuum_the_lock_keeps_out_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        seq = _seq_of(store, KR)
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert main(["vacuum", "--db", str(path)]) == 1
        assert "could not be rewritten now: database is locked" in capsys.readouterr().err
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with ledger(path) as store:
        assert store.read(seq - 1, 1)[0].data is not None


@pytest.mark.parametrize(
    "reason", ["line\u2028separator", "\u00ad", "\u3164", "\u2800 ", "isolate\u2066d", "\u034f"]
)
def test_a_reason_is_one_visible_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reason: str
) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        seq = _seq_of(store, KR)
    assert main(["erase", "--db", str(path), "--seq", str(seq), "--reason", reason]) == 2
    assert capsys.readouterr().err.startswith("ledger: --reason: why the payload is erased: ")
    if "must not be blank" not in str(one_line_problem(reason)):  # hidden, not blank
        actor = ["--reason", "x", "--actor", f"a{reason}"]
        assert main(["erase", "--db", str(path), "--seq", str(seq), *actor]) == 2
        assert capsys.readouterr().err.startswith("ledger: --actor: ")


# ---- the erasure's own event: what the chain says about payloads that are gone ----


def test_a_payload_deleted_by_other_means_is_a_problem_and_a_rebuild_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        seq = _seq_of(store, KR)
    _tamper(path, "DROP TRIGGER payloads_no_delete", f"DELETE FROM payloads WHERE seq = {seq}")
    with ledger(path) as store:
        report = verify_log(store.reader())
    assert not report.ok
    assert report.first_bad_seq == seq
    assert report.problems == [
        f"seq {seq}: payload not there, and no erasure of it is logged or recorded "
        "(deleted by other means)"
    ]
    assert main(["rebuild", "--db", str(path)]) == 1
    assert f"at seq {seq}" in capsys.readouterr().err


def test_an_erasure_from_before_erasures_were_logged_is_noted_and_erase_logs_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        seq = _seq_of(store, KR)
        subject = store.read(seq - 1, 1)[0].stream.removeprefix("subject:")
    kept = encode_json(
        {"assertion_id": KR, "subject": subject, "property": "casualties", "kind": "quantity"}
    ).decode()
    # what `ledger erase` wrote before it logged erasures: the record, the payload gone
    _tamper(
        path,
        f"INSERT INTO erasures VALUES ({seq}, '2026-01-02T00:00:00.000000Z', 'old-dpo', "
        f"'an old order', '{kept}')",
        f"DELETE FROM payloads WHERE seq = {seq}",
    )
    with ledger(path) as store:
        report = verify_log(store.reader())
        assert report.ok
        assert report.notes == [
            f"seq {seq}: payload erased at 2026-01-02T00:00:00.000000Z by old-dpo (an old "
            f"order) before erasures were logged (`ledger erase --seq {seq}` logs it); its "
            "data_sha256 still commits to it"
        ]
        assert erasures(store.reader())[seq].logged_seq is None
        size = store.size()
        result = erase(store, EraseRequest(seq, "logging it now"), "dpo")
        (logged,) = store.read(size, 10)
        assert (logged.type, logged.actor) == ("PayloadErased", "dpo")
        assert logged.data == PayloadErased(seq=seq, reason="an old order")  # as recorded
        assert result.erasure.logged_seq == logged.seq
        assert result.erasure.erased_at == "2026-01-02T00:00:00.000000Z"
        assert verify_log(store.reader()).notes == [
            f"seq {seq}: payload erased at 2026-01-02T00:00:00.000000Z by old-dpo (an old "
            f"order), logged at seq {logged.seq} at {logged.recorded_at} by dpo; its "
            "data_sha256 still commits to it"
        ]
        with pytest.raises(InvalidInput, match=f"the payload of seq {seq} was already erased"):
            erase(store, EraseRequest(seq, "again"), "dpo")
        assert store.size() == size + 1


def _append_log(store: SqliteStore, stream: str, names: int) -> int:
    """A `PayloadErased` naming `names`, appended as a library could (never by `erase`)."""

    def work(txn: Any) -> int:
        (event,) = txn.append_many([NewEvent(stream, PayloadErased(seq=names, reason="r"))], "x")
        return int(event.seq)

    return store.run_sync(work)


def test_a_logged_erasure_that_does_not_fit_the_log_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        kr, us = _seq_of(store, KR), _seq_of(store, US)
        stream = store.read(kr - 1, 1)[0].stream
        _erase(store, KR)
        again = _append_log(store, stream, kr)
        there = _append_log(store, stream, us)  # its payload was never erased
        later = store.size() + 5
        ahead = _append_log(store, stream, later)
        report = verify_log(store.reader())
    assert not report.ok
    assert report.problems == [
        f"seq {again}: it logs the erasure of seq {kr} again (first at {again - 1})",
        f"seq {ahead}: it logs the erasure of seq {later}, which is not before it",
        f"seq {there}: it logs the erasure of seq {us}, whose payload is there",
    ]
    assert report.first_bad_seq == again


def test_a_payload_put_back_after_a_logged_erasure_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with ledger(path) as store:
        _busy(store)
        seq = _seq_of(store, KR)
        (data,) = (
            store.reader().execute("SELECT data FROM payloads WHERE seq = ?", (seq,)).fetchone()
        )
        _erase(store, KR)
        logged = store.size()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO payloads (seq, data) VALUES (?, ?)", (seq, data))
    conn.close()
    with ledger(path) as store:
        report = verify_log(store.reader())
    assert report.problems == [
        f"seq {logged}: it logs the erasure of seq {seq}, whose payload is there"
    ]
    assert f"seq {seq}: an erasure is recorded, but its payload is still there" in report.notes
