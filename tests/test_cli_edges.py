"""The command line where it meets a hostile or unusual world: a log edited in the file,
another program's database, names SQLite reads specially, output that cannot be written,
a read-only file, an interrupt, a file of one huge line. Each ends in one line on stderr
and an exit code, never a traceback, and never a changed ledger or foreign file."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import cli, server
from api.importer import MAX_LINE, _numbered_lines, import_file
from ledger import replay as replay_module
from ledger.commands import AssertionLine
from ledger.errors import LedgerError, LedgerUnavailable
from ledger.files import claim
from ledger.replay import rebuild
from ledger.sqlite_store import SqliteStore
from tests.factories import DEPLOYMENT, ledger, run, seed_commands
from tests.reliability import tamper

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "seed.jsonl"


def cli_run(
    *args: str, stdout: int | IO[str] = subprocess.PIPE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def cli_piped(data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The command with `data` on its standard input (a pipe)."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        input=data,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    db = tmp_path / "l.db"
    with ledger(db) as store:
        run(store, *seed_commands())
    return db


def _edit_payload(db: Path) -> int:
    """Change one assertion's quote in the file, around the append-only triggers."""
    conn = sqlite3.connect(db)
    seq, data = conn.execute(
        "SELECT p.seq, p.data FROM payloads p JOIN events e ON e.seq = p.seq "
        "WHERE e.type = 'AssertionRecorded' ORDER BY p.seq LIMIT 1 OFFSET 2"
    ).fetchone()
    edited = json.loads(data)
    edited["value"] = {"low": 99999, "high": 99999}
    conn.execute("DROP TRIGGER payloads_no_update")
    conn.execute("UPDATE payloads SET data = ? WHERE seq = ?", (json.dumps(edited), seq))
    conn.commit()
    conn.close()
    return int(seq)


def test_rebuild_refuses_a_log_edited_in_the_file(seeded: Path) -> None:
    before = cli_run("state", DEPLOYMENT, "troops.deployed", "--db", str(seeded)).stdout
    seq = _edit_payload(seeded)
    done = cli_run("rebuild", "--db", str(seeded))
    assert done.returncode == 1
    assert f"the log does not verify at seq {seq}" in done.stderr
    assert "Traceback" not in done.stderr
    after = cli_run("state", DEPLOYMENT, "troops.deployed", "--db", str(seeded)).stdout
    assert after == before  # the forged value never reached the views
    assert "99999" not in after
    with ledger(seeded) as store, pytest.raises(LedgerError, match=f"at seq {seq}"):
        rebuild(store)


def _views(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM proj_assertions ORDER BY recorded_seq").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("damage", ["a Merkle leaf", "the last event"])
def test_rebuild_refuses_a_log_whose_tree_does_not_verify(seeded: Path, damage: str) -> None:
    """What `ledger verify` refuses, a rebuild refuses: a Merkle node overwritten, or the
    log cut short (its last event and payload deleted, its leaf left behind), which the
    chain alone cannot tell from a shorter log."""
    with ledger(seeded) as store:
        last = store.size()
    before = _views(seeded)
    if damage == "a Merkle leaf":
        bad = 4
        tamper(
            seeded,
            [("UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 0 AND idx = 3", ())],
        )
    else:
        bad = last
        tamper(
            seeded,
            [f"DELETE FROM payloads WHERE seq = {last}", f"DELETE FROM events WHERE seq = {last}"],
        )
    done = cli_run("rebuild", "--db", str(seeded))
    assert done.returncode == 1, done.stdout
    assert f"the log does not verify at seq {bad}" in done.stderr
    assert _views(seeded) == before


@pytest.mark.parametrize(
    "args",
    [
        ["init"],
        ["import", str(SEED)],
        ["keys", "create", "--role", "reader"],
        ["keys", "list"],
        ["serve", "--port", "1"],
    ],
)
def test_another_programs_database_is_never_given_the_ledgers_tables(
    tmp_path: Path, args: list[str]
) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    done = cli_run(*args, "--db", str(db))
    assert done.returncode == 2
    assert "is not a ledger" in done.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]
    conn.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n")
    assert cli_run(*args, "--db", str(text)).returncode == 2
    assert text.read_text() == "not a database at all\n"


@pytest.mark.parametrize("db", [":memory:", "", "  ", "file:l.db?mode=memory"])
def test_a_db_name_that_keeps_nothing_is_refused(db: str) -> None:
    done = cli_run("import", str(SEED), "--db", db)
    assert done.returncode == 2
    assert "argument --db" in done.stderr


def test_a_file_named_like_a_uri_is_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`./file:x.db` names a file in this folder (only a name that starts with `file:` is
    refused); SQLite would read what pathlib makes of it as a URI for `x.db`."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["import", str(SEED), "--db", "./file:x.db"]) == 0
    assert cli.main(["verify", "--db", "./file:x.db"]) == 0
    assert cli.main(["verify", "--db", str(tmp_path / "file:x.db")]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "file:x.db"
    ]


