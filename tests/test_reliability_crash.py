"""`kill -9` the real server while 32 clients append, twice; no acknowledged append is lost.

The harness is `scripts/crash_rounds.py`, which runs 200 such rounds (figures in
docs/reliability.md). Each round here checks, after the restart, that every 201 is
there with its seq and hash, the seqs have no gap and the chain recomputes, and that each
request cut off by the kill, retried with its Idempotency-Key, lands exactly once; then
`ledger verify` and `ledger audit` exit 0 and `PRAGMA integrity_check` is ok.
"""

from __future__ import annotations

import io
from pathlib import Path

from scripts import crash_rounds


def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    out = io.StringIO()
    figures = crash_rounds.run(
        tmp_path, rounds=2, clients=32, kill_window=(0.3, 0.6), check_every=2, seed=7, out=out
    )
    assert figures.rounds == 2, out.getvalue()
    assert sum(figures.acked) > 0, out.getvalue()
    assert figures.size >= sum(figures.acked) + 1  # + the source
    assert len(figures.verify_s) == 1
