"""The PostgreSQL event store: the log on a PostgreSQL server, behind the same contract.

It keeps what :mod:`ledger.sqlite_store` keeps of the log itself, in the same shape: the
events, their payloads and the Merkle nodes, in tables of one schema, with triggers that
refuse every UPDATE, DELETE and TRUNCATE. One writer thread per store takes every unit
of work waiting in its queue and commits them in one transaction (group commit); writers
in other processes are kept out by a transaction-scoped advisory lock on the schema, and a
writer that finds the log moved under it reads its tip again, so nothing is chained onto a
stale hash. Readers use a connection per thread, each statement its own snapshot.

Projectors given to the store are folded in the append transaction with the store's
`psycopg` connection. The ledger's own read side (:mod:`projections`) is written for
SQLite, so `ledger serve` and the other commands still run on SQLite only; this backend is
the log, for deployments that keep it in PostgreSQL and for checking that the storage
contract (`tests/store_contract.py`) is not tied to one engine.

`psycopg` (3.x) is an optional dependency: `pip install 'osint-ledger[postgres]'`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import IsolationLevel, pq, sql
from psycopg.conninfo import conninfo_to_dict

from ledger import merkle
from ledger.backend import (
    Job,
    LogReads,
    Pending,
    QueuedWriter,
    Tip,
    chain,
    checked_version,
    rows_to_events,
    settle,
)
from ledger.codec import ZERO_HASH
from ledger.errors import LedgerUnavailable, NodesMissing
from ledger.events import Event, NewEvent
from ledger.store import Projector
from ledger.times import parse_record_time

log = structlog.get_logger("ledger.postgres")
R = TypeVar("R")

SCHEMA_VERSION = 1
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MAX_INT = 2**63 - 1  # PostgreSQL's largest bigint
LOCK_TIMEOUT = 10.0  # seconds a batch waits for another writer's lock before it fails
MAX_IDLE_READERS = 4  # read connections kept open between reads
MAX_LOST_COMMITS = 3
"""COMMITs lost in a row, none of them kept, before the units are refused rather than run
again (a connection that keeps dropping at COMMIT would otherwise retry them forever)."""
_UNKNOWN_TIP = Tip(-1, ZERO_HASH, 0, merkle.MerkleFrontier.empty())  # never the log's

_SELECT_EVENTS = (
    "SELECT e.seq, e.type, e.stream, e.version, e.recorded_at, e.actor, e.data_sha256, "
    "e.hash, p.data FROM events e JOIN payloads p ON p.seq = e.seq"
)

_TABLES = """
CREATE TABLE IF NOT EXISTS ledger_schema (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    type text NOT NULL,
    stream text NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    recorded_at text NOT NULL,
    actor text NOT NULL,
    data_sha256 text NOT NULL,
    hash text NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS payloads (
    seq bigint PRIMARY KEY REFERENCES events (seq),
    data bytea
);
CREATE TABLE IF NOT EXISTS merkle_nodes (
    level integer NOT NULL CHECK (level >= 0),
    idx bigint NOT NULL CHECK (idx >= 0),
    hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    name text PRIMARY KEY,
    seq bigint NOT NULL
);
CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger''s % table is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;
"""

_APPEND_ONLY = ("events", "payloads", "merkle_nodes")
_UNIT_FAILED = (
    "a statement of this unit failed and left the transaction failed: nothing of it was appended"
)
_XID = "SELECT pg_current_xact_id()::text"  # which transaction the writer is in


def _one(row: tuple[Any, ...] | None) -> str:
    return "" if row is None else str(row[0])


_FOLD_FAILED = "a statement failed and left the transaction failed: nothing was appended"


def _lock_key(schema: str) -> int:
    """The advisory lock that makes one writer at a time append to `schema`'s log."""
    digest = hashlib.sha256(f"osint-ledger writer {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connect(dsn: str, schema: str, *, autocommit: bool) -> psycopg.Connection[Any]:
    """A connection to `dsn` whose unqualified names are those of `schema` (any `options`
    the DSN gives are kept). One that is not autocommit reads at READ COMMITTED, whatever
    the database's default: each statement of the writer must see every commit before it
    (see :meth:`PostgresStore._locked`)."""
    try:
        given = conninfo_to_dict(dsn).get("options") or ""
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            options=f"{given} -c search_path={schema}".strip(),
            application_name=f"osint-ledger {schema}",
        )
        if not autocommit:
            conn.isolation_level = IsolationLevel.READ_COMMITTED
    except psycopg.Error as exc:
        raise LedgerUnavailable(f"cannot connect to PostgreSQL: {exc}") from None
    return conn


class PostgresTransaction:
    """The writer's view of one unit of work (see :class:`ledger.store.Transaction`)."""

    def __init__(self, store: PostgresStore, connection: psycopg.Connection[Any]) -> None:
        self._store = store
        self._conn = connection
        self.raw = False  # the unit had the connection: a failure undoes the transaction

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The writer's connection, with every row appended so far written to it."""
        self.raw = True
        self._store._flush()
        return self._conn

    def stream_version(self, stream: str) -> int:
        return self._store._version_of(stream)

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        actor: str,
        expected_version: int | None = None,
    ) -> list[Event]:
        checked_version(stream, events, expected_version, self.stream_version)
        if not events:
            return []
        store = self._store
        return chain(store._tip, store._pending, events, actor, store._batch, store._version_of)


