"""Rebuild projections from the log, and audit live projections against a replay from nothing.

A projection is a pure fold of the log, so replaying every event into empty tables must
give exactly the rows the live tables hold. :func:`rebuild` does that in place, in one
unit of work on the writer (no append can interleave); :func:`audit_projections` does it
in a scratch database and compares; :func:`audit` adds :func:`ledger.verify.verify_log`
and is what `POST /v1/audit` and `ledger audit` report.

The projectors of the read side live in `projections/`, which this package must not
import, so callers hand them in as a factory.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from itertools import zip_longest
from pathlib import Path
from typing import Any

import msgspec
import structlog

from ledger.backend import DECODE_ERRORS, fetch_all, row_to_event, rows_to_events
from ledger.erasure import kept_facts, with_erasures
from ledger.errors import LedgerError
from ledger.events import ErasedAssertion, Event
from ledger.health import TailProblem, check_tail
from ledger.layout import Drift, drift, mend
from ledger.migrations import migrate
from ledger.schema import LOG_MIGRATIONS
from ledger.sqlite_store import (
    SqliteStore,
    SqliteTransaction,
    connect_reader,
    log_size,
)
from ledger.store import Projector
from ledger.verify import UNDECODED, Progress, VerifyReport, read_snapshot, verify_log
from ledger.writemodel import WriteModel

log = structlog.get_logger("ledger.replay")

REPLAY_CHUNK = 20_000
REBUILD_CACHE_MIB = 256
"""Page cache of the writer's connection while a rebuild runs (then set back): the pages
the replay writes again and again (keyed tables, their indexes) are spilled to the WAL
less often."""
SCRATCH_CACHE_MIB = 64
"""Page cache of the audit's scratch database: its hot index pages stay in memory."""

Fold = Callable[[Sequence[Event]], None]

ProjectorFactory = Callable[[], Sequence[Projector]]
"""Makes fresh, unmigrated projectors: the read side's, e.g. `projections.all_projectors`."""

_EVENTS_SQL = (
    "SELECT e.seq, e.type, e.stream, e.version, e.recorded_at, e.actor, e.data_sha256, e.hash,"
    " p.data FROM events e LEFT JOIN payloads p ON p.seq = e.seq"
    " WHERE e.seq > ? AND e.seq <= ? ORDER BY e.seq LIMIT ?"
)
_MAX_SEQ = 2**63 - 1
_CHECKPOINT_SQL = (
    "INSERT INTO checkpoints (name, seq) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq"
)


class AuditReport(msgspec.Struct, frozen=True):
    """What `POST /v1/audit` returns: the log's verification and the projections' replay.

    `erased` and `notes` are the verification's (:class:`ledger.verify.VerifyReport`):
    how many payloads a lawful erasure emptied, and what leaves the log as it is but
    weakens its guard (the append-only triggers gone, say), which `ok` does not count."""

    ok: bool
    events: int
    root: str
    first_bad_seq: int | None
    projections_match: bool
    problems: list[str]
    erased: int = 0
    notes: list[str] = msgspec.field(default_factory=list)


def read_chunks(
    conn: sqlite3.Connection,
    chunk: int = REPLAY_CHUNK,
    *,
    after: int = 0,
    until: int = _MAX_SEQ,
) -> Iterator[list[Event]]:
    """The events of the log on `conn` after seq `after` up to `until`, `chunk` at a time.

    A payload that does not decode raises :class:`LedgerError` naming its seq. An erased
    payload comes as what its erasure kept (:func:`ledger.erasure.with_erasures`), so a
    fold of the chunks gives the tables the erasure left.
    """
    kept = kept_facts(conn)
    while rows := fetch_all(conn, _EVENTS_SQL, (after, until, chunk)):
        try:
            events = rows_to_events(rows)
        except DECODE_ERRORS:
            events = [_decoded(row) for row in rows]
        yield with_erasures(events, kept)
        after = events[-1].seq


def _decoded(row: Sequence[Any]) -> Event:
    try:
        return row_to_event(row)
    except DECODE_ERRORS as exc:
        raise LedgerError(f"seq {row[0]}: payload does not decode as {row[1]!r}: {exc}") from exc


def deferred_indexes(connection: sqlite3.Connection, projectors: Sequence[Projector]) -> list[str]:
    """The `CREATE INDEX` statements of the indexes the projectors let a replay defer.

    A projector lists them in an optional `deferred_indexes` attribute: indexes that no
    `apply` reads, only the views. A replay drops them, folds the log into the bare
    tables and builds each again in one sorted pass, which is several times cheaper than
    keeping them up to date one row at a time.
    """
    names = [n for p in projectors for n in getattr(p, "deferred_indexes", ())]
    if not names:
        return []
    marks = ",".join("?" * len(names))
    rows = connection.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND name IN ({marks})",
        names,
    ).fetchall()
    for name, _ in rows:
        connection.execute(f"DROP INDEX {_quote(name)}")
    return [sql for _, sql in rows]


