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
