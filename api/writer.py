"""Where the API's appends run: on the store's writer thread, or in a writer process.

:class:`LocalWriter` runs each command as a unit of work on the store's own writer thread,
inside the server process. :class:`ProcessWriter` (what `ledger serve` uses) sends each
command to a child process that owns the only writing connection, so the hash chain,
Merkle nodes and projections are computed on the other core while the server's event loop
keeps answering HTTP; the two share the GIL otherwise. The server still reads the
database itself, on its own connections.

The child (`python -m api.writer`) reads commands from a socket, runs them through the
same :func:`ledger.service.command_unit` with group commit, and answers each only after
its COMMIT, so an acknowledged append is as durable as in-process. It works on one
thread: it takes every command waiting on the socket, runs them as one batch
(:meth:`SqliteStore.commit_here`), sends each commit's answers in one write, and reads
again; while a batch commits, the next one gathers in the socket. Handing each command to
the store's writer thread and each answer to a sending thread cost more than it saved.

It drains and exits when the server closes the socket, including when the server dies;
it ignores SIGINT and SIGTERM, which a signal to the server's whole process group would
otherwise bring. If the child dies, every waiting and later write is refused with
:class:`LedgerUnavailable` (and `/v1/health` says why) until the server is restarted.

Frames on the socket are a 4-byte big-endian length and a msgpack array:
- request: `[id, command type, command, actor, render, expected version, key,
  key body]`; an assertion is sent as the event it records
  (:class:`ledger.commands.RecordPrepared`, made here by
  :func:`ledger.domain.prepare_assertion`), so the child, the busier process, neither
  checks its fields again nor builds the event: it judges only what needs the ledger;
- reply: `[id, status, body, replayed, error, storage problem, write refusal]` (error: the
  exception as `[class, fields...]`, or nil);
- commit notice: `[0, log size, storage problem or nil]`, after each commit that appended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec
import structlog

from ledger import errors
from ledger.backend import Outcome
from ledger.commands import AnyCommand, RecordAssertion, RecordPrepared, RegisterSource
from ledger.errors import LedgerUnavailable
from ledger.service import Idempotency, Render, Reply, command_unit, execute, prepared
from ledger.sqlite_store import SqliteStore

log = structlog.get_logger("api.writer")

_HEAD = struct.Struct(">I")
_encode = msgspec.msgpack.Encoder()
_frame = msgspec.msgpack.Decoder(list[Any])
_ERRORS: dict[str, type[errors.LedgerError]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, errors.LedgerError)
}
# commands the API decodes whole from a checked body: these travel as msgpack (an
# assertion as the event it records, see RecordPrepared)
_FROM_BODY: dict[str, msgspec.msgpack.Decoder[Any]] = {
    cls.__name__: msgspec.msgpack.Decoder(cls) for cls in (RecordPrepared, RegisterSource)
}
_ROOT = str(Path(__file__).resolve().parent.parent)  # where `api` was imported from
CLOSE_SECONDS = 30.0  # how long a stopping server waits for the child to drain
_STOPPED = "the writer process stopped; restart `ledger serve`"


class Writer(Protocol):
    """What the API appends through."""

    async def execute(
        self,
        command: AnyCommand,
        actor: str,
        render: Render,
        *,
        expected_version: int | None = None,
        idempotency: Idempotency | None = None,
    ) -> Reply: ...

    async def close(self) -> None: ...


class LocalWriter:
    """Units of work on the store's own writer thread, in this process."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def execute(
        self, command: AnyCommand, actor: str, render: Render, **options: Any
    ) -> Reply:
        """:func:`ledger.service.execute` on this store (options as :class:`Writer`'s)."""
        return await execute(self.store, command, actor, render, **options)

    async def close(self) -> None:
        return None


def _render_name(render: Render) -> str:
    name = f"{render.__module__}:{render.__qualname__}"
    if not render.__module__.startswith("api.") or "<" in render.__qualname__:
        raise ValueError(f"{name}: a writer process can only run module-level api renderers")
    return name


def _render_of(name: str) -> Render:
    module, _, qualname = name.partition(":")
    if not module.startswith("api."):
        raise ValueError(f"unknown renderer {name!r}")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    render: Render = found
    return render


