"""`ledger import`: append a JSON Lines file of sources, assertions, retractions and ranks.

A reader decodes and checks the lines, turns each assertion into the event it records
(:class:`ledger.commands.PreparedLine`) and hands them on in chunks: for a file of
:data:`READ_AHEAD_BYTES` or more, a process of its own (`python -m api.importer`, on the
other core: it takes about a quarter of the work), else the calling thread. Each chunk is
one unit of work on the writer: its commands are decided in a row against the write model
(read in a few bulk queries, see :class:`ledger.writemodel.BatchWriteState`) and their
events appended in one call, so a chunk costs a handful of statements, not several per
line. While the writer appends one chunk the next is read, with at most
:data:`IN_FLIGHT` chunks queued.

At the first bad line the import stops: the lines before it are committed, and nothing
from it or after it is appended. A line the rules refuse is found on the writer; the
chunk appends the lines before it and marks the import stopped, and every chunk queued
after it then appends nothing, since the writer runs units in order.

The read-side projections are folded once at the end rather than chunk by chunk
(:class:`_DeferredViews`): while the import runs, the chunks commit the log and the write
model only, and the views' checkpoints stay where they were; before `import_file`
returns, one unit folds the whole backlog in large batches (building the view-only
indexes once, if the backlog is longer than what was there) and moves the checkpoints.
Should the process die before that, the projectors catch up when the ledger is next
opened (:func:`ledger.replay.catch_up_on_open`).
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import IO, BinaryIO

import msgspec
import structlog

from ledger.commands import (
    IMPORT_LINE_TYPES,
    AssertionLine,
    ImportLine,
    PreparedImportLine,
    PreparedLine,
    RankLine,
    RetractionLine,
    SourceLine,
)
from ledger.domain import decide, prepare_assertion, problems_beside
from ledger.errors import FieldError, InvalidInput, LedgerError, capped
from ledger.events import NewEvent
from ledger.replay import catch_up, checkpoint_of
from ledger.sqlite_store import SqliteStore, SqliteTransaction, log_size
from ledger.store import Projector
from ledger.validation import convert_all, json_error, repeated_keys
from ledger.writemodel import BatchWriteState, SqliteWriteState, stream_versions

log = structlog.get_logger("api.importer")
_decoder = msgspec.json.Decoder(ImportLine)
CHUNK = 5000
IN_FLIGHT = 2
CATCH_UP_CHUNK = 5000
"""Events a step of the views' fold at the end decodes at once (it bounds peak memory)."""


@dataclass
class ImportResult:
    lines: int = 0
    appended: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    error: ImportError_ | None = None
    done_lines: int = 0  # every line up to this one is in the log (or needed nothing)
    interrupted: bool = False  # stopped by Ctrl-C: what was read ahead was not appended
    signum: int = int(signal.SIGINT)  # the signal that stopped it (SIGINT or SIGTERM)
    failure: LedgerError | None = None  # the ledger could not take a chunk (a full disk)
    views_failure: LedgerError | None = None  # the views could not be brought up to date
    views_skipped: bool = False  # a second Ctrl-C: the views were left to catch up later
    read_failure: str | None = None  # the reader process stopped before the end of the file

    def problem(self) -> str | None:
        """Why the import stopped before the end of the file, in a line (None: it did not)."""
        if self.error is not None:
            return self.error.describe()
        if self.failure is not None:
            return f"the ledger could not take more ({self.failure})"
        if self.read_failure is not None:
            return f"the file was not read to the end: {self.read_failure}"
        return "interrupted" if self.interrupted else None


@dataclass
class ImportError_:
    line: int
    errors: list[FieldError] = field(default_factory=list)
    detail: str = ""

    def __post_init__(self) -> None:
        self.errors = capped(self.errors)  # a line of 3,000 repeated keys: one short message

    def describe(self) -> str:
        fields = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        return f"line {self.line}: {fields or self.detail}"


class _BadLine(Exception):
    def __init__(self, index: int, problem: ImportError_) -> None:
        super().__init__(problem.describe())
        self.index = index
        self.problem = problem


