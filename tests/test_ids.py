"""Server-made assertion ids (`ledger.domain.uuid7`): RFC 9562 version 7, never repeated."""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest

from ledger.domain import uuid7

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_an_id_is_a_version_7_uuid_of_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000
    assert UUID7.fullmatch(made)
    parsed = uuid.UUID(made)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_ids_do_not_repeat_past_the_random_pool() -> None:
    made = [uuid7() for _ in range(5_000)]  # ~12 draws of the 4 KiB pool
    assert len(set(made)) == len(made)
    assert len({m[14:] for m in made}) == len(made)  # the random part alone differs


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    uuid7()  # the pool holds bytes the child would otherwise inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.write(write, uuid7().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    mine = uuid7()
    assert UUID7.fullmatch(child)
    assert child[14:] != mine[14:]
