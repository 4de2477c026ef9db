"""Shared pieces of the HTTP API tests: a seeded ledger with a key per role, request bodies,
problem checks, an event-stream reader and an independent RFC 9162 / hash-chain verifier.

The verifier is written from the RFCs and the contract (its proof checks are those of
`scripts/check_log.py`), never imported from `ledger.merkle`, so a test that uses it checks
the server against a second implementation.

Its fixtures, which a test module takes by binding them to module names: `template` (the
seeded ledger, built once), `ledger` (a fresh copy of it per test) and `client` (the app
started on that copy).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import rfc8785
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.importer import import_file
from api.settings import Settings
from ledger import keys
from ledger.logs import configure_logging
from ledger.sqlite_store import SqliteStore, connect
from projections import all_projectors
from scripts import check_log

configure_logging("WARNING")

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "seed.jsonl"
DEPLOYMENT = "north-korea.russia-deployment"
RELATIONS = "north-korea.russia-relations"
TROOPS = "troops.deployed"
CASUALTIES = "casualties.killed_or_wounded"
STATUS = "deployment.status"
ROLES: tuple[keys.Role, ...] = ("reader", "writer", "auditor", "admin")
SEED_EVENTS = 27

Client = AsyncTestClient[Litestar]


@dataclass(frozen=True)
class Ledger:
    """A database file and the tokens of its keys: one per role, plus a revoked one."""

    db: Path
    tokens: Mapping[str, str]

    def settings(self, **changes: Any) -> Settings:
        return replace(Settings(db=self.db, auth_cache_seconds=0), **changes)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_ledger(directory: Path, *, seed: bool = True) -> Ledger:
    """A ledger in `directory`: the seed imported (unless told not) and a key per role."""
    db = directory / "l.db"
    store = SqliteStore(db, all_projectors())
    try:
        if seed:
            result = import_file(store, SEED, "test")
            assert result.error is None, result.error
            assert result.appended == SEED_EVENTS
    finally:
        store.close()
    conn = connect(db)
    try:
        tokens: dict[str, str] = {r: keys.create_key(conn, r, r)[1] for r in ROLES}
        tokens["revoked"] = keys.create_key(conn, "admin", "revoked")[1]
        keys.revoke_key(conn, "revoked")
        tokens["unknown"] = "ldg_" + "x" * 43
    finally:
        conn.close()
    return Ledger(db, tokens)


def copy_ledger(template: Ledger, directory: Path) -> Ledger:
    """A copy of a closed ledger's files, so each test starts from the same state cheaply."""
    for path in template.db.parent.glob(template.db.name + "*"):
        shutil.copy(path, directory / path.name.replace(template.db.name, "l.db"))
    return Ledger(directory / "l.db", template.tokens)


async def eventually(check: Callable[[], object], seconds: float = 10.0) -> None:
    """Wait until `check()` holds (the app runs on the test client's own loop)."""
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("never happened")


@asynccontextmanager
async def serve(ledger: Ledger, **changes: Any) -> AsyncIterator[Client]:
    """The app on `ledger`, started (the lifespan opens the store) and stopped around a test."""
    async with AsyncTestClient(create_app(ledger.settings(**changes))) as client:
        yield client


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    return make_ledger(tmp_path_factory.mktemp("template"))


@pytest.fixture
def ledger(template: Ledger, tmp_path: Path) -> Ledger:
    return copy_ledger(template, tmp_path)


@pytest.fixture
async def client(ledger: Ledger) -> AsyncIterator[Client]:
    async with serve(ledger) as started:
        yield started


# ---- bodies ----

DOCUMENT = {"publisher": "Associated Press", "published_at": "2025-04-28"}


def assertion_body(**changes: Any) -> dict[str, Any]:
    """A valid assertion on the seed's troop figure; `changes` replace or add fields."""
    body: dict[str, Any] = {
        "subject": DEPLOYMENT,
        "property": TROOPS,
        "value": {"low": 11000, "high": 12000, "best": 11500},
        "claimants": ["kr-intel"],
        "stated_at": "2025-05-01",
        "document": DOCUMENT,
        "quote": "About 11,000 to 12,000 North Korean troops remain in Kursk.",
    }
    body.update(changes)
    return body


def source_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "gb-mod",
        "name": "UK Ministry of Defence",
        "kind": "military",
        "country": "GB",
        "reliability": "B",
    }
    body.update(changes)
    return body


