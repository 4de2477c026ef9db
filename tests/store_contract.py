"""The contract every event store backend passes: subclass :class:`StoreContract` per backend.

Everything is checked against independent references: canonical bytes come from
`rfc8785` (not the project's codec), the chain is recomputed with `hashlib`, and the
Merkle root with :func:`ledger.merkle.mth` from scratch, never from stored nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import rfc8785

from ledger import merkle
from ledger.errors import ConcurrencyConflict, LedgerError, LedgerUnavailable
from ledger.events import (
    AssertionRanked,
    AssertionRecorded,
    AssertionRetracted,
    Document,
    Event,
    NewEvent,
    SourceRegistered,
    SourceUpdated,
    Value,
)
from ledger.store import EventStore, Transaction

RECORD_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
ENVELOPE_KEYS = ("seq", "type", "stream", "version", "recorded_at", "actor", "data_sha256")

_unique = itertools.count(1)


# ---- events to append: every payload kind, unique ids so the write model accepts them ----


def payload(kind: int) -> Any:
    """A payload of one of the five kinds (by `kind % 5`), with ids never used before."""
    n = next(_unique)
    match kind % 5:
        case 0:
            return SourceRegistered(id=f"src-{n}", name=f"Source {n} \u00e9", kind="military")
        case 1:
            return AssertionRecorded(
                assertion_id=f"a-{n}",
                subject=f"subject-{n % 7}",
                property="troops.deployed",
                value=Value(low=n, high=2 * n + 1, best=n + 1),
                claimants=(f"src-{n}",),
                stated_at="2024-03",
                document=Document(publisher="Agency", published_at="2024-03-02"),
                quote=f"about {n} troops \u2028 \U0001f600 \x01",
            )
        case 2:
            return AssertionRanked(assertion_id=f"a-{n}", rank="deprecated", reason="disinfo")
        case 3:
            return AssertionRetracted(assertion_id=f"missing-{n}", reason="wrong entry")
        case _:
            return SourceUpdated(id=f"missing-{n}", reliability="B")


def new_events(stream: str, count: int, start: int = 0) -> list[NewEvent]:
    return [NewEvent(stream, payload(start + i)) for i in range(count)]


async def fill(
    store: EventStore, count: int, streams: Sequence[str] = ("subject:a", "subject:b")
) -> list[Event]:
    """Append `count` events in batches of 1..4, round robin over `streams`."""
    out: list[Event] = []
    for i, stream in zip(itertools.count(), itertools.cycle(streams)):
        if len(out) >= count:
            break
        batch = min(1 + i % 4, count - len(out))
        out += await store.append(stream, new_events(stream, batch, i), actor=f"actor-{i % 3}")
    return out


# ---- independent references ----


def jcs(value: Any) -> bytes:
    out: bytes = rfc8785.dumps(value)
    return out


def canonical(event: Event) -> bytes:
    """The contract's canonical bytes of an event, by rfc8785."""
    return jcs({key: getattr(event, key) for key in ENVELOPE_KEYS})


def leaf_hashes(events: Sequence[Event]) -> list[bytes]:
    return [merkle.leaf_hash(canonical(e)) for e in events]


def check_log(events: Sequence[Event]) -> None:
    """Seqs 1..n, per-stream versions from 1, payload digests, and the hash chain."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    versions: dict[str, int] = {}
    previous = bytes(32)
    for event in events:
        versions[event.stream] = versions.get(event.stream, 0) + 1
        assert event.version == versions[event.stream], event
        assert event.data is not None
        assert event.type == type(event.data).__name__
        assert event.data_sha256 == hashlib.sha256(jcs(msgspec.to_builtins(event.data))).hexdigest()
        previous = hashlib.sha256(previous + canonical(event)).digest()
        assert event.hash == previous.hex(), f"chain breaks at seq {event.seq}"
        assert RECORD_TIME.match(event.recorded_at), event.recorded_at
    times = [e.recorded_at for e in events]
    assert times == sorted(times)


def check_head(store: EventStore, events: Sequence[Event]) -> None:
    head = store.head()
    assert head.size == len(events)
    assert head.root == merkle.mth(leaf_hashes(events)).hex()


def read_all(store: EventStore) -> list[Event]:
    out: list[Event] = []
    while batch := store.read(after=len(out), limit=1000):
        out += batch
    return out


Unit = Callable[[Any], Any]
"""A unit of work, on any backend's transaction."""


def appends_to(stream: str, count: int = 2) -> Unit:
    return lambda txn: txn.append(stream, new_events(stream, count), "t")


