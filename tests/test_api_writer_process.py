"""Appends through a writer child process (`ledger serve`'s default, `api.writer`).

Every test of test_api_writes runs here again with the app's appends in a child process,
so each answer (201, 200, 409, 412, 422 naming the fields, 404, idempotent replays) must
come back through the socket exactly as the in-process writer gives it. The tests below
add what only the process can do wrong: the tail hearing of commits, the child's death,
and draining at shutdown.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from api.deps import render_event
from api.writer import (
    ProcessWriter,
    _Child,
    _command_bytes,
    _command_of,
    _error_frame,
    _error_of,
    _frames,
    _render_name,
)
from ledger.codec import encode_payload
from ledger.commands import RecordPrepared, RegisterSource
from ledger.domain import prepare_assertion
from ledger.errors import (
    ConcurrencyConflict,
    Conflict,
    FieldError,
    InvalidInput,
    LedgerError,
    NotFound,
    StorageFull,
)
from ledger.sqlite_store import SqliteStore
from projections import all_projectors
from tests import api_helpers, factories
from tests.api_helpers import (
    DEPLOYMENT,
    Client,
    Ledger,
    assertion_body,
    eventually,
    log_size,
    problem,
    serve,
)
from tests.test_api_writes import *  # noqa: F403 - the whole write suite, run again here

template, ledger = api_helpers.template, api_helpers.ledger


@pytest.fixture  # type: ignore[no-redef]
async def client(ledger: Ledger) -> AsyncIterator[Client]:
    async with serve(ledger, writer_process=True) as started:
        yield started


def _writer(client: Client) -> ProcessWriter:
    writer = client.app.state.writer
    assert isinstance(writer, ProcessWriter)
    return writer


async def test_the_appends_really_run_in_another_process(client: Client, ledger: Ledger) -> None:
    writer = _writer(client)
    assert writer._process is not None
    assert writer._process.pid != os.getpid()
    assert writer._process.returncode is None
    before = await log_size(client, ledger)
    answer = await client.post(
        "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
    )
    assert answer.status_code == 201, answer.text
    # read back on the server's own connection: the child committed before answering
    assert await log_size(client, ledger) == before + 1
    assert answer.json()["seq"] == before + 1


async def test_concurrent_appends_each_get_their_own_answer(client: Client, ledger: Ledger) -> None:
    writer = ledger.auth("writer")
    bodies = [assertion_body(value={"low": i, "high": i + 10}) for i in range(40)]
    answers = await asyncio.gather(
        *(client.post("/v1/assertions", json=body, headers=writer) for body in bodies)
    )
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    seqs = sorted(a.json()["seq"] for a in answers)
    assert seqs == list(range(seqs[0], seqs[0] + 40))
    ids = {a.json()["assertion_id"] for a in answers}
    assert len(ids) == 40
    for answer, body in zip(answers, bodies, strict=True):
        detail = await client.get(
            f"/v1/assertions/{answer.json()['assertion_id']}", headers=ledger.auth("reader")
        )
        assert detail.json()["value"]["low"] == body["value"]["low"]


async def test_the_tail_hears_of_commits_in_the_child(client: Client, ledger: Ledger) -> None:
    size = await log_size(client, ledger)
    tail = client.app.state.tail
    assert tail.latest == size
    writer = ledger.auth("writer")
    answer = await client.post("/v1/assertions", json=assertion_body(), headers=writer)
    assert answer.status_code == 201
    await eventually(lambda: tail.latest == size + 1)


async def test_a_dead_writer_refuses_writes_and_health_says_why(
    client: Client, ledger: Ledger
) -> None:
    writer = _writer(client)
    assert writer._process is not None
    os.kill(writer._process.pid, signal.SIGKILL)
    await eventually(lambda: writer._dead is not None)  # noticed when the socket closes
    size = await log_size(client, ledger)
    answer = await client.post(
        "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
    )
    assert "writer process stopped" in problem(answer, 503)["detail"]
    health = (await client.get("/v1/health")).json()
    assert health["status"] == "degraded"
    assert "writer process stopped" in health["reason"]
    # reads go on
    assert await log_size(client, ledger) == size
    view = await client.get(
        f"/v1/subjects/{DEPLOYMENT}/estimates/troops.deployed", headers=ledger.auth("reader")
    )
    assert view.status_code == 200


async def test_shutdown_lets_the_child_finish_and_exit_cleanly(ledger: Ledger) -> None:
    async with serve(ledger, writer_process=True) as client:
        writer = _writer(client)
        size = await log_size(client, ledger)
        posts = [
            client.post("/v1/assertions", json=assertion_body(), headers=ledger.auth("writer"))
            for _ in range(10)
        ]
        answers = await asyncio.gather(*posts)
        assert [a.status_code for a in answers] == [201] * 10
    assert writer._process is not None
    assert writer._process.returncode == 0
    async with serve(ledger) as client:  # in-process again: everything acknowledged is there
        assert await log_size(client, ledger) == size + 10
        report = await client.post("/v1/audit", headers=ledger.auth("auditor"))
        assert report.status_code == 200, report.text
        assert report.json()["ok"] is True
        assert report.json()["projections_match"] is True


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput([FieldError("value.low", "must be <= high"), FieldError("x", "y")]),
        ConcurrencyConflict("subject:s", 3, 4),
        NotFound("no such assertion"),
        Conflict("taken"),
        StorageFull("full"),
    ],
)
def test_ledger_errors_cross_the_socket_with_their_fields(error: LedgerError) -> None:
    back = _error_of(_error_frame(error))
    assert type(back) is type(error)
    assert back.detail == error.detail
    assert vars(back) == vars(error)


def test_an_assertion_crosses_the_socket_as_the_event_it_records() -> None:
    """The server prepares an assertion before sending it (the child decodes the event it
    will store, with no field checks to run again): what arrives is the same event, to the
    byte it will be hashed as, and says whether the caller chose the id."""
    command = factories.quantity(1, 5, 3, stated_at="2025-03", valid_from="2025-01")
    unnamed = msgspec.structs.replace(command, assertion_id=None)
    for sent, chosen in ((command, True), (unnamed, False)):
        prepared = prepare_assertion(sent)
        got = _command_of("RecordPrepared", _command_bytes(prepared))
        assert isinstance(got, RecordPrepared)
        assert got == prepared
        assert got.chosen_id is chosen
        assert encode_payload(got.event) == encode_payload(prepared.event)
    with pytest.raises(TypeError, match="prepared"):  # never the command itself
        _command_bytes(command)


def test_other_errors_come_back_as_their_text() -> None:
    class Odd(NotFound):
        pass

    back = _error_of(_error_frame(Odd("gone")))
    assert type(back) is NotFound  # the nearest class the API maps to a status
    assert back.detail == "gone"
    other: Any = _error_of(_error_frame(KeyError("boom")))
    assert isinstance(other, RuntimeError)
    assert "KeyError" in str(other)


async def test_a_signal_to_the_group_does_not_stop_the_child(
    client: Client, ledger: Ledger
) -> None:
    """systemd or `kill -- -PGID` signals every process of the service: the child keeps
    going and stops only when the server closes the socket."""
    writer = _writer(client)
    assert writer._process is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        os.kill(writer._process.pid, sig)
    await asyncio.sleep(0.3)
    assert writer._process.returncode is None
    answer = await client.post(
        "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
    )
    assert answer.status_code == 201, answer.text


async def test_a_stray_module_in_the_working_directory_is_not_run(
    ledger: Ledger, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "api.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(stray)
    async with serve(ledger, writer_process=True) as client:
        answer = await client.post(
            "/v1/assertions", json=assertion_body(), headers=ledger.auth("writer")
        )
        assert answer.status_code == 201, answer.text


async def test_closing_in_the_same_turn_as_a_request(tmp_path: Any) -> None:
    """A command sent in the loop turn the writer closes in: it is still written before
    the end of the stream (and answered), and nothing is written after it."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    store = SqliteStore(tmp_path / "l.db", all_projectors())
    try:
        writer = ProcessWriter(store)
        await writer.start()
        source = RegisterSource(id="a-source", name="A", kind="media")
        sent = asyncio.ensure_future(writer.execute(source, "test", render_event))
        await asyncio.sleep(0)  # the command is queued for this turn's write
        await writer.close()
        assert (await sent).status == 201
        await asyncio.sleep(0.05)
        assert errors == []
        assert writer._process is not None
        assert writer._process.returncode == 0
    finally:
        loop.set_exception_handler(None)
        store.close()