def _not_utf8(raw: bytes) -> str:
    """Where a line stops being UTF-8: the byte's offset in the line and its value."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        where = f"offset {bad.start} of the line, from 0"
        return f"not UTF-8 text: byte 0x{raw[bad.start]:02x} at {where} ({bad.reason})"
    return "not UTF-8 text"


def _utf16(raw: bytes) -> str:
    """A hint where a line that does not decode looks like UTF-16 (a UTF-16 byte order
    mark, or a zero byte beside each ASCII character): what a Windows editor may save."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw[:4]:
        return "; the file looks like UTF-16 text: save it as UTF-8"
    return ""


def decode_line(raw: bytes, number: int) -> ImportLine:
    """One line as a command, or :class:`_BadLine` naming every bad field."""
    if len(raw) > MAX_LINE:
        too_long = FieldError(
            "line", f"longer than {MAX_LINE:,} bytes: a JSON Lines file holds one record a line"
        )
        raise _BadLine(0, ImportError_(number, [too_long]))
    try:
        line: ImportLine = _decoder.decode(raw)
    except (ValueError, RecursionError):  # DecodeError, bad UTF-8, nesting too deep
        try:
            obj = msgspec.json.decode(raw)
        except RecursionError:
            problem = ImportError_(number, [FieldError("line", "not JSON: nested too deeply")])
            raise _BadLine(0, problem) from None
        except UnicodeDecodeError:  # where in the line, not in the string msgspec read
            problem = ImportError_(number, [FieldError("line", _not_utf8(raw) + _utf16(raw))])
            raise _BadLine(0, problem) from None
        except ValueError as exc:  # msgspec.DecodeError
            message = f"not JSON: {json_error(raw, exc)}{_utf16(raw)}"
            raise _BadLine(0, ImportError_(number, [FieldError("line", message)])) from None
        if not isinstance(obj, dict):
            not_object = FieldError("line", "not a JSON object: each line is one {...} record")
            raise _BadLine(0, ImportError_(number, [not_object])) from None
        record = obj.get("record")
        if not isinstance(record, str) or record not in IMPORT_LINE_TYPES:
            kinds = ", ".join(IMPORT_LINE_TYPES)
            wrong = FieldError("record", f"must be one of {kinds}")
            raise _BadLine(0, ImportError_(number, [wrong])) from None
        try:
            line = convert_all(obj, IMPORT_LINE_TYPES[obj["record"]])
        except InvalidInput as bad:
            raise _BadLine(0, ImportError_(number, repeated_keys(raw) + bad.errors)) from None
        return line  # pragma: no cover - the fast path would have decoded it
    problems = repeated_keys(raw) + line.problems()
    if problems:
        raise _BadLine(0, ImportError_(number, problems))
    return line


@dataclass
class _Outcome:
    """What one chunk did: the seqs it appended (if any) and the bad line it met."""

    first: int | None = None
    last: int | None = None
    problem: ImportError_ | None = None
    skipped: bool = False  # after a chunk that stopped the import: nothing was tried


