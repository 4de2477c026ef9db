"""Helpers the handlers share: the store, point-in-time parameters, writes."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.params import Parameter
from projections.pit import PointInTime, resolve

from api.schemas import AssertionReceipt, EventReceipt
from ledger.commands import AnyCommand
from ledger.errors import FieldError, InvalidInput
from ledger.service import Idempotency, Receipt, Reply, execute
from ledger.sqlite_store import SqliteStore
from ledger.validation import decode_all

AsOf = Annotated[
    str | None,
    Parameter(
        query="as_of",
        description="statement-time cutoff: YYYY, YYYY-MM, YYYY-MM-DD or RFC 3339; "
        "a reduced value means the end of its period",
    ),
]
KnownAt = Annotated[
    str | None,
    Parameter(query="known_at", description="record-time cutoff (RFC 3339); not with seq"),
]
SeqParam = Annotated[
    int | None, Parameter(query="seq", ge=0, description="log position cutoff; not with known_at")
]
Limit = Annotated[int, Parameter(query="limit", ge=1, le=1000, description="page size, 1..1000")]
Cursor = Annotated[str | None, Parameter(query="cursor", max_length=200, description="next page")]

_json = msgspec.json.Encoder()


def store_of(state: State) -> SqliteStore:
    store: SqliteStore = state.store
    return store


def point_in_time(
    state: State, as_of: str | None, known_at: str | None, seq: int | None
) -> PointInTime:
    return resolve(store_of(state).reader(), as_of, known_at, seq)


def parse_if_match(request: Request[Any, Any, Any]) -> int | None:
    header = request.headers.get("if-match")
    if header is None:
        return None
    text = header.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isascii() or not text.isdigit():
        raise InvalidInput([FieldError("If-Match", 'expected "<version>", e.g. "3"')])
    return int(text)


def idempotency_of(request: Request[Any, Any, Any], body: bytes) -> Idempotency | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise InvalidInput([FieldError("Idempotency-Key", "1..255 printable characters")])
    scope = f"{request.method} {request.url.path}\n".encode()
    return Idempotency(key, scope + body)


def render_assertion(receipt: Receipt) -> Reply:
    event = receipt.last
    assert event is not None
    assert receipt.assertion_id is not None
    body = AssertionReceipt(receipt.assertion_id, event.seq, event.recorded_at, event.hash)
    return Reply(201, _json.encode(body))


def render_event(receipt: Receipt) -> Reply:
    event = receipt.last
    assert event is not None
    return Reply(201, _json.encode(EventReceipt(event.seq, event.recorded_at, event.hash)))


async def run_write(
    request: Request[Any, Any, Any],
    command: AnyCommand,
    render: Any,
    *,
    if_match: bool = False,
) -> Reply:
    body = await request.body()
    return await execute(
        store_of(request.app.state),
        command,
        request.state.actor,
        render,
        expected_version=parse_if_match(request) if if_match else None,
        idempotency=idempotency_of(request, body),
    )


async def checked_body(request: Request[Any, Any, Any], cls: type[Any]) -> Any:
    """Decode the body naming every bad field (runs before litestar's own decode)."""
    return decode_all(await request.body(), cls)