def replay_folds(connection: sqlite3.Connection, projectors: Sequence[Projector]) -> list[Fold]:
    """One fold per projector for a long replay into `connection`, in their order.

    A projector may offer `replayer(connection)`: a fold that gives the same rows as
    `apply` batch after batch, but may keep state between batches (running counts,
    keys already written) because nothing else writes its tables while the replay runs.
    Any other projector (the write model among them) folds with its `apply`.
    """
    folds: list[Fold] = []
    for projector in projectors:
        make = getattr(projector, "replayer", None)
        folds.append(make(connection) if make is not None else _applier(projector, connection))
    return folds


def split_tables(projector: Projector) -> tuple[str, ...]:
    """The tables the projector's replayer can fold apart from its others.

    A projector may list them in an optional `split_tables` attribute, when its
    `replayer(connection, tables)` folds either those tables alone or all the others.
    The audit folds them in its own process while the child folds the rest.
    """
    if getattr(projector, "replayer", None) is None:
        return ()
    return tuple(getattr(projector, "split_tables", ()))


def _part_folds(
    connection: sqlite3.Connection, projectors: Sequence[Projector], split: bool
) -> list[Fold]:
    """One fold per projector: of its split tables (`split`) or of all its other tables.

    With `split`, only projectors that have split tables are expected.
    """
    folds: list[Fold] = []
    for projector in projectors:
        apart = split_tables(projector)
        if not apart:
            folds.extend(replay_folds(connection, [projector]))
            continue
        tables = apart if split else tuple(t for t in projector.tables if t not in apart)
        folds.append(projector.replayer(connection, tables))  # type: ignore[attr-defined]
    return folds


def _applier(projector: Projector, connection: sqlite3.Connection) -> Fold:
    def fold(events: Sequence[Event]) -> None:
        projector.apply(connection, events)

    return fold


def rebuild(
    store: SqliteStore,
    projectors: Sequence[Projector] | None = None,
    progress: Progress | None = None,
    *,
    chunk: int = REPLAY_CHUNK,
    mended: list[Drift] | None = None,
) -> int:
    """Reset projections and replay the whole log into them; return the seq they reach.

    The log is verified in the same pass, as :func:`ledger.verify.verify_log` does it
    (digests, hash chain, Merkle nodes); a log that does not verify is a
    :class:`LedgerError` naming the first bad seq, with nothing changed.

    Rebuilds the store's own projectors (the write model among them) plus any of
    `projectors` whose name the store does not already have; those must already have
    their tables. Everything runs in one unit of work on the writer, reading the log on
    the writer's connection, so the rebuilt tables and their checkpoints commit together
    and no append lands half-way.

    First the schema is made what this version's migrations make (:func:`ledger.layout.mend`:
    view tables, indexes, checkpoints and triggers, but a table of records that is there).
    What was put right is added to `mended`, when given, once the rebuild has committed.
    """
    chosen = list(store.projectors)
    names = {p.name for p in chosen}
    chosen += [p for p in projectors or () if p.name not in names]

    def work(txn: SqliteTransaction) -> int:
        conn = txn.connection
        cache = conn.execute("PRAGMA cache_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size = -{REBUILD_CACHE_MIB * 1024}")
        try:
            return replay(conn)
        except sqlite3.IntegrityError as exc:  # rolled back: the tables stay as they were
            raise LedgerError(
                f"the log cannot be replayed: {exc} (`ledger verify` names what is wrong)"
            ) from None
        finally:
            conn.execute(f"PRAGMA cache_size = {int(cache)}")

    def replay(conn: sqlite3.Connection) -> int:
        total = log_size(conn)
        done[:] = mend(conn, chosen)
        indexes = deferred_indexes(conn, chosen)
        for projector in chosen:
            projector.reset(conn)
        folds = replay_folds(conn, chosen)
        kept = kept_facts(conn)

        def fold(rows: list[Any], payloads: list[Any]) -> None:
            events = with_erasures(_verified_events(rows, payloads, total), kept)
            for each in folds:
                each(events)

        # each chunk's digests, chain links and Merkle nodes are checked before it is
        # folded, in one pass; a log that does not verify rolls the whole rebuild back, so
        # a payload edited in the file never reaches the views, and a log cut short (its
        # last events deleted, their leaves left) is not taken for the whole of it
        report = verify_log(conn, progress, chunk=chunk, consume=fold)
        if not report.ok:
            where = "" if report.first_bad_seq is None else f" at seq {report.first_bad_seq}"
            raise LedgerError(
                f"the log does not verify{where} ({report.problems[0]}): the projections "
                "were left as they were (`ledger verify` lists every problem)"
            )
        for sql in indexes:
            conn.execute(sql)
        conn.executemany(_CHECKPOINT_SQL, [(p.name, report.events) for p in chosen])
        return report.events

    done: list[Drift] = []
    seq = store.run_sync(work, resets_views=True)
    if mended is not None:
        mended.extend(done)
    return seq