def failed_at_start_once(results: list[Any]) -> None:
    """The outcomes of :func:`one_batch` when its batch could not start (the test's own
    failure, its message marked "a test"): the blocker's batch is in, and each queued unit
    was refused with that error from one attempt."""
    assert [e.seq for e in results[0]] == [3]
    for problem in results[1:]:
        assert isinstance(problem, LedgerUnavailable)
        assert "could not start" in str(problem)
        assert "a test" in str(problem)


async def one_batch(
    store: EventStore,
    units: Sequence[Unit] | None = None,
    began: Callable[[], None] | None = None,
) -> list[Any]:
    """A blocking unit, then `units` (by default three appends of two events to
    subject:p, q and r) queued behind it, so they form one batch; every outcome.
    `began` is called once the blocker's batch has begun, before the others are queued."""
    started, release = threading.Event(), threading.Event()

    def blocker(txn: Transaction) -> list[Event]:
        started.set()
        release.wait(10)
        return txn.append("subject:block", new_events("subject:block", 1), "t")

    if units is None:
        units = [appends_to(s) for s in ("subject:p", "subject:q", "subject:r")]
    first = asyncio.ensure_future(store.run(blocker))
    assert await asyncio.to_thread(started.wait, 10)
    if began is not None:
        began()
    tasks = [asyncio.ensure_future(store.run(unit)) for unit in units]
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    done = asyncio.gather(first, *tasks, return_exceptions=True)
    return list(await asyncio.wait_for(done, timeout=30))  # a caller never waits forever


