"""Context, no target: the PostgreSQL store of the log against the SQLite one, same run.

The same jobs on each store with no projector, the two taking turns (A B A B): appends of
one event per call from 16 threads, each acknowledged once durable (PostgreSQL with its
default settings, fsync and `synchronous_commit` on; SQLite with `synchronous=FULL`),
then the whole log read back with `scan`, best of five. PostgreSQL runs on a throwaway
local server (`tests/pg_server.py`), or on `LEDGER_TEST_POSTGRES_DSN`'s; without psycopg
or a server the scenario is skipped with a message.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from bench.common import Result, flush_disk, median, remove_db, say, timed_threads
from ledger.events import AssertionRecorded, Document, NewEvent, Value
from ledger.sqlite_store import SqliteStore

CALLERS = 16
ROUNDS = 2
READS = 5


def _events(count: int) -> list[NewEvent]:
    return [
        NewEvent(
            f"subject:s{i % 1000}",
            AssertionRecorded(
                assertion_id=f"a-{i}",
                subject=f"s{i % 1000}",
                property="troops.deployed",
                value=Value(low=i, high=2 * i + 1, best=i + 1),
                claimants=("src-1",),
                stated_at="2025-03",
                document=Document(publisher="Agency", published_at="2025-03-02"),
                quote=f"about {i} troops were sent",
            ),
        )
        for i in range(count)
    ]


def _appends(store: Any, events: list[NewEvent]) -> float:
    share = len(events) // CALLERS

    def caller(i: int) -> None:
        for new in events[i * share : (i + 1) * share]:
            store.append_sync(new.stream, [new], "bench")

    return share * CALLERS / timed_threads(caller, CALLERS)


def _scan(store: Any) -> float:
    best = 0.0
    for _ in range(READS):
        start = time.perf_counter()
        count = sum(1 for _ in store.scan())
        best = max(best, count / (time.perf_counter() - start))
    return best


def _skipped(reason: str) -> list[Result]:
    say(f"postgres: skipped, {reason}")
    return [
        Result("pg", "PostgreSQL store (skipped)", 0.0, "appends/s", "(context)", None,
               notes=[f"skipped: {reason}"])
    ]  # fmt: skip


def bench_postgres(work: Path, events: int) -> list[Result]:
    try:
        from ledger.postgres_store import PostgresStore
        from tests.pg_server import NoServer, server
    except ImportError as exc:
        return _skipped(f"psycopg is not installed ({exc})")
    jobs = _events(events)
    say(f"postgres: {events:,} appends from {CALLERS} callers, then scans, on each store")
    flush_disk("postgres")
    ours: dict[str, list[float]] = {"pg": [], "sqlite": [], "pg_scan": [], "sqlite_scan": []}
    try:
        with server(durable=True) as dsn:
            for round_ in range(ROUNDS):
                pg = PostgresStore(dsn, schema=f"bench_{secrets.token_hex(6)}")
                try:
                    ours["pg"].append(_appends(pg, jobs))
                    ours["pg_scan"].append(_scan(pg))
                finally:
                    pg.close()
                path = work / "bench-log-only.db"
                remove_db(path)
                lite = SqliteStore(path)
                try:
                    ours["sqlite"].append(_appends(lite, jobs))
                    ours["sqlite_scan"].append(_scan(lite))
                finally:
                    lite.close()
                    remove_db(path)
                say(
                    f"postgres: round {round_ + 1}: {ours['pg'][-1]:,.0f} against "
                    f"{ours['sqlite'][-1]:,.0f} appends/s, scans {ours['pg_scan'][-1]:,.0f} "
                    f"against {ours['sqlite_scan'][-1]:,.0f} events/s"
                )
    except NoServer as exc:
        return _skipped(str(exc))
    rows = []
    for key, name, unit in (
        ("pg", f"PostgreSQL store: {events:,} appends, {CALLERS} callers", "appends/s"),
        ("pg_scan", "PostgreSQL store: the whole log read back, scan", "events/s"),
    ):
        value, base = median(ours[key]), median(ours[key.replace("pg", "sqlite")])
        rows.append(
            Result(
                "pg",
                name,
                value,
                unit,
                "(context)",
                None,
                baseline=base,
                baseline_name="the SQLite store, same job, log only",
                ratio=value / base,
                notes=[f"rounds: {', '.join(f'{v:,.0f}' for v in ours[key])}"],
            )
        )
    return rows
