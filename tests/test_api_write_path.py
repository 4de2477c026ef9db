"""The append path's shortcuts keep the API's behaviour.

A write's body is decoded once, by the app's gate, and litestar reuses that struct; its
reply is sent without litestar's general response assembly; the access log and request id
are cheaper to produce. None of that may change what a client or a log reader sees.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import litestar.connection.request
import pytest
import structlog
from litestar import Request
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import Cookie
from litestar.response import Response
from litestar.testing import RequestFactory

from api import middleware
from api.deps import BODY
from api.routes.writes import WRITE_HANDLERS, ReplyResponse, WriteRequest
from ledger.logs import _JsonDumps
from ledger.service import Reply
from tests import api_helpers
from tests.api_helpers import (
    DEPLOYMENT,
    ROOT,
    Client,
    Ledger,
    assertion_body,
    fields_of,
    log_size,
    problem,
    source_body,
)

template, ledger, client = api_helpers.template, api_helpers.ledger, api_helpers.client

FALL_2024 = "ap-2025-04-28.troops-fall-2024"
WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/sources", source_body()),
    ("PATCH", "/v1/sources/ap", {"name": "The Associated Press"}),
    ("POST", "/v1/assertions", assertion_body()),
    ("POST", f"/v1/assertions/{FALL_2024}/rank", {"rank": "preferred", "reason": "best"}),
    ("POST", f"/v1/assertions/{FALL_2024}/retract", {"reason": "recorded by mistake"}),
]
# (method, path, body, every field the 422 must name)
BAD_BODIES: list[tuple[str, str, Any, set[str]]] = [
    (
        "POST",
        "/v1/sources",
        {"id": "Bad Id", "kind": 3, "extra": 1},
        {"id", "name", "kind", "extra"},
    ),
    ("PATCH", "/v1/sources/ap", {"country": "gb", "colour": "red"}, {"country", "colour"}),
    (
        "POST",
        "/v1/assertions",
        assertion_body(stated_at="nope", claimants=[], value={"low": "x"}, colour="red"),
        {"stated_at", "claimants", "value.low", "value.high", "colour"},  # high is missing
    ),
    ("POST", f"/v1/assertions/{FALL_2024}/rank", {"rank": "best"}, {"rank", "reason"}),
    ("POST", f"/v1/assertions/{FALL_2024}/retract", {"reason": ""}, {"reason"}),
]


def test_every_write_handler_reuses_the_body_its_gate_checked() -> None:
    """The struct the gate decodes is the one the handler's `data` declares."""
    for handler in WRITE_HANDLERS:
        assert handler.request_class is WriteRequest, handler.handler_name
        data = handler.parsed_fn_signature.parameters["data"]
        assert handler.opt[BODY] is data.annotation, handler.handler_name


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_litestar_does_not_decode_a_write_body_again(
    client: Client,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    body: Any,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("litestar decoded the body a second time")

    monkeypatch.setattr(litestar.connection.request, "decode_json", refuse)
    size = await log_size(client, ledger)
    response = await client.request(method, path, json=body, headers=ledger.auth("writer"))
    assert response.status_code in (200, 201), response.text
    assert await log_size(client, ledger) == size + 1


@pytest.mark.parametrize(("method", "path", "body", "fields"), BAD_BODIES)
async def test_a_bad_body_names_every_bad_field_and_appends_nothing(
    client: Client, ledger: Ledger, method: str, path: str, body: Any, fields: set[str]
) -> None:
    size = await log_size(client, ledger)
    response = await client.request(method, path, json=body, headers=ledger.auth("writer"))
    assert fields_of(response) == fields
    assert await log_size(client, ledger) == size


async def test_a_write_reply_has_litestar_headers_and_the_request_id(
    client: Client, ledger: Ledger
) -> None:
    headers = {**ledger.auth("writer"), "X-Request-ID": "trace-7"}
    created = await client.post("/v1/assertions", json=assertion_body(), headers=headers)
    registered = await client.post("/v1/sources", json=source_body(), headers=headers)
    unchanged = await client.post("/v1/sources", json=source_body(), headers=headers)
    assert [r.status_code for r in (created, registered, unchanged)] == [201, 201, 200]
    assert unchanged.json() == {"status": "unchanged"}
    locations = [
        f"/v1/assertions/{created.json()['assertion_id']}".encode(),
        b"/v1/sources/gb-mod",
        None,  # a 200 registered nothing
    ]
    for response, location in zip((created, registered, unchanged), locations, strict=True):
        assert response.headers.raw == [
            *([] if location is None else [(b"location", location)]),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(response.content)).encode()),
            (b"x-request-id", b"trace-7"),
        ]


