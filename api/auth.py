"""Bearer-token auth and roles, as guards on the route handlers.

Roles: `reader` (GETs), `writer` (reader + appends), `auditor` (reader + audit), `admin`
(everything). Tokens are looked up by their SHA-256 (see :mod:`ledger.keys`) off the event
loop, and a hit is remembered for `auth_cache_seconds` so a busy client costs one lookup
a second, not one a request. A token is never logged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from ledger import keys

Need = Literal["read", "write", "audit", "admin"]
GRANTS: dict[str, frozenset[str]] = {
    "reader": frozenset({"read"}),
    "writer": frozenset({"read", "write"}),
    "auditor": frozenset({"read", "audit"}),
    "admin": frozenset({"read", "write", "audit", "admin"}),
}
ANONYMOUS = "anonymous"


class Authenticator:
    def __init__(self, state: Any, public_read: bool, cache_seconds: float) -> None:
        self._state = state
        self.public_read = public_read
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, keys.ApiKey | None]] = {}
        # one lookup per token in flight: when a hit expires under load, the many requests
        # that find it stale together wait for the same lookup instead of each starting one
        self._pending: dict[str, asyncio.Future[keys.ApiKey | None]] = {}

    def _lookup(self, token: str) -> keys.ApiKey | None:
        store = self._state.store
        return keys.authenticate(store.reader(), token)

    async def principal(self, token: str) -> keys.ApiKey | None:
        digest = keys.token_digest(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        task = self._pending.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._fetch(digest, token, now))
            task.add_done_callback(_retrieved)
            self._pending[digest] = task
        # shielded: a caller that goes away does not cancel the lookup the others wait for
        return await asyncio.shield(task)

    async def _fetch(self, digest: str, token: str, now: float) -> keys.ApiKey | None:
        try:
            key = await asyncio.to_thread(self._lookup, token)
        finally:
            del self._pending[digest]
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self.cache_seconds, key)
        return key


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a lookup's failure seen even if every caller that waited on it went away."""
    if not task.cancelled():
        task.exception()


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, or None if it is not one."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def may(role: str, need: Need) -> bool:
    """Whether `role` grants `need`."""
    return need in GRANTS.get(role, frozenset())


def _unauthorized(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Let the request through if its key's role grants what the handler needs."""
    need: Need = handler.opt.get("need", "read")
    auth: Authenticator = connection.app.state.auth
    given = [v for k, v in connection.scope["headers"] if k == b"authorization"]
    if len(given) > 1:  # parsers and proxies differ on which copy wins: neither is taken
        raise _unauthorized("send one Authorization header, not several")
    authorization = given[0].decode("latin-1") if given else None
    if authorization is None:
        if need == "read" and auth.public_read:
            connection.state.actor = ANONYMOUS
            return
        raise _unauthorized("send Authorization: Bearer <token>")
    token = bearer_token(authorization)
    if token is None:
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    key = await auth.principal(token)
    if key is None:
        raise _unauthorized("unknown or revoked token")
    if not may(key.role, need):
        raise PermissionDeniedException(detail=f"the {key.role} role may not {need}")
    state = connection.scope.setdefault("state", {})  # what `connection.state` reads
    state["actor"] = key.name
    state["role"] = key.role
