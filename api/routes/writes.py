"""Appending: sources, assertions, retractions, ranks."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, patch, post
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.response.base import ASGIResponse

from api.deps import (
    BODY,
    CHECKED,
    AssertionIdPath,
    IdempotencyKey,
    IfMatch,
    SourceIdPath,
    created_headers,
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

_JSON = "application/json"


class WriteRequest(Request[Any, Any, Any]):
    """A write's request: its JSON is the body the app's gate already decoded and checked.

    The gate (`api.deps.checked_body`) decodes the body straight into the handler's struct,
    naming every bad field; answering `data` with that struct spares litestar decoding and
    validating the same bytes again. The handlers still declare `data`, which is what
    documents the request body in the OpenAPI schema.
    """

    __slots__ = ()

    async def json(self) -> Any:
        checked = self.scope.get("state", {}).get(CHECKED)
        return checked if checked is not None else await super().json()


_WRITE = {"need": "write"}


class _Sent(ASGIResponse):
    """Sends a reply's bytes with the headers litestar's `ASGIResponse` would give them."""

    __slots__ = ("_head",)

    def __init__(self, status: int, body: bytes, more: list[tuple[bytes, bytes]]) -> None:
        # no ASGIResponse.__init__: its header bookkeeping is most of a response's cost
        self.status_code = status
        self.body = body
        self.background = None
        self.is_head_response = False
        self._head = [  # in the order litestar sends them
            *more,
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ]

    def encode_headers(self) -> list[tuple[bytes, bytes]]:
        return list(self._head)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self._head}
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class ReplyResponse(Response[Any]):
    """A write's reply as it is: a replayed answer is the first one, byte for byte.

    The same bytes on the wire as `Response(content=body, status_code=status,
    media_type="application/json")`, without the general machinery when nothing (a layer's
    headers, cookies or background task) is added to it.
    """

    def __init__(self, reply: Reply, more: list[tuple[bytes, bytes]] | None = None) -> None:
        # the attributes Response.__init__ sets, without its normalising (~4 us a request)
        self.more = more or []  # headers of the reply itself (a 201's Location)
        self.content = reply.body
        self.status_code = reply.status
        self.media_type = _JSON
        self.background = None
        self.cookies = []
        self.encoding = "utf-8"
        self.headers = {}
        self.response_type_encoders = {}

    def to_asgi_response(
        self, app: Any, request: Request[Any, Any, Any], **layers: Any
    ) -> ASGIResponse:
        if self.headers or self.cookies or self.background or _adds_something(layers):
            self.headers.update((k.decode("latin-1"), v.decode("latin-1")) for k, v in self.more)
            return super().to_asgi_response(app, request, **layers)
        return _Sent(self.status_code or 200, self.content, self.more)


def _adds_something(layers: dict[str, Any]) -> bool:
    """Whether litestar asks for anything beyond the reply's own status, type and bytes."""
    return bool(
        layers.get("headers")
        or layers.get("cookies")
        or layers.get("background")
        or layers.get("encoded_headers")
        or layers.get("is_head_response")
    )


def _source_reply(receipt: Receipt) -> Reply:
    if receipt.existing or not receipt.events:
        return Reply(200, UNCHANGED)
    return render_event(receipt)


def _source_location(
    reply: Reply, source_id: str, request: Request[Any, Any, Any]
) -> list[tuple[bytes, bytes]]:
    """A registered source's `Location` (on the 201 only: a 200 registered nothing)."""
    if reply.status != 201:
        return []
    root = request.scope.get("root_path", "")
    return [(b"location", f"{root}/v1/sources/{source_id}".encode())]


def _update_reply(receipt: Receipt) -> Reply:
    reply = _source_reply(receipt)
    return Reply(200, reply.body)