class _Run:
    """State shared by the units of one import; only the writer thread changes it.

    The chunks are numbered in file order. `stop_at` is the first chunk that met a bad
    line or failed (a full disk): a chunk after it appends nothing, one before it still
    runs. The writer may run a batch's units again one by one after a failed batch, so a
    chunk before a failed one can run after it: it must not be skipped, or its lines
    would be counted as in the log without being there.
    """

    def __init__(self, actor: str) -> None:
        self.actor = actor
        self.stop_at: int | None = None
        self._chunks = 0

    def submit(
        self, store: SqliteStore, lines: list[tuple[int, PreparedImportLine]]
    ) -> Future[_Outcome]:
        """Queue a chunk on the writer (see the class)."""
        index = self._chunks
        self._chunks += 1
        future = store.submit(self.unit(index, lines))
        future.add_done_callback(partial(self._stop_on_failure, index))
        return future

    def _stop(self, index: int) -> None:
        if self.stop_at is None or index < self.stop_at:
            self.stop_at = index

    def _stop_on_failure(self, index: int, future: Future[_Outcome]) -> None:
        if future.exception() is not None:  # set on the writer, before its next unit
            self._stop(index)

    def unit(
        self, index: int, lines: list[tuple[int, PreparedImportLine]]
    ) -> Callable[[SqliteTransaction], _Outcome]:
        def work(txn: SqliteTransaction) -> _Outcome:
            if self.stop_at is not None and index > self.stop_at:
                return _Outcome(skipped=True)
            try:
                return self._append(index, txn, lines)
            except BaseException:
                self._stop(index)
                raise

        return work

    def _append(
        self, index: int, txn: SqliteTransaction, lines: list[tuple[int, PreparedImportLine]]
    ) -> _Outcome:
        state = BatchWriteState(txn.connection)
        state.prefetch(*_wanted(lines))
        events: list[NewEvent] = []
        problem: ImportError_ | None = None
        for number, line in lines:
            try:
                decision = decide(line, state)
            except InvalidInput as exc:
                problem = ImportError_(number, exc.errors)
            except LedgerError as exc:
                name = "id" if isinstance(line, SourceLine) else "assertion_id"
                problem = ImportError_(number, [FieldError(name, exc.detail)])
            if problem is not None:
                self._stop(index)
                break
            state.fold(decision.events)
            events += decision.events
        outcome = _Outcome(problem=problem)
        if events:
            versions = stream_versions(txn.connection, (e.stream for e in events))
            appended = txn.append_many(events, self.actor, versions)
            outcome.first, outcome.last = appended[0].seq, appended[-1].seq
        return outcome


class _DeferredViews:
    """Take the read-side projectors off the store's commits for an import, then fold
    what the import appended into them in one unit and put them back.

    Both steps run as units on the writer, in order with every other unit. Events that
    other callers append meanwhile are folded by the same catch-up: it folds everything
    committed after each projector's checkpoint (the write model's checkpoint is the
    committed end of the log), and a batch that commits later folds its own events once
    the projectors are back.
    """

    def __init__(
        self,
        store: SqliteStore,
        progress: Callable[[int, int], None] | None = None,
        stop: _Stop | None = None,
    ) -> None:
        self.store = store
        self.progress = progress
        self.stop = stop or _Stop()
        self.skipped = False
        """A second Ctrl-C: the fold was not run, or was rolled back part way; the views
        catch up the next time the ledger is opened."""
        self.taken: list[Projector] = []
        self.failed: LedgerError | None = None
        """Why the fold did not commit (a full disk): the projectors are back, and catch up
        at the next append or the next time the ledger is opened."""

    def __enter__(self) -> _DeferredViews:
        def take(txn: SqliteTransaction) -> None:
            del txn
            self.taken = self.store.projectors[1:]
            del self.store.projectors[1:]

        self.store.run_sync(take)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.taken:
            return

        def folded(done: int, total: int) -> None:
            if self.stop.hurry:
                raise _Abandoned
            if self.progress is not None:
                self.progress(done, total)

        def give_back(txn: SqliteTransaction) -> None:
            if self.stop.hurry:
                raise _Abandoned
            conn = txn.connection
            write_model = self.store.projectors[0].name
            committed = checkpoint_of(conn, write_model)
            end = log_size(conn) if committed is None else committed
            catch_up(conn, self.taken, until=end, chunk=CATCH_UP_CHUNK, progress=folded)
            self._put_back(txn)

        try:
            self.store.run_sync(give_back)
        except _Abandoned:  # rolled back: the projectors go back without it
            self.skipped = True
            self._put_back_anyway()
        except LedgerError as exc:  # rolled back; what was appended stays appended
            self.failed = exc
            self._put_back_anyway()

    def _put_back_anyway(self) -> None:
        try:
            self.store.run_sync(self._put_back)
        except LedgerError:  # not even an empty unit commits (a full disk): only the
            # import appends through this store, and it is done, so the writer is idle
            self._put_back(None)

    def _put_back(self, txn: SqliteTransaction | None) -> None:
        del txn
        self.store.projectors.extend(self.taken)
        self.taken = []


