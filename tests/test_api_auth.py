"""Who may do what: every endpoint against every kind of caller, public reads, rate limits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from api.auth import Authenticator
from ledger import keys
from ledger.sqlite_store import connect
from tests.api_helpers import (
    CASUALTIES,
    DEPLOYMENT,
    STATUS,
    TROOPS,
    Client,
    Ledger,
    assertion_body,
    make_ledger,
    problem,
    read_stream,
    serve,
    source_body,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CALLERS = ("anonymous", "unknown", "revoked", "reader", "writer", "auditor", "admin")
GRANTS = {
    "none": set(CALLERS),
    "read": {"reader", "writer", "auditor", "admin"},
    "write": {"writer", "admin"},
    "audit": {"auditor", "admin"},
}
RETRACTABLE = {
    "writer": "ap-2025-04-28.casualties-us-gov",
    "admin": "ap-2025-04-28.casualties-kr-jcs",
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    need: str
    body: Callable[[str], Any] | None = None
    stream: bool = False

    def url(self, caller: str) -> str:
        return self.path.format(
            retractable=RETRACTABLE.get(caller, "ap-2025-04-28.weapons-supplied")
        )

    @property
    def id(self) -> str:
        return f"{self.method} {self.path.split('?')[0]}"


ENDPOINTS = [
    Endpoint("GET", "/v1/health", "none"),
    Endpoint("GET", "/schema/openapi.json", "none"),
    Endpoint("POST", "/v1/sources", "write", lambda who: source_body(id=f"src-{who}")),
    Endpoint("PATCH", "/v1/sources/ap", "write", lambda who: {"name": f"AP ({who})"}),
    Endpoint("GET", "/v1/sources?limit=2", "read"),
    Endpoint("GET", "/v1/sources/ap", "read"),
    Endpoint("POST", "/v1/assertions", "write", lambda who: assertion_body()),
    Endpoint("POST", "/v1/assertions/{retractable}/retract", "write", lambda who: {"reason": who}),
    Endpoint(
        "POST",
        "/v1/assertions/ap-2025-04-28.troops-fall-2024/rank",
        "write",
        lambda who: {"rank": "preferred", "reason": who},
    ),
    Endpoint("GET", "/v1/assertions/ap-2025-04-28.troops-fall-2024", "read"),
    Endpoint("GET", f"/v1/assertions?subject={DEPLOYMENT}&limit=2", "read"),
    Endpoint("GET", "/v1/subjects", "read"),
    Endpoint("GET", f"/v1/subjects/{DEPLOYMENT}/estimates/{TROOPS}", "read"),
    Endpoint("GET", f"/v1/subjects/{DEPLOYMENT}/estimates/{CASUALTIES}?as_of=2025-03", "read"),
    Endpoint("GET", f"/v1/subjects/{DEPLOYMENT}/statuses/{STATUS}", "read"),
    Endpoint("GET", f"/v1/subjects/{DEPLOYMENT}/timeline", "read"),
    Endpoint("GET", "/v1/events?after=3&limit=2", "read"),
    Endpoint("GET", "/v1/events/stream?after=25", "read", stream=True),
    Endpoint("GET", "/v1/erasures", "read"),
    Endpoint("GET", "/v1/log/head", "read"),
    Endpoint("GET", "/v1/log/inclusion?seq=5&size=20", "read"),
    Endpoint("GET", "/v1/log/consistency?from=5&to=20", "read"),
    Endpoint("POST", "/v1/audit", "audit"),
]


def expected(endpoint: Endpoint, caller: str, public_read: bool = False) -> int:
    """The status class the contract gives this caller: 2 (success), 401 or 403."""
    if caller in GRANTS[endpoint.need]:
        return 2
    if endpoint.need == "read" and public_read and caller == "anonymous":
        return 2
    if caller in {"anonymous", "unknown", "revoked"}:
        return 401
    return 403


async def call(client: Client, ledger: Ledger, endpoint: Endpoint, caller: str) -> tuple[int, Any]:
    headers = {} if caller == "anonymous" else ledger.auth(caller)
    url = endpoint.url(caller)
    if endpoint.stream:
        stream = read_stream(client, url, headers, events=1)
        return stream.status, stream
    body = endpoint.body(caller) if endpoint.body else None
    response = await client.request(endpoint.method, url, json=body, headers=headers)
    return response.status_code, response


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """One ledger for the whole matrix: each write is shaped so every caller's can succeed."""
    return make_ledger(tmp_path_factory.mktemp("matrix"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(shared: Ledger) -> AsyncIterator[Client]:
    async with serve(shared) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def public_app(shared: Ledger) -> AsyncIterator[Client]:
    async with serve(shared, public_read=True) as client:
        yield client


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
async def test_role_matrix(app: Client, shared: Ledger, endpoint: Endpoint, caller: str) -> None:
    status, response = await call(app, shared, endpoint, caller)
    want = expected(endpoint, caller)
    if want == 2:
        assert 200 <= status < 300, getattr(response, "text", response)
        if endpoint.stream:
            assert response.headers["content-type"].startswith("text/event-stream")
        return
    if endpoint.stream:
        assert status == want
        return
    body = problem(response, want)
    if want == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    else:
        assert "may not" in body["detail"]


@pytest.mark.parametrize("caller", ["anonymous", "unknown", "reader"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
async def test_public_read(
    public_app: Client, shared: Ledger, endpoint: Endpoint, caller: str
) -> None:
    status, _ = await call(public_app, shared, endpoint, caller)
    want = expected(endpoint, caller, public_read=True)
    if want == 2:
        assert 200 <= status < 300
    else:
        assert status == want


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "ldg_token-without-scheme"]
)
async def test_a_malformed_authorization_header_is_a_401(
    app: Client, shared: Ledger, header: str
) -> None:
    response = await app.get("/v1/log/head", headers={"Authorization": header})
    problem(response, 401)


async def test_a_revoked_key_stops_working(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, seed=False)
    async with serve(ledger) as client:
        assert (await client.get("/v1/log/head", headers=ledger.auth("reader"))).status_code == 200
        conn = connect(ledger.db)
        try:
            keys.revoke_key(conn, "reader")
        finally:
            conn.close()
        problem(await client.get("/v1/log/head", headers=ledger.auth("reader")), 401)


async def test_one_rate_limit_for_every_path(tmp_path: Path) -> None:
    """A key's budget is spent on any path, unknown paths and methods included; each of
    those answers carries a request id too."""
    ledger = make_ledger(tmp_path, seed=False)
    reader = ledger.auth("reader")
    paths = ["/v1/log/head", "/v1/sources", "/v1/subjects", "/v1/nothing-here"]
    async with serve(ledger, rate_limit_per_minute=5) as client:
        for _ in range(3):
            minute = int(time.time() // 60)
            answers = [await client.get(path, headers=reader) for path in paths]
            answers.append(await client.delete("/v1/sources", headers=reader))
            refused = [await client.get(path, headers=reader) for path in paths]
            if int(time.time() // 60) != minute:
                reader = ledger.auth("auditor")  # the window turned over: another key
                continue
            assert [a.status_code for a in answers] == [200, 200, 200, 404, 405]
            assert all(a.headers.get("x-request-id") for a in answers)
            for answer in refused:
                problem(answer, 429)
            return
        pytest.fail("the minute turned over on every try")


async def test_the_page_and_its_files_spend_no_budget(tmp_path: Path) -> None:
    """Loading the analyst's page is ~10 requests; only its API reads count (here all
    anonymous, so all from one address's budget)."""
    ledger = make_ledger(tmp_path, seed=False)
    async with serve(ledger, rate_limit_per_minute=3, public_read=True) as client:
        for _ in range(5):
            for path in ("/", "/static/app.js", "/static/app.css", "/schema/openapi.json"):
                assert (await client.get(path)).status_code == 200, path
        minute = int(time.time() // 60)
        answers = [(await client.get("/v1/log/head")).status_code for _ in range(4)]
        if int(time.time() // 60) == minute:
            assert answers == [200, 200, 200, 429]


async def test_rate_limit(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, seed=False)
    async with serve(ledger, rate_limit_per_minute=5) as client:
        for caller in ("reader", "writer", "auditor"):  # a fresh budget per key
            minute = int(time.time() // 60)
            statuses = [
                (await client.get("/v1/log/head", headers=ledger.auth(caller))).status_code
                for _ in range(5)
            ]
            refused = await client.get("/v1/log/head", headers=ledger.auth(caller))
            if int(time.time() // 60) != minute:
                continue  # the window turned over mid-test: try again with another key
            assert statuses == [200] * 5
            problem(refused, 429)
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
            health = await client.get("/v1/health", headers=ledger.auth(caller))
            assert health.status_code == 200, "health is never limited"
            other = await client.get("/v1/log/head", headers=ledger.auth("admin"))
            assert other.status_code == 200, "each key has its own budget"
            return
        pytest.fail("the minute turned over on every try")


class _KeyTable:
    """Stands in for the key lookup: counts calls, holds each one until told to go on."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.release = threading.Event()

    def __call__(self, token: str) -> keys.ApiKey | None:
        self.calls += 1
        self.release.wait(5)
        if self.fail_first and self.calls == 1:
            raise RuntimeError("the key table could not be read")
        return (
            keys.ApiKey("reader", "reader", "2026-01-01T00:00:00Z", None)
            if token == "good"
            else None
        )


async def _in_flight(auth: Authenticator, table: _KeyTable, token: str, n: int) -> list[Any]:
    callers = [asyncio.ensure_future(auth.principal(token)) for _ in range(n)]
    await asyncio.sleep(0.05)  # every caller has found the lookup in flight
    table.release.set()
    return await asyncio.gather(*callers, return_exceptions=True)


async def test_concurrent_misses_share_one_key_lookup() -> None:
    """Requests that miss the cache together wait for one lookup, not one each."""
    auth = Authenticator(None, public_read=False, cache_seconds=60)
    table = _KeyTable()
    auth._lookup = table  # type: ignore[method-assign]
    found = await _in_flight(auth, table, "good", 12)
    assert table.calls == 1
    assert all(isinstance(k, keys.ApiKey) and k.name == "reader" for k in found)
    assert (await auth.principal("good")) == found[0]
    assert table.calls == 1, "then served from the cache"
    table.release.clear()
    assert await _in_flight(auth, table, "bad", 3) == [None] * 3
    assert table.calls == 2


async def test_a_failed_key_lookup_fails_its_waiters_and_is_tried_again() -> None:
    auth = Authenticator(None, public_read=False, cache_seconds=60)
    table = _KeyTable(fail_first=True)
    auth._lookup = table  # type: ignore[method-assign]
    first = await _in_flight(auth, table, "good", 4)
    assert table.calls == 1
    assert all(isinstance(r, RuntimeError) for r in first)
    again = await auth.principal("good")
    assert again is not None
    assert table.calls == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_lookup() -> None:
    auth = Authenticator(None, public_read=False, cache_seconds=60)
    table = _KeyTable()
    auth._lookup = table  # type: ignore[method-assign]
    leaver = asyncio.ensure_future(auth.principal("good"))
    stayer = asyncio.ensure_future(auth.principal("good"))
    await asyncio.sleep(0.05)
    leaver.cancel()
    table.release.set()
    assert (await stayer) is not None
    assert leaver.cancelled()
    assert table.calls == 1


async def test_every_response_carries_a_request_id(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path, seed=False)
    async with serve(ledger) as client:
        ids = [(await client.get("/v1/health")).headers["X-Request-ID"] for _ in range(3)]
        assert len(set(ids)) == 3
        mine = await client.get("/v1/health", headers={"X-Request-ID": "trace-42"})
        assert mine.headers["X-Request-ID"] == "trace-42"
