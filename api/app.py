"""`create_app(settings)`: the one place the HTTP application is wired together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

from litestar import Litestar, Request, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp
from swagger_ui_bundle import swagger_ui_path

from api.auth import Authenticator, guard
from api.deps import (
    BODY,
    NO_BODY,
    QueryCheck,
    assertion_problems_beside,
    checked_body,
    header_problems,
    query_check,
    query_problems,
)
from api.fastpath import FastAssertions
from api.middleware import AccessLog, Methods, RateLimit
from api.openapi import SchemaJson
from api.problems import EXCEPTION_HANDLERS
from api.routes.log import LOG_HANDLERS, health
from api.routes.page import PAGE_HANDLERS
from api.routes.reads import READ_HANDLERS
from api.routes.writes import WRITE_HANDLERS
from api.settings import Settings
from api.tail import Tail, watch_other_writers
from api.writer import LocalWriter, ProcessWriter, Writer
from ledger.commands import RecordAssertion
from ledger.errors import FieldError, InvalidInput
from ledger.sqlite_store import SqliteStore
from projections import all_projectors

API_VERSION = "1.0.0"
QUERY_NAMES = "query_names"
QUERY_CHECKS = "query_checks"
PATH_CHECKS = "path_checks"
QUERY_REQUIRED = "query_required"
HEADER_NAMES = "header_names"
SWAGGER_ASSETS = "/schema/assets"


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
        writer: Writer = LocalWriter(store)
        if settings.writer_process:
            writer = ProcessWriter(store, settings.synchronous)
            try:
                await writer.start()
            except BaseException:
                await asyncio.to_thread(store.close)
                raise
        app.state.store = store
        app.state.tail = tail
        app.state.writer = writer
        watcher = asyncio.ensure_future(
            watch_other_writers(tail, store.size, settings.other_writers_seconds)
        )
        try:
            yield
        finally:
            tail.close()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher  # whatever it met, the writer and the store still close
            await writer.close()
            await asyncio.to_thread(store.close)

    async def _gate(request: Request[Any, Any, Any]) -> None:
        """Role, then every problem of the query, the write headers and the body at once,
        before litestar parses anything (it would stop at the first).

        One app-level hook rather than a litestar guard, which copies the route handler
        on every call.
        """
        handler = request.route_handler
        opt = handler.opt
        if opt.get("need") != "none":
            await guard(request, handler)
        problems: list[FieldError] = []
        if path_checks := opt.get(PATH_CHECKS):
            problems += query_problems(request.path_params, path_checks)
        allowed = opt.get(QUERY_NAMES)
        # nothing to check without a query string and no required parameter (every write)
        if allowed is not None and (request.scope["query_string"] or opt[QUERY_REQUIRED]):
            query = request.query_params
            problems += [
                FieldError(name, "unknown query parameter")
                if name not in allowed
                else FieldError(name, "given more than once (give it once)")
                for name in dict.fromkeys(query)  # once each, in the query's order
                if name not in allowed or len(query.getall(name)) > 1
            ]
            named = {p.field for p in problems}
            problems += [
                p for p in query_problems(query, opt[QUERY_CHECKS]) if p.field not in named
            ]
        body = opt.get(BODY)
        if body is not None:
            problems += header_problems(request, opt[HEADER_NAMES])
            body_problems: list[FieldError] = []
            try:
                await checked_body(request, body)
            except InvalidInput as bad:
                body_problems = bad.errors
            problems += body_problems
            if problems and body is RecordAssertion:  # and what the ledger holds, at once
                problems += await asyncio.to_thread(
                    assertion_problems_beside,
                    request.app.state,
                    await request.body(),
                    body_problems,
                )
        elif (empty := opt.get(NO_BODY)) is not None and (await request.body()).strip():
            try:
                await checked_body(request, empty)
            except InvalidInput as bad:
                problems += bad.errors
        if problems:
            raise InvalidInput(problems)

    # the interactive schema page's scripts come from a Python package, not a CDN
    swagger_assets = create_static_files_router(
        path=SWAGGER_ASSETS,
        directories=[swagger_ui_path],
        opt={"need": "none"},
        include_in_schema=False,
    )
    behind_token = Router(
        path="/",
        route_handlers=[*WRITE_HANDLERS, *READ_HANDLERS, *LOG_HANDLERS],
        security=[{"bearer": []}],
    )
    app = Litestar(
        route_handlers=[health, *PAGE_HANDLERS, swagger_assets, behind_token],
        lifespan=[lifespan],
        before_request=_gate,
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="OSINT ledger",
            version=API_VERSION,
            description="An append-only, verifiable ledger of sourced claims (contract v1).",
            render_plugins=[
                SwaggerRenderPlugin(
                    js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
                    css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
                    standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
                    path=["/", "/swagger"],
                    favicon=f"<link rel='icon' href='{SWAGGER_ASSETS}/favicon-32x32.png'>",
                ),
                SchemaJson(),
            ],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="an API key's token (`ledger keys create`)",
                    )
                }
            ),
            # the schema and its viewer need no token
            openapi_router=Router(
                path="/schema", route_handlers=[], opt={"need": "none"}, include_in_schema=False
            ),
        ),
        debug=False,
    )
    _note_query_names(app)
    # Around the router, not as litestar middleware (which litestar builds once per route,
    # and which an unknown path or method never reaches): one rate limit for every path,
    # and a request id and a log line for every request.
    methods = Methods(app.asgi_handler, [(r.path, r.methods) for r in app.routes])
    fast = FastAssertions(methods, app.state)
    limited = RateLimit(fast, per_minute=settings.rate_limit_per_minute)
    app.asgi_handler = cast("ASGIApp", AccessLog(limited))
    app.state.settings = settings
    app.state.auth = Authenticator(app.state, settings.public_read, settings.auth_cache_seconds)
    return app


def _note_query_names(app: Litestar) -> None:
    """Record on each handler the query parameters it takes (so others are refused) with
    their checks, its path parameters' checks, and the headers it takes."""
    for route in app.routes:
        for handler, kwargs_model in getattr(route, "route_handler_map", {}).values():
            if handler.include_in_schema:  # the page and its assets may carry cache-busters
                signature = handler.parsed_fn_signature.parameters
                params = kwargs_model.expected_query_params
                handler.opt[QUERY_NAMES] = frozenset(p.field_alias for p in params)
                handler.opt[QUERY_CHECKS] = [
                    _check_of(p, signature) for p in sorted(params, key=lambda p: p.field_alias)
                ]
                handler.opt[QUERY_REQUIRED] = any(p.is_required for p in params)
                # the API's own names (not the static files' paths) carry a pattern
                handler.opt[PATH_CHECKS] = [
                    _check_of(p, signature)
                    for p in sorted(
                        kwargs_model.expected_path_params,
                        key=lambda p: route.path.find("{" + p.field_alias),
                    )
                    if getattr(signature[p.field_name].kwarg_definition, "pattern", None)
                ]
                handler.opt[HEADER_NAMES] = frozenset(
                    p.field_alias for p in kwargs_model.expected_header_params
                )


def _check_of(param: Any, signature: Mapping[str, Any]) -> QueryCheck:
    """The gate's check of a handler's query or path parameter (a litestar
    `ParameterDefinition`), as declared in the handler's signature."""
    declared = signature[param.field_name]
    return query_check(
        param.field_alias, declared.annotation, declared.kwarg_definition, param.is_required
    )


def end_streams(app: Litestar) -> None:
    """End every open event stream, from any thread.

    The server calls this as soon as a stop is asked for: a graceful shutdown waits for open
    connections to finish, and an event stream never would. Clients resume with
    Last-Event-ID.
    """
    tail: Tail | None = getattr(app.state, "tail", None)
    if tail is not None:
        tail.close()