def _command_bytes(command: AnyCommand) -> bytes:
    """msgpack for a command decoded from a body (checked already; 1 us), else pickle; an
    assertion goes prepared (see :func:`ledger.service.prepared`), never as the command."""
    if type(command).__name__ in _FROM_BODY:
        return _encode.encode(command)
    if isinstance(command, RecordAssertion):
        raise TypeError("an assertion is sent prepared: ledger.service.prepared(command)")
    return pickle.dumps(command, protocol=pickle.HIGHEST_PROTOCOL)


def _command_of(kind: str, data: bytes) -> AnyCommand:
    decoder = _FROM_BODY.get(kind)
    if decoder is not None:
        command: AnyCommand = decoder.decode(data)
        return command
    # built by the server from a path parameter too, which the rules check (a 404), not
    # the body's constraints, so it is rebuilt as it was; the bytes come from this
    # process's own parent over a private socket
    command = pickle.loads(data)  # noqa: S301
    if type(command).__name__ != kind:
        raise TypeError(f"expected a {kind}, got {type(command).__name__}")
    return command


def _error_frame(exc: BaseException) -> list[Any]:
    """An exception as data: a ledger error keeps its class and fields, any other its text."""
    name = type(exc).__name__
    if isinstance(exc, errors.InvalidInput):
        return [name, exc.detail, [[e.field, e.message] for e in exc.errors]]
    if isinstance(exc, errors.ConcurrencyConflict):
        return [name, exc.stream, exc.expected, exc.actual]
    if isinstance(exc, errors.LedgerError):  # as the nearest class the API knows
        known = next(c for c in type(exc).__mro__ if _ERRORS.get(c.__name__) is c)
        return [known.__name__, exc.detail]
    return ["", f"{name}: {exc}"]


def _error_of(frame: list[Any]) -> BaseException:
    name, *fields = frame
    cls = _ERRORS.get(name)
    if cls is errors.InvalidInput:
        return errors.InvalidInput([errors.FieldError(f, m) for f, m in fields[1]], fields[0])
    if cls is errors.ConcurrencyConflict:
        return errors.ConcurrencyConflict(*fields)
    if cls is not None:
        return cls(fields[0])
    return RuntimeError(f"in the writer process: {fields[0]}")


def _frames(buffer: bytearray) -> list[list[Any]]:
    """Cut every whole frame off the front of `buffer`."""
    out: list[list[Any]] = []
    start, size = 0, len(buffer)
    while size - start >= 4:
        (length,) = _HEAD.unpack_from(buffer, start)
        if size - start - 4 < length:
            break
        out.append(_frame.decode(memoryview(buffer)[start + 4 : start + 4 + length]))
        start += 4 + length
    del buffer[:start]
    return out


def _framed(message: list[Any]) -> bytes:
    data = _encode.encode(message)
    return _HEAD.pack(len(data)) + data


