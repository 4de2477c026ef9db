"""The log itself: events, the live tail, head, proofs, audit, health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.auth import guard
from api.deps import NO_BODY, Limit, store_of
from api.openapi import GUARDED, TREE_BROKEN, errors_for
from api.schemas import (
    Consistency,
    ErasureItem,
    ErasurePage,
    EventPage,
    Head,
    Health,
    Inclusion,
    NoBody,
)
from ledger.codec import encode_json
from ledger.erasure import erasures
from ledger.errors import FieldError, InvalidInput, LedgerUnavailable, check_resume_point
from ledger.health import health_report
from ledger.replay import AuditReport, audit
from ledger.sqlite_store import SqliteStore
from ledger.text import PLAIN_WHOLE, plain_whole_number
from projections import all_projectors

_READ = {"need": "read"}
_ERRORS = errors_for(*GUARDED, 422)
_TREE_ERRORS = errors_for(*GUARDED, 422, 503, why={503: TREE_BROKEN})
After = Annotated[
    int,
    QueryParameter(
        name="after", ge=0, description="start after this seq (at most the log's size: 422 past it)"
    ),
]


@get(
    "/v1/health",
    operation_id="health",
    summary="Liveness, the log's size, and whether appends are refused (and why)",
    sync_to_thread=True,
    opt={"need": "none"},
)
def health(state: State) -> Health:
    report = health_report(store_of(state))
    return Health(report.status, report.seq, report.reason)


@get(
    "/v1/events",
    operation_id="listEvents",
    summary="The log, in seq order",
    opt=_READ,
    sync_to_thread=True,
    responses=_ERRORS,
)
def list_events(state: State, after: After = 0, limit: Limit = 100) -> EventPage:
    store = store_of(state)
    events = store.read(after, limit + 1, as_stored=True)
    if not events:
        check_resume_point(store.size(), "after", after)
    more = len(events) > limit
    events = events[:limit]
    return EventPage(
        [msgspec.Raw(encode_json(e)) for e in events],
        events[-1].seq if more and events else None,
    )


def _start_of(after: int | None, last_event_id: str | None, copies: int) -> int:
    """The later of `after` and Last-Event-ID (given `copies` times): an EventSource
    reconnects to the same URL with the id it saw last, and must not be sent again what it
    already has."""
    if copies > 1:  # a proxy may join them or either may win: neither is taken silently
        raise InvalidInput([FieldError("Last-Event-ID", "given more than once (give it once)")])
    start = after or 0
    if last_event_id is None:
        return start
    seq = plain_whole_number(last_event_id.strip())
    if seq is None:
        raise InvalidInput([FieldError("Last-Event-ID", f"must be a seq: {PLAIN_WHOLE}")])
    return max(start, seq)


async def _still_allowed(request: Request[Any, Any, Any]) -> bool:
    """Whether the key that opened a stream may still read: the route's own guard, asked
    again, so a key revoked while its stream is open gets nothing more once the auth cache
    lets go of it."""
    try:
        await guard(request, request.route_handler)
    except (NotAuthorizedException, PermissionDeniedException):
        return False
    return True


@get(
    "/v1/events/stream",
    operation_id="streamEvents",
    summary="Server-Sent Events from `after` or Last-Event-ID; stays open for new events",
    description="Each event is `id: <seq>`, `event: <type>`, `data: <the event's JSON>`; "
    "comments keep an idle connection alive.",
    media_type="text/event-stream",
    opt=_READ,
    responses=_ERRORS,
)
async def stream_events(
    request: Request[Any, Any, Any],
    after: Annotated[
        int | None,
        QueryParameter(
            name="after",
            ge=0,
            description="start after this seq (at most the log's size: 422 past it)",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        HeaderParameter(
            name="Last-Event-ID",
            description="resume after this seq (with `after` too: the later of the two; "
            "at most the log's size: 422 past it)",
        ),
    ] = None,
) -> ServerSentEvent:
    store = store_of(request.app.state)
    tail = request.app.state.tail
    heartbeat: float = request.app.state.settings.sse_heartbeat_seconds
    copies = sum(name == b"last-event-id" for name, _ in request.scope["headers"])
    position = _start_of(after, last_event_id, copies)
    if position:
        named = "after" if position == (after or 0) else "Last-Event-ID"
        check_resume_point(await asyncio.to_thread(store.size), named, position)

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        nonlocal position
        yield ServerSentEventMessage(comment="connected", retry=2000, data=None)
        while True:
            batch = await asyncio.to_thread(store.read, position, 500, as_stored=True)
            if not await _still_allowed(request):
                return
            for event in batch:
                yield ServerSentEventMessage(
                    data=encode_json(event).decode(), event=event.type, id=str(event.seq)
                )
                position = event.seq
            if len(batch) == 500:
                continue
            if tail.closed:
                return
            if not await tail.wait_beyond(position, heartbeat) and not tail.closed:
                yield ServerSentEventMessage(comment="keep-alive", data=None)

    return ServerSentEvent(
        events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _tree_store(state: State) -> SqliteStore:
    """The store, to read roots and proofs from: a 503 naming why while its stored Merkle
    tree is known to be broken, since a root or proof read from it would not hold."""
    store = store_of(state)
    if store.tree_refusal is not None:
        raise LedgerUnavailable(store.tree_refusal)
    return store


def _check_sizes(head: int, small: tuple[str, int], large: tuple[str, int]) -> None:
    """`small <= large <= head`, or a 422 naming each parameter out of range."""
    errors: list[FieldError] = []
    if large[1] > head:
        errors.append(FieldError(large[0], f"the log holds {head} events; must not exceed it"))
    if small[1] > large[1]:
        errors.append(FieldError(small[0], f"must not exceed {large[0]} ({large[1]})"))
    if errors:
        raise InvalidInput(errors)


@get(
    "/v1/log/head",
    operation_id="logHead",
    summary="The log's size and RFC 9162 Merkle root, or the root at an earlier size",
    opt=_READ,
    sync_to_thread=True,
    responses=_TREE_ERRORS,
)
def log_head(
    state: State,
    size: Annotated[
        int | None,
        QueryParameter(
            name="size",
            ge=0,
            description="the root of the tree of the first `size` events (default: all), "
            "to check a proof against a size whose root was not kept",
        ),
    ] = None,
) -> Head:
    store = _tree_store(state)
    if size is None:
        head = store.head()
        return Head(head.size, head.root)
    _check_sizes(store.size(), ("size", size), ("size", size))
    return Head(size, store.root(size))


@get(
    "/v1/log/inclusion",
    operation_id="inclusionProof",
    summary="RFC 9162 inclusion proof of event `seq` in the tree of `size`",
    opt=_READ,
    sync_to_thread=True,
    responses=_TREE_ERRORS,
)
def inclusion(
    state: State,
    seq: Annotated[int, QueryParameter(name="seq", ge=1, description="the event")],
    size: Annotated[int, QueryParameter(name="size", ge=1, description="the tree size")],
) -> Inclusion:
    store = _tree_store(state)
    _check_sizes(store.size(), ("seq", seq), ("size", size))
    proof = store.inclusion_proof(seq, size)
    return Inclusion(proof.seq, proof.size, proof.leaf_hash, proof.path)


@get(
    "/v1/log/consistency",
    operation_id="consistencyProof",
    summary="RFC 9162 consistency proof between tree sizes `from` and `to`",
    opt=_READ,
    sync_to_thread=True,
    responses=_TREE_ERRORS,
)
def consistency(
    state: State,
    old: Annotated[int, QueryParameter(name="from", ge=1, description="the older tree size")],
    new: Annotated[int, QueryParameter(name="to", ge=1, description="the newer tree size")],
) -> Consistency:
    store = _tree_store(state)
    _check_sizes(store.size(), ("from", old), ("to", new))
    proof = store.consistency_proof(old, new)
    return Consistency(proof.old_size, proof.new_size, proof.path)


@post(
    "/v1/audit",
    operation_id="audit",
    summary="Replay the whole log from nothing and compare every projection",
    description="Takes no body (an empty JSON object is taken too); any other body is "
    "refused as a write's is: 415 if it is not JSON, 413 over the size limit, 422 naming "
    "each field.",
    opt={"need": "audit", NO_BODY: NoBody},
    responses=errors_for(*GUARDED, 413, 415, 422),
    status_code=200,
)
async def run_audit(request: Request[Any, Any, Any]) -> Response[AuditReport]:
    store = store_of(request.app.state)
    report = await asyncio.to_thread(audit, store, all_projectors)
    return Response(report)


@get(
    "/v1/erasures",
    operation_id="listErasures",
    summary="Payloads erased by law, in seq order: what a copy of the events must erase too",
    description="Each erased event still reads in `/v1/events`, with `data: null`; its "
    "`data_sha256` and every proof stay. An erasure is made with `ledger erase`, which logs "
    "it as a `PayloadErased` event (`logged_seq`; null for an erasure made before erasures "
    "were logged).",
    opt=_READ,
    sync_to_thread=True,
    responses=_ERRORS,
)
def list_erasures(state: State, after: After = 0, limit: Limit = 100) -> ErasurePage:
    store = store_of(state)
    # in seq order, as the records are read
    found = [e for e in erasures(store.reader()).values() if e.seq > after]
    if not found:
        check_resume_point(store.size(), "after", after)
    page = found[:limit]
    items = [
        ErasureItem(
            e.seq,
            e.erased_at,
            e.actor,
            e.reason,
            e.kept.assertion_id,
            e.kept.subject,
            e.kept.property,
            e.logged_seq,
        )
        for e in page
    ]
    return ErasurePage(items, page[-1].seq if len(found) > limit else None)


LOG_HANDLERS = [
    list_events,
    list_erasures,
    stream_events,
    log_head,
    inclusion,
    consistency,
    run_audit,
]
