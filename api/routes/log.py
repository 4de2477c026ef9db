"""The log itself: events, the live tail, head, proofs, audit, health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import msgspec
from ledger.replay import AuditReport, audit
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from api.deps import store_of
from api.openapi import errors_for
from api.schemas import Consistency, EventPage, Head, Health, Inclusion
from ledger.codec import encode_json
from ledger.errors import FieldError, InvalidInput
from projections import all_projectors

_READ = {"need": "read"}
_ERRORS = errors_for(401, 403, 422)
After = Annotated[int, Parameter(query="after", ge=0, description="start after this seq")]
Limit = Annotated[int, Parameter(query="limit", ge=1, le=1000)]


@get(
    "/v1/health",
    operation_id="health",
    summary="Liveness and the log's size",
    sync_to_thread=True,
    opt={"need": "none"},
)
def health(state: State) -> Health:
    return Health("ok", store_of(state).size())


@get(
    "/v1/events",
    operation_id="listEvents",
    summary="The log, in seq order",
    opt=_READ,
    sync_to_thread=True,
    responses=_ERRORS,
)
def list_events(state: State, after: After = 0, limit: Limit = 100) -> EventPage:
    events = store_of(state).read(after, limit + 1)
    more = len(events) > limit
    events = events[:limit]
    return EventPage(
        [msgspec.Raw(encode_json(e)) for e in events],
        events[-1].seq if more and events else None,
    )


def _last_event_id(request: Request[Any, Any, Any], after: int | None) -> int:
    if after is not None:
        return after
    header = request.headers.get("last-event-id")
    if header is None:
        return 0
    if not header.isascii() or not header.strip().isdigit():
        raise InvalidInput([FieldError("Last-Event-ID", "must be a seq (a whole number)")])
    return int(header)


@get(
    "/v1/events/stream",
    operation_id="streamEvents",
    summary="Server-Sent Events from `after` or Last-Event-ID; stays open for new events",
    opt=_READ,
    responses=_ERRORS,
)
async def stream_events(
    request: Request[Any, Any, Any],
    after: Annotated[int | None, Parameter(query="after", ge=0)] = None,
) -> ServerSentEvent:
    store = store_of(request.app.state)
    tail = request.app.state.tail
    heartbeat: float = request.app.state.settings.sse_heartbeat_seconds
    position = _last_event_id(request, after)

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        nonlocal position
        yield ServerSentEventMessage(comment="connected", retry=2000)
        while True:
            batch = await asyncio.to_thread(store.read, position, 500)
            for event in batch:
                yield ServerSentEventMessage(
                    data=encode_json(event).decode(), event=event.type, id=str(event.seq)
                )
                position = event.seq
            if len(batch) == 500:
                continue
            if not await tail.wait_beyond(position, heartbeat):
                yield ServerSentEventMessage(comment="keep-alive")

    return ServerSentEvent(
        events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@get(
    "/v1/log/head",
    operation_id="logHead",
    summary="The log's size and RFC 9162 Merkle root",
    opt=_READ,
    sync_to_thread=True,
    responses=_ERRORS,
)
def log_head(state: State) -> Head:
    head = store_of(state).head()
    return Head(head.size, head.root)


@get(
    "/v1/log/inclusion",
    operation_id="inclusionProof",
    summary="RFC 9162 inclusion proof of event `seq` in the tree of `size`",
    opt=_READ,
    sync_to_thread=True,
    responses=_ERRORS,
)
def inclusion(
    state: State,
    seq: Annotated[int, Parameter(query="seq", ge=1)],
    size: Annotated[int, Parameter(query="size", ge=1)],
) -> Inclusion:
    proof = store_of(state).inclusion_proof(seq, size)
    return Inclusion(proof.seq, proof.size, proof.leaf_hash, proof.path)


@get(
    "/v1/log/consistency",
    operation_id="consistencyProof",
    summary="RFC 9162 consistency proof between tree sizes `from` and `to`",
    opt=_READ,
    sync_to_thread=True,
    responses=_ERRORS,
)
def consistency(
    state: State,
    old: Annotated[int, Parameter(query="from", ge=1)],
    new: Annotated[int, Parameter(query="to", ge=1)],
) -> Consistency:
    proof = store_of(state).consistency_proof(old, new)
    return Consistency(proof.old_size, proof.new_size, proof.path)


@post(
    "/v1/audit",
    operation_id="audit",
    summary="Replay the whole log from nothing and compare every projection",
    opt={"need": "audit"},
    responses=errors_for(401, 403, 429),
    status_code=200,
)
async def run_audit(request: Request[Any, Any, Any]) -> Response[AuditReport]:
    store = store_of(request.app.state)
    report = await asyncio.to_thread(audit, store, all_projectors)
    return Response(report)


LOG_HANDLERS = [
    health,
    list_events,
    stream_events,
    log_head,
    inclusion,
    consistency,
    run_audit,
]
