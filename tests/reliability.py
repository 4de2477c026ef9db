"""Shared pieces of the reliability, abuse and fuzz tests.

`live(ledger)` starts the app's lifespan and talks to it through `httpx.ASGITransport` on
the test's own event loop, so requests gathered with asyncio really run concurrently (the
litestar test client hands each request to a portal thread, one at a time). `tamper`
edits a closed database the way an attacker with file access would: it drops the
append-only triggers first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar

from api.app import create_app
from ledger.schema import APPEND_ONLY_TABLES
from ledger.sqlite_store import SqliteStore
from tests.api_helpers import Ledger


class LiveClient(httpx.AsyncClient):
    """An httpx client of one in-process app, which it keeps at hand."""

    def __init__(self, app: Litestar) -> None:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        super().__init__(transport=transport, base_url="http://testserver", timeout=30)
        self.app = app


@asynccontextmanager
async def live(ledger: Ledger, **settings: Any) -> AsyncIterator[LiveClient]:
    """A client of the app on `ledger`, started and stopped around the block."""
    app = create_app(ledger.settings(**settings))
    async with app.lifespan(), LiveClient(app) as client:
        yield client


def store_of(client: LiveClient) -> SqliteStore:
    """The store the app behind `client` opened."""
    store: SqliteStore = client.app.state.store
    return store


async def head(client: httpx.AsyncClient, ledger: Ledger) -> dict[str, Any]:
    response = await client.get("/v1/log/head", headers=ledger.auth("reader"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def tamper(db: Path, statements: Iterable[str | tuple[str, tuple[Any, ...]]]) -> None:
    """Run SQL on a closed ledger after dropping every append-only trigger."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        triggers = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                f"({','.join('?' * len(APPEND_ONLY_TABLES))})",
                APPEND_ONLY_TABLES,
            )
        ]
        for name in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        for statement in statements:
            if isinstance(statement, tuple):
                conn.execute(*statement)
            else:
                conn.execute(statement)
    finally:
        conn.close()
