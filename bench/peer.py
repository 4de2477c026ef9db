"""Target 6: the ledger against `eventsourcing` 9.5.6 on SQLite, same jobs, same run.

1. 20,000 appends, one event per call, from concurrent callers (threads), each call
   acknowledged only once durable. For the ledger a call is a whole `RecordAssertion`:
   rules, hash chain, Merkle nodes and projections; its writer commits whatever calls are
   waiting together (group commit). For eventsourcing it is `Application.save` of one
   new event.
2. Reading the whole log back, decoded into events.
3. A state-at-version question on a 20,000-event history: for the ledger the quantity
   view of a property with 20,000 claims at that log position; for eventsourcing
   `repository.get(id, version=...)`, which replays the aggregate's events.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from bench import gen
from bench.common import Result, flush_disk, median, remove_db, say, timed_threads
from ledger.commands import RecordAssertion, RegisterSource
from ledger.service import execute_sync
from ledger.sqlite_store import SqliteStore
from projections import all_projectors
from projections.pit import resolve
from projections.views import quantity_view

CALLERS = 16
HISTORY_PROP = "troops.deployed"


def _claims(count: int, seed: int, subject: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in gen.lines(count, seed=seed):
        if line["record"] != "assertion":
            continue
        line.pop("record")
        line.pop("supersedes", None)
        line.pop("assertion_id")
        if subject is not None:
            line["subject"], line["property"] = subject, HISTORY_PROP
            if "status" in line["value"]:
                line["value"] = {"low": 100, "high": 200}
            line["mode"] = line.get("mode", "total")
        out.append(line)
    return out[:count]


def _sources() -> list[RegisterSource]:
    return [
        msgspec.convert({k: v for k, v in line.items() if k != "record"}, RegisterSource)
        for line in gen.lines(0)
    ]


def _open(path: Path) -> SqliteStore:
    remove_db(path)
    store = SqliteStore(path, all_projectors())
    for source in _sources():
        execute_sync(store, source, "bench")
    return store


def _our_appends(store: SqliteStore, claims: list[dict[str, Any]]) -> float:
    commands = [msgspec.convert(c, RecordAssertion) for c in claims]
    share = len(commands) // CALLERS

    def caller(i: int) -> None:
        for command in commands[i * share : (i + 1) * share]:
            execute_sync(store, command, "bench")

    return timed_threads(caller, CALLERS)


def _our_read(store: SqliteStore) -> tuple[int, float]:
    """The whole log as a reader of all of it takes it: one scan, decoded as it streams."""
    start = time.perf_counter()
    count = sum(1 for _ in store.scan())
    return count, time.perf_counter() - start


def _our_pages(store: SqliteStore) -> tuple[int, float]:
    """The whole log in pages of 1,000 (`GET /v1/events`'s largest), for context."""
    start = time.perf_counter()
    count, after = 0, 0
    while page := store.read(after, 1000):
        count += len(page)
        after = page[-1].seq
    return count, time.perf_counter() - start


def _our_history(store: SqliteStore, claims: list[dict[str, Any]]) -> int:
    """Append the history's claims, 100 a unit; returns the seq of its last event."""
    commands = [msgspec.convert(c, RecordAssertion) for c in claims]
    last = 0
    for start in range(0, len(commands), 100):
        part = commands[start : start + 100]

        def work(txn: Any, part: list[RecordAssertion] = part) -> int:
            from ledger.service import apply_command

            seq = 0
            for command in part:
                events = apply_command(txn, command, "bench").events
                seq = events[-1].seq
            return seq

        last = store.run_sync(work)
    return last


def _our_state_at(store: SqliteStore, seq: int) -> float:
    conn = store.reader()
    start = time.perf_counter()
    at = resolve(conn, None, None, seq)
    view = quantity_view(conn, "history", HISTORY_PROP, at)
    msgspec.json.encode(view)
    return time.perf_counter() - start


READ_ROUNDS = 5


def bench_peer(work: Path, events: int) -> list[Result]:
    try:
        from bench import peer_es
    except ImportError:
        say("peer: eventsourcing is not installed; skipped (pip install eventsourcing==9.5.6)")
        return [
            Result(
                "6",
                "against eventsourcing 9.5.6",
                0,
                "",
                ">= 3x",
                None,
                notes=[
                    "skipped: eventsourcing is not installed (pip install eventsourcing==9.5.6)"
                ],
            )
        ]
    claims = _claims(events, seed=21)
    history = _claims(events, seed=22, subject="history")
    say(f"peer: {events:,} appends from {CALLERS} callers, read back, state at version")
    flush_disk("peer")
    es_app, es_append = peer_es.appends(work / "peer-es.db", claims, CALLERS)
    store = _open(work / "peer-ledger.db")
    try:
        ours_append = _our_appends(store, claims)
        # a read takes a fraction of a second, so one scheduling hiccup moves it far: the
        # best of READ_ROUNDS for each side, the two sides taking turns
        es_reads, our_reads, our_page_reads = [], [], []
        for _ in range(READ_ROUNDS):
            es_count, took = peer_es.read_all(es_app)
            es_reads.append(took)
            our_count, took = _our_read(store)
            our_reads.append(took)
            _, took = _our_pages(store)
            our_page_reads.append(took)
        es_read, our_read, our_page_read = min(es_reads), min(our_reads), min(our_page_reads)
        es_hist, es_id = peer_es.history(work / "peer-es-history.db", history)
        last = _our_history(store, history)
        first = last - len(history) + 1
        es_versions = [len(history) + 1, len(history) // 2 + 1]  # +1: the creation event
        our_seqs = [last, first + len(history) // 2 - 1]
        es_state = [
            median([peer_es.state_at(es_hist, es_id, v) for _ in range(3)]) for v in es_versions
        ]
        ours_state = [median([_our_state_at(store, s) for _ in range(3)]) for s in our_seqs]
    finally:
        store.close()
        es_app.close()
    es_rate, our_rate = len(claims) / es_append, len(claims) / ours_append
    es_read_rate, our_read_rate = es_count / es_read, our_count / our_read
    return [
        Result(
            "6",
            f"{len(claims):,} appends, {CALLERS} concurrent callers",
            our_rate,
            "events/s",
            ">= 3x",
            our_rate / es_rate >= 3,
            es_rate,
            "eventsourcing saves/s",
            our_rate / es_rate,
        ),
        Result(
            "6",
            "read the whole log back, decoded",
            our_read_rate,
            "events/s",
            ">= 3x",
            our_read_rate / es_read_rate >= 3,
            es_read_rate,
            "eventsourcing events/s",
            our_read_rate / es_read_rate,
            [
                f"ledger {our_count:,} events (its {len(_sources())} sources too), "
                f"eventsourcing {es_count:,}; by `SqliteStore.scan`. In pages of 1,000 "
                f"(`SqliteStore.read`): {our_count / our_page_read:,.0f} events/s, "
                f"{our_count / our_page_read / es_read_rate:.2f}x"
            ],
        ),
        Result(
            "6",
            f"state at version {len(history):,} of a {len(history):,}-event history",
            ours_state[0] * 1000,
            "ms",
            "<= 0.33x (3x faster)",
            es_state[0] / ours_state[0] >= 3,
            es_state[0] * 1000,
            "eventsourcing replay ms",
            ours_state[0] / es_state[0],
            [
                f"at version {len(history) // 2:,}: ledger {ours_state[1] * 1000:.1f} ms, "
                f"eventsourcing {es_state[1] * 1000:.1f} ms"
            ],
        ),
    ]