def _request() -> Request[Any, Any, Any]:
    return RequestFactory().post("/v1/assertions")


def _asgi_headers(response: Any) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = response.encode_headers()
    return headers


@pytest.mark.parametrize(("status", "body"), [(201, b'{"seq":1}'), (200, b"{}"), (409, b"")])
def test_a_reply_sends_what_litestar_response_would(status: int, body: bytes) -> None:
    ours = ReplyResponse(Reply(status, body)).to_asgi_response(
        None, _request(), cookies=[], headers={}, media_type="application/json", status_code=201
    )
    stock = Response(content=body, status_code=status, media_type="application/json")
    theirs = stock.to_asgi_response(None, _request(), cookies=[], headers={})
    assert ours.status_code == theirs.status_code == status
    assert ours.body == theirs.body == body
    assert _asgi_headers(ours) == _asgi_headers(theirs)


async def test_a_reply_sent_over_asgi_matches_litestar_response() -> None:
    async def sent(response: Any) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            messages.append(dict(message))

        await response({"type": "http"}, None, send)
        return messages

    reply = Reply(201, b'{"seq":3}')
    ours = ReplyResponse(reply).to_asgi_response(None, _request())
    stock = Response(content=reply.body, status_code=201, media_type="application/json")
    assert await sent(ours) == await sent(stock.to_asgi_response(None, _request()))


@pytest.mark.parametrize(
    "layer",
    [
        {"headers": {"x-extra": "1"}},
        {"cookies": [Cookie(key="k", value="v")]},
        {"background": BackgroundTask(print)},
    ],
)
def test_a_reply_takes_what_a_layer_adds(layer: dict[str, Any]) -> None:
    body = b'{"seq":1}'
    ours = ReplyResponse(Reply(201, body)).to_asgi_response(None, _request(), **layer)
    stock = Response(content=body, status_code=201, media_type="application/json")
    theirs = stock.to_asgi_response(None, _request(), **layer)
    assert _asgi_headers(ours) == _asgi_headers(theirs)
    assert ours.background is theirs.background


def test_the_openapi_request_bodies_are_the_snapshot() -> None:
    """Each write still documents its body as before (the whole schema: test_api_openapi)."""
    snapshot = json.loads((ROOT / "api" / "openapi.json").read_text(encoding="utf-8"))
    bodies = {
        (method, path): op.get("requestBody")
        for path, item in snapshot["paths"].items()
        for method, op in item.items()
        if method in {"post", "patch"}
    }
    want = {
        ("post", "/v1/sources"): "RegisterSource",
        ("patch", "/v1/sources/{source_id}"): "SourceChanges",
        ("post", "/v1/assertions"): "RecordAssertion",
        ("post", "/v1/assertions/{assertion_id}/retract"): "RetractBody",
        ("post", "/v1/assertions/{assertion_id}/rank"): "RankBody",
    }
    for key, name in want.items():
        assert bodies[key] == {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            "required": True,
        }, key


async def test_unknown_query_parameters_are_refused(client: Client, ledger: Ledger) -> None:
    size = await log_size(client, ledger)
    writer = ledger.auth("writer")
    refused = await client.post("/v1/assertions?colour=red", json=assertion_body(), headers=writer)
    assert fields_of(refused) == {"colour"}
    assert await log_size(client, ledger) == size
    reader = ledger.auth("reader")
    view = f"/v1/subjects/{DEPLOYMENT}/estimates/troops.deployed"
    assert fields_of(await client.get(view, params={"asof": "2025"}, headers=reader)) == {"asof"}
    assert (await client.get(view, params={"as_of": "2025"}, headers=reader)).status_code == 200
    assert (await client.get(view + "?", headers=reader)).status_code == 200


async def test_a_repeated_query_parameter_is_refused(client: Client, ledger: Ledger) -> None:
    """`?seq=5&seq=27` is ambiguous (a proxy may keep the first, a framework the last)."""
    reader = ledger.auth("reader")
    view = f"/v1/subjects/{DEPLOYMENT}/estimates/troops.deployed"
    refused = await client.get(f"{view}?seq=5&seq=27&as_of=2025&as_of=2024", headers=reader)
    assert fields_of(refused) == {"seq", "as_of"}
    both = await client.get(f"{view}?seq=5&seq=5&colour=red", headers=reader)
    assert fields_of(both) == {"seq", "colour"}
    proof = await client.get("/v1/log/inclusion?seq=1&seq=2&size=5", headers=reader)
    assert fields_of(proof) == {"seq"}
    assert (await client.get(f"{view}?seq=5&as_of=2025", headers=reader)).status_code == 200


