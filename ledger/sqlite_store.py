"""The SQLite event store: one writer thread with group commit, readers on their own connections.

Every write runs on the writer thread, which takes every unit of work waiting in its queue
(waiting a moment for more when recent batches were fuller) and commits them in one
transaction. A unit decides against the writer's cache of the write model and appends to
rows held in memory, so it usually runs no statement at all; the batch's rows go to the
tables with one statement per table just before the read side is folded and the
transaction commits, and a unit that fails is undone by dropping its rows (see
:meth:`SqliteStore._try_batch`). A unit's caller hears only after COMMIT returns, with
`synchronous=FULL` by default, so an acknowledged append survives a crash; coroutines
waiting on one event loop are answered with one wake-up per batch. Readers use a
connection per thread; no SQLite call needs to run on an event loop.

Before the writer takes any work, :func:`ledger.health.check_tail` checks the end of the
stored log; if it is broken the store still serves reads but refuses every append
(:attr:`SqliteStore.write_refusal`), so nothing is ever chained onto a bad hash. A full
disk (or `max_pages`) fails only the appends that need room, as :class:`StorageFull`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog

from ledger import merkle
from ledger.backend import (
    Job,
    LogReads,
    Outcome,
    Pending,
    QueuedWriter,
    Tip,
    chain,
    checked_version,
    fetch_all,
    row_to_event,
    rows_to_events,
    settle,
)
from ledger.codec import (
    ZERO_HASH,
)
from ledger.errors import (
    LedgerError,
    LedgerUnavailable,
    NodesMissing,
    SnapshotChanged,
    StorageFull,
)
from ledger.events import Event, NewEvent
from ledger.files import claim, sweep
from ledger.health import TAIL_DEPTH, TailProblem, check_tail
from ledger.migrations import NewerSchema, migrate
from ledger.schema import LOG_MIGRATIONS
from ledger.store import Projector
from ledger.times import TimeFormatError, format_record_time, parse_record_time
from ledger.writemodel import SqliteWriteState, WriteCache, WriteModel

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL"]
log = structlog.get_logger("ledger.store")

_EVENT_COLUMNS = "e.seq, e.type, e.stream, e.version, e.recorded_at, e.actor, e.data_sha256, e.hash"
_SELECT_EVENTS = (
    f"SELECT {_EVENT_COLUMNS}, p.data FROM events e LEFT JOIN payloads p ON p.seq = e.seq"
)
_FULL = "the database is full: nothing was appended"
_NO_PAGE_LIMIT = 4294967294  # SQLite clamps this to its own largest page count
_MAX_INT = 2**63 - 1  # SQLite's largest INTEGER
BUSY_TIMEOUT_MS = 10000  # how long a connection waits for another's lock
LINGER_NAP = 0.0002  # seconds the writer waits for more units when batches have been fuller
LINGER_NAPS = 3
CHECKPOINT_PAUSE = 0.2  # seconds between two background checkpoints
BACKUP_PROGRESS_STEPS = 200_000  # SQLite instructions between two progress reports of a backup
WRITER_AUTOCHECKPOINT = 16000  # WAL pages before the writer checkpoints in a COMMIT (SQLite: 1000)


def _is_full(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_FULL)
    return "full" in str(exc).lower()


def _failure(exc: BaseException) -> BaseException:
    """What the caller of a failed unit is told: a full disk is :class:`StorageFull`."""
    return StorageFull(_FULL) if _is_full(exc) else exc


def _reach(conn: sqlite3.Connection, projectors: Sequence[Projector], size: int) -> int:
    """The seq up to which every one of `projectors` has folded the log, by their
    checkpoints; `size` (the log's) when there is none."""
    try:
        marks = dict(conn.execute("SELECT name, seq FROM checkpoints").fetchall())
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        marks = {}  # dropped from the file: nothing counts as folded (a rebuild mends it)
    return min((int(marks.get(p.name, 0)) for p in projectors), default=size)


def file_name(path: str | Path) -> str:
    """`path` as a name SQLite opens as that file. A name that starts with `file:` is read
    as a URI (`file:x.db?mode=memory` opens no file, `file:x.db` opens `x.db`), and pathlib
    makes one of `./file:x.db`: such a name is given as the absolute path."""
    name = os.fspath(path)
    return os.path.abspath(name) if name.startswith("file:") else name


def connect(
    path: str | Path, synchronous: Synchronous = "FULL", cache_mib: int = 8
) -> sqlite3.Connection:
    """A connection with the ledger's pragmas: WAL, durable commits, triggers that recurse."""
    conn = sqlite3.connect(file_name(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA recursive_triggers = ON")
        conn.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")
    except BaseException:
        conn.close()
        raise
    return conn


_SNAPSHOT_ERRORS = ("SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_READONLY")


def snapshot_reason(path: Path, exc: BaseException) -> str | None:
    """Why the ledger file at `path` can be read only as a snapshot, when `exc` kept a
    connection from reading it; None when `exc` is some other failure.

    SQLite reads a WAL database through two files beside it, `-wal` and `-shm`, which it
    creates and sizes even to read. On a full disk or a read-only file system (an archive
    mounted read-only, say) it cannot, so a read fails before it starts. The database file
    alone holds every commit while its `-wal` is absent or empty (a ledger closed cleanly
    leaves none), and is then read as an immutable snapshot: no lock, no file beside it.
    A `-wal` that holds frames may hold the last commits; reading without it would show
    an older log as the whole one, so that case is refused here.
    """
    if not isinstance(exc, sqlite3.OperationalError) or not path.is_file():
        return None
    if not getattr(exc, "sqlite_errorname", "").startswith(_SNAPSHOT_ERRORS):
        return None
    real = path.resolve()  # SQLite follows a link: its -wal sits beside the file itself
    why = f"SQLite cannot write beside it ({exc})"
    way_out = "a folder you can write"
    with contextlib.suppress(OSError, AttributeError):  # no statvfs on Windows
        fs = os.statvfs(real.parent)
        if fs.f_flag & os.ST_RDONLY:
            why, way_out = "its file system is read-only", "a disk you can write"
        elif fs.f_bavail == 0:
            why, way_out = "its disk is full", "a disk with room"
    wal = real.with_name(f"{real.name}-wal")
    with contextlib.suppress(OSError):
        if wal.stat().st_size > 0:
            free = "free some room there, or " if why == "its disk is full" else ""
            raise LedgerUnavailable(
                f"cannot open a ledger at {path}: {why}, and its last commits are in "
                f"{wal}, which SQLite reads only once it can write {real.name}-shm beside "
                f"it: {free}copy {real.name} with its -wal and -shm files to {way_out} and "
                "open the copy"
            )
    return why


def read_only_cause(path: Path) -> str:
    """Why SQLite will not write the ledger at `path`, in words. A ledger read while its
    file was read-only gets `-wal` and `-shm` files made with the same permissions, which
    keep it read-only once the file is writable again: those are named, with the way out
    (never to remove them, since a `-wal` may hold the last commits)."""
    real = path.resolve()
    if os.access(real, os.W_OK):
        stuck = [
            side.name
            for side in (real.with_name(real.name + s) for s in ("-wal", "-shm"))
            if side.exists() and not os.access(side, os.W_OK)
        ]
        if stuck:
            are, them = ("is", "it") if len(stuck) == 1 else ("are", "them")
            return (
                f"the database file is writable but {' and '.join(stuck)} beside it "
                f"{are} not (made so by a read while the file was read-only): make {them} "
                "writable (chmod u+w) while nothing has the ledger open"
            )
    return "the database file is read-only"


def file_state(path: Path) -> tuple[int, int, int, int]:
    """What any write to the ledger at `path` changes: the database file's identity, size
    and modification time, and the size of its `-wal` (0 when there is none)."""
    real = path.resolve()
    st = real.stat()
    wal = 0
    with contextlib.suppress(OSError):
        wal = real.with_name(f"{real.name}-wal").stat().st_size
    return st.st_ino, st.st_size, st.st_mtime_ns, wal


def connect_snapshot(path: Path, cache_mib: int = 8) -> sqlite3.Connection:
    """A read-only connection to the database file alone, as it stands (see
    :func:`snapshot_reason`): SQLite takes no lock and writes nothing beside it."""
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")
    return conn


def connect_or_snapshot(
    path: Path, synchronous: Synchronous = "FULL", cache_mib: int = 8
) -> tuple[sqlite3.Connection, str | None]:
    """The usual connection, or a snapshot of the file where SQLite cannot write beside it,
    with the reason (see :func:`snapshot_reason`)."""
    try:
        return connect(path, synchronous, cache_mib), None
    except sqlite3.OperationalError as exc:
        reason = snapshot_reason(path, exc)
        if reason is None:
            raise
        return connect_snapshot(path, cache_mib), reason


def connect_reader(path: Path, cache_mib: int = 8) -> sqlite3.Connection:
    """A connection for reading only (see :func:`connect_or_snapshot`)."""
    conn, _ = connect_or_snapshot(path, cache_mib=cache_mib)
    conn.execute("PRAGMA query_only = ON")
    return conn


def events_where(conn: sqlite3.Connection, where: str, args: Sequence[Any]) -> Iterator[Event]:
    """The events (with their payloads, None where erased) that `where` selects on `conn`."""
    for row in conn.execute(f"{_SELECT_EVENTS} {where}", args):
        yield row_to_event(row)


def event_at(conn: sqlite3.Connection, seq: int) -> Event | None:
    """Event `seq` as `conn` sees it (in its transaction, if any), or None."""
    return next(events_where(conn, "WHERE e.seq = ?", (seq,)), None)


def fetch_nodes(
    conn: sqlite3.Connection, ids: Sequence[merkle.NodeId]
) -> dict[merkle.NodeId, bytes]:
    """Read Merkle nodes in one statement of primary-key probes (O(log n) of them).

    A missing node is a :class:`LedgerError`.
    """
    found: dict[merkle.NodeId, bytes] = {}
    probe = "SELECT level, idx, hash FROM merkle_nodes WHERE level = ? AND idx = ?"
    for start in range(0, len(ids), 400):  # SQLite allows 500 terms in a compound SELECT
        part = ids[start : start + 400]
        args = [n for node in part for n in node]
        for level, idx, h in conn.execute(" UNION ALL ".join([probe] * len(part)), args):
            found[(level, idx)] = h
    if len(found) != len(set(ids)):
        raise NodesMissing(list(set(ids) - found.keys()))
    return found


def stream_version_at(conn: sqlite3.Connection, stream: str, seq: int) -> int:
    """The version of `stream` once the log held `seq` events (0 before its first)."""
    row = conn.execute(
        "SELECT version FROM events WHERE stream = ? AND seq <= ? ORDER BY version DESC LIMIT 1",
        (stream, seq),
    ).fetchone()
    return int(row[0]) if row else 0


# The last seq whose recorded_at is at or before :t, by bisection over seq: record times
# never go back along the log and seqs run 1..n without a gap, so ~log2(n) primary-key
# probes answer it, in one statement, and no index on recorded_at is kept up per append.
# Each row keeps lo a seq recorded by :t (0: none), hi one past any candidate and ok
# whether the seq halfway between them was recorded by :t.
_SEQ_AT = """
WITH RECURSIVE bisect(lo, hi, ok) AS (
    SELECT 0, n + 1, coalesce((SELECT recorded_at FROM events WHERE seq = (n + 1) / 2) <= :t, 0)
    FROM (SELECT coalesce(max(seq), 0) AS n FROM events)
    UNION ALL
    SELECT
        iif(ok, (lo + hi) / 2, lo),
        iif(ok, hi, (lo + hi) / 2),
        coalesce(
            (
                SELECT recorded_at FROM events
                WHERE seq = (iif(ok, (lo + hi) / 2, lo) + iif(ok, hi, (lo + hi) / 2)) / 2
            ) <= :t,
            0
        )
    FROM bisect WHERE hi - lo > 1
)
SELECT lo FROM bisect WHERE hi - lo <= 1
"""


def seq_at(conn: sqlite3.Connection, recorded_us: int) -> int:
    """The last seq recorded at or before `recorded_us` (record times never go back)."""
    row = conn.execute(_SEQ_AT, {"t": format_record_time(recorded_us)}).fetchone()
    return int(row[0] or 0) if row else 0


def log_size(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(seq) FROM events").fetchone()
    return int(row[0] or 0)


class SqliteTransaction:
    """The writer's view of one unit of work (see :class:`ledger.store.Transaction`)."""

    def __init__(self, store: SqliteStore, connection: sqlite3.Connection) -> None:
        self._store = store
        self._conn = connection
        self.raw = False  # the unit had the connection: whatever it wrote, the cache lacks

    @property
    def connection(self) -> sqlite3.Connection:
        """The writer's connection, to read or write anything at all.

        Every row appended so far is written first, so the connection sees the whole
        transaction. Using it makes the writer forget its cache of the write model after
        this unit, since what was written through it is unknown; :attr:`sql` does not.
        """
        self.raw = True
        self._store._flush()
        return self._conn

    @property
    def sql(self) -> sqlite3.Connection:
        """The connection, for statements that never write the log or the write model."""
        return self._conn

    @property
    def projectors(self) -> Sequence[Projector]:
        """The store's projectors, the write model first: what its appends fold into."""
        return tuple(self._store.projectors)

    def write_state(self) -> SqliteWriteState:
        """The write model as this transaction sees it, answered from the writer's cache."""
        return SqliteWriteState(self._conn, self._store._cache)

    def stream_version(self, stream: str) -> int:
        return self._store._cache.version(self._conn, stream)

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        actor: str,
        expected_version: int | None = None,
    ) -> list[Event]:
        version = checked_version(stream, events, expected_version, self.stream_version)
        return self.append_many(events, actor, {stream: version})

    def append_many(
        self,
        events: Sequence[NewEvent],
        actor: str,
        versions: dict[str, int] | None = None,
    ) -> list[Event]:
        """Append events of any streams in order (versions looked up unless given)."""
        if not events:
            return []
        if self._store.write_refusal is not None:
            raise LedgerUnavailable(self._store.write_refusal)
        store = self._store
        out = chain(
            store._tip, store._pending, events, actor, dict(versions or {}), self.stream_version
        )
        # later units of this batch decide on the cache; the rows, the write model's
        # tables and the read side are written once for the whole batch
        store._cache.appended(out, self._conn)
        store._unprojected.extend(out)
        return out


def _partial(dest: Path) -> Path:
    """Where a backup to `dest` is written before it is linked into place."""
    return dest.with_name(f".{dest.name}.partial-{os.getpid()}")


SIDE_FILES = ("-journal", "-wal", "-shm")
"""The files SQLite keeps beside a database while it writes or reads it."""


def _sides(path: Path) -> list[Path]:
    return [path.with_name(path.name + side) for side in SIDE_FILES]


def _sweep_partials(dest: Path) -> None:
    """Remove what a killed backup to `dest` left beside it: its temporary copy (and
    SQLite's files beside it, held by the copy's lock) that no running backup holds."""

    def held_by(left: Path) -> Path:
        for side in SIDE_FILES:
            if left.name.endswith(side):
                return left.with_name(left.name.removesuffix(side))
        return left

    sweep(dest.parent.glob(f".{glob.escape(dest.name)}.partial-*"), held_by)


class SqliteStore(LogReads, QueuedWriter[SqliteTransaction]):
    """The embedded backend of :class:`ledger.store.EventStore`."""

    def __init__(
        self,
        path: str | Path,
        projectors: Sequence[Projector] = (),
        *,
        synchronous: Synchronous = "FULL",
        max_batch: int = 1024,
        max_pages: int | None = None,
        tail_check: int = TAIL_DEPTH,
        background_checkpoints: bool = True,
    ) -> None:
        """Open (creating and migrating if need be) and start the writer.

        `max_pages` caps the database file at that many pages (SQLite's
        `max_page_count`), so a full disk can be met on purpose; :meth:`set_max_pages`
        moves the cap. `tail_check` is how many of the last events the start-up check
        reads (0: none). `background_checkpoints` copies committed WAL frames into the
        database file from a thread of its own (see :meth:`_checkpoints`).
        """
        self._open_reads()
        self.path = Path(path)
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.projectors: list[Projector] = [WriteModel(), *projectors]
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._open_queue()
        self.write_refusal: str | None = None
        """Why appends are refused (the stored log failed its start-up check), or None."""
        self.storage_problem: str | None = None
        """Set while the last append that needed room found the database full."""
        self._unprojected: list[Event] = []  # appended in this batch, read side not yet
        self._cache = WriteCache()  # the write model as last committed, plus this batch
        self._pending = Pending()
        self._listeners: list[Callable[[int], None]] = []
        self.snapshot: str | None
        """Why the ledger is open as a read-only snapshot of its file (a full disk, a
        read-only file system: see :func:`snapshot_reason`), or None."""
        try:
            self._conn, self.snapshot = self._open(synchronous)
        except (sqlite3.DatabaseError, NewerSchema) as exc:  # no such folder, not a database,
            # no permission, a newer version's ledger
            raise LedgerUnavailable(f"cannot open a ledger at {self.path}: {exc}") from None
        self._snapshot_of: tuple[int, int, int, int] | None = None
        if self.snapshot is not None:
            self._snapshot_of = file_state(self.path)
            self.write_refusal = (
                f"appends are refused: the ledger is open as a read-only snapshot, since "
                f"{self.snapshot}"
            )
            log.warning("read_only_snapshot", path=str(self.path), reason=self.snapshot)
        self._tip = self._load_tip(tail_check)
        if self.snapshot is None and not self._writable():  # a broken log says so first
            if self.write_refusal is None:
                self.write_refusal = f"appends are refused: {read_only_cause(self.path)}"
            log.warning("read_only", path=str(self.path))
        behind = _reach(self._conn, self.projectors, self._tip.seq) < self._tip.seq
        # views that could not catch up on opening (a full disk, a read-only file): the
        # first batch folds them before its own events, as after another writer's commits,
        # so no checkpoint it moves skips what they lack
        # (not where appends are refused: there is nothing to fold them with)
        self._data_version = -1 if behind and self.write_refusal is None else self._version()
        if max_pages is not None:
            self._set_max_pages(self._conn, max_pages)
        self._appended = threading.Event()  # set after each commit that appended
        self._closing = threading.Event()  # ends the checkpointer's pause at once
        self._writing = threading.Lock()  # a batch runs: on the writer thread or commit_here
        # one checkpoint at a time in this process: SQLite answers a second one BUSY
        self._checkpointing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()
        self._checkpointer: threading.Thread | None = None
        if background_checkpoints and self.snapshot is None:
            # the thread copies the frames; the writer's own checkpoint, which holds a
            # batch while it copies what is left and syncs twice, then runs far less
            # often (see _checkpoints)
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT}")
            self._checkpointer = threading.Thread(
                target=self._checkpoints, name="ledger-checkpointer", daemon=True
            )
            self._checkpointer.start()

    def _open(self, synchronous: Synchronous) -> tuple[sqlite3.Connection, str | None]:
        """The writer's connection, the schema brought up to date; a snapshot of the file
        where SQLite cannot write beside it, with the reason (see :func:`snapshot_reason`)."""
        conn, snapshot = connect_or_snapshot(self.path, synchronous, cache_mib=64)
        try:
            migrate(conn, LOG_MIGRATIONS, family="ledger")
            for projector in self.projectors:
                projector.migrate(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            if snapshot is None:
                raise
            raise sqlite3.OperationalError(
                f"its schema is older than this version's, and upgrading it needs writing, "
                f"but {snapshot} ({exc})"
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn, snapshot

    def _refuse_on_snapshot(self) -> None:
        """Any write to the file is refused on a snapshot, saying why (as appends are)."""
        if self.snapshot is not None:
            raise LedgerUnavailable(self.write_refusal or self.snapshot)

    def _connect(self, cache_mib: int = 8) -> sqlite3.Connection:
        """Another connection to the file, for reading: a snapshot's own where the store
        is one (see :attr:`snapshot`)."""
        if self.snapshot is not None:
            return connect_snapshot(self.path, cache_mib)
        return connect(self.path, self.synchronous, cache_mib)

    # ---- the writer ----

    def _refuse(self, reason: str) -> None:
        if self.write_refusal is None:
            self.write_refusal = f"appends are refused: {reason}; run `ledger verify`"
            log.error("appends_refused", path=str(self.path), reason=reason)

    def _load_tip(self, tail_check: int) -> Tip:
        """The log's tip, its tail checked first (see :func:`check_tail`), all read in one
        snapshot: another process appending between two of these reads must not look like
        a payload or a node past the head."""
        conn = self._conn
        if conn.in_transaction:  # the writer's own transaction is one snapshot already
            return self._read_tip(tail_check)
        conn.execute("BEGIN")
        try:
            return self._read_tip(tail_check)
        finally:
            conn.execute("COMMIT")

    def _read_tip(self, tail_check: int) -> Tip:
        try:
            check_tail(self._conn, tail_check)
        except TailProblem as exc:
            self._refuse(f"the stored log is broken at {exc}")
            if exc.tree:
                self.tree_refusal = (
                    f"the stored Merkle tree is broken at {exc}: its roots and proofs would "
                    "not hold; run `ledger verify`"
                )
        row = self._conn.execute(
            "SELECT seq, hash, recorded_at FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return Tip(0, ZERO_HASH, 0, merkle.MerkleFrontier.empty())
        size = int(row[0])
        try:
            frontier = merkle.MerkleFrontier.load(size, lambda ids: fetch_nodes(self._conn, ids))
            return Tip(size, bytes.fromhex(row[1]), parse_record_time(row[2]), frontier)
        except LedgerError as exc:
            self._refuse(f"the stored Merkle tree is incomplete: {exc}")
        except (TypeError, ValueError, TimeFormatError) as exc:
            self._refuse(f"the last event (seq {size}) is malformed: {exc}")
        return Tip(size, ZERO_HASH, 0, merkle.MerkleFrontier.empty())

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _writable(self) -> bool:
        """Whether the file can be written: one that cannot (opened read-only, immutable,
        on read-only media) still serves reads, with appends refused and health saying why.
        A header write that is rolled back finds out; a busy lock counts as writable."""
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 0")  # another writer busy: do not wait for it
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute(f"PRAGMA user_version = {version}")
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            return not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY")
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return True

    def _follow_others(self, *, fold: bool = True) -> None:
        """Inside the write lock: if another connection committed since this writer last
        looked (another process appending to the same file, `ledger import` while serving,
        a CLI command), read the tip again, forget the cached write model and fold into
        this store's projectors whatever they have not folded (the other writer may run
        without them, as an import does), so nothing is chained onto a stale tip and no
        checkpoint this writer moves skips an event. One cheap pragma per batch; SQLite
        bumps it only for other connections. The version is recorded only once all of
        that worked (a rollback forgets it too), so a failure here is retried. Without
        `fold` (a batch that rebuilds the views) the tip is read again, nothing folded."""
        version = self._version()
        if version == self._data_version:
            return
        from ledger.replay import catch_up  # replay builds on this module

        self._cache.clear()
        row = self._conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        seq, digest = row.fetchone() or (0, ZERO_HASH.hex())
        if (seq, digest) != (self._tip.seq, self._tip.hash.hex()):
            log.info("tip_moved", path=str(self.path), seq=seq, was=self._tip.seq)
            self._tip = self._load_tip(0)
        if fold:
            catch_up(self._conn, self.projectors, until=self._tip.seq)
        self._data_version = version

    @staticmethod
    def _set_max_pages(conn: sqlite3.Connection, pages: int | None) -> int:
        limit = _NO_PAGE_LIMIT if pages is None else max(1, int(pages))
        row = conn.execute(f"PRAGMA max_page_count = {limit}").fetchone()
        return int(row[0])

    def set_max_pages(self, pages: int | None) -> int:
        """Cap the database at `pages` pages (None: no cap); returns the cap now in force.

        SQLite never sets the cap below the file's current size. Runs on the writer, after
        the writes queued before it.
        """
        return self.run_sync(lambda txn: self._set_max_pages(txn.connection, pages))

    def page_count(self) -> int:
        """The database's size in pages, as the writer sees it."""
        return self.run_sync(
            lambda txn: int(txn.connection.execute("PRAGMA page_count").fetchone()[0])
        )

    def _run(self) -> None:
        recent = 1.0  # how many units the last batches held (a moving average)
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            open_ = self._take(batch)
            # Callers that were just answered are about to send their next unit: when the
            # last batches were fuller than this one, wait a moment for them, so a commit
            # carries more units (at most `linger` seconds, in a few short naps).
            naps = 0
            while open_ and len(batch) < recent - 0.5 and naps < LINGER_NAPS:
                time.sleep(LINGER_NAP)
                naps += 1
                open_ = self._take(batch)
            recent = 0.8 * recent + 0.2 * len(batch)
            with self._writing:
                self._run_batch(batch)

    def _run_batch(self, batch: list[Job]) -> None:
        try:
            self._commit_batch(batch)
        except Exception as exc:  # a fault in the writer itself: nobody waits forever
            self._crashed(batch, exc)

    def _crashed(self, batch: list[Job], exc: Exception) -> None:
        """The writer failed outside any unit: roll back, answer the batch's callers
        that have no answer yet, and refuse appends from now on, since what the writer
        holds in memory (the tip, the cache) can no longer be trusted."""
        log.exception("writer_failed", units=len(batch))
        with contextlib.suppress(Exception):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        self._cache.clear()
        self._pending = Pending()
        self._unprojected = []
        self._refuse(f"the writer failed ({type(exc).__name__}: {exc}), restart the server")
        problem = LedgerUnavailable(f"the write failed: {exc}")
        settle([(job, None, problem) for job in batch if not job.answered()])

    def _commit_batch(self, batch: list[Job], started: bool = False) -> None:
        pending = batch
        if not started:
            pending = [job for job in batch if job.start()]
        if self.snapshot is not None:  # no transaction can even begin on a snapshot
            refused = LedgerUnavailable(self.write_refusal or self.snapshot)
            settle([(job, None, refused) for job in pending])
            return
        while pending:
            pending = self._try_batch(pending)

    def _flush(self) -> None:
        """Write the rows appended in this transaction and fold them into the write model."""
        pending, conn = self._pending, self._conn
        if pending.events:
            conn.executemany(
                "INSERT INTO events (seq, type, stream, version, recorded_at, actor, "
                "data_sha256, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                pending.events,
            )
            conn.executemany("INSERT INTO payloads (seq, data) VALUES (?, ?)", pending.payloads)
            conn.executemany(
                "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", pending.nodes
            )
            self.projectors[0].apply(conn, pending.appended)
        self._pending = Pending()

    def _try_batch(self, batch: list[Job]) -> list[Job]:
        """Run `batch` in one transaction; returns the units to run again, if any.

        A unit that fails having appended only to the pending rows (the usual case: a rule
        refused it) fails alone: its rows are cut off. One that fails after writing
        through the raw connection, or an error on which SQLite rolls back the whole
        transaction by itself, rolls the transaction back: that unit fails and every other
        unit of the batch, undone with it though none was acknowledged, is run again in a
        new transaction. If writing the pending rows, folding the read side or the commit
        fails (a full disk, say), each unit runs again in a transaction of its own, so only
        the ones at fault fail. No savepoint per unit: each costs two statements, and
        undoing part of a transaction is rare.
        """
        conn = self._conn
        cache = self._cache
        outcomes: list[tuple[Job, Any, BaseException | None]] = []
        start_tip = self._tip.copy()
        self._pending = Pending()
        begun = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            # failing, it fails the batch once, as BEGIN does; a rebuild alone folds
            # everything itself (beside other units, they need the views up to date)
            self._follow_others(fold=not (len(batch) == 1 and batch[0].resets_views))
            begun = True
            start_tip = self._tip.copy()
            start_seq = start_tip.seq
            self._unprojected = []
            txn = SqliteTransaction(self, conn)
            for job in batch:
                txn.raw = False
                saved = self._tip.copy()
                mark = cache.mark()
                pending_mark = self._pending.mark()
                unprojected = len(self._unprojected)
                changes = conn.total_changes
                try:
                    result = job.work(txn)
                except BaseException as exc:  # the unit fails alone if it wrote nothing
                    self._note_storage(exc)
                    # (a unit that had the connection may have changed the schema, which
                    # `total_changes` does not count: its batch is undone)
                    if conn.in_transaction and conn.total_changes == changes and not txn.raw:
                        self._tip = saved
                        cache.undo(mark)
                        self._pending.cut(pending_mark)
                        del self._unprojected[unprojected:]
                        outcomes.append((job, None, _failure(exc)))
                        continue
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._tip = start_tip
                    self._data_version = -1  # what _follow_others did is undone too
                    cache.clear()
                    self._pending = Pending()
                    settle([(job, None, _failure(exc))])
                    return [other for other in batch if other is not job]
                if txn.raw:
                    cache.clear()
                outcomes.append((job, result, None))
            self._flush()
            if self._unprojected:
                for projector in self.projectors[1:]:
                    projector.apply(conn, self._unprojected)
                self._unprojected = []
            if self._tip.seq > start_seq:
                conn.executemany(
                    "INSERT INTO checkpoints (name, seq) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                    [(p.name, self._tip.seq) for p in self.projectors],
                )
            conn.execute("COMMIT")
            cache.committed()
        except Exception as exc:  # writing the rows, a fold or the commit failed
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._tip = start_tip
            self._data_version = -1
            cache.clear()
            self._pending = Pending()
            self._note_storage(exc)
            if not begun:  # no unit is at fault (another writer held the lock past the
                # busy timeout, or its appends could not be followed): the whole batch
                # fails once rather than once a unit
                log.error("begin_failed", error=str(exc), units=len(batch))
                problem = LedgerUnavailable(f"the write could not start: {exc}")
                settle([(job, None, problem) for job in batch])
                return []
            if len(batch) > 1:  # find the unit(s) at fault: each again in its own transaction
                log.warning("batch_split", error=str(exc), units=len(batch))
                for job in batch:
                    self._commit_batch([job], started=True)
                return []
            error: BaseException = (
                StorageFull(_FULL)
                if _is_full(exc)
                else LedgerUnavailable(f"the write failed and was rolled back: {exc}")
            )
            log.error("batch_rolled_back", error=str(exc), units=len(batch))
            settle([(job, None, error) for job in batch])
            return []
        if self._tip.seq > start_seq:
            self.storage_problem = None
        settle(outcomes)
        if self._tip.seq > start_seq:
            self._appended.set()
            self.announce(self._tip.seq)
        return []

    def _note_storage(self, exc: BaseException) -> None:
        if _is_full(exc):
            if self.storage_problem is None:
                log.error("storage_full", path=str(self.path))
            self.storage_problem = "the database was full at the last append that needed room"

    def _checkpoints(self) -> None:
        """Copy committed WAL frames into the database file, off the writer's path.

        SQLite's own checkpoint runs inside a COMMIT once the WAL holds more than
        `wal_autocheckpoint` pages, and holds that batch (and every caller in it) while
        it copies what is left and syncs the WAL and the database file. This thread runs
        a PASSIVE checkpoint (it never waits for a lock and never blocks the writer or a
        reader) at most every `CHECKPOINT_PAUSE` seconds while appends go on, so the
        writer's own checkpoint finds most frames already copied. The writer's is still
        what lets the WAL start over under continuous writes (this thread's never quite
        catches up with a busy writer), but with this thread it waits for
        `WRITER_AUTOCHECKPOINT` pages instead of 1,000, so it holds one commit in ~50-110
        instead of one in ~10, for a WAL of up to ~66 MB. More often costs the machine:
        a page that several commits changed is copied, a random write of its own, once
        per checkpoint, and on two cores those writes and their syncs are taken from the
        server (docs/benchmarks.md, "Session 21"). `close` ends the pause at once.
        """
        conn: sqlite3.Connection | None = None
        failing: str | None = None  # the error last logged, so a full disk logs it once
        try:
            while self._appended.wait():
                if self._closed:
                    return
                self._appended.clear()
                try:
                    if conn is None:
                        conn = connect(self.path, self.synchronous, cache_mib=1)
                    with self._checkpointing:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's own checkpoint still runs
                    if str(exc) != failing:
                        failing = str(exc)
                        log.warning("background_checkpoint_failed", error=failing)
                else:
                    if failing is not None:
                        failing = None
                        log.info("background_checkpoint_recovered")
                if self._closing.wait(CHECKPOINT_PAUSE):
                    return
        finally:
            if conn is not None:
                conn.close()

    def empty_wal(self) -> bool:
        """Copy the whole WAL into the database file and truncate it (a TRUNCATE
        checkpoint); False when a reader kept it from finishing within the busy timeout.
        Waits for a background checkpoint of this store that is under way (SQLite would
        answer a second checkpoint BUSY at once)."""
        self._refuse_on_snapshot()
        conn = connect(self.path, self.synchronous, cache_mib=1)
        try:
            with self._checkpointing:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        return not busy

    def vacuum(self) -> None:
        """Rewrite the database file from its live rows (SQLite's VACUUM), so no free page
        or free space inside a page keeps bytes of anything deleted; the rewritten pages
        pass through the WAL (see :meth:`empty_wal`)."""
        self._refuse_on_snapshot()
        conn = connect(self.path, self.synchronous, cache_mib=64)
        try:
            conn.execute("VACUUM")
        except sqlite3.OperationalError as exc:  # another writer held it past the timeout
            raise LedgerUnavailable(f"the file could not be rewritten now: {exc}") from None
        finally:
            conn.close()

    def file_bytes(self) -> int:
        """The database's size in bytes (its pages, free ones included), as a reader sees it."""
        conn = self.reader()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)

    def backup(
        self,
        dest: Path,
        progress: Callable[[int], None] | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> int:
        """Copy the database to `dest`, which must not exist, as it stood at one moment,
        while appends go on; returns the copy's size in bytes.

        The copy is built from the live rows only (SQLite's VACUUM INTO), so no free page
        carries bytes of anything deleted (an erased payload) into it. It is written under
        a temporary name beside `dest`, handed to `check` (which verifies it), synced, then
        linked into place, so `dest` is the whole copy, checked, or nothing (a check
        stopped halfway leaves nothing), and a file that appears at `dest` meanwhile is
        never replaced. `progress` is called with the bytes written so far.
        """
        _sweep_partials(dest)
        partial = _partial(dest)
        try:
            held = claim(partial)
        except FileExistsError:  # this process's own copy to `dest` is under way
            raise LedgerError(f"a backup to {dest} is already running here") from None
        except OSError as exc:
            raise LedgerUnavailable(f"the copy could not be written: {exc}") from None
        conn = self._connect(cache_mib=64)
        try:
            if progress is not None:
                report = progress  # narrowed for the closure

                def tick() -> int:
                    with contextlib.suppress(OSError):
                        report(partial.stat().st_size)
                    return 0

                conn.set_progress_handler(tick, BACKUP_PROGRESS_STEPS)
            try:
                conn.execute("VACUUM INTO ?", (file_name(partial),))
            except sqlite3.Error as exc:
                if "interrupted" in str(exc):  # a Ctrl-C met in the progress handler
                    raise KeyboardInterrupt from None
                if _is_full(exc):
                    raise StorageFull("the disk is full: no backup was written") from None
                raise LedgerUnavailable(f"the copy could not be written: {exc}") from None
            conn.close()
            if check is not None:
                check(partial)
            with partial.open("rb") as written:
                os.fsync(written.fileno())
            try:
                os.link(partial, dest)
            except FileExistsError:
                raise LedgerError(f"{dest} appeared while the copy was written") from None
            except OSError:  # a file system without hard links
                if dest.exists():
                    raise LedgerError(f"{dest} appeared while the copy was written") from None
                os.rename(partial, dest)
            with contextlib.suppress(OSError):  # make the new name durable too
                folder = os.open(dest.parent, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
            return dest.stat().st_size
        finally:
            conn.close()
            for left in (partial, *_sides(partial)):
                with contextlib.suppress(OSError):  # never hide the error that got us here
                    left.unlink(missing_ok=True)
            os.close(held)

    def add_listener(self, listener: Callable[[int], None]) -> None:
        """Call `listener(seq)` on the writer thread after each commit that appended."""
        self._listeners.append(listener)

    def announce(self, size: int) -> None:
        """Tell the listeners the log now holds `size` events, appended by another writer."""
        for listener in list(self._listeners):
            listener(size)

    def submit(
        self, work: Callable[[SqliteTransaction], T], *, resets_views: bool = False
    ) -> Future[T]:
        """Queue `work` for the writer; the future resolves after its commit.

        While :attr:`write_refusal` is set, work still runs (reads, schema steps) but any
        append in it raises :class:`LedgerUnavailable` with the reason.
        """
        return super().submit(work, resets_views=resets_views)

    def commit_here(self, works: Sequence[Callable[[SqliteTransaction], T]]) -> list[Outcome[T]]:
        """Run `works` in the calling thread, as the writer thread would run them queued
        together: in group commits of at most `max_batch` units, each unit's outcome set
        after its commit (in order, before this returns). For a process whose writes all
        come through one thread (the API's writer process), this saves handing each unit
        to the writer thread and back; units submitted meanwhile wait their turn, and
        :meth:`close` waits for this to end. Not from inside a unit of work: it would wait
        for itself.
        """
        outcomes: list[Outcome[T]] = [Outcome() for _ in works]  # not Outcome[T](): typing's call
        jobs = [Job(work, outcome=outcome) for work, outcome in zip(works, outcomes, strict=True)]
        with self._writing:
            with self._accepting:
                closed = self._closed
            if closed:
                settle([(job, None, LedgerUnavailable("the store is closed")) for job in jobs])
            else:
                for start in range(0, len(jobs), self.max_batch):
                    self._run_batch(jobs[start : start + self.max_batch])
        return outcomes

    def close(self) -> None:
        """Finish every queued write (and a :meth:`commit_here` under way), then close
        all connections."""
        if not self._stop_queue():
            return
        self._thread.join()
        self._refuse_leftovers()
        if self._checkpointer is not None:
            self._closing.set()
            self._appended.set()
            self._checkpointer.join()
        with self._writing:  # a batch run by commit_here on another thread ends first
            self._conn.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # ---- reads ----

    def _check_snapshot(self) -> None:
        """A snapshot holds while nothing writes the file: once something does (a writer
        that found room again), a read could mix the old state with the new, or find the
        file malformed, so every read is refused, and appends with them, saying why."""
        if self._snapshot_of is None:
            return
        try:
            same = file_state(self.path) == self._snapshot_of
        except OSError:
            same = False
        if not same:
            changed = (
                "the ledger file changed since it was opened as a read-only snapshot (it was "
                "written, so SQLite can write beside it again): open it again (restart the "
                "server) to read it as it is now"
            )
            self.write_refusal = f"appends are refused: {changed}"
            raise SnapshotChanged(changed)

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (see :meth:`_check_snapshot` for a snapshot's)."""
        self._check_snapshot()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _events(self, where: str, args: Sequence[Any]) -> Iterator[Event]:
        return events_where(self.reader(), where, args)

    def read(self, after: int = 0, limit: int = 1000, *, as_stored: bool = False) -> list[Event]:
        """At most `limit` events after seq `after` (any integers: clamped to SQLite's range)."""
        after, limit = max(0, min(after, _MAX_INT)), max(0, min(limit, _MAX_INT))
        sql = f"{_SELECT_EVENTS} WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
        if not as_stored:
            return rows_to_events(self.reader().execute(sql, (after, limit)).fetchall())
        return rows_to_events(fetch_all(self.reader(), sql, (after, limit)), as_stored=True)

    def read_stream(self, stream: str) -> list[Event]:
        return list(self._events("WHERE e.stream = ? ORDER BY e.version", (stream,)))

    def size(self) -> int:
        row = self.reader().execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def opened_size(self) -> int:
        """The log's size as this store last knew it without reading: when it was opened,
        or after its own last append."""
        return self._tip.seq

    def views_reach(self) -> int:
        """The seq up to which every projector has folded the log: the log's size, but for
        a ledger whose projections could not catch up on opening (a read-only file left
        behind by a stopped import)."""
        return _reach(self.reader(), self.projectors, self.size())

    def seq_at(self, recorded_us: int) -> int:
        """The last seq recorded at or before `recorded_us` (record times never go back)."""
        return seq_at(self.reader(), recorded_us)

    def _fetch(self, ids: Sequence[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        return fetch_nodes(self.reader(), ids)

    def checkpoints(self) -> dict[str, int]:
        return dict(self.reader().execute("SELECT name, seq FROM checkpoints").fetchall())
