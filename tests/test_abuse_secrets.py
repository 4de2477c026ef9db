"""Secrets: a token is shown once, stored only as its SHA-256, compared in constant time,
and never written to a log, a response or the database file."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from pathlib import Path

import httpx
import pytest

from ledger import keys
from scripts.crash_rounds import Server, create_token, ledger_cli
from tests.api_helpers import assertion_body, make_ledger


def test_a_token_is_shown_once_and_stored_as_its_digest(tmp_path: Path) -> None:
    db = make_ledger(tmp_path).db
    created = ledger_cli("keys", "create", "--role", "writer", "--name", "once", "--db", str(db))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith(keys.TOKEN_PREFIX)
    assert created.stdout.count(token) == 1
    assert token not in created.stderr

    listed = ledger_cli("keys", "list", "--db", str(db))
    assert listed.returncode == 0
    assert "once" in listed.stdout
    assert token not in listed.stdout + listed.stderr

    conn = sqlite3.connect(db)
    try:
        [(digest,)] = conn.execute("SELECT token_sha256 FROM api_keys WHERE name = 'once'")
    finally:
        conn.close()
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    secret = token.removeprefix(keys.TOKEN_PREFIX).encode()
    for path in db.parent.glob(db.name + "*"):  # the file, its WAL and shared memory
        assert secret not in path.read_bytes(), path


def test_tokens_are_compared_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = make_ledger(tmp_path)
    calls: list[tuple[str, str]] = []
    compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # ledger.keys looks it up per call
    conn = sqlite3.connect(ledger.db)
    try:
        key = keys.authenticate(conn, ledger.tokens["reader"])
        assert key is not None
        assert key.role == "reader"
        assert calls
        assert keys.authenticate(conn, ledger.tokens["reader"] + "x") is None
        assert keys.authenticate(conn, ledger.tokens["revoked"]) is None
    finally:
        conn.close()


def test_tokens_never_reach_logs_or_answers(tmp_path: Path) -> None:
    """A real server at DEBUG, asked with good, near-miss, revoked and misplaced tokens."""
    ledger = make_ledger(tmp_path)
    writer = create_token(ledger.db, "writer", "logged-writer")
    secrets = [writer, *ledger.tokens.values()]
    log_path = tmp_path / "server.log"
    server = Server.start(ledger.db, log_path, level="DEBUG")
    answers: list[httpx.Response] = []
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            good = {"Authorization": f"Bearer {writer}"}
            answers += [
                http.get("/v1/log/head", headers=good),
                http.post("/v1/assertions", json=assertion_body(), headers=good),
                http.post("/v1/assertions", json={"bogus": writer}, headers=good),
                http.post(
                    "/v1/assertions",
                    json=assertion_body(),
                    headers={**good, "Idempotency-Key": "k", "If-Match": writer},
                ),
                http.get("/v1/log/head", headers={"Authorization": f"Bearer {writer}x"}),
                http.get("/v1/log/head", headers={"Authorization": f"Basic {writer}"}),
                http.get("/v1/log/head", headers={"Authorization": writer}),
                http.get(
                    "/v1/log/head",
                    headers={"Authorization": f"Bearer {ledger.tokens['revoked']}"},
                ),
                http.post(
                    "/v1/audit", headers={"Authorization": f"Bearer {ledger.tokens['reader']}"}
                ),
            ]
    finally:
        assert server.stop() == 0
    logged = log_path.read_text()
    assert "request" in logged  # the access log did write at DEBUG
    for token in secrets:
        secret = token.removeprefix(keys.TOKEN_PREFIX)
        assert secret not in logged
        for answer in answers:
            assert secret not in answer.text
            assert all(secret not in value for value in answer.headers.values())
    assert [a.status_code for a in answers[:2]] == [200, 201]
    assert [a.status_code for a in answers[4:9]] == [401, 401, 401, 401, 403]
