"""Reading: sources, assertions, subjects and their views, all point-in-time."""

from __future__ import annotations

import sqlite3
from typing import Any

from litestar import Response, get
from litestar.datastructures import State

from api.deps import (
    AsOf,
    AssertionIdPath,
    ClaimantFilter,
    Cursor,
    KnownAt,
    Limit,
    OptionalLimit,
    PropertyFilter,
    PropertyPath,
    SeqParam,
    SourceIdPath,
    SubjectFilter,
    SubjectPath,
    point_in_time,
    store_of,
)
from api.openapi import GUARDED, VIEWS_BEHIND, errors_for
from ledger.errors import NotFound
from projections import views
from projections.rows import Kind

_READ = {"need": "read"}
_LIST_ERRORS = errors_for(*GUARDED, 422, 503, why={503: VIEWS_BEHIND})
_ONE_ERRORS = errors_for(*GUARDED, 404, 422, 503, why={503: VIEWS_BEHIND})


def _etag(response_body: Any, version: int) -> Response[Any]:
    return Response(content=response_body, headers={"ETag": f'"{version}"'})


def _check_kind(conn: sqlite3.Connection, subject: str, prop: str, wanted: Kind, seq: int) -> None:
    """A property keeps one kind: once claimed (by `seq`), the other kind's view of it does
    not exist."""
    kind = views.property_kind(conn, subject, prop, seq)
    if kind is not None and kind != wanted:
        where = "estimates" if kind == "quantity" else "statuses"
        raise NotFound(
            f"{subject}/{prop} holds {kind} values: see /v1/subjects/{subject}/{where}/{prop}"
        )


@get(
    "/v1/sources",
    operation_id="listSources",
    summary="Sources as known at known_at/seq",
    opt=_READ,
    sync_to_thread=True,
    responses=_LIST_ERRORS,
)
def list_sources(
    state: State,
    known_at: KnownAt = None,
    seq: SeqParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> views.SourcePage:
    at = point_in_time(state, None, known_at, seq)
    return views.list_sources(store_of(state).reader(), at, limit=limit, cursor=cursor)


@get(
    "/v1/sources/{source_id:str}",
    operation_id="getSource",
    summary="One source with its history, as known at known_at/seq",
    opt=_READ,
    sync_to_thread=True,
    responses=_ONE_ERRORS,
)
def get_source(
    state: State, source_id: SourceIdPath, known_at: KnownAt = None, seq: SeqParam = None
) -> Response[views.SourceAt]:
    at = point_in_time(state, None, known_at, seq)
    found = views.read_source(store_of(state).reader(), source_id, at)
    if found is None:
        raise NotFound(f"no source {source_id!r} at seq {at.seq}")
    return _etag(found, found.version)  # what If-Match on a PATCH of it compares


@get(
    "/v1/assertions/{assertion_id:str}",
    operation_id="getAssertion",
    summary="An assertion with its lifecycle, as known at known_at/seq",
    opt=_READ,
    sync_to_thread=True,
    responses=_ONE_ERRORS,
)
def get_assertion(
    state: State, assertion_id: AssertionIdPath, known_at: KnownAt = None, seq: SeqParam = None
) -> Response[views.AssertionAt]:
    conn = store_of(state).reader()
    at = point_in_time(state, None, known_at, seq)
    found = views.read_assertion(conn, assertion_id, at)
    if found is None:
        raise NotFound(f"no assertion {assertion_id!r} at seq {at.seq}")
    # its subject's version: what If-Match on its retraction or ranking compares
    return _etag(found, views.subject_version(conn, found.subject, at.seq))


@get(
    "/v1/assertions",
    operation_id="listAssertions",
    summary="Assertions, filtered, point-in-time, paged",
    opt=_READ,
    sync_to_thread=True,
    responses=_LIST_ERRORS,
)
def list_assertions(
    state: State,
    subject: SubjectFilter = None,
    property: PropertyFilter = None,
    claimant: ClaimantFilter = None,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    seq: SeqParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> views.AssertionPage:
    at = point_in_time(state, as_of, known_at, seq)
    return views.list_assertions(
        store_of(state).reader(),
        at,
        subject=subject,
        prop=property,
        claimant=claimant,
        limit=limit,
        cursor=cursor,
    )


@get(
    "/v1/subjects",
    operation_id="listSubjects",
    summary="Subjects with their properties, assertion counts and stream versions",
    opt=_READ,
    sync_to_thread=True,
    responses=_LIST_ERRORS,
)
def list_subjects(
    state: State,
    known_at: KnownAt = None,
    seq: SeqParam = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> views.SubjectPage:
    at = point_in_time(state, None, known_at, seq)
    return views.list_subjects(store_of(state).reader(), at, limit=limit, cursor=cursor)


@get(
    "/v1/subjects/{subject:str}/estimates/{property:str}",
    operation_id="getEstimate",
    summary="The quantity view: estimate, basis, spread, per-claimant totals",
    opt=_READ,
    sync_to_thread=True,
    responses=_ONE_ERRORS,
)
def get_estimate(
    state: State,
    subject: SubjectPath,
    property: PropertyPath,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    seq: SeqParam = None,
) -> Response[views.QuantityView]:
    conn = store_of(state).reader()
    at = point_in_time(state, as_of, known_at, seq)
    _check_kind(conn, subject, property, "quantity", at.seq)
    view = views.quantity_view(conn, subject, property, at)
    return _etag(view, view.version)


@get(
    "/v1/subjects/{subject:str}/statuses/{property:str}",
    operation_id="getStatus",
    summary="The status view: status, since, by, history",
    opt=_READ,
    sync_to_thread=True,
    responses=_ONE_ERRORS,
)
def get_status(
    state: State,
    subject: SubjectPath,
    property: PropertyPath,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    seq: SeqParam = None,
) -> Response[views.StatusView]:
    conn = store_of(state).reader()
    at = point_in_time(state, as_of, known_at, seq)
    _check_kind(conn, subject, property, "status", at.seq)
    view = views.status_view(conn, subject, property, at)
    return _etag(view, view.version)


@get(
    "/v1/subjects/{subject:str}/timeline",
    operation_id="getTimeline",
    summary="Every live assertion on the subject by statement time, with the view before and after",
    description="Whole by default; with `limit`, paged like every list (`cursor`, `next`).",
    opt=_READ,
    sync_to_thread=True,
    responses=_LIST_ERRORS,
)
def get_timeline(
    state: State,
    subject: SubjectPath,
    property: PropertyFilter = None,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    seq: SeqParam = None,
    limit: OptionalLimit = None,
    cursor: Cursor = None,
) -> Response[views.Timeline]:
    conn = store_of(state).reader()
    at = point_in_time(state, as_of, known_at, seq)
    view = views.timeline(conn, subject, at, property, limit=limit, cursor=cursor)
    return _etag(view, view.version)


READ_HANDLERS = [
    list_sources,
    get_source,
    get_assertion,
    list_assertions,
    list_subjects,
    get_estimate,
    get_status,
    get_timeline,
]
