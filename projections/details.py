"""Assertions as records: one with its lifecycle, and filtered, paged listings.

Everything is as known at the point's seq: a retraction or rank recorded later is not
there yet, and `superseded_by` names the latest-recorded assertion known at that seq that
supersedes this one and is neither retracted nor deprecated.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from ledger.errors import FieldError, InvalidInput
from projections.pit import PointInTime, echo
from projections.rows import (
    UNRANKED,
    AssertionDetail,
    AssertionPage,
    AssertionValue,
    DocumentRow,
    RankRow,
    Retraction,
)

DETAIL_COLUMNS = (
    "a.assertion_id, a.subject, a.property, a.value_low, a.value_high, a.value_best, a.status, "
    "a.mode, a.qualifier, a.claimants, a.stated_at, a.valid_from, a.valid_to, a.document, "
    "a.quote, a.credibility, a.supersedes, a.note, a.recorded_seq, a.recorded_at, "
    "a.retracted_seq, a.retracted_reason, a.retracted_at"
)
MAX_LIMIT = 1000
_CHUNK = 500

_claimants = msgspec.json.Decoder(list[str])
_document = msgspec.json.Decoder(DocumentRow)

Ranks = dict[str, RankRow]


def build_detail(
    row: Sequence[Any], seq: int, ranks: Ranks, superseded_by: str | None
) -> AssertionDetail:
    """A detail row from `DETAIL_COLUMNS`, with its rank and superseder as known at `seq`."""
    retracted_seq = row[20]
    retracted = (
        Retraction(seq=retracted_seq, reason=row[21], recorded_at=row[22])
        if retracted_seq is not None and retracted_seq <= seq
        else None
    )
    return AssertionDetail(
        assertion_id=row[0],
        subject=row[1],
        property=row[2],
        value=AssertionValue(low=row[3], high=row[4], best=row[5], status=row[6]),
        mode=row[7],
        qualifier=row[8],
        claimants=_claimants.decode(row[9]),
        stated_at=row[10],
        valid_from=row[11],
        valid_to=row[12],
        document=_document.decode(row[13]),
        quote=row[14],
        credibility=row[15],
        supersedes=row[16],
        note=row[17],
        recorded_seq=row[18],
        recorded_at=row[19],
        retracted=retracted,
        superseded_by=superseded_by,
        rank=ranks.get(row[0], UNRANKED),
    )


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def ranks_of(conn: sqlite3.Connection, ids: Sequence[str], seq: int) -> Ranks:
    """The rank in effect at `seq` of each of `ids` that was ranked by then."""
    found: Ranks = {}
    for part in _chunks(ids):
        marks = ",".join("?" * len(part))
        for aid, rank, reason, rseq in conn.execute(
            f"SELECT assertion_id, rank, reason, seq FROM proj_ranks "
            f"WHERE assertion_id IN ({marks}) AND seq <= ? ORDER BY seq",
            (*part, seq),
        ):
            found[aid] = RankRow(rank=rank, reason=reason, seq=rseq)
    return found


def pick_superseders(
    candidates: Iterable[tuple[str, str, int | None]], seq: int, ranks: Ranks
) -> dict[str, str]:
    """`{target: superseder}` from `(target, superseder, retracted_seq)` in record order."""
    found: dict[str, str] = {}
    for target, superseder, retracted_seq in candidates:
        if retracted_seq is not None and retracted_seq <= seq:
            continue
        if ranks.get(superseder, UNRANKED).rank == "deprecated":
            continue
        found[target] = superseder  # record order: the latest-recorded wins
    return found


def superseders_of(conn: sqlite3.Connection, ids: Sequence[str], seq: int) -> dict[str, str]:
    """`{id: superseded_by}` for those of `ids` that have one at `seq`."""
    candidates: list[tuple[int, str, str, int | None]] = []
    for part in _chunks(ids):
        marks = ",".join("?" * len(part))
        candidates += conn.execute(
            f"SELECT recorded_seq, supersedes, assertion_id, retracted_seq FROM proj_assertions "
            f"WHERE supersedes IN ({marks}) AND recorded_seq <= ?",
            (*part, seq),
        ).fetchall()
    if not candidates:
        return {}
    candidates.sort()
    ranks = ranks_of(conn, [c[2] for c in candidates], seq)
    return pick_superseders((c[1:] for c in candidates), seq, ranks)


def details(
    conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], seq: int
) -> list[AssertionDetail]:
    """Detail rows (from `DETAIL_COLUMNS`) with their ranks and superseders at `seq`."""
    ids = [r[0] for r in rows]
    ranks = ranks_of(conn, ids, seq)
    superseded = superseders_of(conn, ids, seq)
    return [build_detail(r, seq, ranks, superseded.get(r[0])) for r in rows]


def assertion_detail(
    conn: sqlite3.Connection, assertion_id: str, at: PointInTime
) -> AssertionDetail | None:
    """The assertion as known at `at.seq`; None if it was not recorded by then."""
    row = conn.execute(
        f"SELECT {DETAIL_COLUMNS} FROM proj_assertions a "
        "WHERE a.assertion_id = ? AND a.recorded_seq <= ?",
        (assertion_id, at.seq),
    ).fetchone()
    if row is None:
        return None
    return details(conn, [row], at.seq)[0]


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput([FieldError("limit", f"must be between 1 and {MAX_LIMIT}")])


def not_a_cursor() -> InvalidInput:
    """The refusal of a `cursor` no listing of this kind gives out."""
    return InvalidInput([FieldError("cursor", "not a cursor this listing gave out")])


def _seq_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise not_a_cursor()
    return int(cursor)


def list_assertions(
    conn: sqlite3.Connection,
    at: PointInTime,
    subject: str | None = None,
    prop: str | None = None,
    claimant: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> AssertionPage:
    """Assertions recorded by `at.seq` (retracted ones too), stated by `at.as_of`, in
    record order; `next` continues the listing and is null at its end."""
    check_limit(limit)
    after = _seq_cursor(cursor)
    if after > at.seq:  # a page's cursor is a record at or before the seq it was read at
        raise InvalidInput(
            [
                FieldError(
                    "cursor",
                    f"past the log position asked (seq {at.seq}): not a cursor "
                    "this listing gave out there",
                )
            ]
        )
    source = "proj_assertions a"
    where = ["a.recorded_seq > ?", "a.recorded_seq <= ?"]
    args: list[Any] = [after, at.seq]
    if claimant is not None:
        source = "proj_claimants c JOIN proj_assertions a ON a.recorded_seq = c.recorded_seq"
        where = ["c.claimant = ?", "c.recorded_seq > ?", "c.recorded_seq <= ?"]
        args = [claimant, after, at.seq]
    if subject is not None:
        where.append("a.subject = ?")
        args.append(subject)
    if prop is not None:
        where.append("a.property = ?")
        args.append(prop)
    if at.as_of_end is not None:
        where.append("a.stated_start <= ?")
        args.append(at.as_of_end)
    order = "c.recorded_seq" if claimant is not None else "a.recorded_seq"
    # find the page through the indexes first, then read only its rows
    rows = conn.execute(
        f"SELECT {DETAIL_COLUMNS} FROM proj_assertions a WHERE a.recorded_seq IN ("
        f"SELECT {order} FROM {source} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        ") ORDER BY a.recorded_seq",
        (*args, limit + 1),
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    items = details(conn, rows, at.seq)
    return AssertionPage(
        items=items, next=str(items[-1].recorded_seq) if more else None, **echo(at)
    )
