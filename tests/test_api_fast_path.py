"""`POST /v1/assertions` answered before litestar's router (`api.fastpath`).

An ordinary append is answered by :class:`api.fastpath.FastAssertions`; anything else is
handed to litestar. Either way a client sees what it saw before the fast path existed:
the tests send the same requests to two copies of one ledger, one app with the fast path
and one without, and compare every status, header and body, and then the two logs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import structlog
from litestar import Litestar

from api.fastpath import FastAssertions
from api.problems import ledger_error, problem_reply, server_error
from api.settings import Settings
from ledger import keys
from ledger.commands import RecordAssertion
from ledger.errors import (
    ConcurrencyConflict,
    Conflict,
    InvalidInput,
    LedgerError,
    LedgerUnavailable,
    NotFound,
    StorageFull,
)
from ledger.errors import FieldError as LedgerFieldError
from ledger.service import Reply
from ledger.validation import decode_all
from tests import api_helpers
from tests.api_helpers import (
    Client,
    Ledger,
    all_events,
    assertion_body,
    copy_ledger,
    log_size,
    serve,
)

template = api_helpers.template
LIMIT = 4_000  # the body limit both apps run with, so a 413 is cheap to provoke


def fast_path_of(app: Litestar) -> FastAssertions:
    """The app's FastAssertions layer, found by walking its ASGI chain."""
    layer: Any = app.asgi_handler
    while not isinstance(layer, FastAssertions):
        layer = layer.app
    return layer


def _chain(app: Litestar) -> list[Any]:
    """The app's ASGI layers, outermost first, down to the first that wraps nothing."""
    layers: list[Any] = [app.asgi_handler]
    while hasattr(layers[-1], "app"):
        layers.append(layers[-1].app)
    return layers


def without_fast_path(app: Litestar) -> None:
    """Take the FastAssertions layer out of the app's ASGI chain: every request is routed."""
    outer: Any = app.asgi_handler
    while not isinstance(outer.app, FastAssertions):
        outer = outer.app
    outer.app = outer.app.app


@dataclass
class Pair:
    """The same ledger served twice: `fast` with the fast path, `routed` without it."""

    ledger_fast: Ledger
    ledger_routed: Ledger
    fast: Client
    routed: Client
    reached_router: list[str] = field(default_factory=list)


@pytest.fixture
async def pair(template: Ledger, tmp_path: Path) -> AsyncIterator[Pair]:
    (tmp_path / "fast").mkdir()
    (tmp_path / "routed").mkdir()
    a = copy_ledger(template, tmp_path / "fast")
    b = copy_ledger(template, tmp_path / "routed")
    async with AsyncExitStack() as stack:
        fast = await stack.enter_async_context(serve(a, max_body_bytes=LIMIT))
        routed = await stack.enter_async_context(serve(b, max_body_bytes=LIMIT))
        without_fast_path(routed.app)
        assert not any(isinstance(layer, FastAssertions) for layer in _chain(routed.app))
        found = Pair(a, b, fast, routed)
        layer = fast_path_of(fast.app)
        inner = layer.app

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            found.reached_router.append(scope["path"])
            await inner(scope, receive, send)

        layer.app = counting
        yield found


def _body(response: Any) -> Any:
    """The body with what differs between two ledgers by the clock alone left out."""
    if not response.content:
        return b""
    try:
        body = response.json()
    except ValueError:
        return response.content
    if isinstance(body, dict):
        body.pop("recorded_at", None)
        body.pop("hash", None)
    return body


def _headers(response: Any) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in response.headers.raw if k != b"x-request-id"]


Send = Callable[[Client, Ledger], Any]


def _post(
    body: Any = None,
    *,
    role: str | None = "writer",
    raw: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    path: str = "/v1/assertions",
) -> Send:
    """A request to send to both apps: JSON `body` (or `raw` bytes) with `role`'s token."""
    content = raw if raw is not None else json.dumps(body).encode()

    async def send(client: Client, ledger: Ledger) -> Any:
        sent: list[tuple[str, str]] = [("content-type", "application/json")]
        if role is not None:
            sent += list(ledger.auth(role).items())
        names = {name.lower() for name, _ in headers or []}
        sent = [(k, v) for k, v in sent if k.lower() not in names]
        sent += headers or []
        return await client.post(path, content=content, headers=sent)

    return send