class ProcessWriter:
    """Sends commands to a writer child process and waits for its answers.

    `store` is the server's own (reading) store: commit notices move its listeners on, and
    a dead child sets its `write_refusal`, so health reports it.
    """

    def __init__(self, store: SqliteStore, synchronous: str = "FULL") -> None:
        self.store = store
        self._synchronous = synchronous
        self._next = 1
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._outbox: list[bytes] = []
        self._flush_due = False
        self._eof_sent = False
        self._dead: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stream: asyncio.StreamWriter | None = None  # held: collecting it closes it
        self._transport: asyncio.Transport | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the child and wait until its store is open."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [
            sys.executable,
            "-P",  # not the working directory first on the path: a stray api.py there
            "-m",
            "api.writer",
            "--db",
            str(self.store.path),
            "--fd",
            str(theirs.fileno()),
            "--synchronous",
            self._synchronous,
        ]
        path = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))
        # its own session, and it ignores SIGINT and SIGTERM: a Ctrl-C or a signal to the
        # server's group stops the server, which then closes the socket; the child
        # finishes what it holds and exits
        self._process = await asyncio.create_subprocess_exec(
            *args,
            pass_fds=(theirs.fileno(),),
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,
        )
        theirs.close()
        self._loop = asyncio.get_running_loop()
        reader, self._stream = await asyncio.open_unix_connection(sock=ours)
        self._transport = self._stream.transport  # type: ignore[assignment]
        ready = await reader.read(1)  # one byte once the child's store is open
        if ready != b"+":
            self._stream.close()
            code = await self._process.wait()
            raise LedgerUnavailable(f"the writer process did not start (exit {code})")
        self._reader_task = asyncio.ensure_future(self._read(reader))

    async def execute(
        self,
        command: AnyCommand,
        actor: str,
        render: Render,
        *,
        expected_version: int | None = None,
        idempotency: Idempotency | None = None,
    ) -> Reply:
        if self._dead is not None:
            raise LedgerUnavailable(self._dead)
        assert self._loop is not None
        ident = self._next
        self._next += 1
        command = prepared(command)  # what needs no state is done here, not in the child
        message = [
            ident,
            type(command).__name__,
            _command_bytes(command),
            actor,
            _render_name(render),
            expected_version,
            None if idempotency is None else idempotency.key,
            None if idempotency is None else idempotency.request,
        ]
        waiter: asyncio.Future[Reply] = self._loop.create_future()
        self._waiting[ident] = waiter
        self._outbox.append(_framed(message))
        if not self._flush_due:  # one write for every command sent in this loop iteration
            self._flush_due = True
            self._loop.call_soon(self._flush)
        return await waiter

    def _flush(self) -> None:
        self._flush_due = False
        frames, self._outbox = self._outbox, []
        if not frames or self._transport is None or self._transport.is_closing():
            return
        if self._eof_sent:  # sent after the close began: refused when the reader ends
            return
        self._transport.write(b"".join(frames))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        try:
            while chunk := await reader.read(1 << 16):
                buffer += chunk
                for message in _frames(buffer):
                    self._received(message)
        except Exception as exc:  # the child went away mid-stream: say why, then refuse
            log.error("writer_socket_failed", error=repr(exc))
        finally:
            self._stopped()

    def _received(self, message: list[Any]) -> None:
        ident = message[0]
        if ident == 0:  # a commit notice
            self.store.storage_problem = message[2]
            self.store.announce(message[1])
            return
        waiter = self._waiting.pop(ident, None)
        if waiter is None or waiter.done():
            return
        _, status, body, replayed, error, problem, refusal = message
        self.store.storage_problem = problem
        if refusal is not None:  # the child refuses appends (health says why)
            self.store.write_refusal = refusal
        if error is not None:
            waiter.set_exception(_error_of(error))
        else:
            waiter.set_result(Reply(status, body, replayed))

    def _stopped(self) -> None:
        if self._dead is None:  # not stopped by close(): it died
            self._dead = _STOPPED
            process = self._process
            log.error(
                "writer_process_stopped",
                pid=None if process is None else process.pid,
                code=None if process is None else process.returncode,  # None: not reaped yet
            )
        self.store.write_refusal = self.store.write_refusal or _STOPPED
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_exception(LedgerUnavailable(self._dead))

    async def close(self) -> None:
        """Let the child finish every command it holds, then wait for it to exit."""
        self._dead = self._dead or "the server is stopping"
        if self._transport is not None:
            self._flush()
            self._eof_sent = True
            if self._transport.can_write_eof():
                self._transport.write_eof()
        if self._reader_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader_task), CLOSE_SECONDS)
            except TimeoutError:
                log.error("writer_process_stuck", seconds=CLOSE_SECONDS)
                if self._process is not None and self._process.returncode is None:
                    self._process.kill()
                with contextlib.suppress(Exception):
                    await self._reader_task
        if self._transport is not None:
            self._transport.close()
        if self._process is not None:
            code = await self._process.wait()
            if code != 0:
                log.error("writer_process_exit", code=code)


# ---- the child ----


