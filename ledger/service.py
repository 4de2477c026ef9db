"""Running commands against a store: decide, check the expected version, append, remember.

One unit of work per command runs on the writer thread, so the rules see exactly the state
they append onto, and an Idempotency-Key is checked and recorded in the same transaction
as the events it guards: a retry, even after a restart or racing the first try, appends
nothing and gets the first answer back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from ledger.codec import sha256_hex
from ledger.commands import AnyCommand, RecordAssertion
from ledger.domain import decide, prepare_assertion
from ledger.errors import ConcurrencyConflict, FieldError, InvalidInput
from ledger.events import Event
from ledger.sqlite_store import SqliteStore, SqliteTransaction


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a command appended (no events: it restated what the log holds)."""

    events: list[Event]
    stream: str
    assertion_id: str | None
    existing: bool

    @property
    def last(self) -> Event | None:
        return self.events[-1] if self.events else None


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An Idempotency-Key and the bytes of the request it came with."""

    key: str
    request: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """A response as the caller will send it: its status and body bytes."""

    status: int
    body: bytes
    replayed: bool = False


Render = Callable[[Receipt], Reply]


def apply_command(
    txn: SqliteTransaction,
    command: AnyCommand,
    actor: str,
    expected_version: int | None = None,
) -> Receipt:
    """Decide and append `command` inside `txn`."""
    decision = decide(command, txn.write_state())
    if expected_version is not None:
        actual = txn.stream_version(decision.stream)
        if actual != expected_version:
            raise ConcurrencyConflict(decision.stream, expected_version, actual)
    events = txn.append_many(decision.events, actor) if decision.events else []
    return Receipt(events, decision.stream, decision.assertion_id, decision.existing)


def prepared(command: AnyCommand) -> AnyCommand:
    """`command` with what needs none of the ledger's state done already (an assertion
    becomes the event it records), so the caller's thread does it, not the writer's.

    A server-made id is made here, once: a unit run again after its batch was rolled
    back keeps it, and its time is when the command was prepared, which under load can be
    a little before the record time of the event appended just ahead of it."""
    if isinstance(command, RecordAssertion):
        return prepare_assertion(command)
    return command


def _remembered(conn: sqlite3.Connection, actor: str, idem: Idempotency) -> Reply | None:
    row = conn.execute(
        "SELECT request_sha256, status, body FROM idempotency WHERE actor = ? AND key = ?",
        (actor, idem.key),
    ).fetchone()
    if row is None:
        return None
    if row[0] != sha256_hex(idem.request):
        raise InvalidInput(
            [FieldError("Idempotency-Key", "this key was already used with another request")]
        )
    return Reply(int(row[1]), bytes(row[2]), replayed=True)


def command_unit(
    command: AnyCommand,
    actor: str,
    render: Render,
    *,
    expected_version: int | None = None,
    idempotency: Idempotency | None = None,
) -> Callable[[SqliteTransaction], Reply]:
    """The unit of work that runs `command` and renders its reply; what needs no state
    is done here, by the caller, before the unit reaches the writer (see :func:`prepared`)."""
    command = prepared(command)

    def work(txn: SqliteTransaction) -> Reply:
        if idempotency is not None:
            earlier = _remembered(txn.sql, actor, idempotency)
            if earlier is not None:
                return earlier
        reply = render(apply_command(txn, command, actor, expected_version))
        if idempotency is not None:
            txn.sql.execute(
                "INSERT INTO idempotency (actor, key, request_sha256, status, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (actor, idempotency.key, sha256_hex(idempotency.request), reply.status, reply.body),
            )
        return reply

    return work


async def execute(
    store: SqliteStore,
    command: AnyCommand,
    actor: str,
    render: Render,
    *,
    expected_version: int | None = None,
    idempotency: Idempotency | None = None,
) -> Reply:
    """Run one command on the writer; resolves after its commit."""
    unit = command_unit(
        command, actor, render, expected_version=expected_version, idempotency=idempotency
    )
    return await store.run(unit)


def execute_sync(store: SqliteStore, command: AnyCommand, actor: str) -> Receipt:
    """Run one command from a synchronous caller (the CLI); returns what it appended."""
    ready = prepared(command)
    return store.run_sync(lambda txn: apply_command(txn, ready, actor))
