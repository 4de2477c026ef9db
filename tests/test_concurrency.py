"""Hundreds of concurrent appends, from the event loop and from threads, keep the log whole."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from ledger.errors import ConcurrencyConflict
from ledger.events import Event
from ledger.sqlite_store import SqliteStore
from ledger.verify import verify_log
from tests.store_contract import check_head, check_log, new_events, read_all

STREAMS = [f"subject:s{i}" for i in range(6)]


def append_from_thread(store: SqliteStore, worker: int, count: int) -> list[Event]:
    out: list[Event] = []
    for i in range(count):
        stream = STREAMS[(worker + i) % len(STREAMS)]
        out += store.append_sync(stream, new_events(stream, 1 + i % 2, i), f"thread-{worker}")
    return out


async def test_concurrent_appends_keep_the_log_whole(store: SqliteStore) -> None:
    coroutines = [
        store.append(STREAMS[i % len(STREAMS)], new_events(STREAMS[i % 6], 1 + i % 3, i), "api")
        for i in range(500)
    ]
    threads = [asyncio.to_thread(append_from_thread, store, w, 25) for w in range(4)]
    results = await asyncio.gather(*coroutines, *threads)
    appended = [event for batch in results for event in batch]

    seqs = sorted(e.seq for e in appended)
    assert seqs == list(range(1, len(appended) + 1))  # no gap, no duplicate
    for batch in results[:500]:  # a batch is consecutive: nothing interleaves inside it
        assert [e.seq for e in batch] == list(range(batch[0].seq, batch[0].seq + len(batch)))

    events = read_all(store)
    assert events == sorted(appended, key=lambda e: e.seq)
    versions: dict[str, list[int]] = defaultdict(list)
    for event in events:
        versions[event.stream].append(event.version)
    assert set(versions) == set(STREAMS)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())

    check_log(events)  # digests and the chain, recomputed independently
    check_head(store, events)  # root equals MTH from scratch
    report = verify_log(store.reader())
    assert report.ok, report.problems
    assert (report.events, report.root) == (len(events), store.head().root)


async def test_one_winner_per_expected_version(store: SqliteStore) -> None:
    stream = "subject:race"
    await store.append(stream, new_events(stream, 3), "setup")
    racers = [store.append(stream, new_events(stream, 2, i), "racer", 3) for i in range(50)]
    threads = [
        asyncio.to_thread(store.append_sync, stream, new_events(stream, 1, i), "thread", 3)
        for i in range(10)
    ]
    outcomes = await asyncio.gather(*racers, *threads, return_exceptions=True)
    winners = [o for o in outcomes if isinstance(o, list)]
    losers = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
    assert len(winners) == 1
    assert len(losers) == len(outcomes) - 1
    assert all(c.expected == 3 and c.actual == 3 + len(winners[0]) for c in losers)
    assert [e.version for e in store.read_stream(stream)] == list(range(1, 4 + len(winners[0])))
    check_log(read_all(store))