@post(
    "/v1/sources",
    operation_id="registerSource",
    summary="Register a source",
    description="201 when new; the identical body again: 200; other details for a known id: 409. "
    '`If-Match: "<version>"` makes it conditional on the source stream\'s version (`"0"`: only '
    "while the id is not registered).",
    request_class=WriteRequest,
    opt={**_WRITE, BODY: RegisterSource},
    responses={
        **errors_for(*WRITES, 409, 412),
        200: ResponseSpec(
            data_container=Unchanged,
            description="the identical source is already registered: nothing appended",
            generate_examples=False,
        ),
    },
    response_headers=[
        ResponseHeader(
            name="Location",
            description="the registered source, on a 201: `/v1/sources/{id}`",
            value="/v1/sources/{id}",
            documentation_only=True,
        )
    ],
    status_code=201,
)
async def register_source(
    request: Request[Any, Any, Any],
    data: JSONBody[RegisterSource],
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response[EventReceipt]:
    reply = await run_write(
        request, data, _source_reply, idempotency_key=idempotency_key, if_match=if_match
    )
    return ReplyResponse(reply, _source_location(reply, data.id, request))


@patch(
    "/v1/sources/{source_id:str}",
    operation_id="updateSource",
    summary="Change a source's name, kind, country or reliability (appends SourceUpdated)",
    description='`If-Match: "<version>"` makes it conditional on the source stream\'s version.',
    request_class=WriteRequest,
    opt={**_WRITE, BODY: SourceChanges},
    responses=errors_for(*WRITES, 404, 412),
    status_code=200,
)
async def update_source(
    request: Request[Any, Any, Any],
    source_id: SourceIdPath,
    data: JSONBody[SourceChanges],
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response[EventReceipt | Unchanged]:
    command = UpdateSource(id=source_id, changes=data)
    return ReplyResponse(
        await run_write(
            request, command, _update_reply, idempotency_key=idempotency_key, if_match=if_match
        )
    )


@post(
    "/v1/assertions",
    operation_id="recordAssertion",
    summary="Record a sourced assertion",
    description='`If-Match: "<version>"` makes it conditional on the subject stream version.',
    request_class=WriteRequest,
    opt={**_WRITE, BODY: RecordAssertion},
    responses=errors_for(*WRITES, 409, 412),
    response_headers=[
        ResponseHeader(
            name="Location",
            description="the recorded assertion: `/v1/assertions/{assertion_id}`",
            value="/v1/assertions/{assertion_id}",  # gives the header its string schema
            documentation_only=True,
        )
    ],
    status_code=201,
)
async def record_assertion(
    request: Request[Any, Any, Any],
    data: JSONBody[RecordAssertion],
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response[AssertionReceipt]:
    reply = await run_write(
        request, data, render_assertion, idempotency_key=idempotency_key, if_match=if_match
    )
    return ReplyResponse(reply, created_headers(reply, request.scope.get("root_path", "")))


@post(
    "/v1/assertions/{assertion_id:str}/retract",
    operation_id="retractAssertion",
    summary="Retract an assertion whose record was a mistake",
    description='`If-Match: "<version>"` makes it conditional on the subject stream version.',
    request_class=WriteRequest,
    opt={**_WRITE, BODY: RetractBody},
    responses=errors_for(*WRITES, 404, 409, 412),
    status_code=201,
)
async def retract_assertion(
    request: Request[Any, Any, Any],
    assertion_id: AssertionIdPath,
    data: JSONBody[RetractBody],
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response[EventReceipt]:
    command = RetractAssertion(assertion_id=assertion_id, reason=data.reason)
    return ReplyResponse(
        await run_write(
            request, command, render_event, idempotency_key=idempotency_key, if_match=if_match
        )
    )


@post(
    "/v1/assertions/{assertion_id:str}/rank",
    operation_id="rankAssertion",
    summary="Rank an assertion preferred, normal or deprecated",
    description='`If-Match: "<version>"` makes it conditional on the subject stream version.',
    request_class=WriteRequest,
    opt={**_WRITE, BODY: RankBody},
    responses=errors_for(*WRITES, 404, 412),
    status_code=201,
)
async def rank_assertion(
    request: Request[Any, Any, Any],
    assertion_id: AssertionIdPath,
    data: JSONBody[RankBody],
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response[EventReceipt]:
    command = RankAssertion(assertion_id=assertion_id, rank=data.rank, reason=data.reason)
    return ReplyResponse(
        await run_write(
            request, command, render_event, idempotency_key=idempotency_key, if_match=if_match
        )
    )


WRITE_HANDLERS = [
    register_source,
    update_source,
    record_assertion,
    retract_assertion,
    rank_assertion,
]