class PostgresStore(LogReads, QueuedWriter[PostgresTransaction]):
    """A PostgreSQL backend of :class:`ledger.store.EventStore`.

    `dsn` is a libpq connection string or URI; the log lives in `schema` (created if need
    be), so one database can hold several ledgers.
    """

    scan_chunk = 1000  # a statement is a round trip to the server: 175k events/s against
    # 122k with 128 a statement (20,000 events, Unix socket)

    def __init__(
        self,
        dsn: str,
        projectors: Sequence[Projector] = (),
        *,
        schema: str = "ledger",
        max_batch: int = 1024,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        if not SCHEMA_NAME.fullmatch(schema):
            raise ValueError(
                f"schema {schema!r}: lower-case letters, digits and _, not starting with a "
                f"digit, at most 63 characters"
            )
        self._open_reads()
        self.dsn = dsn
        self.schema = schema
        self.max_batch = max_batch
        self.projectors = list(projectors)
        self._lock = _lock_key(schema)
        self._lock_timeout = f"{max(1, round(lock_timeout * 1000))}ms"
        self._idle: list[psycopg.Connection[Any]] = []  # read connections between reads
        self._readers_lock = threading.Lock()
        self._open_queue()
        self._pending = Pending()
        self._batch: dict[str, int] = {}  # stream versions as this transaction has them
        self._known: dict[str, int] = {}  # stream versions as last committed
        self._appended: list[Event] = []  # appended in this transaction, rows written
        self._flushes: list[tuple[int, str, int]] = []  # (seq, hash, units) at each write
        self._xid = ""  # the batch's transaction, to tell whether a unit ended it
        self._units_done = 0  # units of the batch run before the one running now
        self._lost_in_a_row = 0  # COMMITs lost since the last one known to have taken effect
        self._begun_again = False  # the last batch began again after its connection was lost
        self._conn = connect(dsn, schema, autocommit=False)
        try:
            self._migrate()
            self._tip = self._read_tip()
            self._catch_up()  # another writer may have appended without these projectors
            self._conn.commit()
        except psycopg.Error as exc:
            self._conn.close()
            raise LedgerUnavailable(
                f"cannot open the ledger in PostgreSQL schema {schema!r}: {exc}"
            ) from None
        except BaseException:
            self._conn.close()
            raise
        self._thread = threading.Thread(target=self._run, name="ledger-pg-writer", daemon=True)
        self._thread.start()

    # ---- schema ----

    def _migrate(self) -> None:
        conn = self._conn
        self._take_lock(conn)
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        if found.fetchone() is None:  # CREATE SCHEMA needs CREATE on the database even when
            # the schema exists, so a role that only owns its schema never asks for it
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
        conn.execute(_TABLES)
        for table in _APPEND_ONLY:
            for name, when, each in (
                (f"{table}_append_only", "UPDATE OR DELETE", "ROW"),
                (f"{table}_no_truncate", "TRUNCATE", "STATEMENT"),
            ):
                conn.execute(
                    sql.SQL(
                        "CREATE OR REPLACE TRIGGER {} BEFORE " + when + " ON {} "
                        "FOR EACH " + each + " EXECUTE FUNCTION ledger_append_only()"
                    ).format(sql.Identifier(name), sql.Identifier(table))
                )
        row = conn.execute("SELECT version FROM ledger_schema").fetchone()
        if row is None:
            conn.execute("INSERT INTO ledger_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        elif int(row[0]) > SCHEMA_VERSION:
            raise LedgerUnavailable(
                f"the ledger in schema {self.schema!r} is at version {row[0]}, newer than "
                f"this program's {SCHEMA_VERSION}: upgrade the program"
            )
        for projector in self.projectors:
            projector.migrate(conn)

    # ---- the writer ----

    def _read_tip(self) -> Tip:
        row = self._conn.execute(
            "SELECT seq, hash, recorded_at FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return Tip(0, ZERO_HASH, 0, merkle.MerkleFrontier.empty())
        size = int(row[0])
        frontier = merkle.MerkleFrontier.load(size, lambda ids: _nodes(self._conn, ids))
        return Tip(size, bytes.fromhex(row[1]), parse_record_time(row[2]), frontier)

    def _follow_others(self, last: tuple[int, str] | None) -> None:
        """Inside the write lock, given the log's last (seq, hash): if another writer
        appended since this one last looked, read the tip again, forget the cached stream
        versions and fold what this store's projectors have not folded yet."""
        seq, digest = last or (0, ZERO_HASH.hex())
        if (seq, digest) == (self._tip.seq, self._tip.hash.hex()):
            return
        log.info("tip_moved", schema=self.schema, seq=seq, was=self._tip.seq)
        self._known.clear()
        self._tip = self._read_tip()
        self._catch_up()

    def _catch_up(self) -> None:
        """Fold into each projector what it has not folded yet, up to the tip."""
        if not self.projectors:
            return
        marks = dict(self._conn.execute("SELECT name, seq FROM checkpoints").fetchall())
        for projector in self.projectors:
            after = int(marks.get(projector.name, 0))
            while after < self._tip.seq:
                events = self._read(self._conn, after, min(1000, self._tip.seq - after))
                projector.apply(self._conn, events)
                after = events[-1].seq
        self._mark_checkpoints()

    def _version_of(self, stream: str) -> int:
        """The stream's version in the open transaction (pending appends included)."""
        version = self._batch.get(stream)
        if version is None:
            version = self._known.get(stream)
        if version is None:
            row = self._conn.execute(
                "SELECT coalesce(max(version), 0) FROM events WHERE stream = %s", (stream,)
            ).fetchone()
            version = int(row[0]) if row else 0
            self._known[stream] = version
        return version

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            self._take(batch)
            pending = [job for job in batch if job.start()]
            try:
                while pending:
                    pending = self._try_batch(pending)
            except Exception as exc:  # a fault in the writer itself: nobody waits forever
                log.exception("writer_failed", units=len(batch))
                self._reset()
                problem = LedgerUnavailable(f"the write failed: {exc}")
                settle([(job, None, problem) for job in batch if not job.answered()])

    def _connected(self) -> psycopg.Connection[Any]:
        """The writer's connection, opened again if the last one was lost (the server
        restarted, say); the tip is read again under the write lock."""
        if self._conn.closed or self._conn.broken:
            log.warning("writer_reconnects", schema=self.schema)
            self._conn = connect(self.dsn, self.schema, autocommit=False)
            self._known.clear()
            self._tip = _UNKNOWN_TIP.copy()
        return self._conn

    def _take_lock(self, conn: psycopg.Connection[Any]) -> None:
        """Take the write lock for the rest of `conn`'s transaction, waiting at most
        `lock_timeout` for another writer to let go of it."""
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (self._lock_timeout,))
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock,))

    def _locked(self) -> tuple[psycopg.Connection[Any], tuple[int, str] | None]:
        """Begin the batch's transaction holding the write lock, and read the log's last
        (seq, hash) once it is held, in one round trip (at READ COMMITTED a statement's
        snapshot is taken when it starts, so the second sees every writer that held the
        lock before). The lock is waited for at most `lock_timeout`. A connection found
        lost here, before any unit ran, is opened again once."""
        for attempt in (1, 2):
            conn = self._connected()
            try:
                with conn.pipeline():
                    self._take_lock(conn)
                    tip = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
                    xid = conn.execute(_XID)
                self._xid = _one(xid.fetchone())
                return conn, tip.fetchone()
            except psycopg.OperationalError:
                if attempt == 2 or not conn.broken:
                    raise
        raise AssertionError("unreachable")

    def _reset(self) -> None:
        """Roll back and forget what the failed transaction held."""
        if not (self._conn.closed or self._conn.broken):
            self._conn.rollback()
        self._pending = Pending()
        self._batch = {}
        self._known.clear()

    def _flush(self) -> None:
        """Write the rows appended in this transaction: one statement per table, all in
        one round trip to the server."""
        pending, conn = self._pending, self._conn
        if pending.events:
            with conn.pipeline(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO events (seq, type, stream, version, recorded_at, actor, "
                    "data_sha256, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    pending.events,
                )
                cur.executemany(
                    "INSERT INTO payloads (seq, data) VALUES (%s, %s)", pending.payloads
                )
                cur.executemany(
                    "INSERT INTO merkle_nodes (level, idx, hash) VALUES (%s, %s, %s)",
                    pending.nodes,
                )
            last = pending.events[-1]
            self._flushes.append((int(last[0]), str(last[7]), self._units_done))
        self._appended += pending.appended
        self._pending = Pending()

    def _mark_checkpoints(self) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO checkpoints (name, seq) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                [(p.name, self._tip.seq) for p in self.projectors],
            )

    def _try_batch(self, batch: list[Job]) -> list[Job]:
        """Run `batch` in one transaction; returns the units to run again, if any.

        A unit that fails having only appended (a rule refused it) fails alone: its rows
        are cut off. One that fails after using the connection rolls the transaction back:
        it fails, and the others run again in a new transaction. If writing the rows, a
        fold or the commit fails, each unit runs again alone, so only the ones at fault
        fail. After a unit that left the transaction failed or ended it, or a connection
        lost during COMMIT, what was kept is looked up (:meth:`_unit_broke_transaction`,
        :meth:`_after_lost_commit`): no unit is both answered as failed and kept, nor
        appended twice.
        """
        conn = self._conn
        outcomes: list[tuple[Job, Any, BaseException | None]] = []
        start_tip = self._tip.copy()
        self._pending, self._batch, self._appended = Pending(), {}, []
        self._flushes, self._units_done = [], 0
        locked = False
        try:
            conn, last = self._locked()  # a lost connection is opened again in there
            locked = True
            self._follow_others(last)
        except Exception as exc:  # no unit is at fault (the lock was held past its timeout,
            # another writer's appends could not be followed): the whole batch fails once
            lost = locked and (self._conn.closed or self._conn.broken)
            self._reset()
            self._tip = start_tip
            if lost and not self._begun_again:  # lost between the lock and the follow:
                self._begun_again = True  # the whole batch begins again, once
                log.warning("connection_lost_at_begin", error=str(exc), units=len(batch))
                return batch
            self._begun_again = False
            log.error("begin_failed", error=str(exc), units=len(batch))
            refused = LedgerUnavailable(f"the write could not start: {exc}")
            settle([(job, None, refused) for job in batch])
            return []
        self._begun_again = False
        committing = False
        try:
            start_tip = self._tip.copy()
            txn = PostgresTransaction(self, conn)
            for job in batch:
                txn.raw = False
                self._units_done = len(outcomes)
                saved, mark, versions = self._tip.copy(), self._pending.mark(), dict(self._batch)
                try:
                    result = job.work(txn)
                    problem: BaseException | None = None
                except BaseException as exc:
                    problem, result = exc, None
                if txn.raw and not self._still_ours(conn):
                    return self._unit_broke_transaction(batch, job, outcomes, problem)
                failed = conn.info.transaction_status == pq.TransactionStatus.INERROR
                if problem is None and not failed:
                    outcomes.append((job, result, None))
                    continue
                if problem is not None and not (txn.raw or failed):  # it only appended to
                    self._tip, self._batch = saved, versions  # pending rows: cut them off
                    self._pending.cut(mark)
                    outcomes.append((job, None, problem))
                    continue
                self._reset()
                self._tip = start_tip
                settle([(job, None, problem or LedgerUnavailable(_UNIT_FAILED))])
                return [other for other in batch if other is not job]
            self._units_done = len(outcomes)
            self._flush()
            if self._appended:
                for projector in self.projectors:
                    projector.apply(conn, self._appended)
                self._mark_checkpoints()
            if conn.info.transaction_status == pq.TransactionStatus.INERROR:  # PostgreSQL
                raise LedgerUnavailable(_FOLD_FAILED)  # would answer COMMIT with a rollback
            committing = True
            conn.commit()
        except Exception as exc:  # writing the rows, a fold or the commit failed
            if committing and (conn.closed or conn.broken):
                return self._after_lost_commit(outcomes, exc)
            self._reset()
            self._tip = start_tip
            if len(batch) > 1:
                log.warning("batch_split", error=str(exc), units=len(batch))
                for job in batch:
                    again = self._try_batch([job])
                    while again:  # its COMMIT was lost and had not taken effect
                        again = self._try_batch(again)
                return []
            log.error("batch_rolled_back", error=str(exc), units=len(batch))
            undone = LedgerUnavailable(f"the write failed and was rolled back: {exc}")
            settle([(job, None, undone) for job in batch])
            return []
        self._lost_in_a_row = 0
        self._known.update(self._batch)
        settle(outcomes)
        return []

    def _still_ours(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the batch's transaction is still open and sound after a unit that had
        the connection: not failed, not committed or rolled back by the unit (a statement
        after that would open another, hence the transaction id), the connection not lost."""
        if conn.broken or conn.info.transaction_status != pq.TransactionStatus.INTRANS:
            return False
        try:
            return _one(conn.execute(_XID).fetchone()) == self._xid
        except psycopg.Error:
            return False

    def _unit_broke_transaction(
        self,
        batch: list[Job],
        job: Job,
        outcomes: list[tuple[Job, Any, BaseException | None]],
        problem: BaseException | None,
    ) -> list[Job]:
        """`job`, with the connection, left the batch's transaction failed, ended or lost.
        It may have committed the rows written so far (a unit must not, but can), so what
        was kept is looked up (see :meth:`_settle_kept`); `job` fails, saying whether what
        it wrote was kept, and the units after it run again."""
        flushes = self._flushes
        with contextlib.suppress(psycopg.Error):
            self._conn.rollback()
        self._reset()
        self._tip = _UNKNOWN_TIP.copy()  # read again under the lock by the next batch
        after = batch[batch.index(job) + 1 :]

        def unknown(check: BaseException) -> LedgerUnavailable:
            return LedgerUnavailable(
                f"a unit of work in the same transaction left it failed or ended it, and "
                f"what was kept could not be looked up ({check}): whether this write took "
                f"effect is unknown; read the log before trying again"
            )

        seen = self._settle_kept(outcomes, flushes, unknown)
        if isinstance(seen, BaseException):
            settle([(job, None, problem or unknown(seen))])
            return after
        again, unit_kept = seen
        log.error("unit_broke_transaction", schema=self.schema, kept=unit_kept)
        words = "was kept" if unit_kept else "was not kept"
        failure = LedgerUnavailable(
            f"this unit of work left the writer's transaction failed or ended it (a unit "
            f"must not commit or roll back): what it wrote up to then {words}"
        )
        failure.__cause__ = problem
        settle([(job, None, failure)])
        return again + after

    def _settle_kept(
        self,
        outcomes: list[tuple[Job, Any, BaseException | None]],
        flushes: list[tuple[int, str, int]],
        unknown: Callable[[BaseException], LedgerUnavailable],
    ) -> tuple[list[Job], bool] | BaseException:
        """After a transaction whose fate is not known: look up which of its writes
        (`flushes`, each the last event written and how many units it covers) are stored,
        newest first; a write that is there holds every write before it. The units whose
        rows are stored get their answers, the units that failed their own errors; returns
        the units to run again and whether any write was kept. If nothing can be looked
        up, every unit that did not fail is told the outcome is unknown (`unknown(why)`),
        none runs again, so nothing is appended twice, and why is returned."""
        kept, any_kept = 0, False
        if flushes:
            try:
                found = self._look_up([seq for seq, _, _ in flushes])
            except Exception as check:  # any failure leaves the outcome unknown
                log.error("outcome_unknown", schema=self.schema, check=str(check))
                settle([(job, None, err or unknown(check)) for job, _, err in outcomes])
                return check
            for seq, digest, units in reversed(flushes):
                if found.get(seq) == digest:
                    kept, any_kept = units, True
                    break
        settle(outcomes[:kept])
        settle([(job, None, err) for job, _, err in outcomes[kept:] if err is not None])
        return [job for job, _, err in outcomes[kept:] if err is None], any_kept

    def _look_up(self, seqs: Sequence[int]) -> dict[int, str]:
        """The stored hashes of `seqs`, read on the writer's connection (opened again if it
        was lost) under the write lock, so after any transaction that held it ended."""
        conn = self._connected()
        try:
            self._take_lock(conn)
            rows = conn.execute(
                "SELECT seq, hash FROM events WHERE seq = ANY(%s)", (list(seqs),)
            ).fetchall()
            return {int(seq): str(digest) for seq, digest in rows}
        finally:
            if not (conn.closed or conn.broken):  # the next batch begins afresh
                conn.rollback()

    def _after_lost_commit(
        self, outcomes: list[tuple[Job, Any, BaseException | None]], exc: BaseException
    ) -> list[Job]:
        """The connection was lost during COMMIT, so whether the batch committed is not
        known: look on a new connection (see :meth:`_settle_kept`). If the batch wrote no
        event there is nothing to look for, and its callers are told the outcome is
        unknown."""
        self._lost_in_a_row += 1
        expected, versions, flushes = self._tip.copy(), dict(self._batch), self._flushes
        self._pending, self._batch, self._appended = Pending(), {}, []
        self._tip = _UNKNOWN_TIP.copy()  # read again under the lock by the next batch

        def unknown(check: BaseException) -> LedgerUnavailable:
            return LedgerUnavailable(
                f"the connection to PostgreSQL was lost during COMMIT ({exc}) and could not "
                f"be checked again ({check}): whether this write took effect is unknown; "
                f"read the log before trying again"
            )

        if not flushes:  # nothing to look for: the units' own work cannot be checked
            lost = LedgerUnavailable(
                f"the connection to PostgreSQL was lost during COMMIT ({exc}): whether this "
                f"work took effect is unknown"
            )
            settle([(job, None, err or lost) for job, _, err in outcomes])
            return []
        seen = self._settle_kept(outcomes, flushes, unknown)
        if isinstance(seen, BaseException):
            return []
        again, committed = seen
        log.warning("commit_reply_lost", committed=committed, seq=expected.seq)
        if committed:
            self._lost_in_a_row = 0
            self._tip = expected
            self._known.update(versions)
        elif again and self._lost_in_a_row >= MAX_LOST_COMMITS:
            log.error("commits_lost", times=self._lost_in_a_row, units=len(again))
            refused = LedgerUnavailable(
                f"the connection to PostgreSQL was lost during COMMIT {self._lost_in_a_row} "
                f"times in a row ({exc}); this write was not kept: try again"
            )
            settle([(job, None, refused) for job in again])
            return []
        return again

    def close(self) -> None:
        """Finish every queued write, then close all connections."""
        if not self._stop_queue():
            return
        self._thread.join()
        self._refuse_leftovers()
        self._conn.close()
        self._drop_idle()

    def _drop_idle(self) -> None:
        """Close the read connections kept between reads."""
        with self._readers_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ---- reads ----

    @contextlib.contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A read connection for one read (autocommit: each statement reads the log as it
        stands when the statement starts), kept for the next read afterwards; at most
        :data:`MAX_IDLE_READERS` are kept, so threads that come and go hold none."""
        with self._readers_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            if self._closed:
                raise LedgerUnavailable("the store is closed")
            conn = connect(self.dsn, self.schema, autocommit=True)
        try:
            yield conn
        finally:
            with self._readers_lock:
                keep = not (self._closed or conn.closed or conn.broken)
                if keep and len(self._idle) < MAX_IDLE_READERS:
                    self._idle.append(conn)
                    keep = False
                    conn = None
            if conn is not None:
                conn.close()

    @staticmethod
    def _read(
        conn: psycopg.Connection[Any], after: int, limit: int, as_stored: bool = False
    ) -> list[Event]:
        # both bounds: with only the events' one, the planner merge-joins the payloads
        # from their first row on every page (1.3 ms a page at 20,000 events)
        rows = conn.execute(
            f"{_SELECT_EVENTS} WHERE e.seq > %s AND p.seq > %s ORDER BY e.seq LIMIT %s",
            (after, after, limit),
            binary=True,  # bytea as it is stored, not hex text to decode
        ).fetchall()
        return rows_to_events(rows, as_stored=as_stored)

    def _query(self, work: Callable[[psycopg.Connection[Any]], R]) -> R:
        """`work` on a read connection; one found lost (a server restart) is replaced once,
        and any other failure of the server is a :class:`LedgerUnavailable`."""
        for attempt in (1, 2):
            with self._reading() as conn:
                try:
                    return work(conn)
                except psycopg.OperationalError as exc:
                    if attempt == 1 and conn.broken:  # the others are likely lost with it
                        self._drop_idle()
                        continue
                    raise LedgerUnavailable(f"cannot read the ledger: {exc}") from None
                except psycopg.Error as exc:
                    raise LedgerUnavailable(f"cannot read the ledger: {exc}") from None
        raise AssertionError("unreachable")

    def read(self, after: int = 0, limit: int = 1000, *, as_stored: bool = False) -> list[Event]:
        """At most `limit` events after seq `after` (any integers: clamped to bigint)."""
        after, limit = max(0, min(after, _MAX_INT)), max(0, min(limit, _MAX_INT))
        return self._query(lambda conn: self._read(conn, after, limit, as_stored))

    def read_stream(self, stream: str) -> list[Event]:
        sql_ = f"{_SELECT_EVENTS} WHERE e.stream = %s ORDER BY e.version"
        return self._query(
            lambda conn: rows_to_events(conn.execute(sql_, (stream,), binary=True).fetchall())
        )

    def size(self) -> int:
        row = self._query(
            lambda conn: conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        )
        return int(row[0]) if row else 0

    def _fetch(self, ids: Sequence[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        return self._query(lambda conn: _nodes(conn, ids))

    def checkpoints(self) -> dict[str, int]:
        rows = self._query(
            lambda conn: conn.execute("SELECT name, seq FROM checkpoints").fetchall()
        )
        return {str(name): int(seq) for name, seq in rows}


def _nodes(
    conn: psycopg.Connection[Any], ids: Sequence[merkle.NodeId]
) -> dict[merkle.NodeId, bytes]:
    """Merkle nodes by (level, idx), in one statement; a missing one is a LedgerError."""
    rows = conn.execute(
        "SELECT n.level, n.idx, n.hash FROM merkle_nodes n "
        "JOIN unnest(%s::integer[], %s::bigint[]) AS want(level, idx) "
        "ON n.level = want.level AND n.idx = want.idx",
        ([level for level, _ in ids], [idx for _, idx in ids]),
    ).fetchall()
    found = {(int(level), int(idx)): bytes(h) for level, idx, h in rows}
    if len(found) != len(set(ids)):
        raise NodesMissing(list(set(ids) - found.keys()))
    return found