ORDINARY = assertion_body(assertion_id="fast-1")
# (what it is, the request, whether the fast path answers it itself)
REQUESTS: list[tuple[str, Send, bool]] = [
    ("an ordinary append", _post(ORDINARY), True),
    ("the same append again", _post(ORDINARY), True),
    ("the same id, another body", _post({**ORDINARY, "quote": "Other words."}), True),
    (
        "with an Idempotency-Key",
        _post(assertion_body(assertion_id="fast-2"), headers=[("Idempotency-Key", "k-1")]),
        True,
    ),
    (
        "the same key and body: the first answer",
        _post(assertion_body(assertion_id="fast-2"), headers=[("Idempotency-Key", "k-1")]),
        True,
    ),
    (
        "the same key, another body",
        _post(assertion_body(assertion_id="fast-3"), headers=[("Idempotency-Key", "k-1")]),
        True,
    ),
    ("an unknown claimant", _post(assertion_body(claimants=["nobody-we-know"])), True),
    (
        "a stale If-Match",
        _post(assertion_body(assertion_id="fast-4"), headers=[("If-Match", '"1"')]),
        True,
    ),
    (
        "a weak If-Match",
        _post(assertion_body(assertion_id="fast-5"), headers=[("If-Match", 'W/"999"')]),
        True,
    ),
    (
        "a JSON subtype",
        _post(
            assertion_body(assertion_id="fast-6"),
            headers=[("Content-Type", "application/vnd.ledger+json; charset=utf-8")],
        ),
        True,
    ),
    ("a bad If-Match", _post(ORDINARY, headers=[("If-Match", '""5""')]), False),
    ("an If-Match that is no version", _post(ORDINARY, headers=[("If-Match", "abc")]), False),
    (
        "a bad Idempotency-Key",
        _post(ORDINARY, headers=[("Idempotency-Key", "k" * 256)]),
        False,
    ),
    (
        "If-Match twice",
        _post(ORDINARY, headers=[("If-Match", '"1"'), ("If-Match", '"2"')]),
        False,
    ),
    (  # httpx sends the two as one value, "a, b", which is a well-formed key
        "Idempotency-Key twice",
        _post(ORDINARY, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")]),
        True,
    ),
    (
        "Content-Type twice",
        _post(ORDINARY, headers=[("Content-Type", "application/json")] * 2),
        False,
    ),
    ("a body that is not JSON", _post(ORDINARY, headers=[("Content-Type", "text/plain")]), False),
    ("bad fields", _post(assertion_body(stated_at="nope", colour="red")), False),
    ("malformed JSON", _post(raw=b'{"subject": '), False),
    ("a key given twice", _post(raw=b'{"subject": "a", "subject": "b"}'), False),
    ("a body over the limit", _post(assertion_body(quote="x" * LIMIT)), False),
    ("no token", _post(ORDINARY, role=None), False),
    ("a reader's token", _post(ORDINARY, role="reader"), False),
    ("a revoked token", _post(ORDINARY, role="revoked"), False),
    (
        "another scheme",
        _post(ORDINARY, role=None, headers=[("Authorization", "Basic eDp5")]),
        False,
    ),
    ("a query string", _post(ORDINARY, path="/v1/assertions?dry_run=1"), False),
    ("a Host litestar refuses", _post(ORDINARY, headers=[("Host", "example.com/x")]), False),
    (  # litestar's request.url would fail on the port: neither path builds it
        "a Host with a bad port, and a key",
        _post(
            assertion_body(assertion_id="fast-8"),
            headers=[("Host", "localhost:70000"), ("Idempotency-Key", "k-2")],
        ),
        True,
    ),
    (
        "a trailing slash",
        _post(assertion_body(assertion_id="fast-7"), path="/v1/assertions/"),
        False,
    ),
]


async def test_both_paths_answer_every_request_alike_and_log_alike(pair: Pair) -> None:
    for what, send, answered_fast in REQUESTS:
        before = len(pair.reached_router)
        fast = await send(pair.fast, pair.ledger_fast)
        routed = await send(pair.routed, pair.ledger_routed)
        assert fast.status_code == routed.status_code, (what, fast.text, routed.text)
        assert _headers(fast) == _headers(routed), what
        assert _body(fast) == _body(routed), what
        assert fast.headers["x-request-id"], what
        reached = len(pair.reached_router) > before
        assert reached is not answered_fast, what
    events = await all_events(pair.fast, pair.ledger_fast)
    assert len(events) > api_helpers.SEED_EVENTS  # the ordinary ones were appended
    clockless = [{k: v for k, v in e.items() if k not in ("recorded_at", "hash")} for e in events]
    routed_events = await all_events(pair.routed, pair.ledger_routed)
    assert clockless == [
        {k: v for k, v in e.items() if k not in ("recorded_at", "hash")} for e in routed_events
    ]


async def test_the_fast_path_does_not_touch_other_writes_or_reads(pair: Pair) -> None:
    auth = pair.ledger_fast.auth("writer")
    await pair.fast.get("/v1/log/head", headers=auth)
    await pair.fast.post(
        "/v1/assertions/ap-2025-04-28.troops-fall-2024/rank",
        json={"rank": "preferred", "reason": "best"},
        headers=auth,
    )
    await pair.fast.options("/v1/assertions")
    assert pair.reached_router == [
        "/v1/log/head",
        "/v1/assertions/ap-2025-04-28.troops-fall-2024/rank",
        "/v1/assertions",
    ]


async def test_an_append_without_an_id_gets_one_from_the_server(pair: Pair) -> None:
    created = await _post(assertion_body())(pair.fast, pair.ledger_fast)
    assert created.status_code == 201
    assert len(created.json()["assertion_id"]) == 36
    assert pair.reached_router == []


async def test_an_append_that_fails_appends_nothing(pair: Pair) -> None:
    size = await log_size(pair.fast, pair.ledger_fast)
    refused = await _post(assertion_body(claimants=["nobody-we-know"]))(pair.fast, pair.ledger_fast)
    assert refused.status_code == 422
    assert await log_size(pair.fast, pair.ledger_fast) == size
    assert pair.reached_router == ["/v1/log/head", "/v1/log/head"]


# ---- the layer alone, over ASGI ----

WRITER_TOKEN = "t-writer"


class _Auth:
    def __init__(self, fails: Exception | None = None) -> None:
        self.fails = fails
        self.lookups = 0

    async def principal(self, token: str) -> keys.ApiKey | None:
        self.lookups += 1
        if self.fails is not None:
            raise self.fails
        if token == WRITER_TOKEN:
            return keys.ApiKey("w", "writer", "2025-01-01T00:00:00Z", None)
        return None


_RECEIPT = b'{"assertion_id":"a-9","seq":9}'


@dataclass
class _Writer:
    reply: Reply | BaseException = field(default_factory=lambda: Reply(201, _RECEIPT))
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def execute(self, command: Any, actor: str, render: Any, **options: Any) -> Reply:
        self.calls.append((command, actor, options))
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply


@dataclass
class _State:
    writer: _Writer
    settings: Settings = field(default_factory=lambda: Settings(db=Path("x"), max_body_bytes=100))
    auth: _Auth = field(default_factory=_Auth)


class _Router:
    """Stands for litestar: records what reaches it and reads the body as it would."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"routed"})


def _scope(**headers: str) -> dict[str, Any]:
    listed = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/assertions",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {WRITER_TOKEN}".encode()), *listed],
    }


async def _call(
    layer: FastAssertions, scope: dict[str, Any], messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await layer(scope, receive, send)
    return sent


SMALL = {
    "subject": "s",
    "property": "p",
    "value": {"low": 1, "high": 2},
    "claimants": ["c"],
    "stated_at": "2025",
    "document": {"publisher": "P", "published_at": "2025"},
    "quote": "q",
}


def _chunks(data: bytes, size: int) -> list[dict[str, Any]]:
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


async def test_a_body_in_several_messages_is_read_whole() -> None:
    writer = _Writer()
    router = _Router()
    state = _State(writer, Settings(db=Path("x")))
    layer = FastAssertions(router, state)
    data = json.dumps(SMALL).encode()
    sent = await _call(layer, _scope(idempotency_key="k"), _chunks(data, 7))
    assert router.received == []
    assert sent[0]["status"] == 201
    assert sent[0]["headers"] == [
        (b"location", b"/v1/assertions/a-9"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(_RECEIPT)),
    ]
    assert sent[1]["body"] == _RECEIPT
    ((command, actor, options),) = writer.calls
    assert command == decode_all(data, RecordAssertion)
    assert actor == "w"
    assert options["idempotency"].key == "k"
    assert options["idempotency"].request == b"POST /v1/assertions\n" + data
    assert options["expected_version"] is None


@pytest.mark.parametrize("name", ["content-type", "if-match", "idempotency-key"])
async def test_a_write_header_given_twice_reaches_the_router(name: str) -> None:
    router = _Router()
    writer = _Writer()
    layer = FastAssertions(router, _State(writer, Settings(db=Path("x"))))
    scope = _scope()
    value = {"content-type": b"application/json", "if-match": b'"1"'}.get(name, b"k")
    scope["headers"] += [(name.encode(), value), (name.encode(), value)]
    messages = _chunks(json.dumps(SMALL).encode(), 1000)
    await _call(layer, scope, messages)
    assert router.received == messages
    assert writer.calls == []


@pytest.mark.parametrize(
    "scope_change",
    [
        {"root_path": "/api"},
        {"headers": [(b"content-length", b"12x")]},
        {"headers": [(b"content-length", b"1" * 5000)]},
        {"headers": [(b"host", b"a b")]},
    ],
)
async def test_what_litestar_judges_reaches_the_router(scope_change: dict[str, Any]) -> None:
    router = _Router()
    writer = _Writer()
    layer = FastAssertions(router, _State(writer, Settings(db=Path("x"))))
    scope = _scope()
    scope["headers"] += scope_change.pop("headers", [])
    scope.update(scope_change)
    messages = _chunks(json.dumps(SMALL).encode(), 1000)
    await _call(layer, scope, messages)
    assert router.received == messages
    assert writer.calls == []


@pytest.mark.parametrize(
    ("failure", "status"),
    [(RuntimeError("the disk went away"), 500), (LedgerUnavailable("x"), 503)],
)
async def test_a_failing_token_lookup_is_answered_once(failure: Exception, status: int) -> None:
    router = _Router()
    writer = _Writer()
    auth = _Auth(failure)
    layer = FastAssertions(router, _State(writer, Settings(db=Path("x")), auth))
    with structlog.testing.capture_logs() as logs:
        sent = await _call(layer, _scope(), _chunks(json.dumps(SMALL).encode(), 1000))
    assert sent[0]["status"] == status
    assert auth.lookups == 1
    assert router.received == []
    assert writer.calls == []
    assert [entry["event"] for entry in logs] == (["unhandled_error"] if status == 500 else [])


async def test_a_body_over_the_limit_reaches_the_router_whole() -> None:
    router = _Router()
    layer = FastAssertions(router, _State(_Writer()))
    data = json.dumps({**SMALL, "quote": "q" * 200}).encode()
    messages = _chunks(data, 30)
    sent = await _call(layer, _scope(), messages)
    assert router.received == messages  # what the layer read, then the rest, in order
    assert sent[0]["status"] == 299


async def test_a_declared_length_over_the_limit_reaches_the_router_unread() -> None:
    router = _Router()
    layer = FastAssertions(router, _State(_Writer()))
    messages = _chunks(json.dumps(SMALL).encode(), 1000)
    await _call(layer, _scope(content_length="101"), messages)
    assert router.received == messages


async def test_a_client_that_leaves_mid_body_reaches_the_router() -> None:
    router = _Router()
    writer = _Writer()
    layer = FastAssertions(router, _State(writer, Settings(db=Path("x"))))
    first = {"type": "http.request", "body": b'{"subject"', "more_body": True}
    await _call(layer, _scope(), [first])
    assert router.received == [first, {"type": "http.disconnect"}]
    assert writer.calls == []


@pytest.mark.parametrize(
    "error",
    [
        Conflict("the id is taken"),
        ConcurrencyConflict("the stream moved on", 1, 2),
        NotFound("no such thing"),
        InvalidInput([LedgerFieldError("claimants", "unknown source")]),
        StorageFull("the disk is full"),
        LedgerUnavailable("the writer stopped"),
        LedgerError("something else"),
    ],
)
async def test_a_refusal_is_what_litestar_would_answer(error: LedgerError) -> None:
    layer = FastAssertions(_Router(), _State(_Writer(error), Settings(db=Path("x"))))
    sent = await _call(layer, _scope(), _chunks(json.dumps(SMALL).encode(), 1000))
    routed = ledger_error(None, error)  # type: ignore[arg-type]
    body = routed.content
    etag = [(b"etag", b'"2"')] if isinstance(error, ConcurrencyConflict) else []
    assert sent[0]["status"] == routed.status_code
    assert sent[0]["headers"] == [
        *etag,
        (b"content-type", b"application/problem+json"),
        (b"content-length", b"%d" % len(body)),
    ]
    assert sent[1]["body"] == body
    assert problem_reply(error) == (routed.status_code, b"application/problem+json", body, etag)
    assert routed.headers.get("ETag") == (etag[0][1].decode() if etag else None)


async def test_a_fault_in_the_writer_is_a_logged_500() -> None:
    layer = FastAssertions(_Router(), _State(_Writer(RuntimeError("boom")), Settings(db=Path("x"))))
    with structlog.testing.capture_logs() as logs:
        sent = await _call(layer, _scope(), _chunks(json.dumps(SMALL).encode(), 1000))
    assert sent[0]["status"] == 500
    routed = server_error(_FakeRequest(), RuntimeError("boom"))  # type: ignore[arg-type]
    assert sent[1]["body"] == routed.content
    assert [entry["event"] for entry in logs] == ["unhandled_error"]
    assert logs[0]["path"] == "/v1/assertions"
    assert logs[0]["log_level"] == "error"


class _FakeRequest:
    scope: ClassVar[dict[str, Any]] = {"path": "/v1/assertions"}
