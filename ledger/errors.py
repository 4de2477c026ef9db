"""Domain errors. The API maps each class to one HTTP status in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ERRORS = 50
"""Fields named in one answer at most: a hostile request must not buy a huge answer."""
_MORE = re.compile(r"and (\d+) more problems\Z")


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    title = "Ledger error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(LedgerError):
    """Input that breaks a rule; names every bad field (HTTP 422)."""

    title = "Invalid input"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        self.errors = capped(errors)
        super().__init__(detail or "; ".join(f"{e.field}: {e.message}" for e in self.errors))


def capped(errors: list[FieldError]) -> list[FieldError]:
    """What an answer names of `errors`: the first :data:`MAX_ERRORS` of them, then
    `body: and N more problems`.

    `errors` may hold such a count already (the problems of an error caught and named
    again beside others): it is added to, so the count stays exact.
    """
    hidden = 0
    kept: list[FieldError] = []
    for error in errors:
        more = _MORE.match(error.message)  # whatever its field was renamed to (`--x`)
        if more is None:
            kept.append(error)
        else:
            hidden += int(more[1])
    hidden += max(0, len(kept) - MAX_ERRORS)
    if not hidden:
        return kept
    return [*kept[:MAX_ERRORS], FieldError("body", f"and {hidden} more problems")]


def check_resume_point(head: int, name: str, seq: int) -> None:
    """A reader resumes after a seq this log gave it, so one past the head means it read
    another log (another file, or this ledger before it was restored from an older backup):
    answering nothing would let it skip the events it has not seen. Refuses, naming `name`."""
    if seq > head:
        raise InvalidInput(
            [
                FieldError(
                    name,
                    f"is past the log's head: the log holds {head} events, so this seq "
                    "comes from another log; read from 0 again",
                )
            ]
        )


class NotFound(LedgerError):
    title = "Not found"


class Conflict(LedgerError):
    """The request clashes with what the log already holds (HTTP 409)."""

    title = "Conflict"


class ConcurrencyConflict(Conflict):
    """The stream moved on since the version the caller expected."""

    title = "Version conflict"

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(f"{stream} is at version {actual}, not the expected {expected}")


class NodesMissing(LedgerError):
    """Merkle nodes a read of a tree within the log needs are not in the store: the stored
    tree is broken (a node deleted from the file). Proofs and roots report it as such."""

    def __init__(self, missing: list[tuple[int, int]]) -> None:
        super().__init__(f"Merkle nodes missing from the store: {sorted(missing)[:5]}")


class StorageFull(LedgerError):
    """The database cannot grow; nothing was appended (HTTP 507)."""

    title = "Insufficient storage"


class LedgerUnavailable(LedgerError):
    """Writes are refused, e.g. because the stored log failed its start-up check (HTTP 503)."""

    title = "Ledger unavailable for writes"


class ViewsBehind(LedgerUnavailable):
    """A read asked for a point the read side has not folded yet (HTTP 503): another
    process is appending without it, and it catches up when that ends."""

    title = "Views catching up"


class SnapshotChanged(LedgerUnavailable):
    """A ledger opened as a read-only snapshot of its file (a full disk, a read-only mount)
    was written since by something else: nothing can be read from the snapshot any more
    (HTTP 503) until it is opened again."""

    title = "Ledger file changed"