# ---- responses ----


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check `response` is an RFC 9457 problem with `status`; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def fields_of(response: httpx.Response) -> set[str]:
    """The fields a 422 problem names, after checking its shape."""
    body = problem(response, 422)
    errors = body["errors"]
    assert errors
    assert all(set(e) == {"field", "message"} and e["message"] for e in errors)
    return {e["field"] for e in errors}


async def log_size(client: Client, ledger: Ledger) -> int:
    response = await client.get("/v1/log/head", headers=ledger.auth("reader"))
    assert response.status_code == 200
    size: int = response.json()["size"]
    return size


async def all_events(client: Client, ledger: Ledger) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = await client.get(
            "/v1/events", params={"after": after, "limit": 10}, headers=ledger.auth("reader")
        )
        assert page.status_code == 200
        events += page.json()["items"]
        after = page.json()["next"]
    return events


# ---- Server-Sent Events through the test client ----


@dataclass(frozen=True)
class Stream:
    status: int
    headers: dict[str, str]
    events: list[dict[str, str]]  # each message's fields: id, event, data, retry
    comments: list[str]


def parse_sse(text: str) -> tuple[list[dict[str, str]], list[str]]:
    """The messages and comments of an event stream (WHATWG HTML, 9.2.6)."""
    events: list[dict[str, str]] = []
    comments: list[str] = []
    for block in text.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:  # a block without data dispatches no event
            events.append(fields)
    return events, comments


def http_scope(method: str, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The ASGI scope of a request from the test client's host, for driving the app's
    callable directly."""
    url = httpx.URL(path)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": url.path,
        "raw_path": url.raw_path,
        "root_path": "",
        "query_string": url.query,
        "headers": [(b"host", b"testserver.local")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("testclient", 50000),
        "server": ("testserver.local", 80),
        "extensions": {},
    }


def read_stream(
    client: Client,
    path: str,
    headers: Mapping[str, str],
    *,
    events: int,
    comments: int | None = None,
    seconds: float = 5,
) -> Stream:
    """GET an event stream until `events` messages (or `comments` comments) came, or it
    ended, then disconnect.

    The test client buffers whole responses, which a stream that stays open never ends,
    so this drives the app's ASGI callable itself, on the client's own event loop (where
    the lifespan opened the store and the tail), and plays the client hanging up.
    """
    scope = http_scope("GET", path, headers)
    started: dict[str, Any] = {}
    body = bytearray()

    async def drive() -> None:
        enough = anyio.Event()
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await enough.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                got, remarks = parse_sse(body.decode())
                if (
                    not message.get("more_body")
                    or (comments is None and len(got) >= events)
                    or (comments is not None and len(remarks) >= comments)
                ):
                    enough.set()

        with anyio.fail_after(seconds):
            await client.app(scope, receive, send)

    client.blocking_portal.call(drive)
    found, remarks = parse_sse(body.decode())
    head = {k.decode().lower(): v.decode() for k, v in started.get("headers", [])}
    return Stream(started["status"], head, found, remarks)


# ---- an independent verifier (RFC 9162, the contract's hash chain) ----


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def canonical(event: Mapping[str, Any]) -> bytes:
    """The contract's canonical bytes: JCS of exactly seven envelope keys."""
    keys_ = ("seq", "type", "stream", "version", "recorded_at", "actor", "data_sha256")
    encoded: bytes = rfc8785.dumps({k: event[k] for k in keys_})
    return encoded


def leaf_hash(event: Mapping[str, Any]) -> bytes:
    return sha256(b"\x00" + canonical(event))


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def merkle_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 section 2.1.1, by its recursive definition."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


# The RFC 9162 proof checks are the outsider's script's own (`scripts/check_log.py`, written
# from the RFC and checked against the ledger's proofs in tests/test_check_log.py).
verify_inclusion = check_log.inclusion_holds
verify_consistency = check_log.consistency_holds


def check_chain(events: list[dict[str, Any]]) -> None:
    """Recompute every `data_sha256` and the hash chain from the events' JSON alone."""
    previous = bytes(32)
    for expected_seq, event in enumerate(events, start=1):
        assert event["seq"] == expected_seq
        assert hashlib.sha256(rfc8785.dumps(event["data"])).hexdigest() == event["data_sha256"]
        previous = sha256(previous + canonical(event))
        assert previous.hex() == event["hash"], f"chain breaks at seq {expected_seq}"