class StoreContract:
    """The behaviour every :class:`ledger.store.EventStore` backend must have.

    A backend's test module subclasses this as `Test<Backend>` and implements
    :meth:`make_store`, which opens (or reopens) the store kept at `path`.
    """

    group_commit = True
    """Whether units queued together commit in one transaction (and so share it)."""

    def make_store(self, path: Path) -> EventStore:
        raise NotImplementedError

    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        return tmp_path / "contract.db"

    @pytest.fixture
    def store(self, path: Path) -> Iterator[EventStore]:
        opened = self.make_store(path)
        yield opened
        opened.close()

    # ---- append ----

    async def test_empty_store(self, store: EventStore) -> None:
        assert store.read() == []
        assert store.head().size == 0
        assert store.head().root == merkle.EMPTY_ROOT.hex()
        assert store.read_stream("subject:a") == []

    async def test_append_assigns_seq_and_versions(self, store: EventStore) -> None:
        first = await store.append("subject:a", new_events("subject:a", 3), actor="alice")
        second = await store.append("source:x", new_events("source:x", 2, 3), actor="bob")
        third = await store.append("subject:a", new_events("subject:a", 2, 5), actor="alice")
        events = first + second + third
        assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6, 7]
        assert [(e.stream, e.version) for e in events] == [
            ("subject:a", 1),
            ("subject:a", 2),
            ("subject:a", 3),
            ("source:x", 1),
            ("source:x", 2),
            ("subject:a", 4),
            ("subject:a", 5),
        ]
        assert [e.actor for e in events] == ["alice"] * 3 + ["bob"] * 2 + ["alice"] * 2
        assert read_all(store) == events
        check_log(events)

    async def test_append_returns_what_is_stored(self, store: EventStore) -> None:
        batch = new_events("subject:a", 5)
        appended = await store.append("subject:a", batch, actor="alice")
        assert [e.data for e in appended] == [n.payload for n in batch]
        assert [e.type for e in appended] == [n.type for n in batch]
        assert store.read() == appended
        assert len({e.recorded_at for e in appended}) == 1  # one batch, one record time

    async def test_append_nothing(self, store: EventStore) -> None:
        assert await store.append("subject:a", [], actor="alice") == []
        assert store.head().size == 0

    # ---- reads ----

    async def test_read_after_and_limit(self, store: EventStore) -> None:
        events = await fill(store, 25)
        assert store.read() == events
        assert store.read(after=10, limit=5) == events[10:15]
        assert store.read(after=0, limit=1) == events[:1]
        assert store.read(after=23, limit=10) == events[23:]
        assert store.read(after=25) == []
        assert store.read(after=99) == []
        for after in range(0, 26, 3):
            for limit in (1, 2, 7, 1000):
                got = store.read(after=after, limit=limit)
                assert got == events[after : after + limit]

    async def test_scan_streams_the_log_in_order(self, store: EventStore) -> None:
        assert list(store.scan()) == []
        events = await fill(store, 300)  # longer than a chunk of any sensible size
        assert list(store.scan()) == events
        for after in (-5, 0, 1, 127, 128, 129, 299, 300, 10**30):
            assert list(store.scan(after)) == events[max(after, 0) :]

    async def test_scan_reads_the_log_as_it_stood_when_it_began(self, store: EventStore) -> None:
        events = await fill(store, 300)
        scan = store.scan()
        first = next(scan)
        later = await fill(store, 5)  # appended while the scan is open
        assert [first, *scan] == events
        assert list(store.scan(after=300)) == later

    async def test_a_scan_may_be_taken_on_another_thread(self, store: EventStore) -> None:
        events = await fill(store, 300)
        scan = store.scan(after=100)
        assert next(scan) == events[100]
        assert await asyncio.to_thread(list, scan) == events[101:]

    async def test_a_scan_left_unfinished_holds_nothing(self, store: EventStore) -> None:
        events = await fill(store, 300)
        scan = store.scan()
        assert next(scan) == events[0]
        scan.close()
        events += await fill(store, 3)
        assert list(store.scan()) == events

    async def test_read_stream(self, store: EventStore) -> None:
        events = await fill(store, 30, streams=("subject:a", "subject:b", "source:c"))
        for stream in ("subject:a", "subject:b", "source:c"):
            mine = store.read_stream(stream)
            assert mine == [e for e in events if e.stream == stream]
            assert [e.version for e in mine] == list(range(1, len(mine) + 1))
        assert store.read_stream("subject:nobody") == []

    async def test_head_root_is_mth_of_canonical_envelopes(self, store: EventStore) -> None:
        events: list[Event] = []
        for count in (1, 1, 2, 3, 5, 8, 13):
            events += await fill(store, count)
            events = read_all(store)
            check_head(store, events)
            assert store.root(len(events)) == store.head().root
        check_log(events)

    async def test_data_sha256_and_chain(self, store: EventStore) -> None:
        events = await fill(store, 40, streams=("subject:a", "source:b", "subject:c"))
        stored = read_all(store)
        assert stored == events
        check_log(stored)

    # ---- optimistic concurrency ----

    async def test_expected_version(self, store: EventStore) -> None:
        await store.append("subject:a", new_events("subject:a", 2), "alice", expected_version=0)
        head = store.head()
        for wrong in (0, 1, 3, 10):
            with pytest.raises(ConcurrencyConflict) as caught:
                await store.append(
                    "subject:a", new_events("subject:a", 2), "alice", expected_version=wrong
                )
            assert (caught.value.stream, caught.value.expected) == ("subject:a", wrong)
            assert caught.value.actual == 2
        assert store.head() == head
        assert len(store.read_stream("subject:a")) == 2
        more = await store.append("subject:a", new_events("subject:a", 1), "a", expected_version=2)
        assert [(e.seq, e.version) for e in more] == [(3, 3)]
        other = await store.append("source:b", new_events("source:b", 1), "a", expected_version=0)
        assert [(e.seq, e.version) for e in other] == [(4, 1)]
        check_log(read_all(store))

    # ---- units of work ----

    async def test_failing_unit_rolls_back_alone(self, store: EventStore) -> None:
        await store.append("subject:base", new_events("subject:base", 1), "t")
        seen: list[Transaction] = []

        def good(stream: str) -> Any:
            def work(txn: Transaction) -> list[Event]:
                seen.append(txn)
                return txn.append(stream, new_events(stream, 2), "t")

            return work

        def bad(txn: Transaction) -> None:
            seen.append(txn)
            txn.append("subject:bad", new_events("subject:bad", 3), "t")
            raise RuntimeError("this unit fails after appending")

        results = await one_batch(store, [good("subject:one"), bad, good("subject:two")])
        assert isinstance(results[2], RuntimeError)
        assert [[e.seq for e in r] for r in (results[0], results[1], results[3])] == [
            [2],
            [3, 4],
            [5, 6],
        ]
        if self.group_commit:  # it failed inside the transaction of a unit that committed
            assert seen[0] is seen[1]
        events = read_all(store)
        assert [e.stream for e in events] == ["subject:base", "subject:block"] + [
            "subject:one"
        ] * 2 + ["subject:two"] * 2
        assert store.read_stream("subject:bad") == []
        check_log(events)
        check_head(store, events)
        later = await store.append("subject:bad", new_events("subject:bad", 1), "t")
        assert [(e.seq, e.version) for e in later] == [(7, 1)]
        check_log(read_all(store))

    async def test_a_unit_raising_stop_iteration_fails_alone(self, store: EventStore) -> None:
        def stops(txn: Transaction) -> None:
            raise StopIteration("a generator's end, escaping a unit")

        def good(txn: Transaction) -> list[Event]:
            return txn.append("subject:good", new_events("subject:good", 1), "t")

        results = await one_batch(store, [good, stops, good])
        assert isinstance(results[2], RuntimeError)
        assert "StopIteration" in str(results[2])
        assert [[e.seq for e in r] for r in (results[0], results[1], results[3])] == [
            [1],
            [2],
            [3],
        ]

    async def test_units_submitted_while_closing_are_all_answered(self, path: Path) -> None:
        store = self.make_store(path)
        futures: list[Any] = []
        refused: list[BaseException] = []
        go = threading.Event()

        def submitter(n: int) -> None:
            go.wait(10)
            for i in range(200):
                stream = f"subject:{n}"
                try:
                    futures.append(
                        store.submit(  # type: ignore[attr-defined]
                            lambda txn, s=stream, i=i: txn.append(s, new_events(s, 1, i), "t")
                        )
                    )
                except LedgerError as exc:
                    refused.append(exc)
                    return

        threads = [threading.Thread(target=submitter, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        go.set()
        await asyncio.sleep(0.01)
        await asyncio.to_thread(store.close)
        for thread in threads:
            thread.join()
        for future in futures:  # each was run and answered, or answered as refused
            assert future.done()
            if future.exception() is not None:
                assert "closed" in str(future.exception())
        reopened = self.make_store(path)
        try:
            appended = sum(1 for f in futures if f.exception() is None)
            assert reopened.head().size == appended
        finally:
            reopened.close()

    async def test_unit_result_is_returned(self, store: EventStore) -> None:
        def work(txn: Transaction) -> tuple[int, int]:
            txn.append("subject:a", new_events("subject:a", 2), "t")
            return txn.stream_version("subject:a"), txn.stream_version("subject:none")

        assert await store.run(work) == (2, 0)

    # ---- restart ----

    async def test_restart_keeps_everything_and_continues(self, path: Path) -> None:
        store = self.make_store(path)
        try:
            before = await fill(store, 13)
            head = store.head()
        finally:
            store.close()
        store = self.make_store(path)
        try:
            assert store.head() == head
            assert read_all(store) == before
            after = await fill(store, 20)
            assert after[0].seq == 14
            events = read_all(store)
            check_log(events)  # versions continue per stream, the chain links across
            check_head(store, events)
            proof = store.consistency_proof(13, 33)
            assert merkle.verify_consistency(
                13,
                33,
                bytes.fromhex(head.root),
                bytes.fromhex(store.head().root),
                [bytes.fromhex(p) for p in proof.path],
            )
        finally:
            store.close()
        store = self.make_store(path)
        try:
            check_head(store, read_all(store))
        finally:
            store.close()

    # ---- proofs ----

    async def test_proofs_at_many_sizes(self, store: EventStore) -> None:
        events = await fill(store, 45)
        leaves = leaf_hashes(events)
        roots = {n: merkle.mth(leaves[:n]) for n in range(1, len(leaves) + 1)}
        for size, expected_root in roots.items():
            assert store.root(size) == expected_root.hex()
            for seq in range(1, size + 1):
                proof = store.inclusion_proof(seq, size)
                assert (proof.seq, proof.size) == (seq, size)
                assert proof.leaf_hash == leaves[seq - 1].hex()
                path = [bytes.fromhex(p) for p in proof.path]
                assert merkle.verify_inclusion(leaves[seq - 1], seq - 1, size, path, expected_root)
            for old in range(1, size + 1):
                cons = store.consistency_proof(old, size)
                assert (cons.old_size, cons.new_size) == (old, size)
                path = [bytes.fromhex(p) for p in cons.path]
                assert merkle.verify_consistency(old, size, roots[old], expected_root, path)

    async def test_proof_arguments_outside_the_log(self, store: EventStore) -> None:
        await fill(store, 5)
        for seq, size in ((0, 5), (6, 5), (1, 6), (3, 2)):
            with pytest.raises(LedgerError):
                store.inclusion_proof(seq, size)
        for old, new in ((0, 5), (3, 2), (1, 6)):
            with pytest.raises(LedgerError):
                store.consistency_proof(old, new)
        with pytest.raises(LedgerError):
            store.root(6)
