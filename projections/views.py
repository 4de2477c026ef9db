"""The views: pure functions of a read connection and a :class:`PointInTime`.

Each reads only the rows of what it shows (one subject and property, one assertion, one
page), through indexes, so its cost does not grow with the log. The rules themselves live
in :mod:`projections.facts` (which assertions count), :mod:`projections.quantity` and
:mod:`projections.status`.
"""

from __future__ import annotations

import sqlite3

import msgspec

from projections.catalog import get_source, list_sources, list_subjects
from projections.details import assertion_detail, list_assertions
from projections.facts import eligible, live_facts
from projections.pit import PointInTime, echo, subject_version
from projections.quantity import quantity_parts
from projections.rows import (
    AssertionAt,
    AssertionDetail,
    AssertionPage,
    ClaimantTotal,
    Estimate,
    Kind,
    QuantityView,
    SourceAt,
    SourcePage,
    SourceView,
    Spread,
    StatusChange,
    StatusView,
    SubjectPage,
    SubjectRow,
    Timeline,
    TimelineItem,
)
from projections.status import status_parts
from projections.timeline import timeline

__all__ = [
    "AssertionAt",
    "AssertionDetail",
    "AssertionPage",
    "ClaimantTotal",
    "Estimate",
    "QuantityView",
    "SourceAt",
    "SourcePage",
    "SourceView",
    "Spread",
    "StatusChange",
    "StatusView",
    "SubjectPage",
    "SubjectRow",
    "Timeline",
    "TimelineItem",
    "assertion_detail",
    "get_source",
    "list_assertions",
    "list_sources",
    "list_subjects",
    "property_kind",
    "property_view",
    "quantity_view",
    "read_assertion",
    "read_source",
    "status_view",
    "subject_version",
    "timeline",
]


def read_assertion(
    conn: sqlite3.Connection, assertion_id: str, at: PointInTime
) -> AssertionAt | None:
    """The assertion as known at `at`, echoing `at` as a view does; None if not recorded
    by then."""
    found = assertion_detail(conn, assertion_id, at)
    return None if found is None else AssertionAt(**msgspec.structs.asdict(found), **echo(at))


def read_source(conn: sqlite3.Connection, source_id: str, at: PointInTime) -> SourceAt | None:
    """The source as it stood at `at`, echoing `at` as a view does; None if unknown then."""
    found = get_source(conn, source_id, at)
    return None if found is None else SourceAt(**msgspec.structs.asdict(found), **echo(at))


def quantity_view(
    conn: sqlite3.Connection, subject: str, prop: str, at: PointInTime
) -> QuantityView:
    """The contract's quantity view of `subject`/`prop` at `at`."""
    live = live_facts(eligible(conn, subject, prop, at, kind="quantity"))
    estimate, basis, spread, claimants = quantity_parts(live)
    return QuantityView(
        subject=subject,
        property=prop,
        **echo(at),
        version=subject_version(conn, subject, at.seq),
        estimate=estimate,
        basis=basis,
        spread=spread,
        claimants=claimants,
    )


def status_view(conn: sqlite3.Connection, subject: str, prop: str, at: PointInTime) -> StatusView:
    """The contract's status view of `subject`/`prop` at `at`."""
    facts = eligible(conn, subject, prop, at, kind="status")
    status, since, by, basis, history = status_parts(facts)
    return StatusView(
        subject=subject,
        property=prop,
        **echo(at),
        version=subject_version(conn, subject, at.seq),
        status=status,
        since=since,
        by=by,
        basis=basis,
        history=history,
    )


def _kind_and_first(conn: sqlite3.Connection, subject: str, prop: str) -> tuple[Kind, int] | None:
    """The kind a property holds (fixed by its first claim) and the seq of that claim."""
    row = conn.execute(
        "SELECT kind, first_seq FROM proj_properties WHERE subject = ? AND property = ?",
        (subject, prop),
    ).fetchone()
    if row is None:
        return None
    return ("status" if row[0] == "status" else "quantity"), int(row[1])


def property_kind(
    conn: sqlite3.Connection, subject: str, prop: str, seq: int | None = None
) -> Kind | None:
    """The kind a property holds (fixed by its first claim); None if it has none yet, or,
    with `seq`, if its first claim came after that seq.

    A property keeps its kind forever once claimed, but before its first claim the ledger
    did not know it: what a view at an earlier seq answers must not change with what was
    recorded later, so there it is a property like any other never claimed.
    """
    found = _kind_and_first(conn, subject, prop)
    if found is None or (seq is not None and found[1] > seq):
        return None
    return found[0]


def property_view(
    conn: sqlite3.Connection, subject: str, prop: str, at: PointInTime, kind: Kind | None = None
) -> QuantityView | StatusView | None:
    """The view of the property's kind; for a property not claimed by `at`'s seq, the
    empty view of `kind`, or without one of the kind it has now; None for a property
    never claimed and no `kind`."""
    found = _kind_and_first(conn, subject, prop)
    if found is not None and (found[1] <= at.seq or kind is None):
        kind = found[0]
    if kind is None:
        return None
    if kind == "quantity":
        return quantity_view(conn, subject, prop, at)
    return status_view(conn, subject, prop, at)
