"""Builders for ledgers with projections: commands with sensible defaults and unique ids."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import msgspec

from ledger.commands import (
    AnyCommand,
    DocumentIn,
    ImportLine,
    RankAssertion,
    RecordAssertion,
    RegisterSource,
    RetractAssertion,
    ValueIn,
)
from ledger.errors import LedgerError
from ledger.events import Mode, Rank
from ledger.service import Receipt, apply_command, execute_sync
from ledger.sqlite_store import SqliteStore, SqliteTransaction
from projections import all_projectors
from projections.pit import PointInTime, resolve

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "seed.jsonl"
DEPLOYMENT = "north-korea.russia-deployment"
DOCUMENT = DocumentIn(publisher="Test Wire", published_at="2025-04-28")
_lines = msgspec.json.Decoder(ImportLine)
_ids = itertools.count(1)


def open_ledger(path: Path) -> SqliteStore:
    return SqliteStore(path, projectors=all_projectors(), synchronous="NORMAL")


@contextmanager
def ledger(path: Path) -> Iterator[SqliteStore]:
    store = open_ledger(path)
    try:
        yield store
    finally:
        store.close()


def seed_commands() -> list[AnyCommand]:
    return [_lines.decode(line) for line in SEED.read_bytes().splitlines() if line.strip()]


def run(store: SqliteStore, *commands: AnyCommand) -> Receipt:
    """Run the commands in order; the receipt of the last."""
    receipt = None
    for command in commands:
        receipt = execute_sync(store, command, "test")
    assert receipt is not None
    return receipt


def run_all(store: SqliteStore, commands: Iterable[AnyCommand]) -> int:
    """Run what succeeds, skip what the rules refuse; the number that appended."""
    appended = 0
    for command in commands:
        with suppress(LedgerError):
            appended += len(execute_sync(store, command, "test").events)
    return appended


def run_in_one_unit(store: SqliteStore, commands: Iterable[AnyCommand]) -> int:
    """Like :func:`run_all`, in one writer transaction (each command still appends alone)."""

    def work(txn: SqliteTransaction) -> int:
        appended = 0
        for command in commands:
            with suppress(LedgerError):  # refused by the rules before anything is appended
                appended += len(apply_command(txn, command, "test").events)
        return appended

    return store.run_sync(work)


def at(
    store: SqliteStore,
    as_of: str | None = None,
    known_at: str | None = None,
    seq: int | None = None,
) -> PointInTime:
    return resolve(store.reader(), as_of, known_at, seq)


def source(source_id: str, reliability: Any = "B") -> RegisterSource:
    return RegisterSource(
        id=source_id, name=f"Source {source_id}", kind="intelligence", reliability=reliability
    )


def new_id(prefix: str = "a") -> str:
    return f"{prefix}{next(_ids)}"


def quantity(
    low: int,
    high: int,
    best: int | None = None,
    *,
    stated_at: str,
    subject: str = "s",
    prop: str = "troops",
    mode: Mode = "total",
    claimants: tuple[str, ...] = ("src-a",),
    assertion_id: str | None = None,
    valid_from: str | None = None,
    valid_to: str | None = None,
    supersedes: str | None = None,
) -> RecordAssertion:
    return RecordAssertion(
        subject=subject,
        property=prop,
        value=ValueIn(low=low, high=high, best=best),
        claimants=list(claimants),
        stated_at=stated_at,
        document=DOCUMENT,
        quote="a figure",
        assertion_id=assertion_id or new_id(),
        mode=mode,
        valid_from=valid_from,
        valid_to=valid_to,
        supersedes=supersedes,
    )


def status(
    value: Any,
    *,
    stated_at: str,
    subject: str = "s",
    prop: str = "deployment",
    claimants: tuple[str, ...] = ("src-a",),
    assertion_id: str | None = None,
    supersedes: str | None = None,
) -> RecordAssertion:
    return RecordAssertion(
        subject=subject,
        property=prop,
        value=ValueIn(status=value),
        claimants=list(claimants),
        stated_at=stated_at,
        document=DOCUMENT,
        quote="a claim",
        assertion_id=assertion_id or new_id(),
        supersedes=supersedes,
    )


def retract(assertion_id: str, reason: str = "wrong entry") -> RetractAssertion:
    return RetractAssertion(assertion_id=assertion_id, reason=reason)


def rank(assertion_id: str, value: Rank, reason: str = "judged") -> RankAssertion:
    return RankAssertion(assertion_id=assertion_id, rank=value, reason=reason)


def plain(value: Any, drop: frozenset[str] = frozenset()) -> Any:
    """A view as JSON-able builtins, without the keys in `drop` at any depth."""
    return _strip(msgspec.to_builtins(value), drop)


def _strip(value: Any, drop: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_strip(v, drop) for v in value]
    return value


def leave_in_free_page(path: Path, text: str) -> None:
    """Leave a copy of `text` in a free page of the ledger at `path`, as an earlier write
    (a dropped table, a rebuild) may: a table that held it is dropped without zeroing."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA secure_delete = OFF")
        conn.execute("CREATE TABLE scratch (text TEXT)")
        conn.execute("INSERT INTO scratch VALUES (?)", (text,))
        conn.execute("DROP TABLE scratch")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