async def test_commands_that_arrive_together_are_committed_together(tmp_path: Any) -> None:
    """The child takes every command waiting on its socket and runs them as one group
    commit in its own thread: twenty commands sent in one write are one commit, so one
    commit notice, and each still gets its own answer."""
    store = SqliteStore(tmp_path / "l.db", all_projectors())
    notices: list[int] = []
    store.add_listener(notices.append)
    try:
        writer = ProcessWriter(store)
        await writer.start()
        sources = [RegisterSource(id=f"source-{i}", name=f"S{i}", kind="media") for i in range(20)]
        # sent in the same loop turn: one write on the socket
        answers = await asyncio.gather(*(writer.execute(s, "t", render_event) for s in sources))
        assert [a.status for a in answers] == [201] * 20
        assert sorted(msgspec.json.decode(a.body)["seq"] for a in answers) == list(range(1, 21))
        await eventually(lambda: notices == [20])
        await writer.close()
    finally:
        store.close()
    assert notices == [20]


class _Sent:
    """Stands in for the child's socket: keeps each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def test_the_child_answers_each_command_after_its_own_commit(tmp_path: Any) -> None:
    """Each answer goes to the command it belongs to, a command the child cannot read is
    answered with the reason, and the answers of each group commit (at most `max_batch`
    units) are sent once it is done, not held for the rest."""
    store = SqliteStore(tmp_path / "l.db", max_batch=2)
    sent = _Sent()
    child = _Child(store, sent)  # type: ignore[arg-type]
    try:
        render = _render_name(render_event)
        ids = [f"source-{i}" for i in range(5)]
        frames = [
            [
                i + 1,
                "RegisterSource",
                _command_bytes(RegisterSource(id=ids[i], name="S", kind="media")),
            ]
            for i in range(5)
        ]
        frames.insert(2, [9, "RecordPrepared", b"\x81\xa1x\x01"])  # no assertion at all
        child._batch([[*f, "t", render, None, None, None] for f in frames])
        replies = [_frames(bytearray(write)) for write in sent.writes]
        answers = [[r for r in write if r[0] != 0] for write in replies]
        assert [[r[0] for r in write] for write in answers] == [[9, 1, 2], [3, 4], [5]]
        assert [[r[1] for r in write if r[0] == 0] for write in replies] == [[2], [4], [5]]
        by_ident = {r[0]: r for write in answers for r in write}
        assert by_ident[9][4] == ["", "ValidationError: Object contains unknown field `x`"]
        for ident, source in enumerate(ids, start=1):
            status, body, error = by_ident[ident][1], by_ident[ident][2], by_ident[ident][4]
            assert (status, error) == (201, None)
            (event,) = store.read(msgspec.json.decode(body)["seq"] - 1, 1)
            assert event.stream == f"source:{source}"
    finally:
        store.close()
