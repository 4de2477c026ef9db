"""`scripts/check_log.py`, the outsider's checker: its RFC 8785 and RFC 9162 code against
the ledger's proofs and an independent JCS, then the whole command against a real server,
a log that was only appended to, a kept head that was rewritten and a payload edited in
the file."""

from __future__ import annotations

import ast
import json
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from ledger.codec import encode_json
from ledger.sqlite_store import SqliteStore
from scripts import check_log
from tests.api_helpers import assertion_body
from tests.browser import LEDGER, running_server
from tests.factories import ledger, quantity, run, seed_commands

SCRIPT = Path(check_log.__file__)


def test_the_checker_needs_nothing_but_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, None, "x"], "é": '\u2028 \x01 \x1f \x7f "q" \\ \n'},
        {"\U0001f600": 1, "\ue000": 2, "z": {"y": [], "x": {}}},  # UTF-16 order of keys
        ["caf\u00e9", -(2**53) + 1, 2**53 - 1, 0, "\ud7ff"],
    ],
)
def test_its_json_is_rfc_8785(value: Any) -> None:
    assert check_log.jcs(value).encode() == rfc8785.dumps(value)


def test_a_float_is_refused() -> None:
    with pytest.raises(ValueError, match="not an integer"):
        check_log.jcs({"a": 1.5})


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    """The seed and ten more claims: 37 events, so trees of every shape up to 37 leaves."""
    with ledger(tmp_path_factory.mktemp("log") / "l.db") as store:
        run(store, *seed_commands())
        for n in range(10):
            run(store, quantity(n, n + 1, stated_at="2025", subject="s", claimants=("kr-intel",)))
        yield store


def _root(store: SqliteStore, size: int) -> bytes:
    return bytes.fromhex(store.root(size))


def test_its_proofs_agree_with_the_ledger_for_every_size(small_log: SqliteStore) -> None:
    store = small_log
    total = store.size()
    events = store.read(0, total)
    rng = random.Random(7)
    builder = check_log.RootBuilder()
    assert builder.root() == _root(store, 0)
    for size in range(1, total + 1):
        builder.add(check_log.leaf_hash(_wire(events[size - 1])))
        root = _root(store, size)
        assert builder.root() == root
        for seq in range(1, size + 1):
            proof = store.inclusion_proof(seq, size)
            path = [bytes.fromhex(p) for p in proof.path]
            leaf = check_log.leaf_hash(_wire(events[seq - 1]))
            assert check_log.inclusion_holds(seq - 1, size, leaf, path, root)
            if size > 1:  # the same proof for another leaf's place fails
                assert not check_log.inclusion_holds(seq % size, size, leaf, path, root)
            if path:
                bad = list(path)
                bad[rng.randrange(len(bad))] = bytes(32)
                assert not check_log.inclusion_holds(seq - 1, size, leaf, bad, root)
        for old in range(1, size + 1):
            proof_c = store.consistency_proof(old, size)
            path = [bytes.fromhex(p) for p in proof_c.path]
            old_root = _root(store, old)
            assert check_log.consistency_holds(old, size, old_root, root, path)
            assert not check_log.consistency_holds(old, size, bytes(32), root, path)
            if path:
                bad = list(path)
                bad[rng.randrange(len(bad))] = bytes(32)
                assert not check_log.consistency_holds(old, size, old_root, root, bad)
    assert check_log.consistency_holds(0, total, bytes(32), _root(store, total), [])


def _wire(event: object) -> dict[str, Any]:
    """An event as `GET /v1/events` gives it."""
    decoded: dict[str, Any] = json.loads(encode_json(event))
    return decoded


# ---- the command against a real server ----


