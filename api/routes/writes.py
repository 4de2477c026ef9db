"""Appending: sources, assertions, retractions, ranks."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from api.deps import (
    BODY,
    IdempotencyKey,
    IfMatch,
    render_assertion,
    render_event,
    run_write,
)
from api.openapi import WRITES, errors_for
from api.schemas import (
    UNCHANGED,
    AssertionReceipt,
    EventReceipt,
    RankBody,
    RetractBody,
    Unchanged,
)
from ledger.commands import (
    RankAssertion,
    RecordAssertion,
    RegisterSource,
    RetractAssertion,
    SourceChanges,
    UpdateSource,
)
from ledger.service import Receipt, Reply

_WRITE = {"need": "write"}


def _reply(reply: Reply) -> Response[Any]:
    """The reply's bytes as they are: a replayed answer is the first one, byte for byte."""
    return Response(content=reply.body, status_code=reply.status, media_type="application/json")


def _source_reply(receipt: Receipt) -> Reply:
    if receipt.existing or not receipt.events:
        return Reply(200, UNCHANGED)
    return render_event(receipt)


def _update_reply(receipt: Receipt) -> Reply:
    reply = _source_reply(receipt)
    return Reply(200, reply.body)


@post(
    "/v1/sources",
    operation_id="registerSource",
    summary="Register a source",
    description="201 when new; the identical body again: 200; other details for a known id: 409.",
    opt={**_WRITE, BODY: RegisterSource},
    responses={
        **errors_for(*WRITES, 409),
        200: ResponseSpec(
            data_container=Unchanged,
            description="the identical source is already registered: nothing appended",
            generate_examples=False,
        ),
    },
    status_code=201,
)
async def register_source(
    request: Request[Any, Any, Any],
    data: JSONBody[RegisterSource],
    idempotency_key: IdempotencyKey = None,
) -> Response[EventReceipt]:
    return _reply(await run_write(request, data, _source_reply, idempotency_key=idempotency_key))


@patch(
    "/v1/sources/{source_id:str}",
    operation_id="updateSource",
    summary="Change a source's name, kind, country or reliability (appends SourceUpdated)",
    opt={**_WRITE, BODY: SourceChanges},
    responses=errors_for(*WRITES, 404),
    status_code=200,
)
async def update_source(
    request: Request[Any, Any, Any],
    source_id: FromPath[str],
    data: JSONBody[SourceChanges],
    idempotency_key: IdempotencyKey = None,
) -> Response[EventReceipt | Unchanged]:
    command = UpdateSource(id=source_id, changes=data)
    return _reply(await run_write(request, command, _update_reply, idempotency_key=idempotency_key))


@post(
    "/v1/assertions",
    operation_id="recordAssertion",
    summary="Record a sourced assertion",
    description='`If-Match: "<version>"` makes it conditional on the subject stream version.',
    opt={**_WRITE, BODY: RecordAssertion},
    responses=errors_for(*WRITES, 409, 412),
    status_code=201,
)
async def record_assertion(
    request: Request[Any, Any, Any],
    data: JSONBody[RecordAssertion],
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response[AssertionReceipt]:
    return _reply(
        await run_write(
            request, data, render_assertion, idempotency_key=idempotency_key, if_match=if_match
        )
    )


@post(
    "/v1/assertions/{assertion_id:str}/retract",
    operation_id="retractAssertion",
    summary="Retract an assertion whose record was a mistake",
    opt={**_WRITE, BODY: RetractBody},
    responses=errors_for(*WRITES, 404, 409),
    status_code=201,
)
async def retract_assertion(
    request: Request[Any, Any, Any],
    assertion_id: FromPath[str],
    data: JSONBody[RetractBody],
    idempotency_key: IdempotencyKey = None,
) -> Response[EventReceipt]:
    command = RetractAssertion(assertion_id=assertion_id, reason=data.reason)
    return _reply(await run_write(request, command, render_event, idempotency_key=idempotency_key))


@post(
    "/v1/assertions/{assertion_id:str}/rank",
    operation_id="rankAssertion",
    summary="Rank an assertion preferred, normal or deprecated",
    opt={**_WRITE, BODY: RankBody},
    responses=errors_for(*WRITES, 404),
    status_code=201,
)
async def rank_assertion(
    request: Request[Any, Any, Any],
    assertion_id: FromPath[str],
    data: JSONBody[RankBody],
    idempotency_key: IdempotencyKey = None,
) -> Response[EventReceipt]:
    command = RankAssertion(assertion_id=assertion_id, rank=data.rank, reason=data.reason)
    return _reply(await run_write(request, command, render_event, idempotency_key=idempotency_key))


WRITE_HANDLERS = [
    register_source,
    update_source,
    record_assertion,
    retract_assertion,
    rank_assertion,
]
