"""The `ledger` command line, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "seed.jsonl"
S = "north-korea.russia-deployment"


def ledger(*args: str, db: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", *args, "--db", str(db)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ledger {args} failed ({result.returncode}): {result.stderr}")
    return result


def with_env(
    args: list[str], variables: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """`ledger ARGS` with `variables` set in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **variables},
        timeout=60,
    )


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    db = tmp_path / "l.db"
    out = ledger("import", str(SEED), db=db)
    assert "27 events appended" in out.stdout
    return db


def test_import_then_events_and_verify(seeded: Path) -> None:
    lines = ledger("events", db=seeded).stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(1, 28))
    assert set(events[0]) == {
        "seq",
        "type",
        "stream",
        "version",
        "recorded_at",
        "actor",
        "data",
        "data_sha256",
        "hash",
    }
    after = ledger("events", "--after", "25", db=seeded).stdout.splitlines()
    assert [json.loads(x)["seq"] for x in after] == [26, 27]
    assert ledger("events", "--after", "27", db=seeded).stdout == ""  # at the head: nothing yet
    past = ledger("events", "--after", "28", db=seeded, check=False)
    assert (past.returncode, past.stdout) == (2, "")
    assert "--after: is past the log's head: the log holds 27 events" in past.stderr
    report = json.loads(ledger("verify", db=seeded).stdout)
    assert report["ok"] is True
    assert report["events"] == 27


