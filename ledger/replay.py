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

import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

import msgspec

from ledger.errors import LedgerError
from ledger.events import Event
from ledger.migrations import migrate
from ledger.schema import LOG_MIGRATIONS
from ledger.sqlite_store import SqliteStore, SqliteTransaction, log_size, row_to_event
from ledger.store import Projector
from ledger.verify import Progress, read_snapshot, verify_log
from ledger.writemodel import WriteModel

REPLAY_CHUNK = 10_000
SCRATCH_CACHE_MIB = 64
"""Page cache of the audit's scratch database: its hot index pages stay in memory."""

ProjectorFactory = Callable[[], Sequence[Projector]]
"""Makes fresh, unmigrated projectors: the read side's, e.g. `projections.all_projectors`."""

_EVENTS_SQL = (
    "SELECT e.seq, e.type, e.stream, e.version, e.recorded_at, e.actor, e.data_sha256, e.hash,"
    " p.data FROM events e LEFT JOIN payloads p ON p.seq = e.seq"
    " WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
)
_CHECKPOINT_SQL = (
    "INSERT INTO checkpoints (name, seq) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq"
)


class AuditReport(msgspec.Struct, frozen=True):
    """What `POST /v1/audit` returns: the log's verification and the projections' replay."""

    ok: bool
    events: int
    root: str
    first_bad_seq: int | None
    projections_match: bool
    problems: list[str]


def read_chunks(conn: sqlite3.Connection, chunk: int = REPLAY_CHUNK) -> Iterator[list[Event]]:
    """Every event of the log on `conn`, in seq order, `chunk` at a time.

    A payload that does not decode raises :class:`LedgerError` naming its seq.
    """
    after = 0
    while rows := conn.execute(_EVENTS_SQL, (after, chunk)).fetchall():
        try:
            events = [row_to_event(row) for row in rows]
        except (KeyError, msgspec.DecodeError):
            events = [_decoded(row) for row in rows]
        yield events
        after = events[-1].seq


def _decoded(row: Sequence[Any]) -> Event:
    try:
        return row_to_event(row)
    except (KeyError, msgspec.DecodeError) as exc:
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


def rebuild(
    store: SqliteStore,
    projectors: Sequence[Projector] | None = None,
    progress: Progress | None = None,
    *,
    chunk: int = REPLAY_CHUNK,
) -> int:
    """Reset projections and replay the whole log into them; return the seq they reach.

    Rebuilds the store's own projectors (the write model among them) plus any of
    `projectors` whose name the store does not already have; those must already have
    their tables. Everything runs in one unit of work on the writer, reading the log on
    the writer's connection, so the rebuilt tables and their checkpoints commit together
    and no append lands half-way.
    """
    chosen = list(store.projectors)
    names = {p.name for p in chosen}
    chosen += [p for p in projectors or () if p.name not in names]

    def work(txn: SqliteTransaction) -> int:
        conn = txn.connection
        total = log_size(conn)
        indexes = deferred_indexes(conn, chosen)
        for projector in chosen:
            projector.reset(conn)
        seq = 0
        for events in read_chunks(conn, chunk):
            for projector in chosen:
                projector.apply(conn, events)
            seq = events[-1].seq
            if progress is not None:
                progress(seq, total)
        for sql in indexes:
            conn.execute(sql)
        conn.executemany(_CHECKPOINT_SQL, [(p.name, seq) for p in chosen])
        return seq

    return store.run_sync(work)


def fresh_projectors(projector_factory: ProjectorFactory) -> list[Projector]:
    """The factory's projectors, with a fresh write model first unless it made one."""
    made = list(projector_factory())
    if all(p.name != WriteModel.name for p in made):
        made.insert(0, WriteModel())
    return made


def _scratch(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(f"PRAGMA cache_size = -{SCRATCH_CACHE_MIB * 1024}")
    conn.execute("PRAGMA recursive_triggers = ON")
    migrate(conn, LOG_MIGRATIONS)  # the write model's tables come with the log's
    return conn


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
    with tempfile.TemporaryDirectory(prefix="ledger-audit-") as tmp:
        scratch = _scratch(Path(tmp) / "replay.db")
        try:
            for projector in projectors:
                projector.migrate(scratch)
            # the comparison reads every table in primary-key order: no other index needed
            deferred_indexes(scratch, projectors)
            with read_snapshot(live_conn):
                total = log_size(live_conn)
                scratch.execute("BEGIN")
                try:
                    for events in read_chunks(live_conn, chunk):
                        for projector in projectors:
                            projector.apply(scratch, events)
                        if progress is not None:
                            progress(events[-1].seq, total)
                except LedgerError as exc:
                    return [f"projections not compared: the log cannot be replayed: {exc}"]
                scratch.execute("COMMIT")
                return [
                    problem
                    for projector in projectors
                    for table in projector.tables
                    for problem in compare_table(live_conn, scratch, table)
                ]
        finally:
            scratch.close()


def audit(
    source: SqliteStore | sqlite3.Connection,
    projector_factory: ProjectorFactory,
    progress: Progress | None = None,
) -> AuditReport:
    """Verify the log and replay every projection from nothing, in one read snapshot.

    `progress(done, total)` runs over both passes: the verification, then the replay.
    """
    conn = source.reader() if isinstance(source, SqliteStore) else source
    with read_snapshot(conn):
        report = verify_log(conn, _phase(progress, 0))
        differences = audit_projections(conn, projector_factory, _phase(progress, 1))
    return AuditReport(
        ok=report.ok and not differences,
        events=report.events,
        root=report.root,
        first_bad_seq=report.first_bad_seq,
        projections_match=not differences,
        problems=[*report.problems, *differences],
    )


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
    info = conn.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
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
