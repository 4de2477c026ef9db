"""`POST /v1/assertions` answered before litestar routes it, when nothing about it is unusual.

The busiest request of the API is an analyst's tool recording assertions. Litestar's
routing, request and response objects cost ~175 us a request on this project's machine
(a bare litestar app that decodes the body and answers 201 takes ~280 us of CPU a
request; the same under uvicorn as a plain ASGI function, ~105 us: see
docs/benchmarks.md), more than the rest of the HTTP side together.

:class:`FastAssertions` sits between the rate limit and the router. It takes a request
that litestar would route to `record_assertion` and answers it itself, with the same checks
in the same order and the same bytes, only when everything about it is ordinary: a known
token with the write role (from the authenticator's cache or its lookup), no query string
and no root path, a Host header litestar's router takes, a declared length within the
limit, a JSON body within it that decodes into a valid `RecordAssertion`, and write
headers that are well formed and given once. Anything else goes to litestar untouched
(with the body it has read handed on), so every refusal keeps its one implementation there
and names every problem at once as before. A failing token lookup, and the outcome of a
write once it is sent to the writer, are answered here, as litestar's exception handlers
answer them (`api.problems`): nothing is looked up or run twice.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from api.auth import Authenticator, bearer_token, may
from api.deps import (
    IDEMPOTENCY_KEY,
    IF_MATCH_PATTERN,
    ONCE_HEADERS,
    created_headers,
    not_json,
    parse_if_match,
    render_assertion,
    request_line,
)
from api.problems import problem_reply
from ledger.commands import RecordAssertion
from ledger.errors import InvalidInput, LedgerError
from ledger.service import Idempotency
from ledger.validation import decode_all

log = structlog.get_logger("api")

PATH = "/v1/assertions"
_LINE = request_line("POST", PATH)
_JSON = b"application/json"
IF_MATCH = re.compile(IF_MATCH_PATTERN)
_READ = frozenset({*ONCE_HEADERS, b"authorization", b"content-length", b"host"})
HOST = re.compile(rb"\A[0-9A-Za-z!$&'()*+,;=\-._~:\[\]@%]*\Z")
"""A Host header litestar's router takes (it answers 400 to any other before routing)."""


class FastAssertions:
    """ASGI: the ordinary `POST /v1/assertions` answered without the router (see module)."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != PATH
            or scope["query_string"]
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        held: list[dict[str, Any]] = []
        reply = await self._answer(scope, receive, held)
        if reply is None:
            await self.app(scope, _replaying(held, receive), send)
            return
        status, media, body, more = reply
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *more,
                    (b"content-type", media),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _answer(
        self, scope: dict[str, Any], receive: Any, held: list[dict[str, Any]]
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]] | None:
        """The reply, or None to hand the request (and `held`, what was read) to litestar."""
        seen: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            if name in _READ:
                seen.setdefault(name, []).append(value)
        if any(len(seen.get(name, ())) > 1 for name in ONCE_HEADERS):
            return None  # the gate names it
        if len(seen.get(b"authorization", ())) > 1:
            return None  # the guard refuses it
        limit: int = self.state.settings.max_body_bytes
        host = _first(seen, b"host")
        if host is not None and not HOST.match(host):
            return None  # litestar's 400
        declared = _first(seen, b"content-length")
        if declared is not None and not (
            declared.isdigit() and len(declared) < 19 and int(declared) <= limit
        ):
            return None  # litestar's 413, or its 400 for a length that is no number
        if not_json(_first(seen, b"content-type")) is not None:
            return None  # the gate's 415
        authorization = _first(seen, b"authorization")
        token = None if authorization is None else bearer_token(authorization.decode("latin-1"))
        if token is None:
            return None
        key = _first(seen, b"idempotency-key")
        idempotency_key = None if key is None else key.decode("latin-1")
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            return None
        if_match = _first(seen, b"if-match")
        expected = None
        if if_match is not None:
            text = if_match.decode("latin-1")
            if not IF_MATCH.match(text):
                return None  # refused by litestar's header parameter, after the gate
            try:
                expected = parse_if_match(text)
            except InvalidInput:
                return None
        auth: Authenticator = self.state.auth
        try:
            principal = await auth.principal(token)
        except Exception as exc:  # as litestar answers a failing guard, without a retry
            return _refusal(exc)
        if principal is None or not may(principal.role, "write"):
            return None
        body = await _read(receive, held, limit)
        if body is None:
            return None
        try:
            command = decode_all(body, RecordAssertion)
        except InvalidInput:
            return None
        idempotency = (
            None if idempotency_key is None else Idempotency(idempotency_key, _LINE + body)
        )
        try:
            reply = await self.state.writer.execute(
                command,
                principal.name,
                render_assertion,
                expected_version=expected,
                idempotency=idempotency,
            )
        except Exception as exc:
            return _refusal(exc)
        return reply.status, _JSON, reply.body, created_headers(reply)


def _refusal(exc: Exception) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """What litestar's exception handlers answer for `exc` (`api.problems`)."""
    if isinstance(exc, LedgerError):
        return problem_reply(exc)
    log.error("unhandled_error", path=PATH, error=repr(exc), exc_info=exc)
    return problem_reply(None)


def _first(headers: dict[bytes, list[bytes]], name: bytes) -> bytes | None:
    values = headers.get(name)
    return None if values is None else values[0]


async def _read(receive: Any, held: list[dict[str, Any]], limit: int) -> bytes | None:
    """The whole body, or None if it is over `limit` or the client left (all kept in `held`)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        held.append(message)
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts) if len(parts) != 1 else parts[0]


def _replaying(held: list[dict[str, Any]], receive: Any) -> Any:
    """`receive` that first gives back the messages already read."""
    pending = list(held)

    async def replay() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        message: dict[str, Any] = await receive()
        return message

    return replay
