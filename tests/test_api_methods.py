"""HEAD is answered as GET would be, status and headers alike, without a body (RFC 9110
9.3.2): in process and through the real server, including the event stream, which must
not stay open for a HEAD. OPTIONS lists every method of a path, without a token."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog

from api import middleware
from tests.api_helpers import (
    DEPLOYMENT,
    SEED_EVENTS,
    TROOPS,
    Client,
    Ledger,
    client,
    http_scope,
    ledger,
    problem,
    template,
)
from tests.browser import running_server

__all__ = ["client", "ledger", "template"]

VIEW = f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}"
SAME_HEADERS = ("content-type", "content-length", "etag", "cache-control")


def same_head(get: httpx.Response, head: httpx.Response) -> None:
    assert head.status_code == get.status_code
    assert head.content == b""
    for name in SAME_HEADERS:
        assert head.headers.get(name) == get.headers.get(name), name


@pytest.mark.parametrize(
    "path",
    ["/v1/health", VIEW, "/v1/log/head", "/v1/events?limit=3", "/v1/assertions?limit=2"],
)
async def test_head_has_the_get_answer_without_its_body(
    client: Client, ledger: Ledger, path: str
) -> None:
    headers = ledger.auth("reader")
    get = await client.get(path, headers=headers)
    assert get.status_code == 200
    assert get.content
    same_head(get, await client.head(path, headers=headers))


async def test_head_is_refused_as_get_would_be(client: Client, ledger: Ledger) -> None:
    """Refusals keep their status and headers; the problem body is left out like any body."""
    for path, headers, status in [
        (VIEW, {}, 401),
        ("/v1/audit", ledger.auth("reader"), 405),  # POST only: GET would be a 405 too
        ("/v1/nothing-here", ledger.auth("reader"), 404),
        ("/v1/events?limit=0", ledger.auth("reader"), 422),
        ("/v1/events?bogus=1", ledger.auth("reader"), 422),
    ]:
        get = await client.get(path, headers=headers)
        problem(get, status)
        same_head(get, await client.head(path, headers=headers))
    allowed = (await client.head("/v1/audit", headers=ledger.auth("reader"))).headers["allow"]
    assert "HEAD" not in allowed
    assert "POST" in allowed
    refused = await client.delete("/v1/sources", headers=ledger.auth("admin"))
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/health", {"GET", "HEAD", "OPTIONS"}),
        ("/v1/sources", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("/v1/sources/ap", {"GET", "HEAD", "OPTIONS", "PATCH"}),
        ("/v1/assertions", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("/v1/assertions/some-id/retract", {"OPTIONS", "POST"}),
        (f"/v1/subjects/{DEPLOYMENT}/timeline", {"GET", "HEAD", "OPTIONS"}),
        ("/v1/audit", {"OPTIONS", "POST"}),
        ("/static/app.js", {"GET", "HEAD", "OPTIONS"}),
    ],
)
async def test_options_lists_every_method_of_the_path_without_a_token(
    client: Client, path: str, methods: set[str]
) -> None:
    response = await client.options(path)
    assert response.status_code == 204
    assert set(response.headers["allow"].split(", ")) == methods
    assert response.content == b""


async def test_options_on_an_unknown_path_is_a_404(client: Client) -> None:
    problem(await client.options("/v1/nothing-here"), 404)


async def test_head_of_a_view_answers_if_none_match(client: Client, ledger: Ledger) -> None:
    headers = ledger.auth("reader")
    etag = (await client.head(VIEW, headers=headers)).headers["etag"]
    again = await client.head(VIEW, headers={**headers, "If-None-Match": etag})
    get = await client.get(VIEW, headers={**headers, "If-None-Match": etag})
    assert again.status_code == get.status_code
    assert again.content == b""


async def test_head_is_logged_as_head_and_appends_nothing(
    client: Client, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = structlog.testing.LogCapture()
    logger = structlog.wrap_logger(
        None, processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(0)
    )
    monkeypatch.setattr(middleware, "log", logger)
    head = await client.head("/v1/assertions", headers=ledger.auth("writer"))
    get = await client.get("/v1/health")
    assert (head.status_code, get.json()["seq"]) == (200, SEED_EVENTS)
    assert [(e["method"], e["path"]) for e in capture.entries if e["event"] == "request"] == [
        ("HEAD", "/v1/assertions"),
        ("GET", "/v1/health"),
    ]


async def test_head_of_the_event_stream_ends_at_once(client: Client, ledger: Ledger) -> None:
    response = await client.head("/v1/events/stream?after=0", headers=ledger.auth("reader"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == b""


@pytest.mark.parametrize("path", ["/v1/events/stream?after=0", "/v1/log/head", "/v1/nothing"])
async def test_a_head_response_is_always_complete(
    client: Client, ledger: Ledger, path: str
) -> None:
    """One start, then exactly one final empty body: a server keeps the connection only
    for a complete response."""
    scope = http_scope("HEAD", path, ledger.auth("reader"))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def drive() -> None:
        with anyio.fail_after(5):
            await client.app(scope, receive, send)

    client.blocking_portal.call(drive)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1].get("body", b"") == b""
    assert not sent[1].get("more_body", False)


async def test_options_and_allow_read_a_trailing_slash_as_the_router_does(
    client: Client, ledger: Ledger
) -> None:
    for path in ["/v1/sources/", "/v1/sources/ap/"]:
        direct = await client.options(path.rstrip("/"))
        slashed = await client.options(path)
        assert slashed.status_code == 204
        assert slashed.headers["allow"] == direct.headers["allow"]
    refused = await client.post("/static/app.js")
    assert refused.headers["allow"].count("HEAD") == 1


def raw_head(base: str, path: str, token: str) -> bytes:
    """A HEAD over a plain socket: what the server sends, up to its closing the connection."""
    host, port = base.removeprefix("http://").split(":")
    request = (
        f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.slow
def test_head_through_the_real_server(tmp_path: Path) -> None:
    """Under uvicorn: the GET's headers, no body bytes on the wire, and a HEAD of the
    event stream ends instead of staying open (the socket read above would time out)."""
    with running_server(tmp_path) as server:
        get = httpx.get(f"{server.base}{VIEW}", headers=server.auth())
        received = raw_head(server.base, VIEW, server.token)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b""
        assert f"content-length: {len(get.content)}".encode() in head.lower()
        assert f"etag: {get.headers['etag']}".encode() in head.lower()

        stream = raw_head(server.base, "/v1/events/stream?after=0", server.token)
        head, _, body = stream.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"text/event-stream" in head
        assert b"id:" not in body

        # on one kept-alive connection, a HEAD of the stream and then a GET both answer
        with httpx.Client(base_url=server.base, headers=server.auth(), timeout=10) as http:
            assert http.head("/v1/events/stream?after=0").status_code == 200
            assert http.get("/v1/health").status_code == 200
            assert len(http._transport._pool.connections) == 1  # type: ignore[attr-defined]