def test_import_stops_at_the_first_bad_line(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    bad = tmp_path / "bad.jsonl"
    good = SEED.read_text(encoding="utf-8").splitlines()
    broken = json.loads(good[20])
    broken["stated_at"] = "last fall"
    rows = [*good[:20], json.dumps(broken), *good[21:]]
    bad.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = ledger("import", str(bad), db=db, check=False)
    assert result.returncode == 1
    assert "line 21" in result.stderr
    assert "stated_at" in result.stderr
    events = ledger("events", db=db).stdout.splitlines()
    assert len(events) == 20  # the lines before it, nothing from it on


def test_import_names_an_unknown_claimant(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    bad = tmp_path / "bad.jsonl"
    line = json.loads(SEED.read_text(encoding="utf-8").splitlines()[-1])
    bad.write_text(json.dumps(line) + "\n", encoding="utf-8")
    result = ledger("import", str(bad), db=db, check=False)
    assert result.returncode == 1
    assert "line 1: claimants[0]" in result.stderr
    assert ledger("events", db=db).stdout == ""


def test_state_prints_the_view(seeded: Path) -> None:
    now = json.loads(ledger("state", S, "troops.deployed", db=seeded).stdout)
    assert now["estimate"]["low"] == 13000
    assert now["estimate"]["high"] == 15000
    feb = json.loads(ledger("state", S, "troops.deployed", "--as-of", "2025-02", db=seeded).stdout)
    assert (feb["estimate"]["low"], feb["estimate"]["high"]) == (10000, 12000)
    assert feb["as_of"] == "2025-02"
    status = json.loads(ledger("state", S, "deployment.status", db=seeded).stdout)
    assert status["status"] == "confirmed"
    assert status["since"] == "2025-04-28"
    early = json.loads(ledger("state", S, "deployment.status", "--seq", "14", db=seeded).stdout)
    assert early["seq"] == 14


def test_state_refuses_a_vague_time(seeded: Path) -> None:
    result = ledger("state", S, "troops.deployed", "--as-of", "last fall", db=seeded, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("ledger: --as-of: invalid time 'last fall'")


def test_keys_create_prints_the_token_last(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    out = ledger("keys", "create", "--role", "writer", "--name", "analyst", db=db).stdout
    token = out.strip().splitlines()[-1]
    assert token.startswith("ldg_")
    assert len(token) > 40
    listed = ledger("keys", "list", db=db).stdout
    assert "analyst" in listed
    assert token not in listed
    ledger("keys", "revoke", "analyst", db=db)
    again = ledger("keys", "revoke", "analyst", db=db, check=False)
    assert again.returncode == 1


def test_audit_passes_then_finds_a_tampered_payload(seeded: Path) -> None:
    import sqlite3

    assert json.loads(ledger("audit", db=seeded).stdout)["ok"] is True
    conn = sqlite3.connect(seeded)
    conn.execute("DROP TRIGGER payloads_no_update")
    conn.execute("UPDATE payloads SET data = replace(data, '10000', '90000') WHERE seq = 14")
    conn.commit()
    conn.close()
    result = ledger("audit", db=seeded, check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["first_bad_seq"] == 14
    assert ledger("verify", db=seeded, check=False).returncode == 1


def test_rebuild_keeps_the_views(seeded: Path) -> None:
    before = ledger("state", S, "casualties.killed_or_wounded", db=seeded).stdout
    ledger("rebuild", db=seeded)
    assert ledger("state", S, "casualties.killed_or_wounded", db=seeded).stdout == before


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (
            b'{"record":"source","id":"y","name":"\xff\xfe","kind":"military"}\n',
            "not UTF-8 text: byte 0xff at offset 36 of the line, from 0",
        ),
        (b"[" * 200_000 + b"\n", "nested too deeply"),
        (b'{"record":"sauce","id":"y"}\n', "record: must be one of"),
        (b'{"record":[],"id":"y"}\n', "record: must be one of"),
        (
            b'{"record":"source","id":"y","name":"Y","kind":"military","name":"Z"}\n',
            "name: given more than once",
        ),
        (
            b'{"record":"source","id":"y","name":"Y","kind":"military","name":"Z","kind":1}\n',
            "name: given more than once in its object (give it once); kind: given more",
        ),
    ],
    ids=[
        "invalid-utf8",
        "deep-nesting",
        "unknown-record",
        "a list as record",
        "a key twice",
        "keys twice, one wrong",
    ],
)
def test_import_names_a_malformed_line(tmp_path: Path, content: bytes, why: str) -> None:
    db = tmp_path / "l.db"
    bad = tmp_path / "bad.jsonl"
    first = b'{"record":"source","id":"x","name":"X","kind":"military"}\n'
    bad.write_bytes(first + content)
    result = ledger("import", str(bad), db=db, check=False)
    assert result.returncode == 1
    assert "line 2" in result.stderr
    assert why in result.stderr
    assert "Traceback" not in result.stderr
    assert len(ledger("events", db=db).stdout.splitlines()) == 1


@pytest.mark.parametrize(
    "command", [["verify"], ["audit"], ["events"], ["rebuild"], ["state", S, "troops.deployed"]]
)
def test_a_missing_ledger_is_an_error_not_a_new_one(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "mistyped.db"
    result = ledger(*command, db=db, check=False)
    assert result.returncode == 2, result
    assert f"{db}: no ledger there" in result.stderr
    assert "ledger init" in result.stderr
    assert result.stdout == ""
    assert not list(tmp_path.iterdir())  # nothing was created


@pytest.mark.parametrize("kind", ["empty file", "another database", "folder"])
def test_what_is_not_a_ledger_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "x.db"
    if kind == "empty file":
        db.touch()
    elif kind == "another database":
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.commit()
        conn.close()
    else:
        db.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()}
    for command in (["verify"], ["audit"], ["rebuild"]):
        result = ledger(*command, db=db, check=False)
        assert result.returncode == 2, result
        assert ("is a folder" if kind == "folder" else "is not a ledger") in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -wal, no -shm
    assert {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()} == sizes


def test_init_then_verify_an_empty_ledger(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    assert "0 events" in ledger("init", db=db).stdout
    assert json.loads(ledger("verify", db=db).stdout)["ok"] is True


def test_import_skips_a_byte_order_mark(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    marked = tmp_path / "marked.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + SEED.read_bytes())
    assert "27 events appended" in ledger("import", str(marked), db=db).stdout
    # only at the very start: a mark inside the file is still a bad line
    inside = tmp_path / "inside.jsonl"
    inside.write_bytes(SEED.read_bytes() + b"\xef\xbb\xbf" + SEED.read_bytes().splitlines()[0])
    result = ledger("import", str(inside), db=tmp_path / "m.db", check=False)
    assert result.returncode == 1
    assert f"line {len(SEED.read_bytes().splitlines()) + 1}" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["init"],
        ["import", str(SEED)],
        ["keys", "create", "--role", "reader"],
        ["serve", "--port", "1"],
    ],
)
def test_a_path_that_cannot_hold_a_ledger_is_one_line(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "no-such-folder" / "l.db"
    result = ledger(*command, db=db, check=False)
    assert result.returncode == 2, result  # a wrong argument, as a folder given for it is
    assert result.stderr.strip() == (
        f"ledger: {db}: there is no folder {db.parent} to create the ledger in"
    )
    assert not (tmp_path / "no-such-folder").exists()


@pytest.mark.parametrize("command", [["events"], ["verify"]])
def test_a_reader_that_leaves_early_is_not_an_error_trace(seeded: Path, command: list[str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", *command, "--db", str(seeded)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # like `| head -c 0`: every write meets a closed pipe
    stderr = process.stderr.read().decode()
    assert process.wait(60) == 141, stderr  # as if killed by SIGPIPE; 1 would mean "FAILED"
    assert stderr == ""


def test_import_checks_its_file_and_actor_before_making_a_ledger(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    folder = ledger("import", str(tmp_path), db=db, check=False)
    assert (folder.returncode, folder.stderr.strip()) == (
        2,
        f"ledger: {tmp_path} is a folder, not a file",
    )
    missing = ledger("import", str(tmp_path / "nope.jsonl"), db=db, check=False)
    assert missing.returncode == 2
    assert "No such file" in missing.stderr
    for actor in ("", "   ", "a\nb", "alice\n", "\x1b[31mred", "\u202eevil", "x" * 101):
        bad = ledger("import", str(SEED), "--actor", actor, db=db, check=False)
        assert bad.returncode == 2, actor
        assert bad.stderr.startswith("ledger: --actor: "), bad.stderr
    assert not db.exists()
    named = ledger("keys", "create", "--role", "reader", "--name", "a\nb", db=db, check=False)
    assert named.returncode == 2
    assert named.stderr.startswith("ledger: --name: ")


@pytest.mark.parametrize("port", ["abc", "70000", " 9000", "\u0669\u0660\u0660\u0660"])
def test_a_bad_port_in_the_environment_is_refused_like_the_flag(tmp_path: Path, port: str) -> None:
    db = tmp_path / "l.db"
    serve = with_env(["serve", "--db", str(db)], {"PORT": port})
    assert serve.returncode == 2
    assert serve.stderr.startswith("ledger: $PORT: "), serve.stderr  # not a flag never typed
    assert not db.exists()
    init = with_env(["init", "--db", str(db)], {"PORT": port})  # other commands never read it
    assert init.returncode == 0


@pytest.mark.parametrize(("text", "message"), [("-0", "not a whole number"), ("-5", "negative")])
def test_a_sign_is_refused(tmp_path: Path, text: str, message: str) -> None:
    result = ledger("events", "--after", text, db=tmp_path / "l.db", check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    assert "(0 events)" in ledger("init", db=db).stdout
    one = tmp_path / "one.jsonl"
    one.write_text(SEED.read_text().splitlines()[0] + "\n")
    assert (
        "imported 1 line: 1 event appended (seq 1..1)" in ledger("import", str(one), db=db).stdout
    )
    assert "(1 event)" in ledger("init", db=db).stdout
    assert ledger("rebuild", db=db).stdout == "rebuilt every projection from 1 event\n"


def test_a_refused_command_creates_no_ledger(tmp_path: Path) -> None:
    """A name or a line number refused, a key to list or revoke where no ledger is: exit 2
    and no new file (the ledger was created before the check)."""
    one_line = tmp_path / "one.jsonl"
    one_line.write_bytes(SEED.read_bytes().splitlines(keepends=True)[0])
    refused = [
        ("keys", "create", "--role", "admin", "--name", "bad\tname"),
        ("import", str(one_line), "--from-line", "2"),
        ("keys", "revoke", "nobody"),
        ("keys", "list"),
    ]
    for n, command in enumerate(refused):
        db = tmp_path / f"l{n}.db"
        result = ledger(*command, db=db, check=False)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
        assert not db.exists(), command
    assert (
        "one.jsonl has 1 line: there is no line 2"
        in ledger(
            "import", str(one_line), "--from-line", "2", db=tmp_path / "x.db", check=False
        ).stderr
    )


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("LEDGER_DB", ":memory:", ["verify"]),
        ("LEDGER_DB", "folder/", ["init"]),
        ("HOST", "no host", ["serve"]),
        ("PORT", "0", ["serve"]),
    ],
)
def test_a_bad_default_from_the_environment_names_the_variable(
    tmp_path: Path, variable: str, value: str, command: list[str]
) -> None:
    args = command if variable == "LEDGER_DB" else [*command, "--db", str(tmp_path / "l.db")]
    result = with_env(args, {variable: value}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"ledger: ${variable}: "), result.stderr
    assert "argument" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    # a flag given instead: the variable is not read
    given = with_env(["init", "--db", str(tmp_path / "ok.db")], {variable: value}, tmp_path)
    assert given.returncode == 0, given.stderr


@pytest.mark.parametrize("name", ["", "folder/"])
def test_an_empty_file_name_or_a_folders_is_refused(tmp_path: Path, name: str) -> None:
    as_file = ledger("import", name, db=tmp_path / "l.db", check=False)
    assert as_file.returncode == 2
    assert "a file name is needed" in as_file.stderr or "folder" in as_file.stderr
    as_db = subprocess.run(
        [sys.executable, "-m", "api.cli", "init", "--db", f"{tmp_path / 'new'}/"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert as_db.returncode == 2
    assert "names a folder: a ledger is a file" in as_db.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_path_the_system_will_not_look_at_is_one_line(tmp_path: Path, seeded: Path) -> None:
    """A name too long for the file system (as a permission refused on a folder): one line,
    exit 2, never a traceback; for the ledger, the file to import, the backup's copy."""
    long = tmp_path / ("x" * 300 + ".db")
    calls = [
        ledger("verify", db=long, check=False),
        ledger("init", db=long, check=False),
        ledger("import", str(long), db=tmp_path / "new.db", check=False),
        ledger("backup", str(long), db=seeded, check=False),
    ]
    for result in calls:
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("ledger: "), result.stderr
        assert "File name too long" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "new.db").exists()


def test_with_standard_error_closed_a_command_still_does_its_work(seeded: Path) -> None:
    """`2>&-`: the messages have nowhere to go, the result still goes to standard output."""
    for args, expected in (
        (["verify"], '"ok":true'),
        (["keys", "create", "--role", "reader"], "the token is shown only once"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "api.cli", *args, "--db", str(seeded)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            timeout=60,
            pass_fds=(),
            preexec_fn=lambda: os.close(2),
        )
        assert result.returncode == 0, args
        assert expected in result.stdout


@pytest.mark.parametrize(("level", "code"), [("info", 0), ("", 0), ("Debug", 0), ("loud", 2)])
def test_the_log_level_is_read_in_any_case_and_a_wrong_one_named(
    seeded: Path, level: str, code: int
) -> None:
    result = with_env(["verify", "--db", str(seeded)], {"LEDGER_LOG_LEVEL": level})
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    if code:
        assert result.stderr.startswith("ledger: $LEDGER_LOG_LEVEL: 'loud' is not a level")
        assert result.stdout == ""
    else:
        assert json.loads(result.stdout)["ok"] is True