@pytest.mark.parametrize(
    "media", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_body_that_is_not_json_is_415(client: Client, ledger: Ledger, media: str) -> None:
    writer = ledger.auth("writer")
    size = await log_size(client, ledger)
    for path, body in [("/v1/sources", source_body()), ("/v1/assertions", assertion_body())]:
        sent = await client.post(
            path, content=json.dumps(body), headers={**writer, "Content-Type": media}
        )
        assert problem(sent, 415)["detail"].startswith("the body must be JSON")
    assert await log_size(client, ledger) == size
    for media_ok in ("application/json; charset=utf-8", "application/problem+json", None):
        headers = dict(writer) if media_ok is None else {**writer, "Content-Type": media_ok}
        raw = json.dumps(source_body(id=f"src-{len(str(media_ok))}")).encode()
        sent = await client.post("/v1/sources", content=raw, headers=headers)
        assert sent.status_code == 201, sent.text


async def test_every_bad_query_parameter_and_header_is_named_at_once(
    client: Client, ledger: Ledger
) -> None:
    """The query, the write headers and the body are judged together: litestar alone
    stops at the first parameter it cannot parse."""
    reader, writer = ledger.auth("reader"), ledger.auth("writer")
    for path, fields in [
        ("/v1/log/inclusion", {"seq", "size"}),
        ("/v1/log/consistency?from=0", {"from", "to"}),
        (
            f"/v1/subjects/{DEPLOYMENT}/timeline?as_of=bad&known_at=bad&seq=bad",
            {"as_of", "known_at", "seq"},
        ),
        ("/v1/assertions?as_of=bad&limit=0&cursor=" + "x" * 201, {"as_of", "limit", "cursor"}),
        ("/v1/events?after=-1&limit=abc&colour=red", {"after", "limit", "colour"}),
    ]:
        assert fields_of(await client.get(path, headers=reader)) == fields, path
    size = await log_size(client, ledger)
    refused = await client.post(
        "/v1/assertions?foo=1",
        json={"subject": "BAD"},
        headers={**writer, "If-Match": "abc", "Idempotency-Key": "x" * 300},
    )
    named = fields_of(refused)
    assert {"foo", "If-Match", "Idempotency-Key", "subject", "property", "quote"} <= named
    assert await log_size(client, ledger) == size


async def test_one_access_log_line_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = structlog.testing.LogCapture()
    logger = structlog.wrap_logger(
        None,
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    monkeypatch.setattr(middleware, "log", logger)
    ledger = api_helpers.make_ledger(tmp_path)
    async with api_helpers.serve(ledger) as client:
        writer = {**ledger.auth("writer"), "X-Request-ID": "trace-9"}
        created = await client.post("/v1/assertions", json=assertion_body(), headers=writer)
        refused = await client.post("/v1/assertions", json={"quote": 1}, headers=writer)
        health = await client.get("/v1/health")
    assert (created.status_code, refused.status_code, health.status_code) == (201, 422, 200)
    lines = [e for e in capture.entries if e["event"] == "request"]
    assert [(e["method"], e["path"], e["status"]) for e in lines] == [
        ("POST", "/v1/assertions", 201),
        ("POST", "/v1/assertions", 422),
        ("GET", "/v1/health", 200),
    ]
    for entry, response in zip(lines, (created, refused, health), strict=True):
        assert set(entry) == {"event", "log_level", "method", "path", "status", "ms", "request_id"}
        assert entry["request_id"] == response.headers["X-Request-ID"]
        assert isinstance(entry["ms"], float)
    assert lines[0]["request_id"] == "trace-9"


@pytest.mark.parametrize(
    "event",
    [
        {"event": "request", "method": "POST", "status": 201, "ms": 1.25, "request_id": "ab-1"},
        {"event": "unhandled_error", "error": "ValueError('é')", "exc_info": None, "nested": [1]},
        {"event": "odd", "value": object(), "path": Path("/x")},
    ],
)
def test_json_log_lines_are_what_json_dumps_writes(event: dict[str, Any]) -> None:
    renderer = structlog.processors.JSONRenderer(_JsonDumps())
    stock = structlog.processors.JSONRenderer()
    for _ in range(2):  # the second line reuses the encoder
        assert renderer(None, "info", dict(event)) == stock(None, "info", dict(event))
