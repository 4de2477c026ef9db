"""Catalogues: subjects and sources as known at a seq, paged by their ids."""

from __future__ import annotations

import sqlite3
from itertools import groupby
from typing import Any

import msgspec

from ledger.commands import SourceIdRef, SubjectRef
from ledger.sqlite_store import stream_version_at
from projections.details import check_limit, not_a_cursor
from projections.pit import PointInTime, echo, subject_version
from projections.rows import SourcePage, SourceVersion, SourceView, SubjectPage, SubjectRow

_SOURCE_COLUMNS = "id, seq, recorded_at, name, kind, country, reliability"


def _id_cursor(cursor: str | None, kind: Any) -> str:
    """A listing's cursor is the last id of the page before: an id of the listing's `kind`
    (a subject or a source id), or none this listing could have given out."""
    if cursor is None:
        return ""
    try:
        return str(msgspec.convert(cursor, kind))
    except msgspec.ValidationError:
        raise not_a_cursor() from None


def list_subjects(
    conn: sqlite3.Connection, at: PointInTime, limit: int = 100, cursor: str | None = None
) -> SubjectPage:
    """Subjects with a claim recorded by `at.seq`, in id order."""
    check_limit(limit)
    rows = conn.execute(
        "SELECT subject, property, kind FROM proj_properties "
        "WHERE subject > ? AND first_seq <= ? ORDER BY subject, property",
        (_id_cursor(cursor, SubjectRef), at.seq),
    )
    items: list[SubjectRow] = []
    more = False
    for subject, group in groupby(rows, key=lambda r: str(r[0])):
        if len(items) == limit:
            more = True
            break
        kinds = {r[1]: r[2] for r in group}
        count = conn.execute(
            "SELECT assertions FROM proj_subject_counts WHERE subject = ? AND seq <= ? "
            "ORDER BY seq DESC LIMIT 1",
            (subject, at.seq),
        ).fetchone()
        items.append(
            SubjectRow(
                subject=subject,
                properties=sorted(kinds),
                property_kinds=kinds,
                assertions=0 if count is None else int(count[0]),
                version=subject_version(conn, subject, at.seq),
            )
        )
    return SubjectPage(items=items, next=items[-1].subject if more else None, **echo(at))


def _source(rows: list[Any]) -> SourceView:
    history = [
        SourceVersion(
            seq=r[1], recorded_at=r[2], name=r[3], kind=r[4], country=r[5], reliability=r[6]
        )
        for r in rows
    ]
    now = history[-1]
    return SourceView(
        id=rows[0][0],
        name=now.name,
        kind=now.kind,
        country=now.country,
        reliability=now.reliability,
        registered_seq=history[0].seq,
        version=len(history),
        history=history,
    )


def get_source(conn: sqlite3.Connection, source_id: str, at: PointInTime) -> SourceView | None:
    """The source as it stood at `at.seq`, with every version until then; None if unknown."""
    rows = conn.execute(
        f"SELECT {_SOURCE_COLUMNS} FROM proj_source_versions WHERE id = ? AND seq <= ? "
        "ORDER BY seq",
        (source_id, at.seq),
    ).fetchall()
    return _source(rows) if rows else None


def list_sources(
    conn: sqlite3.Connection, at: PointInTime, limit: int = 100, cursor: str | None = None
) -> SourcePage:
    """Sources registered by `at.seq`, in id order, each as it stood then."""
    check_limit(limit)
    rows = conn.execute(
        f"SELECT {_SOURCE_COLUMNS} FROM proj_source_versions WHERE id > ? AND seq <= ? "
        "ORDER BY id, seq",
        (_id_cursor(cursor, SourceIdRef), at.seq),
    )
    items: list[SourceView] = []
    more = False
    for _, group in groupby(rows, key=lambda r: str(r[0])):
        if len(items) == limit:
            more = True
            break
        items.append(_source(list(group)))
    return SourcePage(items=items, next=items[-1].id if more else None, **echo(at))


def source_version(conn: sqlite3.Connection, source_id: str, seq: int) -> int:
    return stream_version_at(conn, f"source:{source_id}", seq)
