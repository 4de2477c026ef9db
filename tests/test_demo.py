"""`ledger serve --demo`: what it prints is what works, with reads public or not."""

from __future__ import annotations

import shlex
from pathlib import Path

import httpx
import pytest

from tests.browser import running_server


@pytest.mark.parametrize("public_read", [True, False], ids=["public-reads", "token-reads"])
def test_the_banner_commands_work_as_printed(tmp_path: Path, public_read: bool) -> None:
    with running_server(tmp_path, public_read=public_read) as server:
        banner = server.log.read_text()
        tries = [shlex.split(line) for line in banner.splitlines() if "curl -s" in line]
        assert len(tries) == 3, banner
        assert ("public reads on" in banner) is public_read
        for words in tries:
            url = words[-1]
            headers = dict(
                words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H"
            )
            assert ("Authorization" in headers) is not public_read
            answer = httpx.get(url, headers=headers, timeout=10)
            assert answer.status_code == 200, (url, answer.text)
            assert answer.json()["subject"] == "north-korea.russia-deployment"


def test_a_demo_started_again_revokes_the_key_it_made_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each start prints a new admin token; the one printed before stops working, so a
    demo ledger started again and again does not gather live admin keys."""
    from api.server import DEMO_KEY, load_demo
    from ledger import keys
    from ledger.sqlite_store import connect

    db = str(tmp_path / "l.db")
    first = load_demo(db)
    second = load_demo(db)
    assert first != second
    conn = connect(db)
    try:
        made = [k for k in keys.list_keys(conn) if k.name.startswith(f"{DEMO_KEY}-")]
        assert [k.revoked_at is None for k in made] == [False, True]
        assert keys.authenticate(conn, first) is None  # refused from now on
        assert keys.authenticate(conn, second) is not None
        other, _ = keys.create_key(conn, "reader", "someone")
    finally:
        conn.close()
    load_demo(db)  # a key made otherwise is left alone
    conn = connect(db)
    try:
        [kept] = [k for k in keys.list_keys(conn) if k.name == other.name]
        assert kept.revoked_at is None
    finally:
        conn.close()
    assert f"revoked the key of an earlier demo start, '{made[0].name}'" in capsys.readouterr().out
