"""Points in time on the two axes: statement time (`as_of`) and record time (`known_at`/`seq`).

Every view is computed at one :class:`PointInTime`. Record time is always reduced to a
seq, so a view at `known_at=T` is the view at the last seq recorded at or before T.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from ledger.errors import FieldError, InvalidInput, ViewsBehind
from ledger.sqlite_store import seq_at
from ledger.times import MAX_US, TimeFormatError, parse_time
from ledger.verify import read_snapshot
from projections.projectors import AssertionsProjector, SourcesProjector


class PointInTime(msgspec.Struct, frozen=True):
    """A resolved view position.

    `as_of`/`known_at` are the texts to echo (None when not given); `as_of_end` is the
    inclusive statement-time cutoff in µs (None: no cutoff); `seq` is the log position the
    view is computed at (the head unless `known_at` or `seq` said otherwise).
    """

    as_of: str | None
    as_of_end: int | None
    known_at: str | None
    seq: int

    @property
    def stated_cutoff(self) -> int:
        """The statement-time cutoff as a number, `MAX_US` when there is none."""
        return MAX_US if self.as_of_end is None else self.as_of_end


_SUBJECT_VERSION = """
SELECT coalesce(
    (SELECT e.version - 1 FROM events e
     WHERE e.stream = :stream AND e.seq > :seq AND e.version > coalesce(
         (SELECT c.assertions FROM proj_subject_counts c
          WHERE c.subject = :subject AND c.seq <= :seq ORDER BY c.seq DESC LIMIT 1), 0)
     ORDER BY e.version LIMIT 1),
    last.version)
FROM events last WHERE last.stream = :stream ORDER BY last.version DESC LIMIT 1
"""


def subject_version(conn: sqlite3.Connection, subject: str, seq: int) -> int:
    """The version of the subject's stream once the log held `seq` events, in a few probes.

    Every assertion on the subject is an event of its stream, so its assertion count at
    `seq` (one probe of `proj_subject_counts`) is a lower bound of the version. The
    stream's versions above it that are still at or before `seq` are its retractions and
    rankings, few, so the first version after that bound recorded after `seq` is one past
    the answer (none: the stream's last version is). The cost stays flat however long
    the subject's history, where walking the versions down from the head would not.
    """
    row = conn.execute(
        _SUBJECT_VERSION, {"stream": f"subject:{subject}", "subject": subject, "seq": seq}
    ).fetchone()
    return 0 if row is None else int(row[0])


def echo(at: PointInTime) -> dict[str, Any]:
    """What a view or a page echoes of the point in time it was computed at."""
    return {"as_of": at.as_of, "known_at": at.known_at, "seq": at.seq}


def _time(name: str, text: str | None, errors: list[FieldError]) -> tuple[str | None, int | None]:
    if text is None:
        return None, None
    try:
        value = parse_time(text)
    except TimeFormatError as exc:
        errors.append(FieldError(name, str(exc)))
        return None, None
    return value.text, value.end


_VIEWS = (AssertionsProjector.name, SourcesProjector.name)


_HEAD_AND_REACH = (
    "SELECT (SELECT coalesce(max(seq), 0) FROM events),"
    " (SELECT CASE count(*) WHEN 2 THEN min(seq) ELSE 0 END FROM checkpoints"
    " WHERE name IN (?, ?))"
)


def head_and_reach(conn: sqlite3.Connection) -> tuple[int, int]:
    """The log's length and the seq up to which the read side has folded it (the same
    when it is current), in one statement.

    The read side lags only while another process appends without it (an import folds its
    backlog at its end) or after one that died before that: the next append of a store
    with the read side, or the next open, folds the rest.
    """
    try:
        head, reach = conn.execute(_HEAD_AND_REACH, _VIEWS).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table: checkpoints" not in str(exc):
            raise
        # dropped from the file: nothing counts as folded (`ledger rebuild` mends it)
        head, reach = conn.execute("SELECT coalesce(max(seq), 0), 0 FROM events").fetchone()
    return int(head), min(int(head), int(reach or 0))


def _known_at(conn: sqlite3.Connection, known_us: int) -> tuple[int, int, int]:
    """`(head, reach, seq)` for a view known at `known_us`, read in one snapshot (a commit
    between reading how far the views reach and the seq would make that seq look past
    them, a false "catching up").

    An append is stamped with its record time when its unit runs and is seen when its batch
    commits, so a time at or after the last recorded event can still gain events of a batch
    in flight: such a view is the ledger as it stands, and its echoed `seq` pins it. Any
    earlier time has its answer for good (stamps never go back). Waiting for the batch
    would mean taking the appends' lock from a reader, which lets readers slow every write.
    """
    with read_snapshot(conn):
        head, reach = head_and_reach(conn)
        return head, reach, seq_at(conn, known_us)


def resolve(
    conn: sqlite3.Connection, as_of: str | None, known_at: str | None, seq: int | None
) -> PointInTime:
    """Check and resolve the query parameters; :class:`InvalidInput` names every bad one.

    A reduced `as_of` or `known_at` stands for the end of its period. With neither
    `known_at` nor `seq`, the point is as far as the read side has folded the log (see
    :func:`head_and_reach`), so a view never claims a seq it does not reflect; a point past
    that is :class:`ViewsBehind` until the read side catches up.
    """
    errors: list[FieldError] = []
    as_of_text, as_of_end = _time("as_of", as_of, errors)
    known_text, known_end = _time("known_at", known_at, errors)
    both = known_at is not None and seq is not None
    if both:
        errors.append(FieldError("seq", "give known_at or seq, not both"))
    elif seq is not None and seq < 0:
        errors.append(FieldError("seq", "must be 0 or more"))
    if known_end is not None and not errors:  # the seq read with the head, as one state
        head, reach, seq = _known_at(conn, known_end)
    else:
        head, reach = head_and_reach(conn)
        if not both and seq is not None and seq > head:
            errors.append(FieldError("seq", f"the log holds {head} events; seq must not exceed it"))
    if errors:
        raise InvalidInput(errors)
    if seq is None:
        seq = reach
    if seq > reach:
        raise ViewsBehind(
            f"the views hold the log up to seq {reach} of {head} while another process "
            "appends without them (an import); they catch up when it ends"
        )
    return PointInTime(as_of=as_of_text, as_of_end=as_of_end, known_at=known_text, seq=seq)
