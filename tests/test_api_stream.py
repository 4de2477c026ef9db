"""The live tail: Server-Sent Events in-process, and a real server that stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import end_streams
from api.tail import Tail, watch_other_writers
from ledger import keys
from ledger.sqlite_store import SqliteStore, connect
from projections import all_projectors
from scripts import check_log
from tests import api_helpers
from tests.api_helpers import (
    ROOT,
    SEED_EVENTS,
    Client,
    Ledger,
    all_events,
    assertion_body,
    eventually,
    fields_of,
    make_ledger,
    problem,
    read_stream,
    serve,
)
from tests.reliability import live, tamper
from tests.store_contract import new_events

# the fixtures every test here starts from
template, ledger, client = api_helpers.template, api_helpers.ledger, api_helpers.client

LEDGER = str(ROOT / ".venv" / "bin" / "ledger")


async def test_stream_from_the_start(client: Client, ledger: Ledger) -> None:
    stream = read_stream(client, "/v1/events/stream?after=0", ledger.auth("reader"), events=3)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert [e["id"] for e in stream.events[:3]] == ["1", "2", "3"]
    events = await all_events(client, ledger)
    for message in stream.events[:3]:
        event = events[int(message["id"]) - 1]
        assert message["event"] == event["type"]
        assert json.loads(message["data"]) == event


async def test_stream_resumes_after_last_event_id(client: Client, ledger: Ledger) -> None:
    headers = {**ledger.auth("reader"), "Last-Event-ID": str(SEED_EVENTS - 2)}
    stream = read_stream(client, "/v1/events/stream", headers, events=2)
    assert [e["id"] for e in stream.events] == [str(SEED_EVENTS - 1), str(SEED_EVENTS)]
    # with both, the later one: `after` here
    stream = read_stream(client, f"/v1/events/stream?after={SEED_EVENTS - 1}", headers, events=1)
    assert [e["id"] for e in stream.events] == [str(SEED_EVENTS)]
    # and the header here, as when an EventSource opened at `?after=` reconnects
    stream = read_stream(client, "/v1/events/stream?after=5", headers, events=2)
    assert [e["id"] for e in stream.events] == [str(SEED_EVENTS - 1), str(SEED_EVENTS)]

    bad = read_stream(client, "/v1/events/stream", {**headers, "Last-Event-ID": "x"}, events=1)
    assert bad.status == 422
    for wrong in ("x", "070", "-1", "1.0", " "):  # refused in words, as a query's seq is
        refused = await client.get("/v1/events/stream", headers={**headers, "Last-Event-ID": wrong})
        [error] = problem(refused, 422)["errors"]
        assert error == {
            "field": "Last-Event-ID",
            "message": "must be a seq: digits 0-9, no leading 0, at most 9223372036854775807",
        }, wrong
    for huge in ("9" * 20, "1" * 5000):  # beyond any seq; int() alone would refuse the latter
        too_far = await client.get(
            "/v1/events/stream?after=1", headers={**headers, "Last-Event-ID": huge}
        )
        assert fields_of(too_far) == {"Last-Event-ID"}
    assert fields_of(
        await client.get("/v1/events/stream?after=-1", headers=ledger.auth("reader"))
    ) == {"after"}


async def test_a_last_event_id_given_twice_is_named(ledger: Ledger) -> None:
    """Neither copy is taken silently (a proxy may join them, or either may win); over a
    real connection, since the test client would join the copies into one line."""
    twice = [*ledger.auth("reader").items(), ("Last-Event-ID", "5"), ("Last-Event-ID", "6")]
    async with live(ledger) as client:  # a stream taken from either copy would stay open
        refused = await asyncio.wait_for(client.get("/v1/events/stream", headers=twice), 10)
    assert problem(refused, 422)["errors"] == [
        {"field": "Last-Event-ID", "message": "given more than once (give it once)"}
    ]


async def test_resuming_past_the_head_is_refused(client: Client, ledger: Ledger) -> None:
    """A seq past the head came from another log (or this ledger before it was restored
    from an older backup): answering nothing would let the reader skip what it missed."""
    reader = ledger.auth("reader")
    at_head = await client.get(f"/v1/events?after={SEED_EVENTS}", headers=reader)
    assert at_head.status_code == 200
    assert at_head.json() == {"items": [], "next": None}
    past = await client.get(f"/v1/events?after={SEED_EVENTS + 1}", headers=reader)
    assert problem(past, 422)["errors"] == [
        {
            "field": "after",
            "message": f"is past the log's head: the log holds {SEED_EVENTS} events, so this "
            "seq comes from another log; read from 0 again",
        }
    ]
    erasures = await client.get(f"/v1/erasures?after={SEED_EVENTS + 1}", headers=reader)
    assert fields_of(erasures) == {"after"}
    none_yet = await client.get(f"/v1/erasures?after={SEED_EVENTS}", headers=reader)
    assert none_yet.json()["items"] == []

    # the stream refuses before it opens, naming whichever of the two it would resume from
    resumed = {**reader, "Last-Event-ID": str(SEED_EVENTS + 5)}
    for path, headers, named in (
        (f"/v1/events/stream?after={SEED_EVENTS + 1}", reader, "after"),
        (f"/v1/events/stream?after={SEED_EVENTS + 1}", {**reader, "Last-Event-ID": "3"}, "after"),
        ("/v1/events/stream?after=1", resumed, "Last-Event-ID"),
        (f"/v1/events/stream?after={SEED_EVENTS}", resumed, "Last-Event-ID"),
    ):
        # read as a stream first: one that opened would never end a plain GET
        assert read_stream(client, path, headers, events=1, seconds=2).status == 422, path
        assert fields_of(await client.get(path, headers=headers)) == {named}, path

    # one the log has reached by now is taken again
    posted = await client.post(
        "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
    )
    assert posted.json()["seq"] == SEED_EVENTS + 1
    stream = read_stream(client, f"/v1/events/stream?after={SEED_EVENTS}", reader, events=1)
    assert [e["id"] for e in stream.events] == [str(SEED_EVENTS + 1)]
    caught_up = await client.get(f"/v1/events?after={SEED_EVENTS + 1}", headers=reader)
    assert caught_up.json() == {"items": [], "next": None}


async def test_an_altered_payload_reads_as_stored_and_an_outside_check_names_it(
    ledger: Ledger,
) -> None:
    """Payloads edited in the file so they no longer decode (a renamed field, an event type
    changed, bytes that are not JSON or not UTF-8) are served as stored, by the pages and
    the stream, not as a 500: a reader sees what the file holds and `check_log.py` names
    each seq."""
    conn = sqlite3.connect(ledger.db)
    first, second, third, fourth = (
        seq
        for (seq,) in conn.execute(
            "SELECT seq FROM events WHERE type = 'AssertionRecorded' ORDER BY seq LIMIT 4"
        )
    )
    renamed = conn.execute("SELECT data FROM payloads WHERE seq = ?", (first,)).fetchone()[0]
    conn.close()
    renamed = bytes(renamed).replace(b'"assertion_id"', b'"assertion_iX"')
    tamper(
        ledger.db,
        [
            ("UPDATE payloads SET data = ? WHERE seq = ?", (renamed, first)),
            ("UPDATE events SET type = 'Bogus' WHERE seq = ?", (second,)),
            ("UPDATE payloads SET data = ? WHERE seq = ?", (b"\xff not json", third)),
            ("UPDATE payloads SET data = ? WHERE seq = ?", (b'{"assertion_id":"\xff"}', fourth)),
        ],
    )
    async with serve(ledger) as client:
        reader = ledger.auth("reader")
        page = await client.get("/v1/events", params={"limit": 1000}, headers=reader)
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert [e["seq"] for e in items] == list(range(1, SEED_EVENTS + 1))
        by_seq = {e["seq"]: e for e in items}
        assert by_seq[first]["data"] == json.loads(renamed)
        assert by_seq[second]["type"] == "Bogus"
        assert by_seq[second]["data"]["assertion_id"]  # the payload as it was written
        assert by_seq[third]["data"] == "\ufffd not json"
        assert by_seq[fourth]["data"] == '{"assertion_id":"\ufffd"}'  # not UTF-8 inside
        stream = read_stream(client, "/v1/events/stream?after=0", reader, events=SEED_EVENTS)
        assert [json.loads(m["data"]) for m in stream.events] == items
        head = (await client.get("/v1/log/head", headers=reader)).json()

    class Served(check_log.Server):
        def events(self, after: int, until: int) -> Iterator[dict[str, Any]]:
            return iter(items[after:until])

    failures, _ = check_log.check_events(
        Served("http://127.0.0.1:9", None), head["size"], bytes.fromhex(head["root"]), print
    )
    assert failures == [
        f"seq {first}: the payload does not hash to its data_sha256",
        f"seq {second}: the hash chain breaks here",
        f"seq {third}: the payload does not hash to its data_sha256",
        f"seq {fourth}: the payload does not hash to its data_sha256",
        "the Merkle root of the events is not the head's root",
    ]


async def test_stream_delivers_a_new_event(client: Client, ledger: Ledger) -> None:
    path = f"/v1/events/stream?after={SEED_EVENTS}"
    waiting = asyncio.create_task(
        asyncio.to_thread(read_stream, client, path, ledger.auth("reader"), events=1)
    )
    await asyncio.sleep(0.05)
    posted = await client.post(
        "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
    )
    assert posted.status_code == 201
    stream = await asyncio.wait_for(waiting, 10)
    assert stream.comments[0] == "connected"
    assert [e["id"] for e in stream.events] == [str(posted.json()["seq"])]
    data = json.loads(stream.events[0]["data"])
    assert data["data"]["assertion_id"] == posted.json()["assertion_id"]
    assert data["hash"] == posted.json()["hash"]


async def test_a_stream_ends_once_its_key_is_revoked(client: Client, ledger: Ledger) -> None:
    conn = connect(ledger.db)
    try:
        token = keys.create_key(conn, "reader", "short-lived")[1]
    finally:
        conn.close()
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/v1/events/stream?after={SEED_EVENTS - 1}"
    waiting = asyncio.create_task(
        asyncio.to_thread(read_stream, client, path, headers, events=3, seconds=10)
    )
    tail = client.app.state.tail
    await eventually(lambda: tail.waiting)  # let in, sent the last seed event, now waiting
    conn = connect(ledger.db)
    try:
        keys.revoke_key(conn, "short-lived")
    finally:
        conn.close()
    posted = await client.post(
        "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
    )
    assert posted.status_code == 201
    # it returns with one event of the three asked for: the stream ended (a stream still
    # open would make read_stream time out after 10 s)
    stream = await asyncio.wait_for(waiting, 15)
    assert [e["id"] for e in stream.events] == [str(SEED_EVENTS)], "nothing after revoking"
    again = await client.get("/v1/events/stream", headers=headers)
    assert again.status_code == 401


async def test_a_stream_hears_of_events_another_process_appends(ledger: Ledger) -> None:
    """A second server on the file, or `ledger import` into it: this server's writer never
    hears of their commits, so the stream must find them without waiting for a heartbeat."""
    async with serve(ledger, sse_heartbeat_seconds=60, other_writers_seconds=0.05) as client:
        path = f"/v1/events/stream?after={SEED_EVENTS}"
        waiting = asyncio.create_task(
            asyncio.to_thread(read_stream, client, path, ledger.auth("reader"), events=1)
        )
        await asyncio.sleep(0.2)
        other = SqliteStore(ledger.db)  # another writer on the same file
        try:
            [event] = other.append_sync(
                "subject:elsewhere", new_events("subject:elsewhere", 1), "t"
            )
        finally:
            other.close()
        stream = await asyncio.wait_for(waiting, 10)  # read_stream gives up after 5 s
    assert [e["id"] for e in stream.events] == [str(event.seq)]
    assert stream.comments == ["connected"], "no heartbeat came first"


async def test_the_watch_for_other_writers_outlives_a_failed_read() -> None:
    tail = Tail(asyncio.get_running_loop(), 5)
    calls = 0

    def size() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return 9

    waiting = asyncio.ensure_future(tail.wait_beyond(5, 10))
    watcher = asyncio.ensure_future(watch_other_writers(tail, size, 0.01))
    assert await asyncio.wait_for(waiting, 5) is True
    assert tail.latest == 9
    tail.close()
    await asyncio.wait_for(watcher, 5)  # it ends once the tail closes


async def test_an_idle_stream_sends_keep_alive_comments(ledger: Ledger) -> None:
    async with serve(ledger, sse_heartbeat_seconds=0.05) as client:
        path = f"/v1/events/stream?after={SEED_EVENTS}"
        stream = read_stream(client, path, ledger.auth("reader"), events=0, comments=3)
    assert stream.comments == ["connected", "keep-alive", "keep-alive"]
    assert stream.events == [], "a comment is not a message"


async def test_end_streams_closes_open_streams(client: Client, ledger: Ledger) -> None:
    path = f"/v1/events/stream?after={SEED_EVENTS - 1}"
    waiting = asyncio.create_task(
        asyncio.to_thread(read_stream, client, path, ledger.auth("reader"), events=5)
    )
    await asyncio.sleep(0.2)
    end_streams(client.app)
    stream = await asyncio.wait_for(waiting, 5)
    assert [e["id"] for e in stream.events] == [str(SEED_EVENTS)], "it ended, not timed out"


# ---- a real server ----


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ledger_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEDGER, *args], capture_output=True, text=True, timeout=20, check=False)


@pytest.mark.slow
def test_real_server_streams_and_stops_cleanly(tmp_path: Path) -> None:
    """`ledger serve` under uvicorn: an append reaches an open stream; SIGTERM exits 0
    with the acknowledged append durable and the log verifying."""
    db = make_ledger(tmp_path).db
    created = ledger_cli("keys", "create", "--role", "writer", "--name", "e2e", "--db", str(db))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [LEDGER, "serve", "--db", str(db), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LEDGER_LOG_LEVEL": "WARNING"},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.05)

        with (
            httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(5)) as http,
            http.stream("GET", f"/v1/events/stream?after={SEED_EVENTS}") as stream,
        ):
            assert stream.status_code == 200
            posted = http.post("/v1/assertions", json=assertion_body())
            assert posted.status_code == 201
            seq = posted.json()["seq"]
            assert seq == SEED_EVENTS + 1
            lines = stream.iter_lines()
            first_id = next(line for line in lines if line.startswith("id:"))
            assert first_id == f"id: {seq}"

            # a stop with a stream still open: the stream ends, the process exits 0
            server.send_signal(signal.SIGTERM)
            try:
                for _ in lines:
                    pass
            except httpx.ReadTimeout:
                pytest.fail("the event stream stayed open through the shutdown")
        _, err = server.communicate(timeout=10)
        assert server.returncode == 0, err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()

    verified = ledger_cli("verify", "--db", str(db))
    assert verified.returncode == 0, verified.stderr
    store = SqliteStore(db, all_projectors())
    try:
        [event] = store.read(after=SEED_EVENTS)
    finally:
        store.close()
    assert event.seq == seq
    assert event.actor == "e2e"
    assert event.hash == posted.json()["hash"]