def _wanted(
    lines: list[tuple[int, PreparedImportLine]],
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """The sources, assertions and properties the chunk's rules will ask about."""
    sources: list[str] = []
    assertions: list[str] = []
    properties: list[tuple[str, str]] = []
    for _, line in lines:
        if isinstance(line, PreparedLine):
            event = line.event
            sources += event.claimants
            properties.append((event.subject, event.property))
            if line.chosen_id:
                assertions.append(event.assertion_id)
            if event.supersedes is not None:
                assertions.append(event.supersedes)
        elif isinstance(line, RetractionLine | RankLine):
            assertions.append(line.assertion_id)
        else:
            sources.append(line.id)
    return sources, assertions, properties


def _with_ledger_problems(store: SqliteStore, problem: ImportError_, line: bytes) -> ImportError_:
    """A bad assertion line's problems, with what its well-formed fields get wrong against
    the ledger (unknown claimants, ...), as an HTTP 422 names them: judged once every line
    before it is in the log, since one of those may register a claimant it names."""
    try:
        raw = msgspec.json.decode(line)
    except (ValueError, RecursionError):
        return problem
    if not isinstance(raw, dict) or raw.get("record") != "assertion":
        return problem
    extra = problems_beside(SqliteWriteState(store.reader()), raw, problem.errors)
    return ImportError_(problem.line, [*problem.errors, *extra], problem.detail)


BOM = b"\xef\xbb\xbf"


class _Stop:
    asked = False  # a first Ctrl-C: stop reading at the next chunk
    signum = int(signal.SIGINT)  # what asked: SIGINT or SIGTERM
    hurry = False  # a second: leave the views' fold to the next open


class _Abandoned(Exception):
    """Raised inside the views' fold after a second Ctrl-C: the unit rolls back."""


@contextmanager
def _stop_on_ctrl_c() -> Iterator[_Stop]:
    """While an import runs on the main thread, a first SIGINT only asks it to stop (read
    between chunks, so no chunk is ever half-handed to the writer); a second one asks it
    to skip the fold of the views (the chunks already handed to the writer still commit,
    so the lines in the log stay exactly known); a third raises KeyboardInterrupt as usual.
    SIGTERM (a service stopping, `timeout`) is taken the same way, so a stopped import
    names its line to resume from too. Elsewhere (a server's thread) nothing changes."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def ask(signum: int, frame: FrameType | None) -> None:
        if stop.asked:
            stop.hurry = True
            for each in _STOPPING:
                signal.signal(each, signal.default_int_handler)
        else:
            stop.signum = signum
        stop.asked = True

    previous = {each: signal.signal(each, ask) for each in _STOPPING}
    try:
        yield stop
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


_STOPPING = (signal.SIGINT, signal.SIGTERM)


MAX_LINE = 1 << 20
"""The most bytes one line may hold, as one HTTP body may: a longer one is refused (a
whole JSON array on one line, say) without being read into memory whole."""


def _numbered_lines(
    fh: BinaryIO, block: int = 1 << 20, limit: int = MAX_LINE
) -> Iterator[tuple[int, bytes]]:
    """`(number, line)` from 1, without its newline, read a block at a time.

    A line longer than `limit` comes cut to a little over `limit` bytes (the rest is
    skipped), so a file of one huge line costs neither memory nor quadratic copying.
    """
    number = 0
    parts: list[bytes] = []  # the line read so far, when it spans blocks
    size = 0
    first = fh.read(len(BOM))  # a UTF-8 byte order mark is not part of line 1
    blocks = itertools.chain([b"" if first == BOM else first], iter(partial(fh.read, block), b""))
    for data in blocks:
        lines = data.split(b"\n")
        tail = lines.pop()
        if lines and parts:  # the block's first piece ends the line read so far
            if size <= limit:
                parts.append(lines[0])
            lines[0] = b"".join(parts)
            parts, size = [], 0
        for line in lines:
            number += 1
            yield number, line
        if tail:
            if size <= limit:
                parts.append(tail)
            size += len(tail)
    if parts:
        yield number + 1, b"".join(parts)


def _prepared(line: ImportLine) -> PreparedImportLine:
    """An assertion line as the event it records (see :class:`PreparedLine`); the rest as
    they are."""
    if isinstance(line, AssertionLine):
        ready = prepare_assertion(line)
        return PreparedLine(ready.event, ready.chosen_id)
    return line


class _Read(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A chunk of decoded lines, as a reader hands it to the import."""

    lines: list[tuple[int, PreparedImportLine]]
    done_bytes: int  # the file's bytes read up to here
    lines_read: int  # the number of the last line read, blank ones included
    last: bool = False  # nothing follows: the end of the file, or `bad`
    bad: ImportError_ | None = None  # the line after `lines` did not decode: why
    bad_raw: bytes = b""  # and that line, to judge against the ledger once the rest is in


def _reads(path: Path, size: int, from_line: int) -> Iterator[_Read]:
    """The lines of `path` from `from_line` on, decoded and prepared, `size` at a time, up
    to the end of the file or the first line that does not decode."""
    chunk: list[tuple[int, PreparedImportLine]] = []
    done_bytes = number = 0
    with path.open("rb") as fh:
        for number, raw in _numbered_lines(fh):
            done_bytes += len(raw) + 1
            if number < from_line or not raw.strip():
                continue
            try:
                line = decode_line(raw, number)
            except _BadLine as bad:
                yield _Read(chunk, done_bytes, number, last=True, bad=bad.problem, bad_raw=raw)
                return
            chunk.append((number, _prepared(line)))
            if len(chunk) >= size:
                yield _Read(chunk, done_bytes, number)
                chunk = []
    yield _Read(chunk, done_bytes, number, last=True)


READ_AHEAD_BYTES = 4 << 20
"""A file at least this large is decoded by a reader process, on the other core, while
this one appends; a smaller one on the calling thread, where starting a Python process
(~0.3 s) would cost more than it saves."""

_read_decoder = msgspec.msgpack.Decoder(_Read)


class _ReaderFailed(Exception):
    pass


def _reader_command(path: Path, size: int, from_line: int) -> list[str]:
    return [sys.executable, "-P", "-m", "api.importer", str(path), str(size), str(from_line)]


def _frames(proc: subprocess.Popen[bytes], errors: IO[bytes]) -> Iterator[_Read]:
    """The chunks a reader process writes, each a 4-byte big-endian length and msgpack;
    :class:`_ReaderFailed`, with the last line it wrote to `errors`, if it stops short or
    writes anything else."""
    out = proc.stdout
    assert out is not None
    while len(head := out.read(4)) == 4:
        size = int.from_bytes(head, "big")
        body = out.read(size)
        if len(body) < size:  # torn: it stopped while writing
            break
        try:
            read = _read_decoder.decode(body)
        except (msgspec.DecodeError, ValueError):
            proc.kill()
            raise _ReaderFailed("its reader process wrote something other than chunks") from None
        yield read
        if read.last:
            return
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    errors.seek(0)
    said = errors.read().decode(errors="replace").strip().splitlines()
    why = f" ({said[-1]})" if said else ""
    raise _ReaderFailed(f"its reader process stopped with exit status {code}{why}")


@contextmanager
def _reader(path: Path, size: int, from_line: int, ahead: bool) -> Iterator[Iterator[_Read]]:
    """The file's chunks, decoded on this thread or, `ahead`, by a reader process (which
    is stopped, if need be, on the way out)."""
    if not ahead:
        yield _reads(path, size, from_line)
        return
    with tempfile.TemporaryFile() as errors:
        try:
            proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                _reader_command(path, size, from_line),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        except OSError as exc:  # no Python to start (a frozen build, say): read here
            log.warning("import_reader_not_started", error=str(exc))
            proc = None
        if proc is None:
            yield _reads(path, size, from_line)
            return
        try:
            yield _frames(proc, errors)
        finally:
            if proc.poll() is None:  # the import stopped first: it needs nothing more
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
            proc.wait()


def _read_ahead(argv: list[str]) -> int:
    """The reader process (`python -m api.importer FILE SIZE FROM_LINE`): writes the file's
    chunks to standard output. Ctrl-C is for the import to judge: it stops this one."""
    # a terminal's Ctrl-C and a `timeout` or service stop reach the whole process group:
    # the import decides when to stop, and this process reads on until told
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    path, size, from_line = Path(argv[0]), int(argv[1]), int(argv[2])
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing else may write between the frames, not even C code
    sys.stdout = sys.stderr
    encode = msgspec.msgpack.Encoder().encode
    with out:
        for read in _reads(path, size, from_line):
            body = encode(read)
            out.write(len(body).to_bytes(4, "big"))
            out.write(body)
    return 0


def lines_up_to(path: Path, most: int) -> int:
    """How many lines `path` has (blank ones included), counting no further than `most`."""
    count = 0
    with path.open("rb") as fh:
        for count, _ in _numbered_lines(fh):  # the last number is the count
            if count >= most:
                break
    return count


def has_lines_after(path: Path, line: int) -> bool:
    """Whether `path` holds a line that is not blank after line `line`."""
    with path.open("rb") as fh:
        return any(n > line and raw.strip() for n, raw in _numbered_lines(fh))


def in_log_through(conn: sqlite3.Connection, path: Path, line: int) -> int:
    """The last line of `path`, from `line` on, up to which every line that is not blank
    is held by the log already, as far as the ledger's tables can tell: an assertion whose
    id it holds for the same subject and property, a retraction of one it holds retracted,
    the same ranking for the same reason, a source it holds. `line - 1` when line `line`
    is not.

    For an import stopped by an id already taken: a file imported before in part (the
    import was killed) goes on after what the log holds, not one line further a try."""
    last = line - 1
    ranked: dict[str, int] = {}  # per assertion, the seq of the ranking matched last
    with path.open("rb") as fh:
        for number, raw in _numbered_lines(fh):
            if number < line or not raw.strip():
                continue
            try:
                record = decode_line(raw, number)
            except _BadLine:
                break
            if not _held(conn, record, ranked):
                break
            last = number
    return last


def _held(conn: sqlite3.Connection, record: ImportLine, ranked: dict[str, int]) -> bool:
    """Whether the log holds `record` (see :func:`in_log_through`). `ranked` is, per
    assertion, the seq of the ranking matched last: rankings repeat, so each one held
    must come after it."""
    want: tuple[object, ...] = (1,)
    args: tuple[str | int, ...]
    if isinstance(record, SourceLine):
        sql, args = "SELECT 1 FROM wm_sources WHERE id = ?", (record.id,)
    elif isinstance(record, RetractionLine):
        sql = "SELECT retracted FROM wm_assertions WHERE assertion_id = ?"
        args = (record.assertion_id,)
    elif isinstance(record, RankLine):
        after = ranked.get(record.assertion_id, 0)
        found = conn.execute(
            "SELECT seq FROM proj_ranks WHERE assertion_id = ? AND rank = ? AND reason = ? "
            "AND seq > ? ORDER BY seq LIMIT 1",
            (record.assertion_id, record.rank, record.reason, after),
        ).fetchone()
        if found is not None:
            ranked[record.assertion_id] = int(found[0])
        return found is not None
    elif isinstance(record, AssertionLine) and record.assertion_id is not None:
        sql = "SELECT subject, property FROM wm_assertions WHERE assertion_id = ?"
        args, want = (record.assertion_id,), (record.subject, record.property)
    else:  # an assertion whose id the ledger chose: nothing tells whether it is in
        return False
    row: tuple[object, ...] | None = conn.execute(f"{sql} LIMIT 1", args).fetchone()
    return row == want


def import_file(
    store: SqliteStore,
    path: Path,
    actor: str,
    progress: Callable[[int, int], None] | None = None,
    *,
    chunk_size: int | None = None,
    fold_progress: Callable[[int, int], None] | None = None,
    from_line: int = 1,
    read_ahead: bool | None = None,
) -> ImportResult:
    """Append every line of `path` from line `from_line` on; stop at the first bad one.

    Lines before `from_line` are read past, never decoded (an import that stopped is
    resumed so: they are in the log already); line numbers stay the file's.

    `progress` is told the bytes read; `fold_progress` the events folded into the views
    once the lines are in (the last quarter or so of a large import's time).

    Run on the main thread (the CLI), a first Ctrl-C stops the reading between two chunks,
    lets the chunks already handed to the writer commit and fold, and returns with
    `interrupted` and `done_lines` (every line up to it is in the log); a second Ctrl-C
    skips (or stops) that fold, returning so with `views_skipped`; a third stops at once,
    as usual.

    `read_ahead` chooses the reader (see the module): a process of its own, or this
    thread; by default the process for a file of :data:`READ_AHEAD_BYTES` or more. A
    reader process that stops before the end of the file (killed, say) stops the import
    as a bad line would, with `read_failure` saying so: every line before the chunk it did
    not finish is in the log.
    """
    result = ImportResult(done_lines=from_line - 1)
    size = CHUNK if chunk_size is None else chunk_size
    total = os.path.getsize(path)
    run = _Run(actor)
    pending: deque[tuple[Future[_Outcome], int, int]] = deque()

    def settle(keep: int) -> bool:
        """Wait until at most `keep` chunks are in flight; False once one met a bad line."""
        while len(pending) > keep:
            future, done_bytes, last_line = pending[0]
            try:
                outcome = future.result()
            except LedgerError as exc:  # the chunk appended nothing; those after it neither
                if result.failure is None:
                    result.failure = exc
                continue
            finally:
                pending.popleft()
            if outcome.last is not None and outcome.first is not None:
                result.appended += outcome.last - outcome.first + 1
                if result.first_seq is None:
                    result.first_seq = outcome.first
                result.last_seq = outcome.last
            if outcome.problem is not None and result.error is None:
                result.error = outcome.problem
                result.done_lines = outcome.problem.line - 1  # its lines before it are in
            if result.error is None and result.failure is None and not outcome.skipped:
                result.done_lines = last_line
            if progress is not None:  # a last line without its newline was counted one
                progress(min(done_bytes, total), total)  # byte over
        return result.error is None and result.failure is None

    decode_error: ImportError_ | None = None
    bad_line = b""
    read_failure: str | None = None
    ahead = total >= READ_AHEAD_BYTES if read_ahead is None else read_ahead
    with (
        _stop_on_ctrl_c() as stop,
        _DeferredViews(store, fold_progress, stop) as views,
        _reader(path, size, from_line, ahead) as reads,
    ):
        try:
            for read in reads:
                if stop.asked:
                    result.interrupted = True
                    break
                result.lines = read.lines_read
                if read.lines:
                    last_line = read.lines[-1][0]
                    pending.append((run.submit(store, read.lines), read.done_bytes, last_line))
                if read.bad is not None:
                    decode_error, bad_line = read.bad, read.bad_raw
                    break
                if not settle(IN_FLIGHT - 1):
                    break
        except _ReaderFailed as exc:
            read_failure = str(exc)
        finally:
            settle(0)
    if result.error is None and result.failure is None:  # else that is why it stopped
        result.read_failure = read_failure
    result.views_failure = views.failed
    result.views_skipped = views.skipped
    result.signum = stop.signum
    if result.failure is not None or result.read_failure is not None:
        return result
    if decode_error is not None and result.error is None:  # every line before it is in
        decode_error = _with_ledger_problems(store, decode_error, bad_line)
    if result.error is None and decode_error is None and not result.interrupted:
        result.done_lines = max(result.lines, from_line - 1)  # blank lines at the end too
    if result.error is None:
        result.error = decode_error
    if progress is not None and result.error is None and not result.interrupted:
        progress(total, total)
    return result


if __name__ == "__main__":
    raise SystemExit(_read_ahead(sys.argv[1:]))
