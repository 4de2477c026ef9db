"""The storage contract every backend fulfils (SQLite now, PostgreSQL later).

A backend appends events with gap-free global `seq` and per-stream `version`, chains and
Merkle-commits them at append, and serves reads and proofs. Projections plug in through
:class:`Projector` and are applied in the same transaction as the events they fold, so a
view can never drift from the log.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ledger.events import Event, NewEvent

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LogHead:
    size: int
    root: str  # hex


@dataclass(frozen=True, slots=True)
class InclusionProof:
    seq: int
    size: int
    leaf_hash: str
    path: list[str]


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    path: list[str]


class Projector(Protocol):
    """A read model folded from the log inside the append transaction.

    `connection` is the backend's own connection object (a `sqlite3.Connection` for
    SQLite); a projector is written for one backend. Optional hooks, looked up by name:
    `replayer(connection)` (a fold for long replays, see :func:`ledger.replay.replay_folds`),
    `split_tables` and `split_holder()` (the audit's split replay) and
    `erase(connection, event)` (drop what it holds of an event whose payload is being
    erased, see :mod:`ledger.erasure`).
    """

    name: str
    tables: tuple[str, ...]  # every table it owns, compared row by row by the audit

    def migrate(self, connection: Any) -> None:
        """Create or upgrade its tables (idempotent)."""

    def reset(self, connection: Any) -> None:
        """Drop every row it owns, so a replay from seq 1 rebuilds it."""

    def apply(self, connection: Any, events: Sequence[Event]) -> None:
        """Fold `events` (consecutive, in seq order) into its tables."""


class Transaction(Protocol):
    """What a unit of work running in the writer sees."""

    @property
    def connection(self) -> Any:
        """The backend's connection, for work beyond appending (schema steps, bulk reads)."""
        ...

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        actor: str,
        expected_version: int | None = None,
    ) -> list[Event]: ...

    def stream_version(self, stream: str) -> int: ...


class EventStore(Protocol):
    """The small contract a backend implements; `tests/store_contract.py` checks it."""

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        actor: str,
        expected_version: int | None = None,
    ) -> list[Event]:
        """Append atomically after the stream's `expected_version` (None: any)."""

    async def run(self, work: Callable[[Transaction], T]) -> T:
        """Run `work` in the single writer's transaction; acknowledged after commit."""

    def read(self, after: int = 0, limit: int = 1000, *, as_stored: bool = False) -> list[Event]:
        """At most `limit` events after `after`. A payload that does not decode as its
        type raises, or with `as_stored` reads as the JSON stored (to show the log as it
        is, altered parts too: :func:`ledger.backend.rows_to_events`)."""
        ...

    def scan(self, after: int = 0, *, as_stored: bool = False) -> Generator[Event, None, None]:
        """Every event after `after`, in order, as the log stood at the call, streamed: the
        whole log in bounded memory, on any thread; `close()` ends it early. `as_stored`
        as for :meth:`read`."""
        ...

    def read_stream(self, stream: str) -> list[Event]: ...

    def head(self) -> LogHead: ...

    def root(self, size: int) -> str: ...

    def inclusion_proof(self, seq: int, size: int) -> InclusionProof: ...

    def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof: ...

    def close(self) -> None: ...