class _Child:
    """Reads commands from the socket, runs them on the store, sends the answers back."""

    def __init__(self, store: SqliteStore, sock: socket.socket) -> None:
        self.store = store
        self.sock = sock
        self.outbox: list[bytes] = []  # answers and notices, sent after each batch
        self.renders: dict[str, Render] = {}
        store.add_listener(self._committed)

    def _committed(self, size: int) -> None:
        self.outbox.append(_framed([0, size, self.store.storage_problem]))

    def _answer(self, ident: int, outcome: Outcome[Reply]) -> None:
        problem = outcome.exception()
        if problem is not None:
            self._fail(ident, problem)
            return
        reply = outcome.result()
        frame = [ident, reply.status, reply.body, reply.replayed, None, *self._health()]
        self.outbox.append(_framed(frame))

    def _fail(self, ident: int, problem: BaseException) -> None:
        frame = [ident, 0, b"", False, _error_frame(problem), *self._health()]
        self.outbox.append(_framed(frame))

    def _health(self) -> list[str | None]:
        return [self.store.storage_problem, self.store.write_refusal]

    def _unit(self, message: list[Any]) -> Callable[[Any], Reply] | None:
        """The unit of work for one request frame, or None once it is answered as failed."""
        ident, kind, raw, actor, render_name, expected, key, key_body = message
        try:
            command = _command_of(kind, raw)
            render = self.renders.get(render_name)
            if render is None:
                render = self.renders[render_name] = _render_of(render_name)
            idempotency = None if key is None else Idempotency(key, key_body)
            return command_unit(
                command, actor, render, expected_version=expected, idempotency=idempotency
            )
        except Exception as exc:  # answered, never lost
            self._fail(ident, exc)
            return None

    def _batch(self, messages: list[list[Any]]) -> None:
        """Run every command taken, in group commits of at most the store's `max_batch`
        in this thread, and send each commit's answers as soon as it is done."""
        taken: list[tuple[int, Callable[[Any], Reply]]] = []
        for message in messages:
            unit = self._unit(message)
            if unit is not None:
                taken.append((message[0], unit))
        size = self.store.max_batch
        for start in range(0, len(taken), size):
            part = taken[start : start + size]
            try:
                outcomes = self.store.commit_here([unit for _, unit in part])
            except Exception as exc:  # answered, never lost
                for ident, _ in part:
                    self._fail(ident, exc)
            else:
                for (ident, _), outcome in zip(part, outcomes, strict=True):
                    self._answer(ident, outcome)
            self._flush()

    def _flush(self) -> None:
        frames, self.outbox = self.outbox, []
        if frames:
            with contextlib.suppress(OSError):  # the server went away: nobody to tell
                self.sock.sendall(b"".join(frames))

    def _drain(self, buffer: bytearray) -> bool:
        """Add what is already waiting on the socket; False once the server closed it."""
        while True:
            try:
                more = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return True
            if not more:
                return False
            buffer += more

    def run(self) -> None:
        """Take every command waiting on the socket, run them as group commits, send
        each commit's answers in one write; again until the server closes the socket.

        While it writes answers it does not read, so the server must keep reading while it
        sends (:class:`ProcessWriter` does: asyncio never blocks on a write).
        """
        self.sock.sendall(b"+")
        buffer = bytearray()
        try:
            open_ = True
            while open_ and (chunk := self.sock.recv(1 << 16)):
                buffer += chunk
                open_ = self._drain(buffer)
                self._batch(_frames(buffer))
                self._flush()
        except OSError:
            pass
        finally:
            self.store.close()  # every command taken is committed and answered first
            self._flush()
            self.sock.close()


def quiet_collector() -> None:
    """Fewer, cheaper garbage collections for a long-running server process.

    Everything alive after start-up (modules, the app, its routes) is moved out of the
    collector's sight, and the youngest generation is collected every 50,000 allocations
    rather than 700 (and each older one every 20 of the one below, not 10): with 64
    requests in flight a young collection took ~0.5 ms, and at 10,000 they still cost
    a few per cent of the requests a second (docs/benchmarks.md, "Session 21"). Cycles
    are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.writer")
    parser.add_argument("--db", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args(argv)
    from ledger.logs import configure_logging, level_from_env
    from projections import all_projectors

    configure_logging(level_from_env("WARNING"))  # checked by `ledger serve` before
    # the server stops this process by closing the socket, after its own requests are
    # answered; a signal to the whole group (systemd, `kill -- -PGID`) must not cut that short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    store = SqliteStore(args.db, all_projectors(), synchronous=args.synchronous)
    quiet_collector()
    _Child(store, sock).run()
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
