"""What every event store backend shares: the writer's queue of units, chaining new events
onto the tip of the log, turning stored rows into events, and the reads and proofs that
follow from a backend's `size`, `read` and Merkle node fetch.

A backend (:mod:`ledger.sqlite_store`, :mod:`ledger.postgres_store`) supplies the storage:
how rows are written and read, how writers exclude each other, what a transaction is.
Everything here is the same whatever stores the rows, so the chain, the Merkle tree and the
proofs of two backends cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

import msgspec
import structlog

from ledger import merkle
from ledger.codec import PAYLOAD_DECODERS, encode_payload, envelope_bytes, sha256_hex
from ledger.errors import ConcurrencyConflict, LedgerError, LedgerUnavailable, NodesMissing
from ledger.events import Event, NewEvent
from ledger.store import ConsistencyProof, InclusionProof, LogHead, Transaction
from ledger.times import format_record_time, now_us

log = structlog.get_logger("ledger.store")

T = TypeVar("T")
TxnT = TypeVar("TxnT", bound=Transaction)

SCAN_CHUNK = 128
"""Events a scan reads and decodes per statement (a backend may set its own
`scan_chunk`). The objects of a small chunk stay in the CPU's cache: on SQLite, reading
and decoding the whole log took ~5.5 us an event in chunks of 64-128, ~7-9 us in chunks
of 1,000 and ~8-10 us in chunks of 5,000 (docs/benchmarks.md, target 6)."""


def row_to_event(row: Sequence[Any]) -> Event:
    """An `events` row joined with its payload (None where erased) as an :class:`Event`."""
    return rows_to_events((row,))[0]


def rows_to_events(rows: Sequence[Sequence[Any]], *, as_stored: bool = False) -> list[Event]:
    """`events` rows joined with their payloads (None where erased) as :class:`Event` s,
    decoded in one pass: a page read or a replay decodes many.

    A payload that does not decode as its type says (the file was edited) raises, unless
    `as_stored`: then that event's `data` is the stored JSON as it is (see
    :func:`stored_data`), for readers that show the log rather than fold it, so what was
    altered reads as altered and any outside check of its digest names it."""
    if as_stored:
        try:
            return rows_to_events(rows)
        except DECODE_ERRORS:
            return [_as_stored(row) for row in rows]
    decoders = PAYLOAD_DECODERS
    return [
        Event(
            seq,
            etype,
            stream,
            version,
            recorded_at,
            actor,
            None if data is None else decoders[etype].decode(data),
            dsha,
            h,
        )
        for seq, etype, stream, version, recorded_at, actor, dsha, h, data in rows
    ]


DECODE_ERRORS = (msgspec.DecodeError, KeyError, TypeError, RecursionError, UnicodeDecodeError)
"""What decoding a stored payload raises where the file was edited: not JSON of its type,
an unknown event type, a value stored as TEXT or a number instead of bytes, bytes that
are not UTF-8 inside a JSON string (msgspec raises UnicodeDecodeError for those)."""


def digest_problem(event_type: str, data: object, data_sha256: str) -> str | None:
    """What is wrong with a stored payload against its envelope's `data_sha256`, in words
    (None: it holds), said alike by `ledger verify`, the audit and the start-up check."""
    if type(data) is bytes and sha256_hex(data) == data_sha256:
        return None
    return digest_words(event_type, data, data_sha256)


def digest_words(event_type: str, data: object, data_sha256: str) -> str:
    """Why a stored payload does not hash to its envelope's `data_sha256`, in words.

    Bytes that decode to what does hash to it (the same record written with spaces, in
    another key order or with other escapes) are named so: what the payload holds is
    intact, the form it is stored in is not the ledger's."""
    if type(data) is not bytes:
        return f"payload stored as {type(data).__name__}, not bytes"
    try:
        again = encode_payload(PAYLOAD_DECODERS[event_type].decode(data))
    except DECODE_ERRORS:
        again = None
    if again is not None and sha256_hex(again) == data_sha256:
        return (
            "payload is not stored in its canonical form (what it holds still hashes to its "
            "data_sha256, written again as JCS)"
        )
    return "payload does not hash to its data_sha256"


def fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """`conn.execute(sql, params).fetchall()`, except that text which is not UTF-8 (a byte
    of the file edited) reads with U+FFFD in its place rather than failing the whole read:
    what checks the rows then sees the edit (a digest or a chain link that no longer
    holds) at its seq."""
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "Could not decode to UTF-8" not in str(exc):
            raise
    previous = conn.text_factory
    conn.text_factory = _replacing
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.text_factory = previous


def _replacing(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def stored_data(data: object) -> msgspec.Raw:
    """A payload that does not decode as its event's type, as JSON to show: its JSON value
    re-encoded compactly (the same value, so the same canonical form and digest), or, where
    it is not JSON at all, its text as a JSON string. A value stored as TEXT is taken as
    its UTF-8 bytes; one stored as a number, as its digits."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if not isinstance(raw, bytes | bytearray | memoryview):
        raw = str(raw).encode()
    try:
        return msgspec.Raw(msgspec.json.encode(msgspec.json.decode(raw)))
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):  # not JSON, or UTF-8
        return msgspec.Raw(msgspec.json.encode(bytes(raw).decode("utf-8", "replace")))


def _as_stored(row: Sequence[Any]) -> Event:
    try:
        return rows_to_events((row,))[0]
    except DECODE_ERRORS:
        seq, etype, stream, version, recorded_at, actor, dsha, h, data = row
        log.warning("payload_does_not_decode", seq=seq, type=etype)
        return Event(seq, etype, stream, version, recorded_at, actor, stored_data(data), dsha, h)


@dataclass(slots=True)
class Tip:
    """What the writer knows about the end of the log, restored on rollback."""

    seq: int
    hash: bytes
    recorded_us: int
    frontier: merkle.MerkleFrontier

    def copy(self) -> Tip:
        return Tip(
            self.seq,
            self.hash,
            self.recorded_us,
            self.frontier.copy(),
        )


@dataclass(slots=True)
class Pending:
    """Rows appended in the open transaction and not yet written, in log order.

    The writer writes them with one statement per table before the transaction commits, so
    a unit of work costs no statement of its own in the usual case; a unit that fails is
    undone by cutting these lists back.
    """

    events: list[tuple[Any, ...]] = field(default_factory=list)
    payloads: list[tuple[int, bytes]] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    appended: list[Event] = field(default_factory=list)

    def mark(self) -> tuple[int, int, int, int]:
        return len(self.events), len(self.payloads), len(self.nodes), len(self.appended)

    def cut(self, mark: tuple[int, int, int, int]) -> None:
        del self.events[mark[0] :], self.payloads[mark[1] :], self.nodes[mark[2] :]
        del self.appended[mark[3] :]


def checked_version(
    stream: str,
    events: Sequence[NewEvent],
    expected_version: int | None,
    version_of: Callable[[str], int],
) -> int:
    """The stream's version, once the append of `events` to it is known to be allowed:
    every event is of that stream, and the stream is at `expected_version` (None: any)."""
    version = version_of(stream)
    if expected_version is not None and version != expected_version:
        raise ConcurrencyConflict(stream, expected_version, version)
    for new in events:
        if new.stream != stream:
            raise ValueError(f"event for {new.stream!r} appended to {stream!r}")
    return version


def chain(
    tip: Tip,
    pending: Pending,
    events: Sequence[NewEvent],
    actor: str,
    versions: dict[str, int],
    version_of: Callable[[str], int],
) -> list[Event]:
    """Chain `events` onto `tip`: seq, per-stream version, record time, payload digest,
    hash chain and Merkle nodes. Their rows go to `pending`; `tip` and `versions` (the
    versions this call has seen, filled from `version_of` for a stream not in it) move on.
    """
    recorded_us = max(now_us(), tip.recorded_us)
    recorded_at = format_record_time(recorded_us)
    out: list[Event] = []
    event_rows, payload_rows, node_rows = pending.events, pending.payloads, pending.nodes
    seq, prev = tip.seq, tip.hash
    for new in events:
        stream = new.stream
        if stream not in versions:
            versions[stream] = version_of(stream)
        versions[stream] += 1
        version = versions[stream]
        seq += 1
        etype = new.type
        data = encode_payload(new.payload)
        dsha = sha256_hex(data)
        canonical = envelope_bytes(seq, etype, stream, version, recorded_at, actor, dsha)
        prev = hashlib.sha256(prev + canonical).digest()
        h = prev.hex()
        node_rows.extend(tip.frontier.append(merkle.leaf_hash(canonical)))
        event_rows.append((seq, etype, stream, version, recorded_at, actor, dsha, h))
        payload_rows.append((seq, data))
        out.append(Event(seq, etype, stream, version, recorded_at, actor, new.payload, dsha, h))
    tip.seq, tip.hash, tip.recorded_us = seq, prev, recorded_us
    pending.appended.extend(out)
    return out


class Outcome(Generic[T]):
    """A unit's answer for a caller that runs the batch in its own thread (the API's
    writer process): set once before the caller reads it, so it needs neither a lock nor a
    way to wait, which a :class:`Future` pays for with a condition variable on every unit.
    It answers :meth:`result` and :meth:`exception` as a done future would."""

    __slots__ = ("_problem", "_set", "_value")

    def __init__(self) -> None:
        self._set = False
        self._value: Any = None
        self._problem: BaseException | None = None

    def done(self) -> bool:
        return self._set

    def settle(self, value: Any, problem: BaseException | None) -> None:
        self._value, self._problem, self._set = value, problem, True

    def exception(self) -> BaseException | None:
        if not self._set:
            raise RuntimeError("the unit has no answer yet")
        return self._problem

    def result(self) -> T:
        problem = self.exception()
        if problem is not None:
            raise problem
        value: T = self._value
        return value


@dataclass(slots=True)
class Job:
    """A unit of work and who waits for it: a thread (`future`), a coroutine (`waiter`),
    or the thread that runs it (`outcome`)."""

    work: Callable[[Any], Any]
    future: Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[Any] | None = None
    outcome: Outcome[Any] | None = None
    resets_views: bool = False
    """It empties the read side and folds the whole log again (a rebuild): the views are
    not brought up to date before it, which could fail on the damage it is to repair."""

    def answered(self) -> bool:
        """Whether its caller already has an answer (or gave up)."""
        if self.waiter is not None:
            return self.waiter.done()
        if self.outcome is not None:
            return self.outcome.done()
        assert self.future is not None
        return self.future.done()

    def start(self) -> bool:
        """Whether to run it: False if its caller gave up before it started."""
        if self.waiter is not None:
            return not self.waiter.cancelled()  # a stale read only runs a unit nobody hears
        if self.outcome is not None:
            return True  # its caller runs it, so it cannot have given up
        assert self.future is not None
        return self.future.set_running_or_notify_cancel()


def _raisable(problem: BaseException) -> BaseException:
    """What a waiter can be given: futures refuse StopIteration (it would end the awaiting
    coroutine's frame as if it returned), so it goes wrapped in a RuntimeError."""
    if isinstance(problem, StopIteration):
        wrapped = RuntimeError(f"the unit of work raised StopIteration: {problem!r}")
        wrapped.__cause__ = problem
        return wrapped
    return problem


def _answer(waiter: asyncio.Future[Any], result: Any, problem: BaseException | None) -> None:
    if waiter.done():  # cancelled, or answered already
        return
    if problem is None:
        waiter.set_result(result)
    else:
        waiter.set_exception(_raisable(problem))


def _answer_all(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Runs on the waiters' event loop: one wake-up for a whole batch. Each waiter is
    answered whatever happened to the one before it."""
    for waiter, result, problem in answers:
        try:
            _answer(waiter, result, problem)
        except Exception as exc:  # one answer that cannot be given: that caller hears why
            if not waiter.done():
                waiter.set_exception(RuntimeError(f"the answer could not be given: {exc!r}"))


def settle(outcomes: Sequence[tuple[Job, Any, BaseException | None]]) -> None:
    """Hand each job's result or error to whoever waits for it.

    Coroutine waiters get theirs with one call into each event loop for the whole batch,
    not one cross-thread wake-up per unit.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for job, result, problem in outcomes:
        if job.waiter is not None and job.loop is not None:
            by_loop.setdefault(job.loop, []).append((job.waiter, result, problem))
        elif job.outcome is not None:
            if not job.outcome.done():
                job.outcome.settle(result, problem)
        elif job.future is not None and not job.future.done():
            if problem is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(_raisable(problem))
    for loop, answers in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is left to answer
            loop.call_soon_threadsafe(_answer_all, answers)


class LogReads:
    """Scans, heads, roots and proofs, from a backend's :meth:`size`, :meth:`read` and
    :meth:`_fetch` (Merkle nodes by id; a missing one is :class:`NodesMissing`)."""

    scan_chunk = SCAN_CHUNK

    def _open_reads(self) -> None:
        """Called by the backend as it opens."""
        self.tree_refusal: str | None = None
        """Why the log's roots and proofs are refused: the stored Merkle tree failed a
        check (the start-up check of the tail, or a root or proof read from it), or None."""

    def size(self) -> int:
        raise NotImplementedError

    def read(self, after: int = 0, limit: int = 1000, *, as_stored: bool = False) -> list[Event]:
        raise NotImplementedError

    def _fetch(self, ids: Sequence[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        raise NotImplementedError

    def scan(self, after: int = 0, *, as_stored: bool = False) -> Generator[Event, None, None]:
        """Every event after seq `after`, in order: the log as it stood when `scan` was
        called, however long the caller takes over it.

        Read :attr:`scan_chunk` events a statement, each its own read, so no read
        transaction outlives a chunk (a slow reader never holds the log back) and a scan
        may be taken on any thread. The log only grows, so stopping at its size at the call
        reads it as it stood then; a payload erased meanwhile reads as erased.
        """
        start = max(0, min(after, 2**63 - 1))
        return self._scan(start, self.size(), as_stored)

    def _scan(self, after: int, end: int, as_stored: bool) -> Generator[Event, None, None]:
        while after < end:  # seqs have no gaps: a page never passes `end`
            page = self.read(after, min(self.scan_chunk, end - after), as_stored=as_stored)
            if not page:
                return
            yield from page
            after = page[-1].seq

    def root(self, size: int) -> str:
        self._check_size(size)
        return merkle.root(size, self._held([], size, frontier_checked=True)).hex()

    def head(self) -> LogHead:
        size = self.size()
        return LogHead(size, self.root(size))

    def _check_size(self, size: int) -> None:
        current = self.size()
        if not 0 <= size <= current:
            raise LedgerError(f"size {size} is outside the log (0..{current})")

    # What is given out of the stored tree is checked first: each node of the frontier a
    # root (`head`, `head?size=N`) is read from is its two stored children's hash, and
    # each proof leads to the roots read from the same nodes. A node edited or deleted
    # inside the tree (which the start-up check, reading only the tail, does not reach)
    # would otherwise make intact events' proofs fail for the outsider, who would blame
    # those events. A proof leaves the frontier's children unread (they would double its
    # cost): a node both on its path and in its size's frontier agrees with the root read
    # from it, and is caught when that root is asked for. A node off every path asked for
    # stays unseen until `ledger verify`. Proofs cost ~2 log2(size) hashes more.

    def inclusion_proof(self, seq: int, size: int) -> InclusionProof:
        self._check_size(size)
        if not 1 <= seq <= size:
            raise LedgerError(f"seq {seq} is not in a log of size {size}")
        index = seq - 1
        held = self._held([(0, index), *merkle.inclusion_nodes(index, size)], size)
        leaf = held([(0, index)])[(0, index)]
        path = merkle.inclusion_proof(index, size, held)
        if not merkle.verify_inclusion(leaf, index, size, path, merkle.root(size, held)):
            self._tree_broken(
                f"the inclusion proof of seq {seq} does not lead to the root of the tree of {size}"
            )
        return InclusionProof(seq, size, leaf.hex(), [p.hex() for p in path])

    def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        self._check_size(new_size)
        if not 1 <= old_size <= new_size:
            raise LedgerError(f"need 1 <= from <= to, got {old_size} and {new_size}")
        ids = [*merkle.consistency_nodes(old_size, new_size), *merkle.frontier_nodes(old_size)]
        held = self._held(ids, new_size)
        path = merkle.consistency_proof(old_size, new_size, held)
        old_root, new_root = merkle.root(old_size, held), merkle.root(new_size, held)
        if not merkle.verify_consistency(old_size, new_size, old_root, new_root, path):
            self._tree_broken(
                f"the consistency proof from {old_size} to {new_size} does not join their roots"
            )
        return ConsistencyProof(old_size, new_size, [p.hex() for p in path])

    def _held(
        self, ids: Sequence[merkle.NodeId], size: int, *, frontier_checked: bool = False
    ) -> merkle.FetchNodes:
        """`ids` and the frontier of `size`, read in one fetch, as a fetch of them; with
        `frontier_checked`, each frontier node checked against its children first (read
        in the same fetch: a root is asked for rarely, and an edit made while the server
        runs must be met as well as one made before)."""
        frontier = merkle.frontier_nodes(size)
        below = merkle.children(frontier) if frontier_checked else []
        try:
            nodes = self._fetch(list(dict.fromkeys([*ids, *frontier, *below])))
        except NodesMissing as exc:  # every node of a tree within the log is stored
            self._tree_broken(f"the tree of {size} lacks nodes it needs ({exc})")
        bad = merkle.unlike_children(frontier, nodes) if frontier_checked else None
        if bad is not None:
            self._tree_broken(f"stored Merkle node {bad} {merkle.UNLIKE_CHILDREN}")
        return lambda wanted: nodes

    def _tree_broken(self, what: str) -> NoReturn:
        """What a root or proof read of the stored tree does not hold (or is not there):
        refuse it, and every root and proof from now on (:attr:`tree_refusal`; health
        says so)."""
        if self.tree_refusal is None:
            log.error("merkle_tree_broken", problem=what)
            self.tree_refusal = f"the stored Merkle tree is broken: {what}; run `ledger verify`"
        raise LedgerUnavailable(self.tree_refusal)


class QueuedWriter(Generic[TxnT]):
    """How callers hand units of work to a backend's single writer thread.

    The backend calls :meth:`_open_queue` when it opens and :meth:`_stop_queue`, then
    :meth:`_refuse_leftovers`, when it closes; its thread takes :class:`Job` s from the
    queue (None: stop) and answers each through :func:`settle` after its commit.
    """

    max_batch: int
    _queue: queue.SimpleQueue[Job | None]
    _closed: bool
    _accepting: threading.Lock

    def _open_queue(self) -> None:
        self._queue = queue.SimpleQueue()
        self._closed = False
        self._accepting = threading.Lock()  # a unit is queued before the stop, or refused

    def _enqueue(self, job: Job) -> None:
        with self._accepting:
            if self._closed:
                raise LedgerUnavailable("the store is closed")
            self._queue.put(job)

    def _stop_queue(self) -> bool:
        """Refuse new units and tell the writer to stop once it has run the queued ones;
        False if the store was closed already."""
        with self._accepting:
            if self._closed:
                return False
            self._closed = True
            self._queue.put(None)
        return True

    def _refuse_leftovers(self) -> None:
        """Once the writer has stopped: answer any unit still queued (none should be)."""
        closed = LedgerUnavailable("the store is closed")
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.start():  # not one its caller gave up on
                settle([(job, None, closed)])

    def _take(self, batch: list[Job]) -> bool:
        """Add whatever is queued to `batch`; False once the store is closing."""
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return True
            if nxt is None:
                self._queue.put(None)
                return False
            batch.append(nxt)
        return True

    def submit(self, work: Callable[[TxnT], T], *, resets_views: bool = False) -> Future[T]:
        """Queue `work` for the writer; the future resolves after its commit."""
        future: Future[T] = Future()
        self._enqueue(Job(work, future, resets_views=resets_views))
        return future

    def run_sync(self, work: Callable[[TxnT], T], *, resets_views: bool = False) -> T:
        return self.submit(work, resets_views=resets_views).result()

    async def run(self, work: Callable[[TxnT], T]) -> T:
        """Run `work` on the writer; resolves after its commit (see :meth:`submit`).

        Cancelling the caller before the writer takes the unit means it never runs.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._enqueue(Job(work, None, loop, waiter))
        return await waiter

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        actor: str,
        expected_version: int | None = None,
    ) -> list[Event]:
        return await self.run(lambda txn: txn.append(stream, events, actor, expected_version))

    def append_sync(
        self,
        stream: str,
        events: Sequence[NewEvent],
        actor: str,
        expected_version: int | None = None,
    ) -> list[Event]:
        return self.run_sync(lambda txn: txn.append(stream, events, actor, expected_version))