def _check(base: str, token: str, *args: str) -> tuple[int, str, str]:
    """The script run as an outsider runs it: its own process, no project on its path."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), base, "--token", token, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow
def test_the_checker_against_a_real_server(tmp_path: Path) -> None:
    state = tmp_path / "kept-head.json"
    with running_server(tmp_path, public_read=False) as server:
        code, out, err = _check(server.base, server.token, "--state", str(state), "--all")
        assert code == 0, err
        assert "all 27 events" in out
        assert json.loads(state.read_text())["size"] == 27

        for n in range(3):  # the log grows: the kept head is a prefix of the new one
            server.post("/v1/assertions", assertion_body(quote=f"a quote {n}"))
        code, out, err = _check(server.base, server.token, "--state", str(state), "--seq", "29")
        assert code == 0, err
        assert "consistent with the head kept" in out
        assert json.loads(state.read_text())["size"] == 30

        kept = json.loads(state.read_text())  # a head that this log does not extend
        forged = {**kept, "root": "00" * 32}
        state.write_text(json.dumps(forged))
        code, _, err = _check(server.base, server.token, "--state", str(state))
        assert code == 1
        assert "does not extend" in err
        assert json.loads(state.read_text()) == forged  # a failed check keeps nothing
        state.write_text(json.dumps({"size": 31, "root": kept["root"]}))
        code, _, err = _check(server.base, server.token, "--state", str(state))
        assert (code, "shrank" in err) == (1, True)

        # a payload edited in the file, around its append-only triggers
        conn = sqlite3.connect(tmp_path / "l.db")
        seq, data = conn.execute(
            "SELECT p.seq, p.data FROM payloads p JOIN events e ON e.seq = p.seq "
            "WHERE e.type = 'AssertionRecorded' ORDER BY p.seq LIMIT 1 OFFSET 3"
        ).fetchone()
        edited = json.loads(data)
        edited["quote"] += " (edited)"
        conn.execute("DROP TRIGGER payloads_no_update")
        conn.execute("UPDATE payloads SET data = ? WHERE seq = ?", (json.dumps(edited), seq))
        conn.commit()
        conn.close()
        code, _, err = _check(server.base, server.token, "--all")
        assert code == 1
        assert f"seq {seq}: the payload does not hash to its data_sha256" in err
        code, _, err = _check(server.base, server.token, "--seq", str(seq))
        assert (code, f"seq {seq}" in err) == (1, True)

        code, _, err = _check(server.base, "ldg_not-a-token", "--all")
        assert code == 2
        assert "401" in err
    code, _, err = _check(server.base, server.token)
    assert code == 2  # the server is gone


@pytest.mark.slow
def test_the_checker_tells_a_logged_erasure_from_a_payload_deleted_by_other_means(
    tmp_path: Path,
) -> None:
    db = tmp_path / "l.db"
    with running_server(tmp_path, public_read=False) as server:
        conn = sqlite3.connect(db)
        first, second = (
            seq
            for (seq,) in conn.execute(
                "SELECT seq FROM events WHERE type = 'AssertionRecorded' ORDER BY seq LIMIT 2"
            )
        )
        conn.close()
        kept = server.get("/v1/log/head")  # a head taken before the erasure
        erased = subprocess.run(
            [
                str(LEDGER),
                "erase",
                "--db",
                str(db),
                "--seq",
                str(first),
                "--reason",
                "a court order",
            ],
            capture_output=True,
            check=False,  # exit 1 only says the running server kept the WAL from being emptied
            text=True,
        )
        code, out, err = _check(server.base, server.token, "--all")
        assert "erased the payload of seq" in erased.stdout, erased.stderr
        assert code == 0, err
        assert "all 28 events" in out  # the erasure is an event of its own
        assert "(1 payloads erased, each erasure logged)" in out
        logged = server.get("/v1/events", after=27, limit=1)["items"][0]
        assert (logged["type"], logged["data"]) == (
            "PayloadErased",
            {"seq": first, "reason": "a court order"},
        )
        # a check of the head kept before it (an erasure made while the check ran) finds
        # the erasure logged past that head, and does not call the payload deleted
        said: list[str] = []
        outsider = check_log.Server(server.base, server.token, 30)
        found, gone = check_log.check_events(
            outsider, kept["size"], bytes.fromhex(kept["root"]), said.append
        )
        assert (found, gone) == ([], 1)
        assert any(f"seq {first} was erased while the check ran" in line for line in said)
        # one event: the erasure that logs it is found and proved, past that head too
        code, out, err = _check(server.base, server.token, "--seq", str(first))
        assert code == 0, err
        assert f"seq {first}: payload erased by law (logged at seq 28, which holds)" in out
        assert check_log.check_included(
            outsider, first, kept["size"], bytes.fromhex(kept["root"])
        ) == (
            [],
            f"seq {first}: payload erased by law (logged at seq 28, which holds) and "
            "inclusion proof hold",
        )

        conn = sqlite3.connect(db)  # a payload deleted around the append-only triggers
        conn.execute("DROP TRIGGER payloads_no_delete")
        conn.execute("DELETE FROM payloads WHERE seq = ?", (second,))
        conn.commit()
        conn.close()
        code, _, err = _check(server.base, server.token, "--all")
        assert code == 1
        missing = f"seq {second}: the payload is not there and no PayloadErased logs its erasure"
        assert missing in err
        assert f"seq {first}" not in err
        code, out, err = _check(server.base, server.token, "--seq", str(second))
        assert (code, "hold" in out, missing in err) == (1, False, True)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--seq", "01"),
        ("--seq", "+5"),
        ("--seq", "\N{ARABIC-INDIC DIGIT FIVE}"),
        ("--seq", "0"),
        ("--seq", "-1"),
        ("--seq", "1" + "0" * 30),
        ("--seq", "5.0"),
        ("--timeout", "nan"),
        ("--timeout", "0"),
        ("--timeout", "-3"),
        ("--timeout", "inf"),
    ],
)
def test_a_flag_out_of_range_is_a_usage_error_not_a_failed_log(flag: str, value: str) -> None:
    """Refused before anything is asked (no server listens here): exit 2 naming the flag,
    never taken as another number, nor reported as the log failing its check."""
    code, out, err = _check("http://127.0.0.1:9", "t", flag, value)
    assert (code, out) == (2, "")
    assert f"argument {flag}: not a" in err
    assert "FAILED" not in err
