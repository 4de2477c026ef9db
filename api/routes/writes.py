"""Appending: sources, assertions, retractions, ranks."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, patch, post

from api.deps import checked_body, render_assertion, render_event, run_write
from api.openapi import errors_for
from api.schemas import AssertionReceipt, EventReceipt, RankBody, RetractBody
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


def _reply(reply: Reply) -> Response[bytes]:
    return Response(content=reply.body, status_code=reply.status, media_type="application/json")


def _source_reply(receipt: Receipt) -> Reply:
    if receipt.existing or not receipt.events:
        return Reply(200, b'{"status":"unchanged"}')
    return render_event(receipt)


def _update_reply(receipt: Receipt) -> Reply:
    reply = _source_reply(receipt)
    return Reply(200, reply.body)


async def _check_record(request: Request[Any, Any, Any]) -> None:
    await checked_body(request, RecordAssertion)


async def _check_source(request: Request[Any, Any, Any]) -> None:
    await checked_body(request, RegisterSource)


async def _check_changes(request: Request[Any, Any, Any]) -> None:
    await checked_body(request, SourceChanges)


async def _check_retract(request: Request[Any, Any, Any]) -> None:
    await checked_body(request, RetractBody)


async def _check_rank(request: Request[Any, Any, Any]) -> None:
    await checked_body(request, RankBody)


@post(
    "/v1/sources",
    operation_id="registerSource",
    summary="Register a source",
    description="201 when new; the identical body again: 200; other details for a known id: 409.",
    opt=_WRITE,
    before_request=_check_source,
    responses=errors_for(401, 403, 409, 413, 422, 429),
    status_code=201,
)
async def register_source(request: Request[Any, Any, Any], data: RegisterSource) -> Response[bytes]:
    return _reply(await run_write(request, data, _source_reply))


@patch(
    "/v1/sources/{source_id:str}",
    operation_id="updateSource",
    summary="Change a source's name, kind, country or reliability (appends SourceUpdated)",
    opt=_WRITE,
    before_request=_check_changes,
    responses=errors_for(401, 403, 404, 413, 422, 429),
    status_code=200,
)
async def update_source(
    request: Request[Any, Any, Any], source_id: str, data: SourceChanges
) -> Response[bytes]:
    command = UpdateSource(id=source_id, changes=data)
    return _reply(await run_write(request, command, _update_reply))


@post(
    "/v1/assertions",
    operation_id="recordAssertion",
    summary="Record a sourced assertion",
    description='`If-Match: "<version>"` makes it conditional on the subject stream version.',
    opt=_WRITE,
    before_request=_check_record,
    responses=errors_for(401, 403, 409, 412, 413, 422, 429, 507),
    status_code=201,
)
async def record_assertion(
    request: Request[Any, Any, Any], data: RecordAssertion
) -> Response[AssertionReceipt]:
    reply = await run_write(request, data, render_assertion, if_match=True)
    return _reply(reply)  # type: ignore[return-value]


@post(
    "/v1/assertions/{assertion_id:str}/retract",
    operation_id="retractAssertion",
    summary="Retract an assertion whose record was a mistake",
    opt=_WRITE,
    before_request=_check_retract,
    responses=errors_for(401, 403, 404, 409, 413, 422, 429, 507),
    status_code=201,
)
async def retract_assertion(
    request: Request[Any, Any, Any], assertion_id: str, data: RetractBody
) -> Response[EventReceipt]:
    command = RetractAssertion(assertion_id=assertion_id, reason=data.reason)
    return _reply(await run_write(request, command, render_event))  # type: ignore[return-value]


@post(
    "/v1/assertions/{assertion_id:str}/rank",
    operation_id="rankAssertion",
    summary="Rank an assertion preferred, normal or deprecated",
    opt=_WRITE,
    before_request=_check_rank,
    responses=errors_for(401, 403, 404, 413, 422, 429, 507),
    status_code=201,
)
async def rank_assertion(
    request: Request[Any, Any, Any], assertion_id: str, data: RankBody
) -> Response[EventReceipt]:
    command = RankAssertion(assertion_id=assertion_id, rank=data.rank, reason=data.reason)
    return _reply(await run_write(request, command, render_event))  # type: ignore[return-value]


WRITE_HANDLERS = [
    register_source,
    update_source,
    record_assertion,
    retract_assertion,
    rank_assertion,
]
