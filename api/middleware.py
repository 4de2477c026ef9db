"""ASGI middleware: HEAD and OPTIONS on every path, request ids with structured access
logs, and a per-client rate limit."""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Send
from litestar.types import Scope as AsgiScope
from structlog.contextvars import bind_contextvars, clear_contextvars

from api.schemas import Problem

log = structlog.get_logger("api.access")
Scope = dict[str, Any]


def header(scope: Mapping[str, Any], name: bytes) -> bytes | None:
    """The first value of header `name` (lower-case bytes) as sent, or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def request_path(scope: Mapping[str, Any]) -> str:
    """The request's path as litestar's `request.url.path` gives it, read from the scope
    alone: building the URL parses the Host header, and a bad port there (`a:70000`)
    would raise."""
    return str(scope.get("root_path", "")) + str(scope["path"])


_PARAMETER = re.compile(r"\{[^}]*\}")


def _path_pattern(path: str) -> re.Pattern[str]:
    """A route's path (`/v1/sources/{source_id:str}`) as a regular expression."""
    parts: list[str] = []
    last = 0
    for found in _PARAMETER.finditer(path):
        parts.append(re.escape(path[last : found.start()]))
        parts.append(".*" if found.group(0).endswith(":path}") else "[^/]+")
        last = found.end()
    parts.append(re.escape(path[last:]))
    return re.compile("".join(parts))


class Methods:
    """HEAD and OPTIONS on every path, before routing.

    - HEAD is answered as GET would be, status and headers alike, without the body
      (litestar routes HEAD to no GET handler, and refuses a body in a HEAD response).
      Content-Length stays the GET's, as RFC 9110 allows. Once the head is sent the app
      is told the client left, so an event stream ends at once instead of staying open.
    - OPTIONS is a 204 whose `Allow` lists every method of the path, from the app's
      routes (litestar answers with one route's methods where two share a path), and
      needs no token, since it says only that.
    - A 405's `Allow` is the same list (HEAD wherever GET is).
    """

    def __init__(self, app: ASGIApp, routes: Iterable[tuple[str, Iterable[str]]]) -> None:
        self.app = app
        merged: dict[str, set[str]] = {}
        for path, methods in routes:
            merged.setdefault(path, set()).update(methods)
        self._exact: dict[str, bytes] = {}
        self._patterns: list[tuple[re.Pattern[str], set[str]]] = []
        for path, methods in merged.items():
            if "{" in path:
                self._patterns.append((_path_pattern(path), methods))
            else:
                self._exact[path] = self._allow(methods)

    @staticmethod
    def _allow(methods: Iterable[str]) -> bytes:
        names = {*methods, "OPTIONS"}
        if "GET" in names:
            names.add("HEAD")
        return ", ".join(sorted(names)).encode()

    def allowed(self, path: str) -> bytes | None:
        """The `Allow` value of `path`, or None where no route takes it."""
        if len(path) > 1:
            path = path.rstrip("/") or "/"  # as litestar routes `/v1/sources/`
        found = self._exact.get(path)
        if found is not None:
            return found
        methods = [m for pattern, ms in self._patterns if pattern.fullmatch(path) for m in ms]
        return self._allow(methods) if methods else None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "HEAD":
            await self._head(scope, receive, send)
            return
        if method == "OPTIONS":
            allow = self.allowed(scope["path"])
            if allow is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", allow)],
                    }
                )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        await self.app(scope, receive, self._allowing(scope["path"], send))

    def _allowing(self, path: str, send: Send) -> Send:
        """`send`, with a 405's `Allow` taken from the same table as OPTIONS answers."""

        async def send_allowing(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self.allowed(path)
                if allow is not None:
                    message = {
                        **message,
                        "headers": [
                            (k, allow if k.lower() == b"allow" else v)
                            for k, v in message.get("headers", ())
                        ],
                    }
            await send(message)

        return send_allowing

    async def _head(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        started = ended = False
        send = self._allowing(scope["path"], send)

        async def send_head(message: Message) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
                await send(message)
            elif message["type"] == "http.response.body" and not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def receive_head() -> ReceiveMessage:
            if started:
                return {"type": "http.disconnect"}
            return await receive()

        as_get = cast("AsgiScope", {**scope, "method": "GET"})
        await self.app(as_get, receive_head, send_head)
        if started and not ended:  # a stream cancelled on the disconnect: end the response
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class AccessLog:
    """Gives each request an id (echoed as X-Request-ID) and logs one line when it ends.

    A request without its own id gets this process's random prefix and a counter: unique
    without drawing random bytes (a system call) per request.
    """

    _prefix = os.urandom(8).hex()
    _ids = itertools.count(1)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (header(scope, b"x-request-id") or b"").decode("latin-1")[:64]
        request_id = request_id or f"{self._prefix}-{next(self._ids):x}"
        echoed = (b"x-request-id", request_id.encode("latin-1"))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        # the request's task starts from a copy of the server's context; clearing still
        # guards against anything bound there
        clear_contextvars()
        bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # `log.bind()` is what `log.info` resolves on each call, minus the proxy's
            # failed attribute lookup (~2 us); once configured to cache, it is one object
            log.bind().info(
                "request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


def _unlimited(path: str) -> bool:
    """The health check, the analyst's page and its files, and the schema: loading the
    page once must not spend a reader's budget (a page load is ~10 requests)."""
    return path in ("/", "/v1/health") or path.startswith(("/static/", "/schema"))


class RateLimit:
    """A fixed one-minute window per API key (by digest) or, without one, per client address.

    Requests refused with 401 also count against their address, so inventing a new token
    for every request does not escape the limit.
    """

    def __init__(self, app: Any, per_minute: int) -> None:
        self.app = app
        self.per_minute = per_minute
        self._windows: dict[str, tuple[int, int]] = {}

    @staticmethod
    def _address(scope: Scope) -> str:
        client = scope.get("client") or ("?", 0)
        return f"a:{client[0]}"

    def _client(self, scope: Scope) -> str:
        auth = header(scope, b"authorization")
        if auth is not None:
            return "k:" + hashlib.sha256(auth).hexdigest()
        return self._address(scope)

    def _spent(self, who: str, window: int) -> int:
        start, count = self._windows.get(who, (window, 0))
        return count if start == window else 0

    def _count(self, who: str, window: int) -> None:
        if len(self._windows) > 100_000:
            self._windows.clear()
        self._windows[who] = (window, self._spent(who, window) + 1)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.per_minute <= 0 or _unlimited(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        now = time.time()
        window = int(now // 60)
        who = self._client(scope)
        failures = "f:" + self._address(scope)
        if max(self._spent(who, window), self._spent(failures, window)) >= self.per_minute:
            await self._refuse(send, max(1, math.ceil((window + 1) * 60 - now)))
            return
        self._count(who, window)

        async def send_counting_refusals(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self._count(failures, window)
            await send(message)

        await self.app(scope, receive, send_counting_refusals)

    async def _refuse(self, send: Any, retry_after: int) -> None:
        body = msgspec.json.encode(
            Problem(429, "Too many requests", f"over {self.per_minute} requests a minute")
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"retry-after", str(retry_after).encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