@pytest.mark.parametrize("dest", [":memory:", "file:copy.db", "file:copy.db?mode=memory", ""])
def test_a_backup_to_a_name_that_is_no_file_is_refused(
    seeded: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dest: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as refused:
        cli.main(["backup", dest, "--db", str(seeded)])
    assert refused.value.code == 2
    assert "argument dest" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_backup_into_a_folder_named_like_a_uri_lands_there(
    seeded: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`./file:sub/copy.db` is the folder `file:sub`, not the URI of `sub/copy.db`; the copy
    is written and checked there, and nothing lands in `sub`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file:sub").mkdir()
    (tmp_path / "sub").mkdir()
    assert cli.main(["backup", "./file:sub/copy.db", "--db", str(seeded)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert [p.name for p in (tmp_path / "file:sub").iterdir()] == ["copy.db"]
    assert list((tmp_path / "sub").iterdir()) == []
    assert cli.main(["verify", "--db", str(tmp_path / "file:sub" / "copy.db")]) == 0


def test_an_empty_ledger_db_variable_means_the_default(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "init"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "", "LEDGER_DB": "", "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ledger.db").exists()


def test_output_that_cannot_be_written_is_one_line_and_keeps_the_import(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    with open("/dev/full", "w") as full:
        done = cli_run("import", str(SEED), "--db", str(db), stdout=full)
    assert done.returncode == 1
    assert "cannot write to standard output" in done.stderr
    assert "Traceback" not in done.stderr
    verified = json.loads(cli_run("verify", "--db", str(db)).stdout)
    assert verified["events"] == 27  # the import itself happened


def test_serve_on_an_address_it_cannot_take_is_one_line(tmp_path: Path) -> None:
    """A port in use, or an address that is not this machine's: said before anything
    starts (no ledger is created), not by a server that starts and stops."""
    db = tmp_path / "l.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = cli_run("serve", "--db", str(db), "--port", port)
    foreign = cli_run("serve", "--db", str(db), "--host", "192.0.2.1", "--port", port)
    for done, why in ((busy, "in use"), (foreign, "assign")):
        assert done.returncode == 1, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("ledger: cannot listen on "), line
        assert why in line, line
    assert not db.exists()


def test_serve_skips_an_address_family_it_cannot_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the server does: a host that also resolves to IPv6 on a machine without it is
    served on its IPv4 address; one with no address it can open is one line."""
    real = socket.socket
    found = [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
    ]

    def no_ipv6(family: int = socket.AF_INET, *args: Any) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(97, "Address family not supported by protocol")
        return real(family, *args)

    monkeypatch.setattr(socket, "socket", no_ipv6)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: found)
    server.can_listen("localhost", 0)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: found[:1])
    with pytest.raises(LedgerUnavailable, match="no address it can open"):
        server.can_listen("::1", 0)


@pytest.mark.parametrize("args", [["--help"], ["state", "--help"]])
def test_help_that_cannot_be_written_says_so(args: list[str]) -> None:
    """argparse drops a failed write of its help; the command does not end as if it
    had been read."""
    with open("/dev/full", "w") as full:
        done = cli_run(*args, stdout=full)
    assert done.returncode == 1
    assert "cannot write to standard output" in done.stderr
    assert cli_run(*args).returncode == 0


def test_a_closed_standard_output_does_nothing(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    cli_run("init", "--db", str(db))
    done = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m api.cli keys create --role admin --db "{db}" >&-'],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "standard output is closed" in done.stderr
    listed = cli_run("keys", "list", "--db", str(db))
    assert listed.stdout == ""  # no key was made whose token nobody saw


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (sqlite3.OperationalError("attempt to write a readonly database"), 1, "read-only"),
        (sqlite3.DatabaseError("database disk image is malformed"), 1, "malformed"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_failures_outside_the_rules_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    raised: BaseException,
    code: int,
    message: str,
) -> None:
    """(A read-only file cannot be made here: the tests may run as root.)"""

    def fails(args: argparse.Namespace) -> int:
        raise raised

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(fn=fails)
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for sub in action.choices.values():  # type: ignore[union-attr]
            sub.set_defaults(fn=fails)
    assert cli.main(["rebuild", "--db", str(tmp_path / "l.db")]) == code
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_state_names_the_flags_it_was_given(seeded: Path) -> None:
    for flags, named in [
        (["--seq", "99"], "--seq"),
        (["--as-of", "2025-13"], "--as-of"),
        (["--known-at", "yesterday"], "--known-at"),
    ]:
        done = cli_run("state", DEPLOYMENT, "troops.deployed", *flags, "--db", str(seeded))
        assert done.returncode == 2
        assert done.stderr.startswith(f"ledger: {named}: ")


@pytest.mark.parametrize("bad", ["North-Korea", "a b", "x\n\n", "\udcff", "", "x" * 200, "-x"])
def test_names_given_on_the_command_line_follow_the_apis_rules(seeded: Path, bad: str) -> None:
    """Refused where they are read, naming the argument, as HTTP refuses them with a 422:
    never a traceback (SQLite cannot even take a lone surrogate) nor an empty answer."""
    db = ["--db", str(seeded)]
    for args in (["state", bad, "troops.deployed", *db], ["state", DEPLOYMENT, bad, *db]):
        with pytest.raises(SystemExit) as refused:
            cli.build_parser().parse_args(args)
        assert refused.value.code == 2, args
    for host in ("", " ", "a b", "x\n"):  # an empty host would listen on every interface
        with pytest.raises(SystemExit) as refused:
            cli.build_parser().parse_args(["serve", "--host", host, *db])
        assert refused.value.code == 2, host
    done = cli_run("state", "North Korea", "troops.deployed", *db)
    assert done.returncode == 2
    assert "argument subject: 'North Korea' is not a subject slug" in done.stderr
    undecodable = cli_run("keys", "revoke", "\udcff", *db)
    assert undecodable.returncode == 2
    assert undecodable.stderr.startswith("ledger: NAME: not UTF-8 text")


def test_a_key_an_earlier_version_named_loosely_can_still_be_revoked(seeded: Path) -> None:
    """Names were once unchecked: a live credential must never become unrevocable."""
    conn = sqlite3.connect(seeded)
    conn.execute(
        "INSERT INTO api_keys (name, role, token_sha256, created_at) "
        "VALUES ('legacy\n', 'admin', 'x', '2026-01-01T00:00:00.000000Z')"
    )
    conn.commit()
    conn.close()
    done = cli_run("keys", "revoke", "legacy\n", "--db", str(seeded))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "revoked 'legacy\\n'\n"


def test_state_of_a_property_nothing_claimed_prints_the_empty_view_of_the_kind_asked(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As HTTP answers an empty view for it; without --kind there is no view to choose."""
    db = ["--db", str(seeded)]
    with pytest.raises(SystemExit) as unknown:
        cli.main(["state", DEPLOYMENT, "troops.rotated", *db])
    assert unknown.value.code == 1
    assert "nothing claimed it yet (--kind quantity" in capsys.readouterr().err
    assert cli.main(["state", DEPLOYMENT, "troops.rotated", "--kind", "quantity", *db]) == 0
    empty = json.loads(capsys.readouterr().out)
    assert (empty["estimate"], empty["basis"], empty["claimants"]) == (None, [], [])
    assert cli.main(["state", DEPLOYMENT, "troops.rotated", "--kind", "status", *db]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "unreported"
    assert cli.main(["state", DEPLOYMENT, "troops.deployed", "--kind", "quantity", *db]) == 0
    assert json.loads(capsys.readouterr().out)["estimate"]["low"] == 13000
    with pytest.raises(SystemExit) as other:
        cli.main(["state", DEPLOYMENT, "troops.deployed", "--kind", "status", *db])
    assert other.value.code == 1
    assert "holds quantity values, not status ones" in capsys.readouterr().err
    # at a seq before the property's first claim it had no kind yet, as over HTTP; without
    # --kind, the view is of the kind it has now
    assert (
        cli.main(["state", DEPLOYMENT, "troops.deployed", "--seq", "1", "--kind", "status", *db])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["status"] == "unreported"
    assert cli.main(["state", DEPLOYMENT, "troops.deployed", "--seq", "1", *db]) == 0
    early = json.loads(capsys.readouterr().out)
    assert (early["seq"], early["estimate"], early["basis"]) == (1, None, [])


def test_from_line_resumes_an_import_where_the_message_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines before N are read past, never decoded; line numbers stay the file's, and a
    bad line's message says where to resume once it is mended."""
    seed = SEED.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([*seed[:5], '{"record": "nonsense"}', *seed[5:]]) + "\n")
    db = ["--db", str(tmp_path / "l.db")]
    assert cli.main(["import", str(broken), *db]) == 1
    err = capsys.readouterr().err
    assert "line 6: " in err
    assert "nothing from line 6 on (once it is mended, `--from-line 6` imports the rest)" in err

    assert cli.main(["import", str(broken), "--from-line", "7", *db]) == 0
    total = len(seed) + 1
    assert capsys.readouterr().out.startswith(f"imported lines 7..{total}: {total - 6} events")
    whole = tmp_path / "whole.db"
    assert cli.main(["import", str(SEED), "--db", str(whole)]) == 0
    capsys.readouterr()
    resumed, once = SqliteStore(tmp_path / "l.db"), SqliteStore(whole)
    try:  # the same events in the same order, whether imported at once or resumed
        assert [(e.type, e.stream, e.data) for e in resumed.read(0, 100)] == [
            (e.type, e.stream, e.data) for e in once.read(0, 100)
        ]
    finally:
        resumed.close()
        once.close()

    assert cli.main(["import", str(SEED), *db]) == 1  # the same file again
    again = capsys.readouterr().err
    assert "line 14: assertion_id: assertion id 'ap-2025-04-28.troops-fall-2024' is already" in (
        again
    )
    assert (  # every line after it is held too: not one line further a try
        "(if lines 14..27 are in the log already (their ids and sources are held for the same "
        "subjects and properties), from an earlier import of this file, the whole file is in; "
        "if not, once line 14 is mended, `--from-line 14`)"
    ) in again
    last = tmp_path / "last.jsonl"
    last.write_text(seed[13] + "\n\n")  # that assertion alone, then a blank line
    assert cli.main(["import", str(last), *db]) == 1
    assert "in the log already, from an earlier import of this file, the whole file is in" in (
        capsys.readouterr().err
    )

    with pytest.raises(SystemExit) as past:
        cli.main(["import", str(broken), "--from-line", str(total + 1), *db])
    assert past.value.code == 2
    assert f"has {total} lines: there is no line {total + 1} to import from" in (
        capsys.readouterr().err
    )
    for empty in (b"", b"\xef\xbb\xbf", b"\n\n"):  # nothing to import is no error
        nothing = tmp_path / "nothing.jsonl"
        nothing.write_bytes(empty)
        assert cli.main(["import", str(nothing), *db]) == 0
        assert "events appended" in capsys.readouterr().out
    for bad in ("0", "-3", "x"):
        done = cli_run("import", str(broken), "--from-line", bad, *db)
        assert done.returncode == 2
        assert "--from-line" in done.stderr


def test_a_bad_assertion_line_is_judged_against_the_lines_before_it_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its well-formed fields meet the ledger's checks in the same message, once every line
    before it is in the log: a claimant registered by an earlier line is known."""
    seed = SEED.read_text().splitlines()
    source = json.dumps({"record": "source", "id": "new-src", "name": "N", "kind": "media"})
    bad = json.loads(seed[13])  # the seed's first assertion
    bad.update(
        assertion_id="x.bad",
        claimants=["new-src", "nobody"],
        stated_at="yesterday",
        supersedes="no-such",
    )
    file = tmp_path / "in.jsonl"
    file.write_text("\n".join([*seed[:13], source, json.dumps(bad)]) + "\n")
    assert cli.main(["import", str(file), "--db", str(tmp_path / "l.db")]) == 1
    err = capsys.readouterr().err
    assert "line 15: stated_at: " in err
    assert "claimants[1]: unknown source 'nobody'" in err
    assert "supersedes: unknown assertion 'no-such'" in err
    assert "new-src" not in err  # registered by line 14, in the log before line 15 is judged


def test_a_file_of_one_huge_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    source = '{"record":"source","id":"x","name":"n","kind":"military"}'
    huge = tmp_path / "array.jsonl"
    huge.write_text("[" + ",".join([source] * 50_000) + "]\n")  # ~2.9 MB on one line
    done = cli_run("import", str(huge), "--db", str(tmp_path / "l.db"))
    assert done.returncode == 1
    assert f"line 1: line: longer than {MAX_LINE:,} bytes" in done.stderr
    for line in ["[1, 2]", "42", "null", '"abc"']:
        (tmp_path / "odd.jsonl").write_text(line + "\n")
        odd = cli_run("import", str(tmp_path / "odd.jsonl"), "--db", str(tmp_path / "l.db"))
        assert odd.returncode == 1
        assert "line 1: line: not a JSON object" in odd.stderr


@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.integers(1, 17),
    st.booleans(),
)
def test_lines_are_read_whole_across_blocks(lines: list[bytes], block: int, end: bool) -> None:
    text = b"\n".join(lines) + (b"\n" if end and lines else b"")
    got = list(_numbered_lines(io.BytesIO(text), block=block, limit=1 << 20))
    want = text.split(b"\n")
    if want and want[-1] == b"":
        want.pop()
    if want and want[0].startswith(b"\xef\xbb\xbf"):
        want[0] = want[0][3:]
    assert got == list(enumerate(want, start=1)) or (got == [] and want == [b""])


def test_a_long_line_comes_cut_past_the_limit() -> None:
    text = b"a" * 100 + b"\n" + b"b" * 10_000 + b"\nlast"
    got = list(_numbered_lines(io.BytesIO(text), block=64, limit=1000))
    assert [n for n, _ in got] == [1, 2, 3]
    assert got[0][1] == b"a" * 100
    assert 1000 < len(got[1][1]) <= 1000 + 64
    assert got[2][1] == b"last"


def test_views_that_could_not_catch_up_are_never_shown_as_current(
    seeded: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stopped import leaves the views behind the log; on a file that cannot be written
    (here: a catch-up made to fail) they stay behind: a view answers at the seq they
    reflect (as the server does), and a seq past it is refused rather than labelled on an
    old view."""
    conn = sqlite3.connect(seeded)
    conn.execute("UPDATE checkpoints SET seq = 20 WHERE name != 'write_model'")
    conn.commit()
    conn.close()

    def cannot(*args: object, **kwargs: object) -> int:
        raise LedgerError("attempt to write a readonly database")

    monkeypatch.setattr(replay_module, "catch_up", cannot)
    argv = ["state", DEPLOYMENT, "deployment.status", "--db", str(seeded)]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["seq"] == 20
    assert "ledger state: this is the view at seq 20: the views reach seq 20 of the log's 27" in err
    with pytest.raises(SystemExit):  # and a property with no claim says where it looked
        cli.main(["state", DEPLOYMENT, "nothing.claimed", "--db", str(seeded)])
    assert "nothing claimed it by seq 20, since the views reach seq 20" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        cli.main([*argv, "--seq", "27"])
    assert stopped.value.code == 1
    assert (  # appends are not refused: the catch-up could not commit (a disk that filled)
        "the views hold the log up to seq 20 of 27 and could not catch up (is its disk "
        "full?): ask with --seq at most that, or free some room on its disk and open the "
        "ledger again"
    ) in capsys.readouterr().err
    assert cli.main([*argv, "--seq", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 20
    # a server would answer the same way; it refuses to start only on a file it cannot
    # write, whose views can never catch up (one beside an import starts, and catches up)
    monkeypatch.setattr(SqliteStore, "_writable", lambda self: False)
    with pytest.raises(LedgerUnavailable, match="up to seq 20 of 27"):
        server.serve(
            db=str(seeded),
            host="127.0.0.1",
            port=1,
            public_read=True,
            demo=False,
            synchronous="FULL",
            rate_limit=0,
        )


def test_ctrl_c_stops_a_rebuild_at_its_next_chunk_and_changes_nothing(
    seeded: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rebuild is one transaction on the writer's thread: Ctrl-C reaches the main
    thread, which stops it at its next chunk and waits while it rolls back, instead of
    waiting for it to run to its end. (The KeyboardInterrupt is raised in the main
    thread's wait once the rebuild has begun, as a Ctrl-C raises it there: a signal sent
    to a thread blocked on the writer is not one a test can time.)"""
    from tests.test_projections import all_tables, table_rows

    with ledger(seeded) as store:
        before = table_rows(store.reader(), all_tables())
    from ledger.verify import verify_log as verify

    chunks: list[int] = []
    begun, closing = threading.Event(), threading.Event()
    close = SqliteStore.close

    def closed(self: SqliteStore) -> None:
        closing.set()  # the main thread took the Ctrl-C: its stop is set, it waits here
        close(self)

    def in_small_chunks(conn: Any, progress: Any = None, **kwargs: Any) -> Any:
        def each(done: int, total: int) -> None:
            chunks.append(done)
            if len(chunks) == 1:
                begun.set()
                assert closing.wait(10)
            progress(done, total)

        return verify(conn, each, **{**kwargs, "chunk": 5})

    run_sync = SqliteStore.run_sync

    def interrupted(self: SqliteStore, work: Any, *, resets_views: bool = False) -> Any:
        if getattr(work, "__name__", "") != "work":  # not the rebuild's own unit
            return run_sync(self, work, resets_views=resets_views)
        self.submit(work, resets_views=resets_views)
        assert begun.wait(10)
        raise KeyboardInterrupt  # what a Ctrl-C raises in the main thread as it waits

    monkeypatch.setattr(replay_module, "verify_log", in_small_chunks)
    monkeypatch.setattr(SqliteStore, "run_sync", interrupted)
    monkeypatch.setattr(SqliteStore, "close", closed)
    assert cli.main(["rebuild", "--db", str(seeded)]) == 130
    monkeypatch.undo()
    assert capsys.readouterr().err.endswith("ledger rebuild: interrupted; nothing was changed\n")
    assert chunks == [5]  # stopped where it next looked, not after the other chunks
    with ledger(seeded) as store:
        assert table_rows(store.reader(), all_tables()) == before


def test_views_kept_behind_by_a_broken_log_say_so_not_read_only(seeded: Path) -> None:
    """An event row past the head with no payload (a tampered file): the views are not
    brought up to it, and the start-up check refuses appends. Serving, or asking for the
    state (the view where the views stand), says that reason, not a guess that the file is
    read-only (it is not) or that an import is appending."""
    conn = sqlite3.connect(seeded)
    conn.execute(
        "INSERT INTO events SELECT 28, type, stream, version + 1000, recorded_at, actor,"
        " data_sha256, hash FROM events WHERE seq = 27"
    )
    conn.commit()
    conn.close()
    with socket.socket() as sock:  # a port free to listen on: binding is checked first
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    stuck = (
        "the views hold the log up to seq 27 of 28 and could not catch up, since the stored "
        "log is broken at seq 28: payload missing, with no erasure record (deleted by other "
        "means); run `ledger verify`"
    )
    served = cli_run("serve", "--host", "127.0.0.1", "--port", port, "--db", str(seeded))
    assert served.returncode == 1, served.stderr
    [line] = [x for x in served.stderr.splitlines() if x.startswith("ledger:")]
    assert line == f"ledger: {stuck}"
    # the state of what the views hold (the log up to the break), and why only that
    state = cli_run("state", DEPLOYMENT, "deployment.status", "--db", str(seeded))
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout)["seq"] == 27
    [line] = [x for x in state.stderr.splitlines() if x.startswith("ledger state:")]
    assert line == f"ledger state: this is the view at seq 27: {stuck}"


def test_events_writes_an_altered_payload_as_stored_and_says_so(seeded: Path) -> None:
    """Not a traceback halfway through: every event is written, the altered ones as the
    file holds them, and the exit status and a line on standard error say the log was
    altered."""
    tamper(
        seeded,
        [
            "UPDATE events SET type = 'Bogus' WHERE seq = 9",
            ("UPDATE payloads SET data = ? WHERE seq = 12", (b"{not json",)),
            # as the sqlite3 shell stores what is typed: TEXT, a number
            "UPDATE payloads SET data = '{\"edited\": true}' WHERE seq = 14",
            "UPDATE payloads SET data = 42 WHERE seq = 15",
        ],
    )
    result = cli_run("events", "--db", str(seeded))
    assert result.returncode == 1, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, 28))
    assert (events[8]["type"], events[11]["data"]) == ("Bogus", "{not json")
    assert (events[13]["data"], events[14]["data"]) == ({"edited": True}, 42)
    assert result.stderr.splitlines()[-1] == (
        "ledger events: payloads that do not decode as their events' types, at seq 9, 12, 14, "
        "15: the log was altered; they are written as stored; run `ledger verify`"
    )
    assert "Traceback" not in result.stderr
    clean = cli_run("events", "--after", "15", "--db", str(seeded))
    assert (clean.returncode, len(clean.stdout.splitlines())) == (0, 12)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
@pytest.mark.parametrize("bad", [False, True], ids=["whole", "bad-line"])
def test_an_import_from_a_named_pipe_reads_it_once(tmp_path: Path, bad: bool) -> None:
    """A pipe gives what it holds once: the import keeps it in a temporary file, so it
    neither hangs (a check that opened the pipe first took the writer's data) nor loses
    the line to resume from (told by reading the file again)."""
    lines = SEED.read_bytes().splitlines(keepends=True)
    if bad:
        lines.insert(5, b'{"record": "bogus"}\n')
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as out:  # waits for the import to open the pipe
            out.write(b"".join(lines))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = cli_run("import", str(fifo), "--db", str(tmp_path / "l.db"))
    writer.join(5)
    assert not writer.is_alive()
    if bad:
        assert result.returncode == 1
        assert f"ledger import: {fifo}: line 6: record: must be one of" in result.stderr
        assert "nothing from line 6 on (once it is mended, `--from-line 6` imports the rest)" in (
            result.stderr
        )
    else:
        assert (result.returncode, result.stdout) == (
            0,
            "imported 27 lines: 27 events appended (seq 1..27)\n",
        )
    assert list(tmp_path.glob(".ledger-import-*")) == []  # kept beside the ledger, removed


def test_an_import_killed_part_way_is_resumed_after_what_the_log_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first 600 lines went in (then the import was killed, say); the whole file
    imported again stops at its first line whose id is taken and names the line after the
    last one the log holds (sources, assertions, retractions and rankings alike), so one
    `--from-line` finishes the job, every line once."""
    from bench import gen

    whole = tmp_path / "whole.jsonl"
    lines = gen.write(whole, 800)
    part = tmp_path / "part.jsonl"
    part.write_bytes(b"".join(whole.read_bytes().splitlines(keepends=True)[:600]))
    db = ["--db", str(tmp_path / "l.db")]
    assert cli.main(["import", str(part), *db]) == 0
    capsys.readouterr()
    kinds = {json.loads(x)["record"] for x in part.read_text().splitlines()}
    assert {"source", "assertion", "retraction", "rank"} <= kinds  # all four are held

    assert cli.main(["import", str(whole), *db]) == 1
    err = capsys.readouterr().err
    assert "in the log already (their ids and sources are held" in err
    assert "`--from-line 601` imports the rest" in err
    assert cli.main(["import", str(whole), "--from-line", "601", *db]) == 0
    assert capsys.readouterr().out.startswith(f"imported lines 601..{lines}: {lines - 600} events")
    with ledger(tmp_path / "l.db") as store:
        assert store.size() == lines


def test_an_import_with_others_appending_meanwhile_says_its_span_holds_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seq 1..N would read as N events of the import's own: with another writer's events
    among them, the message says how many are not its own."""
    from ledger.commands import RegisterSource

    real = import_file
    others = 0

    def beside(store: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        progress = args[2]

        def and_another(done: int, total: int) -> None:
            nonlocal others
            if others < 2:  # between two chunks, another writer appends
                others += 1
                run(store, RegisterSource(id=f"other-{others}", name="Other", kind="media"))
            progress(done, total)

        return real(store, args[0], args[1], and_another, **{**kwargs, "chunk_size": 5})

    monkeypatch.setattr(cli, "import_file", beside)
    assert cli.main(["import", str(SEED), "--db", str(tmp_path / "l.db")]) == 0
    assert capsys.readouterr().out == (
        "imported 27 lines: 27 events appended (seq 1..29, among 2 events appended by others "
        "meanwhile)\n"
    )


def test_sigterm_stops_an_import_between_chunks_as_ctrl_c_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service stopping, or `timeout`, sends SIGTERM: the import stops between two
    chunks, names the line to resume from, and exits 143 (128 + SIGTERM)."""
    sent = False

    def beside(store: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        progress = args[2]

        def and_stop(done: int, total: int) -> None:
            nonlocal sent
            if not sent:
                sent = True
                os.kill(os.getpid(), signal.SIGTERM)  # to this process alone
            progress(done, total)

        return import_file(store, args[0], args[1], and_stop, **{**kwargs, "chunk_size": 5})

    class NotTaken(Exception):
        pass

    def not_taken(signum: int, frame: object) -> None:  # not the test run's death
        raise NotTaken("SIGTERM reached the default handler: the import did not take it")

    monkeypatch.setattr(cli, "import_file", beside)
    before = signal.signal(signal.SIGTERM, not_taken)
    try:
        assert cli.main(["import", str(SEED), "--db", str(tmp_path / "l.db")]) == 143
        assert signal.getsignal(signal.SIGTERM) is not_taken  # put back
    finally:
        signal.signal(signal.SIGTERM, before)
    err = capsys.readouterr().err
    assert "ledger import: interrupted; lines 1.." in err
    assert "`--from-line" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_copy_a_killed_import_left_goes_and_a_running_imports_stays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An import killed outright (SIGKILL, a power cut) cannot remove the copy it kept of a
    pipe: the next import from a pipe beside that ledger does, unless a running import
    holds it (each holds a lock on its own)."""
    left = tmp_path / ".ledger-import-123-dead.jsonl"
    left.write_bytes(SEED.read_bytes())
    running = tmp_path / ".ledger-import-456-live.jsonl"
    held = claim(running)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as out:
            out.write(SEED.read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        assert cli.main(["import", str(fifo), "--db", str(tmp_path / "l.db")]) == 0
    finally:
        os.close(held)
        writer.join(10)
    assert "27 events appended" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob(".ledger-import-*")) == [running.name]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_sigterm_while_a_pipe_is_kept_removes_the_copy(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done = threading.Event()

    def feed() -> None:  # a first block, then the writer waits: the copy is under way
        # the import may be stopped before this write lands (the copy's file shows as soon
        # as the pipe is open): the pipe is then broken, which is no failure of the test
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as out:
            out.write(SEED.read_bytes())
            out.flush()
            done.wait(30)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "import", str(fifo), "--db", str(tmp_path / "l.db")],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(500):  # until the copy beside the ledger is under way
            copies = list(tmp_path.glob(".ledger-import-*"))
            if copies:
                break
            time.sleep(0.02)
        assert copies, "the pipe was never kept"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.glob(".ledger-import-*")) == []


def test_a_line_with_thousands_of_problems_is_told_in_a_bounded_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line giving 3,000 keys twice named every one of them on one line of stderr
    (174 KB): it names the first 50 and counts the rest, as the HTTP answer does."""
    line = "{" + ",".join(f'"k{i}":1,"k{i}":1' for i in range(3_000)) + ',"record":"source"}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line + "\n")
    assert cli.main(["import", str(bad), "--db", str(tmp_path / "l.db")]) == 1
    err = capsys.readouterr().err
    assert len(err) < 10_000, len(err)
    hidden = int(err.split("and ")[-1].split(" more problems")[0])
    assert err.count("given more than once") + hidden >= 3_000


def test_a_count_of_problems_renamed_as_a_flag_is_still_added_to() -> None:
    """The command line names a field as its flag (`--x`): a count of further problems so
    renamed is still a count when the errors are named again beside others."""
    from ledger.errors import MAX_ERRORS, FieldError, InvalidInput

    first = InvalidInput([FieldError(f"f{i}", "bad") for i in range(MAX_ERRORS + 7)])
    flags = [FieldError(f"--{e.field}", e.message) for e in first.errors]
    again = InvalidInput([FieldError("--other", "bad"), *flags])
    assert len(again.errors) == MAX_ERRORS + 1
    assert again.errors[-1] == FieldError("body", "and 8 more problems")


def test_a_ranking_repeated_later_in_the_file_is_not_taken_for_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """preferred, normal, then preferred again for the same reason: with the first two in
    the log, the third is not (the log's preferred ranking is the first one, before the
    normal one), so the import resumes at it."""
    seed = SEED.read_text().splitlines()
    aid = json.loads(seed[13])["assertion_id"]

    def rank(value: str, reason: str) -> str:
        return json.dumps({"record": "rank", "assertion_id": aid, "rank": value, "reason": reason})

    lines = [*seed, rank("preferred", "r1"), rank("normal", "r2"), rank("preferred", "r1")]
    whole = tmp_path / "whole.jsonl"
    whole.write_text("\n".join(lines) + "\n")
    part = tmp_path / "part.jsonl"
    part.write_text("\n".join(lines[:-1]) + "\n")
    db = ["--db", str(tmp_path / "l.db")]
    assert cli.main(["import", str(part), *db]) == 0
    capsys.readouterr()
    assert cli.main(["import", str(whole), *db]) == 1
    err = capsys.readouterr().err
    assert f"lines 14..{len(lines) - 1} are in the log already" in err
    assert f"`--from-line {len(lines)}` imports the rest" in err


def test_half_a_surrogate_pair_in_a_line_is_named(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    line = json.loads(SEED.read_text().splitlines()[13])
    line["quote"] = "about 11,000 \ud800 troops"
    source.write_text(SEED.read_text().splitlines()[0] + "\n" + json.dumps(line) + "\n")
    result = cli_run("import", str(source), "--db", str(tmp_path / "l.db"))
    assert result.returncode == 1
    assert (
        "line 2: line: not JSON: a \\uD800-\\uDBFF escape (the first half of a surrogate "
        "pair) has no second half: it is not text"
    ) in result.stderr


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_as_such(tmp_path: Path, codec: str) -> None:
    """What a Windows editor may save: refused at line 1, saying what the file looks like
    and what to do, rather than only "invalid character (byte 0)"."""
    source = tmp_path / "in.jsonl"
    source.write_text(SEED.read_text(), encoding=codec)
    result = cli_run("import", str(source), "--db", str(tmp_path / "l.db"))
    assert result.returncode == 1
    assert "line 1: line: not" in result.stderr
    assert "the file looks like UTF-16 text: save it as UTF-8" in result.stderr


def test_an_import_reports_its_fold_into_the_views(tmp_path: Path) -> None:
    """The bar of lines read ends at 100%; the fold that follows has a bar of its own."""
    read: list[tuple[int, int]] = []
    folded: list[tuple[int, int]] = []
    with ledger(tmp_path / "l.db") as store:
        result = import_file(
            store,
            SEED,
            "test",
            lambda done, total: read.append((done, total)),
            fold_progress=lambda done, total: folded.append((done, total)),
        )
    assert result.error is None
    assert read[-1][0] == read[-1][1] == SEED.stat().st_size
    assert folded
    assert folded[-1] == (27, 27)


@pytest.mark.parametrize("host", ["bad..host", "x" * 70, "999.1.1.1"])
def test_a_host_that_does_not_resolve_is_refused_before_serving(tmp_path: Path, host: str) -> None:
    """uvicorn would start, fail to bind and print tracebacks; the flag is refused first,
    whether given or taken from $HOST."""
    result = cli_run("serve", "--db", str(tmp_path / "l.db"), "--host", host, "--port", "1")
    assert result.returncode == 2, result.stderr
    assert "--host" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "l.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["state", DEPLOYMENT, "troops.deployed", "--seq", "007"],
        ["events", "--after", "01"],
        ["events", "--limit", "00"],
    ],
)
def test_whole_numbers_on_the_command_line_take_no_leading_zero(
    seeded: Path, args: list[str]
) -> None:
    """As in a query string: `007` is refused, since readers differ on what it means."""
    result = cli_run(*args, "--db", str(seeded))
    assert result.returncode == 2
    assert "no leading 0" in result.stderr


def test_events_takes_a_limit_of_one_or_more(seeded: Path) -> None:
    """As `GET /v1/events` does: a limit of 0 asks for nothing, which is a mistake."""
    result = cli_run("events", "--limit", "0", "--db", str(seeded))
    assert result.returncode == 2
    assert "--limit: '0' must be 1 or more" in result.stderr
    one = cli_run("events", "--limit", "1", "--db", str(seeded))
    assert (one.returncode, len(one.stdout.splitlines())) == (0, 1)


@pytest.mark.parametrize("command", ["serve", "import"])
def test_every_flag_says_what_it_does(command: str) -> None:
    """`--synchronous` named its choices alone; its help now says what each gives up."""
    result = cli_run(command, "--help")
    assert "the last commits can be lost on a power failure" in " ".join(result.stdout.split())


def test_a_line_that_is_not_utf8_names_where(tmp_path: Path) -> None:
    """The offset is the line's, not the offset inside the string the decoder was reading."""
    db = tmp_path / "l.db"
    lines = tmp_path / "in.jsonl"
    lines.write_bytes(
        SEED.read_bytes().splitlines(keepends=True)[0]
        + b'{"record": "source", "id": "zz", "name": "Caf\xe9 au lait", "kind": "media"}\n'
    )
    result = cli_run("import", str(lines), "--db", str(db))
    assert result.returncode == 1
    assert "line 2" in result.stderr
    assert "not UTF-8 text: byte 0xe9 at offset 45 of the line, from 0" in result.stderr


@pytest.mark.parametrize(
    "command", [["init"], ["import", str(SEED)], ["keys", "create", "--role", "reader"]]
)
def test_a_ledger_is_not_made_in_place_of_a_folder(tmp_path: Path, command: list[str]) -> None:
    folder = cli_run(*command, "--db", str(tmp_path))
    assert folder.returncode == 2
    assert folder.stderr.strip() == f"ledger: {tmp_path} is a folder, not a ledger"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "damage",
    [
        "DELETE FROM checkpoints",
        "UPDATE checkpoints SET seq = 10 WHERE name LIKE 'projections.%'",
        "UPDATE checkpoints SET seq = 10 WHERE name = 'write_model'",
    ],
)
def test_checkpoints_deleted_or_set_back_are_found_and_a_rebuild_mends_them(
    seeded: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Views whose checkpoints were deleted answer as if nothing were folded (while their
    tables hold everything): the audit says they differ, and `ledger rebuild` mends them
    (it folded them up to date first, and failed on the rows already there)."""
    tamper(seeded, [damage])
    db = ["--db", str(seeded)]
    assert cli.main(["audit", *db]) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[0])["projections_match"] is False
    assert cli.main(["rebuild", *db]) == 0
    assert "rebuilt every projection from 27 events" in capsys.readouterr().out
    assert cli.main(["audit", *db]) == 0
    assert cli.main(["state", DEPLOYMENT, "troops.deployed", *db]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["seq"] == 27


def test_an_index_edited_apart_from_its_table_fails_the_audit(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The views read a covering index: edited through the schema so that it holds another
    figure than its table, the views answer it while every row compares equal. SQLite's own
    check of the read side's tables, in the audit, finds it; a rebuild mends it."""
    conn = sqlite3.connect(seeded, isolation_level=None)
    seq, low = conn.execute(
        "SELECT recorded_seq, value_low FROM proj_assertions WHERE value_low IS NOT NULL"
    ).fetchone()
    conn.execute("UPDATE proj_assertions SET value_low = 1 WHERE recorded_seq = ?", (seq,))
    index = conn.execute(
        "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema "
        "WHERE name = 'proj_assertions_view'"
    ).fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_schema WHERE name = 'proj_assertions_view'")
    conn.close()
    conn = sqlite3.connect(seeded, isolation_level=None)  # the table alone: the index stays 1
    conn.execute("UPDATE proj_assertions SET value_low = ? WHERE recorded_seq = ?", (low, seq))
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("INSERT INTO sqlite_schema VALUES (?, ?, ?, ?, ?)", index)
    conn.close()
    db = ["--db", str(seeded)]
    assert cli.main(["audit", *db]) == 1
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["problems"]
    assert all(p.startswith("proj_assertions: ") for p in report["problems"]), report
    assert "proj_assertions_view" in report["problems"][0]
    assert cli.main(["rebuild", *db]) == 0
    assert cli.main(["audit", *db]) == 0


def _schema(db: Path) -> set[tuple[str, str, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return set(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        conn.close()


_EDIT_A_FIGURE = (
    "CREATE TRIGGER {name} AFTER INSERT ON proj_assertions BEGIN "
    "UPDATE proj_assertions SET value_low = 1 WHERE recorded_seq = NEW.recorded_seq; END"
)

SCHEMA_DAMAGE: dict[str, tuple[list[str], str]] = {
    "view table dropped": (["DROP TABLE proj_ranks"], "table proj_ranks"),
    "view index dropped": (["DROP INDEX proj_assertions_view"], "index proj_assertions_view"),
    "view index changed": (
        [
            "DROP INDEX proj_ranks_assertion",
            "CREATE INDEX proj_ranks_assertion ON proj_ranks (reason)",
        ],
        "index proj_ranks_assertion",
    ),
    "view table changed": (
        [
            "DROP TABLE proj_properties",
            "CREATE TABLE proj_properties (subject, property, kind, first_seq)",
        ],
        "table proj_properties",
    ),
    "checkpoints dropped": (["DROP TABLE checkpoints"], "table checkpoints"),
    "index added on a view": (
        ["CREATE INDEX extra ON proj_claimants (recorded_seq)"],
        "index extra on proj_claimants",
    ),
    "trigger added on a view": ([_EDIT_A_FIGURE.format(name="edit")], "trigger edit"),
    "guard dropped": (["DROP TRIGGER events_no_update"], "trigger events_no_update"),
    "guard changed": (
        [
            "DROP TRIGGER payloads_no_delete",
            "CREATE TRIGGER payloads_no_delete BEFORE DELETE ON payloads BEGIN SELECT 1; END",
        ],
        "trigger payloads_no_delete on payloads",
    ),
    "trigger added on the log": (
        ["CREATE TRIGGER stop BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'no'); END"],
        "trigger stop on events",
    ),
    # names are case-insensitive in SQLite, and triggers have a namespace of their own
    "trigger added on a table named in capitals": (
        ['CREATE TRIGGER sneaky AFTER INSERT ON "Proj_Claimants" BEGIN SELECT 1; END'],
        "trigger sneaky on proj_claimants",
    ),
    "guard written again in capitals": (
        [
            "DROP TRIGGER events_no_update",
            "CREATE TRIGGER EVENTS_NO_UPDATE BEFORE UPDATE ON EVENTS BEGIN SELECT 1; END",
        ],
        "trigger events_no_update on events",
    ),
    "trigger named like a view table": (
        ["CREATE TRIGGER proj_ranks AFTER INSERT ON events BEGIN SELECT 1; END"],
        "trigger proj_ranks on events",
    ),
    "view table renamed, its index with it": (
        ["ALTER TABLE proj_ranks RENAME TO old_ranks"],
        "table proj_ranks",
    ),
    "index name taken by a table": (
        [
            "DROP INDEX proj_assertions_property",
            "CREATE TABLE proj_assertions_property (x)",
        ],
        "index proj_assertions_property",
    ),
    "view table replaced by a view": (
        ["DROP TABLE proj_ranks", "CREATE VIEW proj_ranks AS SELECT 1 AS x"],
        "table proj_ranks",
    ),
    "erasures dropped": (["DROP TABLE erasures"], "table erasures"),
    "api_keys dropped": (["DROP TABLE api_keys"], "table api_keys"),
    "idempotency dropped": (["DROP TABLE idempotency"], "table idempotency"),
    "trigger that keeps a revoked key alive": (
        [
            "CREATE TRIGGER unrevoke AFTER UPDATE OF revoked_at ON api_keys "
            "WHEN NEW.revoked_at IS NOT NULL "
            "BEGIN UPDATE api_keys SET revoked_at = NULL WHERE name = NEW.name; END"
        ],
        "trigger unrevoke on api_keys",
    ),
}

_LEFT_ALONE = {"old_ranks"}  # a renamed table holds only what a rebuild makes again


@pytest.mark.parametrize("damage", list(SCHEMA_DAMAGE))
def test_a_rebuild_puts_the_schema_back_as_the_migrations_make_it(
    seeded: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A view table or index dropped or changed, a guard of the log dropped or rewritten,
    a trigger added: `ledger rebuild` makes the schema exactly a new ledger's again, says
    what it put right, and the ledger then audits clean and takes appends."""
    fresh = tmp_path / "fresh.db"
    with ledger(fresh):
        pass
    expected = _schema(fresh)
    assert _schema(seeded) == expected
    statements, named = SCHEMA_DAMAGE[damage]
    conn = sqlite3.connect(seeded, isolation_level=None)
    for sql in statements:
        conn.execute(sql)
    conn.close()
    assert _schema(seeded) != expected
    db = ["--db", str(seeded)]
    assert cli.main(["rebuild", *db]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "rebuilt every projection from 27 events"
    assert [line for line in out if named in line], out
    assert all(line.startswith(("made ", "dropped ")) for line in out[:-1]), out
    assert {o for o in _schema(seeded) if o[2] not in _LEFT_ALONE} == expected
    assert cli.main(["audit", *db]) == 0
    assert cli.main(["verify", *db]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["notes"] == []
    assertion = next(c for c in seed_commands() if isinstance(c, AssertionLine))
    with ledger(seeded) as store:  # folded by the schema put back: the audit agrees
        run(store, msgspec.structs.replace(assertion, assertion_id="one-more"))
        assert store.size() == 28
    assert cli.main(["audit", *db]) == 0
    assert cli.main(["rebuild", *db]) == 0
    capsys.readouterr()
    assert cli.main(["rebuild", *db]) == 0
    assert capsys.readouterr().out == "rebuilt every projection from 28 events\n"


def test_the_audit_names_view_indexes_and_triggers_that_are_not_this_versions(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows that still compare equal do not make the views right: a trigger added on a
    view table edits what the next fold writes, and a dropped index leaves every view to
    a full scan. The audit names both; verify notes a changed guard of the log."""
    conn = sqlite3.connect(seeded, isolation_level=None)
    conn.execute("DROP INDEX proj_assertions_view")
    conn.execute(_EDIT_A_FIGURE.format(name="edit"))
    conn.execute("DROP TRIGGER events_no_delete")
    conn.execute("CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT 1; END")
    conn.close()
    db = ["--db", str(seeded)]
    assert cli.main(["audit", *db]) == 1
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["problems"] == [
        "index proj_assertions_view on proj_assertions is missing (`ledger rebuild` puts it right)",
        "trigger edit on proj_assertions is unexpected (`ledger rebuild` puts it right)",
    ]
    assert cli.main(["verify", *db]) == 0
    [note] = json.loads(capsys.readouterr().out.splitlines()[-1])["notes"]
    assert note.startswith(
        "triggers on the tables of records are not this version's "
        "(trigger events_no_delete on events is changed)"
    )


@pytest.mark.parametrize(
    ("table", "note"),
    [
        ("api_keys", "table api_keys is gone: every API key with it"),
        ("idempotency", "table idempotency is gone: the remembered answers with it"),
    ],
)
def test_verify_and_the_audit_note_the_keys_or_answers_gone(
    seeded: Path, capsys: pytest.CaptureFixture[str], table: str, note: str
) -> None:
    """The keys or the remembered answers dropped leave the log as it was, but the server
    fails every request that needs them: both checks say so, and still pass."""
    conn = sqlite3.connect(seeded, isolation_level=None)
    conn.execute(f"DROP TABLE {table}")
    conn.close()
    for command in ("verify", "audit"):
        assert cli.main([command, "--db", str(seeded)]) == 0
        [said] = json.loads(capsys.readouterr().out.splitlines()[-1])["notes"]
        assert said.startswith(note), said


def test_verify_notes_the_erasure_records_table_gone(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `erasures` a lawful erasure can no longer be told from a deletion, and its
    guards go with it: verify says so (its triggers are not named apart from it)."""
    conn = sqlite3.connect(seeded, isolation_level=None)
    conn.execute("DROP TABLE erasures")
    conn.close()
    assert cli.main(["verify", "--db", str(seeded)]) == 0
    [note] = json.loads(capsys.readouterr().out.splitlines()[-1])["notes"]
    assert note.startswith("table erasures is gone")


def test_a_table_of_records_changed_is_named_and_left_as_it_is(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`merkle_nodes` copied without WITHOUT ROWID holds the same rows: verify says its
    definition is not this version's, and a rebuild leaves it (its rows are records) but
    puts back the guards that went with the old table."""
    conn = sqlite3.connect(seeded, isolation_level=None)
    conn.executescript(
        "CREATE TABLE m2 (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,"
        " PRIMARY KEY (level, idx));"
        "INSERT INTO m2 SELECT * FROM merkle_nodes;"
        "DROP TABLE merkle_nodes; ALTER TABLE m2 RENAME TO merkle_nodes;"
    )
    conn.close()
    db = ["--db", str(seeded)]
    assert cli.main(["verify", *db]) == 0
    notes = json.loads(capsys.readouterr().out.splitlines()[-1])["notes"]
    assert [n for n in notes if n.startswith("the definition of table merkle_nodes")], notes
    before = _schema(seeded)
    assert cli.main(["rebuild", *db]) == 0
    out = capsys.readouterr().out
    assert "table merkle_nodes" not in out
    assert "made trigger merkle_nodes_no_update on merkle_nodes again (it was missing)" in out
    assert {o for o in _schema(seeded) if o[2] == "merkle_nodes" and o[0] == "table"} == {
        o for o in before if o[2] == "merkle_nodes" and o[0] == "table"
    }


def test_a_refused_rebuild_leaves_the_schema_as_it_was(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The schema is put right in the rebuild's one transaction: a log that does not verify
    rolls it back with the rest, so no empty view table is left behind a checkpoint."""
    conn = sqlite3.connect(seeded, isolation_level=None)
    conn.execute("DROP TABLE proj_ranks")
    conn.close()
    _edit_payload(seeded)
    damaged = _schema(seeded)
    assert cli.main(["rebuild", "--db", str(seeded)]) == 1
    assert capsys.readouterr().out == ""
    assert _schema(seeded) == damaged


# ---- what a CLI probe found (session 26) ----


def _refused_early(raw: bytes, limit: int) -> bool:
    """What the pipe's copy stops at: a line the import refuses before decoding it."""
    return len(raw) > limit or raw.lstrip()[:1] != b"{"


_PIECES = [
    b'{"record": "source"}',
    b"",
    b" \x0b\r",  # blank to the import: ASCII spaces only
    b"\t {}",
    b"y",
    b"[1]",
    b"\xef\xbb\xbf{}",
    b"{" + b"x" * 40,
    b" " * 40,  # blank however long: the import skips it, never refuses it
    b"\t\x0c" * 20,
]


@given(
    pieces=st.lists(st.sampled_from(_PIECES), max_size=12),
    bom=st.booleans(),
    crlf=st.booleans(),
    from_line=st.integers(1, 8),
    block=st.integers(1, 16),
)
def test_a_pipe_is_copied_up_to_the_line_where_the_import_stops(
    pieces: list[bytes], bom: bool, crlf: bool, from_line: int, block: int
) -> None:
    """The copy of a pipe ends soon after the first line from `from_line` on that the
    import refuses without decoding (too long, or not beginning with `{`): every line up
    to it is in the copy as the pipe gave it, so the import reads the same lines up to
    where it stops; with no such line the copy is the whole stream."""
    limit = 24
    given_bytes = (b"\xef\xbb\xbf" if bom else b"") + (b"\r\n" if crlf else b"\n").join(pieces)
    out = io.BytesIO()
    cli._copy_to_a_refused_line(io.BytesIO(given_bytes), out, from_line, block, limit)
    copy = out.getvalue()
    assert given_bytes.startswith(copy)
    whole = list(_numbered_lines(io.BytesIO(given_bytes), limit=limit))
    stop = next(
        (n for n, raw in whole if n >= from_line and raw.strip() and _refused_early(raw, limit)),
        None,
    )
    if stop is None:
        assert copy == given_bytes
        return
    copied = dict(_numbered_lines(io.BytesIO(copy), limit=limit))
    for number, raw in whole[: stop - 1]:
        assert copied[number] == raw
    line = whole[stop - 1][1]  # the import says the same of it: whole, or too long in both
    assert copied[stop] == line or min(len(copied[stop]), len(line)) > limit


@pytest.mark.parametrize(
    "stream",
    [b"\0" * (8 << 20), b"y\n" * (4 << 20), b"a,b,c\n" * (2 << 20)],
    ids=["/dev/zero", "yes", "a CSV"],
)
def test_a_stream_that_is_no_json_lines_is_not_copied_whole(stream: bytes) -> None:
    out = io.BytesIO()
    cli._copy_to_a_refused_line(io.BytesIO(stream), out, 1)
    assert len(out.getvalue()) <= 2 << 20  # a block or two, not the 8 MiB given


def test_a_pipe_of_zeros_is_refused_at_line_1(tmp_path: Path) -> None:
    result = cli_piped(b"\0" * (16 << 20), "import", "/dev/stdin", "--db", str(tmp_path / "l.db"))
    assert result.returncode == 1
    assert b"line 1: line: longer than 1,048,576 bytes" in result.stderr
    assert list(tmp_path.glob(".ledger-import-*")) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
@pytest.mark.parametrize("command", [["verify"], ["events"], ["init"], ["keys", "list"]])
def test_a_pipe_or_a_device_given_as_the_ledger_is_refused(
    tmp_path: Path, command: list[str]
) -> None:
    """Opening a named pipe to read it waits for a writer for ever, and SQLite writes its
    journal beside a device (`/dev/null-journal`): neither is a ledger."""
    fifo = tmp_path / "f.db"
    os.mkfifo(fifo)
    result = cli_run(*command, "--db", str(fifo))
    assert (result.returncode, result.stderr) == (
        2,
        f"ledger: {fifo} is not a file (a pipe, a device or a socket), so not a ledger\n",
    )
    journal = Path("/dev/null-journal")
    there_before = journal.exists()
    device = cli_run(*command, "--db", "/dev/null")
    assert device.returncode == 2
    assert "/dev/null is not a file" in device.stderr
    assert journal.exists() == there_before


def test_events_names_a_gap_in_the_log(seeded: Path) -> None:
    """Events deleted from the file: the stream says which seqs are missing, as it says
    which payloads no longer decode, and exits 1 (the rest is still written)."""
    conn = sqlite3.connect(seeded, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_delete")
    conn.execute("DELETE FROM events WHERE seq IN (5, 9, 10)")
    conn.close()
    result = cli_run("events", "--db", str(seeded))
    assert result.returncode == 1
    seqs = [json.loads(line)["seq"] for line in result.stdout.splitlines()]
    assert seqs == [s for s in range(1, 28) if s not in (5, 9, 10)]
    assert result.stderr.splitlines()[-1] == (
        "ledger events: no event at seq 5, 9-10: the log was altered (events deleted); run "
        "`ledger verify`"
    )
    after = cli_run("events", "--after", "10", "--db", str(seeded))
    assert after.returncode == 0  # from 11 on, nothing is missing


def test_a_key_whose_token_cannot_be_written_out_is_revoked(seeded: Path) -> None:
    """Nobody received the token: a live key nobody holds would wait for whoever finds it."""
    with open("/dev/full", "w") as full:
        result = cli_run(
            "keys", "create", "--role", "admin", "--name", "lost", "--db", str(seeded), stdout=full
        )
    assert result.returncode == 1
    assert "key 'lost' was revoked at once" in result.stderr
    listed = cli_run("keys", "list", "--db", str(seeded))
    [lost] = [k for k in map(json.loads, listed.stdout.splitlines()) if k["name"] == "lost"]
    assert lost["revoked_at"] is not None


def test_a_login_name_the_ledger_cannot_record_is_named_as_user(seeded: Path) -> None:
    """`--actor` defaults to $USER: a bad one is named as $USER, never as a flag."""
    env = {**os.environ, "USER": "x" * 150}
    for command in (["import", str(SEED)], ["erase", "--seq", "9", "--reason", "a test"]):
        result = cli_run(*command, "--db", str(seeded), env=env)
        assert result.returncode == 2
        assert result.stderr == (
            "ledger: $USER: 1..100 characters, not 150 (give --actor NAME to record another name)\n"
        )
    given = cli_run("import", str(SEED), "--actor", "a", "--db", str(seeded), env=env)
    assert "$USER" not in given.stderr  # --actor given: $USER is not read


def test_a_backup_to_a_path_that_is_not_utf8_is_refused_in_a_line(
    seeded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = os.fsdecode(os.fsencode(str(tmp_path)) + b"/bk\xff.db")
    with pytest.raises(SystemExit) as leaving:
        cli.main(["backup", dest, "--db", str(seeded)])
    assert leaving.value.code == 2
    assert capsys.readouterr().err == (
        "ledger: DEST: the path is not UTF-8 text, which SQLite cannot write a copy to\n"
    )


def test_a_backup_stopped_while_it_verifies_leaves_nothing(
    seeded: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The copy takes its name only once verified: Ctrl-C (or SIGTERM) while it is checked
    leaves no unverified file where the backup was asked for, nor SQLite's files of it."""
    from ledger import verify

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(verify, "verify_log", stopped)
    folder = tmp_path / "backups"
    folder.mkdir()
    dest = folder / "bk.db"
    assert cli.main(["backup", str(dest), "--db", str(seeded)]) == 130
    assert capsys.readouterr().err == f"ledger backup: stopped; nothing was written at {dest}\n"
    assert list(folder.iterdir()) == []
    monkeypatch.undo()
    assert cli.main(["backup", str(dest), "--db", str(seeded)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert sorted(p.name for p in folder.iterdir()) == ["bk.db"]


def test_a_backup_stopped_after_its_copy_took_the_name_says_so(
    seeded: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Stopped between the link and its end (while the folder is synced): the verified copy
    is at DEST, and the message says so rather than "nothing was written"."""

    folder = tmp_path / "backups"
    folder.mkdir()
    real_open = os.open

    def stop_at_the_folder(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path) == folder:
            raise KeyboardInterrupt
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", stop_at_the_folder)
    dest = folder / "bk.db"
    assert cli.main(["backup", str(dest), "--db", str(seeded)]) == 130
    assert capsys.readouterr().err == (
        f"ledger backup: stopped; the verified copy is at {dest}, but its root was not compared\n"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["bk.db"]  # no partial left beside it
    monkeypatch.undo()
    assert cli.main(["verify", "--db", str(dest)]) == 0


def test_a_long_blank_line_is_skipped_from_a_pipe_as_from_a_file(tmp_path: Path) -> None:
    """The import skips a blank line whatever its length; the pipe's copy must not stop
    at one (it did: the lines after it were silently left out, exit 0)."""
    lines = SEED.read_bytes().splitlines(keepends=True)
    data = lines[0] + b" " * (3 << 20) + b"\n" + b"".join(lines[1:5])
    given = tmp_path / "blank.jsonl"
    given.write_bytes(data)
    from_file = cli_run("import", str(given), "--db", str(tmp_path / "a.db"))
    from_pipe = cli_piped(data, "import", "/dev/stdin", "--db", str(tmp_path / "b.db"))
    assert from_file.returncode == from_pipe.returncode == 0
    assert (
        from_file.stdout
        == from_pipe.stdout.decode()
        == ("imported 6 lines: 5 events appended (seq 1..5)\n")
    )
