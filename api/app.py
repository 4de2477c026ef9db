"""`create_app(settings)`: the one place the HTTP application is wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from litestar import Litestar
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from api.auth import Authenticator, guard
from api.middleware import AccessLog, RateLimit
from api.problems import EXCEPTION_HANDLERS
from api.routes.log import LOG_HANDLERS
from api.routes.reads import READ_HANDLERS
from api.routes.writes import WRITE_HANDLERS
from api.settings import Settings
from api.tail import Tail
from ledger.sqlite_store import SqliteStore
from projections import all_projectors

API_VERSION = "1.0.0"


def create_app(settings: Settings) -> Litestar:
    """Build the app; the store opens at start-up and drains every write at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = await asyncio.to_thread(
            partial(
                SqliteStore,
                settings.db,
                all_projectors(),
                synchronous=settings.synchronous,
            )
        )
        tail = Tail(asyncio.get_running_loop(), store.size())
        store.add_listener(tail.committed)
        app.state.store = store
        app.state.tail = tail
        try:
            yield
        finally:
            await asyncio.to_thread(store.close)

    async def _guard(connection: Any, handler: Any) -> None:
        if handler.opt.get("need") != "none":
            await guard(connection, handler)

    app = Litestar(
        route_handlers=[*WRITE_HANDLERS, *READ_HANDLERS, *LOG_HANDLERS],
        lifespan=[lifespan],
        guards=[_guard],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        middleware=[
            DefineMiddleware(AccessLog),  # type: ignore[arg-type]
            DefineMiddleware(RateLimit, per_minute=settings.rate_limit_per_minute),  # type: ignore[arg-type]
        ],
        openapi_config=OpenAPIConfig(
            title="OSINT ledger",
            version=API_VERSION,
            description="An append-only, verifiable ledger of sourced claims (contract v1).",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        debug=False,
    )
    app.state.settings = settings
    app.state.auth = Authenticator(app.state, settings.public_read, settings.auth_cache_seconds)
    return app