def checkpoint_of(connection: sqlite3.Connection, name: str) -> int | None:
    """The seq the projector `name` has folded the log to, as its checkpoint says."""
    row = connection.execute("SELECT seq FROM checkpoints WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def catch_up(
    connection: sqlite3.Connection,
    projectors: Sequence[Projector],
    *,
    until: int | None = None,
    progress: Progress | None = None,
    chunk: int = REPLAY_CHUNK,
) -> int:
    """Fold into each projector the events after its checkpoint, up to `until`.

    `until` is the log's end unless given. Runs in the caller's write transaction on
    `connection` (never BEGIN or COMMIT here) and moves each checkpoint to `until`, so a
    projector left behind by a deferred import or a crash is current again. When the
    backlog is longer than what is folded already, the view-only indexes are dropped
    and built again at the end, as a rebuild does. Returns the number of events folded.
    """
    end = log_size(connection) if until is None else until
    marks = {p.name: checkpoint_of(connection, p.name) or 0 for p in projectors}
    behind = [p for p in projectors if marks[p.name] < end]
    if not behind:
        return 0
    start = min(marks[p.name] for p in behind)
    indexes = deferred_indexes(connection, behind) if end - start > start else []
    folds = list(zip(behind, replay_folds(connection, behind), strict=True))
    for events in read_chunks(connection, chunk, after=start, until=end):
        for projector, fold in folds:
            mark = marks[projector.name]
            if events[0].seq > mark:
                fold(events)
            elif events[-1].seq > mark:
                fold([e for e in events if e.seq > mark])
        if progress is not None:
            progress(events[-1].seq - start, end - start)
    for sql in indexes:
        connection.execute(sql)
    connection.executemany(_CHECKPOINT_SQL, [(p.name, end) for p in behind])
    return end - start


def catch_up_on_open(connection: sqlite3.Connection, projector: Projector) -> int:
    """:func:`catch_up` for one projector, in a write transaction of its own.

    For a projector's `migrate`, which a store runs on opening: a ledger whose import
    stopped before its projections were folded (a crash, a kill) answers from current
    tables again. Does nothing where the log's tables do not exist, nor where the log's
    tail does not verify (:func:`ledger.health.check_tail`, the store's own start-up
    check): a forged event at the end must not reach the views.
    """
    has_log = connection.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
        "('events', 'payloads', 'checkpoints')"
    ).fetchone()[0]
    if has_log != 3 or connection.in_transaction:
        return 0
    if (checkpoint_of(connection, projector.name) or 0) >= log_size(connection):
        return 0
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:  # a read-only file or snapshot: views lag
        log.warning("catch_up_skipped", projector=projector.name, error=str(exc))
        return 0
    try:
        check_tail(connection)  # never fold what appends are about to be refused over
        done = catch_up(connection, [projector])
    except TailProblem as exc:  # a forged tail, say
        connection.execute("ROLLBACK")
        log.error("catch_up_refused", projector=projector.name, problem=str(exc))
        return 0
    except (LedgerError, sqlite3.Error) as exc:  # a broken log: the store still opens
        connection.execute("ROLLBACK")
        log.error("catch_up_failed", projector=projector.name, error=str(exc))
        return 0
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    try:
        connection.execute("COMMIT")
    except sqlite3.Error as exc:  # a full disk: the views lag, and every read still works
        with suppress(sqlite3.Error):  # SQLite may have rolled back already
            connection.execute("ROLLBACK")
        log.warning("catch_up_not_committed", projector=projector.name, error=str(exc))
        return 0
    log.info("caught_up", projector=projector.name, events=done)
    return done


def fresh_projectors(projector_factory: ProjectorFactory) -> list[Projector]:
    """The factory's projectors, with a fresh write model first unless it made one."""
    made = list(projector_factory())
    if all(p.name != WriteModel.name for p in made):
        made.insert(0, WriteModel())
    return made


def _scratch_pragmas(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(f"PRAGMA cache_size = -{SCRATCH_CACHE_MIB * 1024}")
    conn.execute("PRAGMA recursive_triggers = ON")


def _scratch(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    _scratch_pragmas(conn)
    migrate(conn, LOG_MIGRATIONS)  # the write model's tables come with the log's
    return conn


_REPLAY_ALIAS = "ledger_audit_replay"


@contextmanager
def _scratch_replay(
    live_conn: sqlite3.Connection,
    projectors: Sequence[Projector],
    alias_name: str = _REPLAY_ALIAS,
) -> Iterator[tuple[sqlite3.Connection, str | None]]:
    """A scratch database with the projectors' empty tables, and its name on `live_conn`.

    The scratch database is attached to `live_conn` (when it holds no transaction, so
    that it can be detached again once the caller's snapshot is over) so that the
    comparison runs as SQL on one connection; the name is None when it could not be.
    """
    with tempfile.TemporaryDirectory(prefix="ledger-audit-") as tmp:
        path = Path(tmp) / "replay.db"
        scratch = _scratch(path)
        alias: str | None = None
        try:
            for projector in projectors:
                projector.migrate(scratch)
            # the comparison reads every table by primary key: no other index needed
            deferred_indexes(scratch, projectors)
            if not live_conn.in_transaction:
                try:
                    live_conn.execute(f"ATTACH DATABASE ? AS {alias_name}", (str(path),))
                    alias = alias_name
                except sqlite3.Error:
                    alias = None
            yield scratch, alias
        finally:
            if alias is not None:
                with suppress(sqlite3.Error):  # the snapshot is always over by now
                    live_conn.execute(f"DETACH DATABASE {alias}")
            scratch.close()


def _limits(
    live_conn: sqlite3.Connection, projectors: Sequence[Projector], total: int
) -> list[int]:
    """How far to replay each projector: to its checkpoint, as far as the views answer
    from (none: nothing folded yet, so a checkpoint deleted leaves tables the replay
    does not match).

    An import folds the views at its end, so while one runs (or after one died) they lag
    the log without being wrong; the replay stops where they stand.
    """
    marks = [checkpoint_of(live_conn, p.name) for p in projectors]
    return [min(total, mark or 0) for mark in marks]


def _fold_log(
    live_conn: sqlite3.Connection,
    scratch: sqlite3.Connection,
    projectors: Sequence[Projector],
    limits: Sequence[int],
    total: int,
    progress: Progress | None,
    chunk: int,
    *,
    split: bool | None = None,
) -> list[str]:
    """Replay the log of `live_conn` (in the caller's snapshot) into the scratch tables.

    Every table of the projectors, or (`split` not None) their split tables or the rest,
    as :func:`_part_folds`. Empty, or the one problem that stopped it: a payload that
    does not decode.
    """
    scratch.execute("BEGIN")
    made = (
        replay_folds(scratch, projectors)
        if split is None
        else _part_folds(scratch, projectors, split)
    )
    folds = list(zip(limits, made, strict=True))
    try:
        for events in read_chunks(live_conn, chunk, until=total):
            _fold_up_to(folds, events)
            if progress is not None:
                progress(events[-1].seq, total)
    except (LedgerError, sqlite3.IntegrityError) as exc:  # a payload, or a record, at fault
        scratch.execute("ROLLBACK")
        return [_unreplayable(exc)]
    scratch.execute("COMMIT")
    return []


def _fold_up_to(folds: Sequence[tuple[int, Fold]], events: Sequence[Event]) -> None:
    """Hand each fold the events of the chunk at or before its limit (its checkpoint)."""
    first, last = events[0].seq, events[-1].seq
    for limit, fold in folds:
        if last <= limit:
            fold(events)
        elif first <= limit:
            fold([e for e in events if e.seq <= limit])


def _unreplayable(exc: Exception) -> str:
    return f"projections not compared: the log cannot be replayed: {exc}"


class _VerifiedFold:
    """Folds the log into scratch tables from the chunks :func:`verify_log` has checked.

    The payloads the verification decoded are folded as they are; any other is decoded
    as :func:`read_chunks` would, so a payload that does not decode stops the fold with
    the same problem. Every event up to `total` is decoded, whatever the limits.
    """

    def __init__(
        self,
        scratch: sqlite3.Connection,
        folds: Sequence[Fold],
        limits: Sequence[int],
        total: int,
        kept: dict[int, ErasedAssertion],
    ) -> None:
        self.scratch = scratch
        self.kept = kept
        self.folds = list(zip(limits, folds, strict=True))
        self.total = total
        self.problem: str | None = None
        scratch.execute("BEGIN")

    def __call__(self, rows: list[Any], payloads: list[Any]) -> None:
        if self.problem is not None or not rows or rows[0][0] > self.total:
            return
        try:
            events = with_erasures(_verified_events(rows, payloads, self.total), self.kept)
            _fold_up_to(self.folds, events)
        except (LedgerError, sqlite3.IntegrityError) as exc:
            self.problem = _unreplayable(exc)

    def finish(self) -> list[str]:
        """Commit the fold: empty, or the problem that stopped it (then rolled back)."""
        if self.problem is not None:
            self.scratch.execute("ROLLBACK")
            return [self.problem]
        self.scratch.execute("COMMIT")
        return []


def _verified_events(rows: list[Any], payloads: list[Any], until: int) -> list[Event]:
    """The rows up to seq `until` as events, with the payloads the verification decoded."""
    events: list[Event] = []
    add = events.append
    for row, payload in zip(rows, payloads, strict=True):
        seq, etype, stream, version, recorded_at, actor, dsha, h, _ = row
        if seq > until:
            break
        if payload is UNDECODED:
            add(_decoded(row))  # raises as the replay would, or decodes a non-bytes payload
        else:
            add(Event(seq, etype, stream, version, recorded_at, actor, payload, dsha, h))
    return events


def _compare_all(
    live_conn: sqlite3.Connection,
    scratch: sqlite3.Connection,
    alias: str | None,
    projectors: Sequence[Projector],
) -> list[str]:
    problems: list[str] = []
    for projector in projectors:
        for table in projector.tables:
            problems += _compare_one(live_conn, scratch, alias, table)
    return problems


def _held_equal(live_conn: sqlite3.Connection, holder: Any, table: str) -> bool:
    """Whether `table` holds exactly the rows `holder` keeps in memory.

    True when the live table has the holder's columns and the holder's query of it
    (`holder.check(table)`: each key group's row count and values, in key order) returns
    what the held rows give. False may also mean that only a comparison in SQL can
    tell: the caller then writes the rows out and compares them as any other table,
    which also describes the difference.
    """
    if _layout(live_conn, table)[0] != list(holder.columns(table)):
        return False
    sql, expected = holder.check(table)
    return bool(live_conn.execute(sql).fetchall() == expected)


def _compare_one(
    live_conn: sqlite3.Connection, scratch: sqlite3.Connection, alias: str | None, table: str
) -> list[str]:
    if alias is not None and same_table(live_conn, alias, table):
        return []
    return compare_table(live_conn, scratch, table)


def _replay_into(
    live_conn: sqlite3.Connection,
    scratch: sqlite3.Connection,
    alias: str | None,
    projectors: Sequence[Projector],
    progress: Progress | None,
    chunk: int,
) -> list[str]:
    """Replay the log of `live_conn` (in the caller's snapshot) and compare every table."""
    total = log_size(live_conn)
    limits = _limits(live_conn, projectors, total)
    problems = _fold_log(live_conn, scratch, projectors, limits, total, progress, chunk)
    return problems or _compare_all(live_conn, scratch, alias, projectors)


PARALLEL_AUDIT_FROM = 100_000
"""Logs at least this long are replayed by :func:`audit` in a second process, while the
first verifies: the two passes take about the same time and each needs a core."""


def _replay_file(
    db_file: str,
    scratch_file: str,
    projector_factory: ProjectorFactory,
    limits: Sequence[int],
    total: int,
    chunk: int,
    erased: Sequence[int] = (),
) -> list[str]:
    """:func:`_fold_log` in a child process: from the ledger file into the scratch file,
    for every projector of the factory but the write model, and but their split tables
    (the parent replays those).

    The log is append-only, so its first `total` events read the same in any snapshot
    that holds them, unless a payload among them was erased in between: then (its
    erasures differ from the parent's `erased`) nothing is compared and the audit says
    to run again. The checkpoints (`limits`) come from the parent's snapshot.
    """
    projectors = _split(fresh_projectors(projector_factory))[1]
    live = connect_reader(Path(db_file))
    scratch = sqlite3.connect(scratch_file, isolation_level=None)
    try:
        _scratch_pragmas(scratch)
        with read_snapshot(live):
            if log_size(live) < total:
                raise LedgerError(f"{db_file}: the log is shorter than the {total} events audited")
            mine = _erased_up_to(live, total)
            if mine != list(erased):
                late = sorted(set(mine) ^ set(erased))
                return [
                    "projections not compared: a payload was erased while the audit ran "
                    f"(seq {', '.join(map(str, late[:5]))}); run the audit again"
                ]
            return _fold_log(live, scratch, projectors, limits, total, None, chunk, split=False)
    finally:
        scratch.close()
        live.close()


def _erased_up_to(conn: sqlite3.Connection, total: int) -> list[int]:
    """The seqs up to `total` whose payload a replay on `conn` folds from an erasure."""
    return sorted(seq for seq in kept_facts(conn) if seq <= total)


def _split(projectors: Sequence[Projector]) -> tuple[list[Projector], list[Projector]]:
    """The write model, and every other projector."""
    own: list[Projector] = [p for p in projectors if type(p) is WriteModel]
    return own, [p for p in projectors if type(p) is not WriteModel]


def _db_file(conn: sqlite3.Connection) -> str | None:
    """The file of the connection's main database; None for one in memory."""
    for _, name, file in conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return str(file) or None
    return None  # pragma: no cover - every connection has a main database


class _ReplayProcess:
    """:func:`_replay_file` running in a child Python, started with `python -c`.

    Not `multiprocessing`: that would import the caller's main module again in the child.
    The job and its result pass through files next to the scratch database.
    """

    def __init__(self, scratch_file: str, job: bytes) -> None:
        folder = Path(scratch_file).parent
        self.job, self.result, self.errors = (
            folder / "replay-job.json",
            folder / "replay-result.json",
            folder / "replay-errors.txt",
        )
        self.job.write_bytes(job)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with self.errors.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_CODE, str(self.job), str(self.result)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=env,
            )

    def outcome(self) -> list[str]:
        """The replay's problems, once the child is done; raises if it failed."""
        code = self.process.wait()
        if code != 0 or not self.result.exists():
            tail = self.errors.read_text(errors="replace")[-2000:]
            raise LedgerError(f"the audit's replay process failed (exit {code}): {tail}")
        return msgspec.json.decode(self.result.read_bytes(), type=list[str])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


_CHILD_CODE = (
    "import sys; from ledger.replay import child_main; child_main(sys.argv[1], sys.argv[2])"
)


class _Job(msgspec.Struct, frozen=True):
    db_file: str
    scratch_file: str
    factory: str  # "module:qualified.name"
    limits: list[int]
    total: int
    chunk: int
    erased: list[int]  # the seqs erased in the parent's snapshot, up to `total`


def _named(factory: ProjectorFactory) -> str | None:
    """`module:name` of a factory the child can import as the very same object."""
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or "<" in name:
        return None
    try:
        found = _resolve(f"{module}:{name}")
    except ImportError:
        return None
    return f"{module}:{name}" if found is factory else None


def _resolve(ref: str) -> Any:
    module, _, name = ref.partition(":")
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    return found


def child_main(job_file: str, result_file: str) -> None:
    """The child's side of :class:`_ReplayProcess`: run the job, write the result."""
    job = msgspec.json.decode(Path(job_file).read_bytes(), type=_Job)
    problems = _replay_file(
        job.db_file,
        job.scratch_file,
        _resolve(job.factory),
        job.limits,
        job.total,
        job.chunk,
        job.erased,
    )
    Path(result_file).write_bytes(msgspec.json.encode(problems))


def _start_replay(
    live_conn: sqlite3.Connection,
    scratch: sqlite3.Connection,
    projector_factory: ProjectorFactory,
    limits: Sequence[int],
    total: int,
) -> _ReplayProcess | None:
    """Start :func:`_replay_file` in a child process, or None where one cannot run it."""
    db_file, scratch_file = _db_file(live_conn), _db_file(scratch)
    if db_file is None or scratch_file is None:
        return None
    factory = _named(projector_factory)
    if factory is None:
        return None  # e.g. a lambda: replay in this process
    erased = _erased_up_to(live_conn, total)
    job = _Job(db_file, scratch_file, factory, list(limits), total, REPLAY_CHUNK, erased)
    return _ReplayProcess(scratch_file, msgspec.json.encode(job))


def audit_projections(
    live_conn: sqlite3.Connection,
    projector_factory: ProjectorFactory,
    progress: Progress | None = None,
    *,
    chunk: int = REPLAY_CHUNK,
) -> list[str]:
    """Replay the log of `live_conn` into fresh projectors and compare their tables.

    The replay goes into a scratch database in a temporary file; the log is read and the
    live tables compared in one read snapshot of `live_conn`. Returns one line per table
    that differs, naming the table and its first differing row; empty when all agree.
    """
    projectors = fresh_projectors(projector_factory)
    with _scratch_replay(live_conn, projectors) as (scratch, alias), read_snapshot(live_conn):
        return _replay_into(live_conn, scratch, alias, projectors, progress, chunk)


def audit(
    source: SqliteStore | sqlite3.Connection,
    projector_factory: ProjectorFactory,
    progress: Progress | None = None,
    *,
    parallel_from: int = PARALLEL_AUDIT_FROM,
) -> AuditReport:
    """Verify the log and replay every projection from nothing, in one read snapshot.

    `progress(done, total)` runs over both passes: the verification, then the replay.
    From `parallel_from` events on (and when the ledger is a file and the factory can be
    imported by name) the replay runs in a child process while this one verifies and, in
    the same pass over the log, folds the write model and the projectors' split tables
    (:func:`split_tables`); the tables are compared here, in this snapshot, once both
    are done.
    """
    conn = source.reader() if isinstance(source, SqliteStore) else source
    projectors = fresh_projectors(projector_factory)
    own, rest = _split(projectors)
    halves = [p for p in rest if split_tables(p)]
    with ExitStack() as stack:
        scratch, alias = stack.enter_context(_scratch_replay(conn, projectors))
        # the write model's replay and the split tables', done here while a child
        # replays the rest
        here, here_alias = stack.enter_context(
            _scratch_replay(conn, [*own, *halves], _REPLAY_ALIAS + "_wm")
        )
        stack.enter_context(read_snapshot(conn))
        total = log_size(conn)
        child = None
        if total >= parallel_from and rest:
            child = _start_replay(
                conn, scratch, projector_factory, _limits(conn, rest, total), total
            )
        try:
            if child is None:
                report = verify_log(conn, _phase(progress, 0))
                limits = _limits(conn, projectors, total)
                differences = _fold_log(
                    conn, scratch, projectors, limits, total, _phase(progress, 1), REPLAY_CHUNK
                )
                if not differences:
                    differences = _compare_all(conn, scratch, alias, projectors)
            else:
                report, differences = _audit_beside(
                    conn,
                    (here, here_alias),
                    (scratch, alias),
                    own,
                    halves,
                    rest,
                    total,
                    child,
                    progress,
                )
        finally:
            if child is not None:
                child.stop()
        differences += _integrity_problems(conn, projectors)  # in the same snapshot
        differences += _schema_problems(conn, projectors)
    return AuditReport(
        ok=report.ok and not differences,
        events=report.events,
        root=report.root,
        first_bad_seq=report.first_bad_seq,
        projections_match=not differences,
        problems=[*report.problems, *differences],
        erased=report.erased,
        notes=report.notes,
    )


def _schema_problems(conn: sqlite3.Connection, projectors: Sequence[Projector]) -> list[str]:
    """How the projectors' tables and `checkpoints`, their indexes and triggers differ
    from what the migrations make (a projector's table missing is already named by the
    comparison). The log's guards are :func:`ledger.verify.verify_log`'s notes."""
    own = {t.lower() for p in projectors for t in p.tables}
    return [
        f"{d} (`ledger rebuild` puts it right)"
        for d in drift(conn, projectors)
        if (d.table in own and (d.kind, d.what) != ("table", "missing"))
        or d.table == "checkpoints"  # not compared row by row: named here
    ]


def _integrity_problems(conn: sqlite3.Connection, projectors: Sequence[Projector]) -> list[str]:
    """What SQLite's own check finds wrong in the projectors' tables and their indexes: an
    index the views read that disagrees with its table (an edit through the schema, a
    damaged page) answers falsely while every row compares equal. A few per table."""
    found: list[str] = []
    for projector in projectors:
        for table in projector.tables:
            rows = conn.execute(f"PRAGMA integrity_check({_quote(table)})").fetchmany(3)
            found += [f"{table}: {row[0]}" for row in rows if row[0] != "ok"]
    return found


def _audit_beside(
    conn: sqlite3.Connection,
    here: tuple[sqlite3.Connection, str | None],
    there: tuple[sqlite3.Connection, str | None],
    own: Sequence[Projector],
    halves: Sequence[Projector],
    rest: Sequence[Projector],
    total: int,
    child: _ReplayProcess,
    progress: Progress | None,
) -> tuple[VerifyReport, list[str]]:
    """This process's side of an audit while `child` replays `rest` but their split tables.

    Verifies the log and, from the same chunks, folds the write model (`own`) and the
    split tables of `halves` into `here`; compares those while the child runs, then the
    child's tables in `there`. Problems come in the projectors' and tables' order.
    """
    here_conn, here_alias = here
    holders: dict[str, Any] = {}  # table -> the fold that holds its rows in memory
    folds = replay_folds(here_conn, own)
    for projector in halves:
        make = getattr(projector, "split_holder", None)
        if make is None:
            folds += _part_folds(here_conn, [projector], True)
            continue
        holder = make()
        holders.update(dict.fromkeys(split_tables(projector), holder))
        folds.append(holder)
    folder = _VerifiedFold(
        here_conn, folds, _limits(conn, [*own, *halves], total), total, kept_facts(conn)
    )
    report = verify_log(conn, _phase(progress, 0), consume=folder)
    differences = folder.finish()
    found: dict[str, list[str]] = {}
    if not differences:
        # the held tables first: any that differs is written to the scratch database
        # before this connection reads it (and holds a read lock on it to the end)
        for table, holder in holders.items():
            if _held_equal(conn, holder, table):
                found[table] = []
            else:
                here_conn.execute("BEGIN")
                holder.write(here_conn, table)
                here_conn.execute("COMMIT")
        mine = [t for p in own for t in p.tables] + [t for p in halves for t in split_tables(p)]
        for table in mine:
            if table not in found:
                found[table] = _compare_one(conn, here_conn, here_alias, table)
    # nothing on this connection touches the child's database until it is done
    replay_problems = child.outcome()
    replayed = _phase(progress, 1)
    if replayed is not None:
        replayed(total, total)
    if replay_problems:  # the same log: the same undecodable payload
        return report, replay_problems
    if differences:
        return report, differences
    there_conn, there_alias = there
    for projector in [*own, *rest]:
        for table in projector.tables:
            if table not in found:
                found[table] = _compare_one(conn, there_conn, there_alias, table)
    return report, [line for p in [*own, *rest] for t in p.tables for line in found[t]]


def _phase(progress: Progress | None, index: int) -> Progress | None:
    if progress is None:
        return None
    report = progress

    def phase(done: int, total: int) -> None:
        report(index * total + done, 2 * total)

    return phase


# ---- comparing tables ----


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _layout(conn: sqlite3.Connection, table: str) -> tuple[list[str], int]:
    """The table's columns, primary key first (in key order) then by name; the key's width."""
    # `main.`: unqualified, the pragma reads every attached database's schema, and would
    # hold a read lock on the audit's child's database for the rest of the snapshot
    info = conn.execute(f"PRAGMA main.table_info({_quote(table)})").fetchall()
    key = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    return key + sorted(row[1] for row in info if not row[5]), len(key)


def _batches(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], size: int = 2000
) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in primary-key order, `size` at a time."""
    listed = ", ".join(_quote(c) for c in columns)
    order = ", ".join(str(i + 1) for i in range(len(columns)))
    cursor = conn.execute(f"SELECT {listed} FROM {_quote(table)} ORDER BY {order}")
    while batch := cursor.fetchmany(size):
        yield batch


def _has_row(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], row: tuple[Any, ...]
) -> bool:
    where = " AND ".join(f"{_quote(c)} IS ?" for c in columns)
    sql = f"SELECT 1 FROM {_quote(table)} WHERE {where} LIMIT 1"
    return conn.execute(sql, row).fetchone() is not None


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()[0])


def same_table(live: sqlite3.Connection, alias: str, table: str) -> bool:
    """Whether `table` holds the same rows on `live` as in the database attached as `alias`.

    One SQL pass in SQLite: equal row counts, and every live row found by primary key
    in the other with every column equal. False (not proven equal) also when the table
    has no primary key or its columns differ; :func:`compare_table` then says how.
    """
    columns, width = _layout(live, table)
    info = live.execute(f"PRAGMA {alias}.table_info({_quote(table)})").fetchall()
    if not width or sorted(columns) != sorted(row[1] for row in info):
        return False
    name = _quote(table)
    counts = live.execute(
        f"SELECT (SELECT count(*) FROM main.{name}), (SELECT count(*) FROM {alias}.{name})"
    ).fetchone()
    if counts[0] != counts[1]:
        return False
    keys = " AND ".join(f"b.{_quote(c)} = a.{_quote(c)}" for c in columns[:width])
    rest = "".join(f" AND b.{_quote(c)} IS a.{_quote(c)}" for c in columns[width:])
    missing = live.execute(
        f"SELECT 1 FROM main.{name} a WHERE NOT EXISTS"
        f" (SELECT 1 FROM {alias}.{name} b WHERE {keys}{rest}) LIMIT 1"
    ).fetchone()
    return missing is None


def compare_table(live: sqlite3.Connection, replay: sqlite3.Connection, table: str) -> list[str]:
    """How `table` on `live` differs from the same table on `replay` (empty if it does not).

    Rows compare as multisets: both sides are read in the same order (primary key first)
    and walked in step, so memory stays small however large the table. The first
    difference is described: a row that differs in some columns, or one only one side has.
    """
    columns, width = _layout(live, table)
    replay_columns, _ = _layout(replay, table)
    if not columns:
        return [f"{table}: table missing from the live database"]
    if sorted(columns) != sorted(replay_columns):
        return [f"{table}: live columns {columns} differ from replayed {replay_columns}"]
    position = 0
    none: list[tuple[Any, ...]] = []
    have_batch: list[tuple[Any, ...]]
    want_batch: list[tuple[Any, ...]]
    for have_batch, want_batch in zip_longest(
        _batches(live, table, columns), _batches(replay, table, columns), fillvalue=none
    ):
        if have_batch == want_batch:  # the usual case, compared in C a batch at a time
            position += len(have_batch)
            continue
        for have, want in zip_longest(have_batch, want_batch):  # lists differ: one pair does
            position += 1
            if have != want:
                return [_difference(live, replay, table, columns, width, position, have, want)]
    return []


def _difference(
    live: sqlite3.Connection,
    replay: sqlite3.Connection,
    table: str,
    columns: Sequence[str],
    width: int,
    position: int,
    have: tuple[Any, ...] | None,
    want: tuple[Any, ...] | None,
) -> str:
    """The first difference, described: a row that differs in some columns, or one only
    one side has."""
    if have is not None and want is not None and width and have[:width] == want[:width]:
        changed = [
            f"{c} is {_value(a)} live, {_value(b)} replayed"
            for c, a, b in zip(columns, have, want, strict=True)
            if a != b
        ]
        detail = f"row {_show(columns[:width], have)} differs: {'; '.join(changed)}"
    elif have is not None and not _has_row(replay, table, columns, have):
        detail = f"live row {_show(columns, have)} is not in the replay"
    elif want is not None and not _has_row(live, table, columns, want):
        detail = f"replayed row {_show(columns, want)} is missing from the live table"
    else:
        detail = (
            f"rows differ at position {position}: live {_show(columns, have)}, "
            f"replay {_show(columns, want)}"
        )
    counts = f"live has {_count(live, table)} rows, the replay {_count(replay, table)}"
    return f"{table}: {detail} ({counts})"


def _value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _show(columns: Sequence[str], row: tuple[Any, ...] | None) -> str:
    if row is None:
        return "(none)"
    return "{" + ", ".join(f"{c}={_value(v)}" for c, v in zip(columns, row, strict=False)) + "}"
