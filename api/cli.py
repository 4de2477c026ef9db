"""The `ledger` command line."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import io
import itertools
import os
import secrets
import signal
import socket
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, NoReturn, TextIO, cast

import msgspec

from api.importer import (
    BOM,
    MAX_LINE,
    ImportResult,
    has_lines_after,
    import_file,
    in_log_through,
    lines_up_to,
)
from api.progress import Progress
from ledger import keys
from ledger.commands import PROPERTY, SLUG_WORDS, SUBJECT, PropertyRef, SubjectRef
from ledger.errors import (
    FieldError,
    InvalidInput,
    LedgerError,
    LedgerUnavailable,
    StorageFull,
    check_resume_point,
)
from ledger.files import claim, sweep
from ledger.logs import configure_logging, level_from_env
from ledger.sqlite_store import (
    SIDE_FILES,
    SqliteStore,
    connect,
    connect_reader,
    read_only_cause,
)
from ledger.text import MAX_WHOLE, counted, whole_number
from projections import all_projectors

_json = msgspec.json.Encoder()


class _FromEnv:
    """A flag's default taken from an environment variable, checked after parsing: argparse
    checks a string default as if it were typed, and would blame a bad value on a flag the
    user never gave."""

    def __init__(self, name: str, fallback: str, check: Callable[[str], object]) -> None:
        set_to = os.environ.get(name)
        self.name = name
        self.value = set_to or fallback
        self.given = bool(set_to)
        self.check = check

    def default(self) -> object:
        """What the flag's default is: this, when the variable is set, else the fallback."""
        return self if self.given else self.value


def _user() -> _FromEnv:
    """`--actor`'s default: $USER, checked as an actor is, so a login name the ledger
    cannot record is named as $USER, not as a flag that was never given."""

    def check(text: str) -> str:
        try:
            return keys.checked_actor(text, "$USER")
        except InvalidInput as exc:
            raise argparse.ArgumentTypeError(
                f"{exc.errors[0].message} (give --actor NAME to record another name)"
            ) from None

    return _FromEnv("USER", "cli", check)


def _from_environment(args: argparse.Namespace) -> None:
    """Check each default an environment variable gave, naming the variable (exit 2)."""
    for flag, value in vars(args).items():
        if isinstance(value, _FromEnv):
            try:
                setattr(args, flag, value.check(value.value))
            except argparse.ArgumentTypeError as exc:
                _fail(f"${value.name}: {exc}", 2)


@contextlib.contextmanager
def _looking_at_paths() -> Iterator[None]:
    """A path the system will not look at (a folder without permission, a name too long
    for it) is said in one line, exit 2, as a missing one is."""
    try:
        yield
    except OSError as exc:
        _fail(_refused(exc), 2)


def _refused(exc: OSError) -> str:
    """What the system refused, in one line: the path, then why."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _db_path(text: str) -> str:
    """A ledger is a file: SQLite's in-memory and empty names would keep nothing."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a file name is needed, not an empty one")
    if text.endswith(("/", os.sep)):  # a folder's name: the path would drop the slash
        raise argparse.ArgumentTypeError(f"{text!r} names a folder: a ledger is a file")
    if text == ":memory:" or text.startswith("file:"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a file name: a ledger is a file")
    return text


def open_store(db: str, *, synchronous: str = "FULL") -> SqliteStore:
    """The ledger at `db`, created when the file does not exist or is empty; another
    program's database is refused, never given the ledger's tables."""
    with _looking_at_paths():
        refuse_foreign(db)
    mode: Literal["FULL", "NORMAL"] = "NORMAL" if synchronous.upper() == "NORMAL" else "FULL"
    return SqliteStore(db, projectors=all_projectors(), synchronous=mode)


def refuse_foreign(db: str) -> None:
    """Exit 2 when `db` is a file with content that holds no ledger, a folder, or a new
    file in a folder that does not exist."""
    path = Path(db)
    _refuse_what_is_no_file(path, db)
    if not path.exists() and not path.parent.is_dir():
        _fail(f"{db}: there is no folder {path.parent} to create the ledger in", 2)
    if path.is_file() and path.stat().st_size > 0 and not _holds_a_log(path, empty=True):
        _fail(f"{db} is not a ledger (another database, or not one at all): nothing was done", 2)


def _refuse_what_is_no_file(path: Path, db: str) -> None:
    """Exit 2 for a folder, and for a pipe, a device or a socket: opening a pipe to read
    it waits for a writer for ever, and SQLite would leave its journal beside a device
    (`/dev/null-journal`)."""
    if path.is_dir():
        _fail(f"{db} is a folder, not a ledger", 2)
    if path.exists() and not path.is_file():
        _fail(f"{db} is not a file (a pipe, a device or a socket), so not a ledger", 2)


def existing_store(db: str) -> SqliteStore:
    """The store at `db`, which must already be a ledger: a mistyped path, an empty file or
    another program's database is an error here, never turned into a new empty ledger that
    verifies."""
    path = Path(db)
    with _looking_at_paths():
        _refuse_what_is_no_file(path, db)
        if not path.exists():
            _fail(f"{db}: no ledger there (`ledger init --db {db}` creates one)", 2)
        if not _holds_a_log(path):
            _fail(f"{db} is not a ledger (it holds no event log)", 2)
    return open_store(db)


def _holds_a_log(path: Path, *, empty: bool = False) -> bool:
    """Whether the file has the log's table, read without writing anything; a file SQLite
    cannot read passes here and gets the store's own one-line error. A database with no
    table at all counts as a ledger only when `empty` (a new ledger, just created)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return True
    try:
        names = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.DatabaseError as exc:
        # not a database at all is not a ledger; anything else (locked, unreadable) is
        # left to the store's own one-line error
        return "not a database" not in str(exc)
    finally:
        conn.close()
    return "events" in names or (empty and not names)


def _print_json(obj: object) -> None:
    sys.stdout.write(_json.encode(obj).decode() + "\n")


def _fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"ledger: {message}\n")
    raise SystemExit(code)


def cmd_init(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    size = store.size()
    store.close()
    print(f"ledger ready at {args.db} ({counted(size, 'event')})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    actor = keys.checked_actor(args.actor, "--actor")
    if not args.file.strip():  # Path("") is the current folder
        _fail("FILE: a file name is needed, not an empty one", 2)
    with _looking_at_paths():
        if path.is_dir():
            _fail(f"{path} is a folder, not a file", 2)
    try:  # without opening it: opening a named pipe would take what its writer sends
        regular = stat.S_ISREG(path.stat().st_mode)
        if not os.access(path, os.R_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as exc:  # missing, unreadable: said before any ledger is created
        _fail(f"{path}: {exc.strerror or exc}", 2)
    with contextlib.ExitStack() as cleanup:
        if not regular:  # a SIGTERM before the import takes it must not leave the copy
            previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
            cleanup.callback(signal.signal, signal.SIGTERM, previous)
        source = path if regular else _spooled(path, Path(args.db), cleanup, args.from_line)
        return _import(args, path, source, actor)


SPOOL_PREFIX = ".ledger-import-"


def _spooled(path: Path, db: Path, cleanup: contextlib.ExitStack, from_line: int) -> Path:
    """What a pipe (`<(zcat x.gz)`, a named pipe, /dev/stdin) gives, kept in a temporary
    file beside the ledger (whose disk must hold what it gives anyway, where the temporary
    folder may be memory) and removed afterwards: an import reads its file more than once
    (its size for the bar, a second pass to tell which line to resume from), and a pipe
    gives it once. The import holds a lock on its copy; a copy nothing holds was left by
    an import that was killed outright, and goes. The copy ends soon after the first line
    from `from_line` on that the import refuses before decoding it (where the import
    stops: see :func:`_copy_to_a_refused_line`)."""
    folder = db.resolve().parent
    if not folder.is_dir():
        _fail(f"{db.parent}: no such folder", 2)
    sweep(folder.glob(f"{SPOOL_PREFIX}*.jsonl"))  # a killed import's copy (SIGKILL)
    try:
        copy = folder / f"{SPOOL_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        fd = claim(copy)  # held while the import runs, so another one's sweep keeps it
        cleanup.callback(os.close, fd)
        cleanup.callback(copy.unlink, missing_ok=True)  # first: the lock goes with it
        with os.fdopen(fd, "wb", closefd=False) as out, path.open("rb") as given:
            _copy_to_a_refused_line(given, out, from_line)
    except OSError as exc:
        _fail(f"{path} is not a regular file, and keeping a copy beside the ledger failed: {exc}")
    return copy


def _copy_to_a_refused_line(
    given: BinaryIO, out: BinaryIO, from_line: int, block_size: int = 1 << 20, limit: int = MAX_LINE
) -> None:
    """Copy `given` to `out` a block at a time, up to the block in which a line numbered
    `from_line` or more (lines before it are skipped) shows the import refuses it before
    decoding it: it is not blank and grows past the import's limit, or its first byte that
    is no space is not the `{` that begins every record (copied then to its end or past
    the limit, so the import says the same of it). A blank line is skipped by the import
    whatever its length, and here too. So a stream that is no JSON Lines (`/dev/zero`,
    `yes`, a CSV) stops at once, as a file would, instead of filling the disk first."""
    line, length = 1, 0  # the line being read, and its bytes so far
    undecided = True  # whether that line has shown only spaces so far
    refused = False  # whether it is one the import refuses: copied to its end, or its limit
    first = given.read(len(BOM))  # a byte order mark is not part of line 1, as it is not
    out.write(first)  # to the import
    rest = iter(functools.partial(given.read, block_size), b"")
    for n, block in enumerate(itertools.chain([b"" if first == BOM else first], rest)):
        if n:
            out.write(block)
        for i, piece in enumerate(block.split(b"\n")):
            if i:  # a new line begins after each newline
                if refused:  # the import stops at the line that just ended, whole
                    return
                line, length, undecided = line + 1, 0, True
            length += len(piece)
            if line < from_line:
                continue
            if undecided and (head := piece.lstrip()):  # the import's blank: ASCII spaces
                undecided = False
                refused = head[:1] != b"{"
            if length > limit and not undecided:  # refused as too long (a blank line of
                return  # any length is skipped): the copy holds more than the limit


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the way out removes what the command made


def _import(args: argparse.Namespace, path: Path, source: Path, actor: str) -> int:
    """`ledger import` of `source`, named in every message as `path` (the file given)."""
    first = args.from_line
    if first > 1 and (count := lines_up_to(source, first)) < first:  # before any ledger is made
        _fail(f"{path} has {counted(count, 'line')}: there is no line {first} to import from", 2)
    store = open_store(args.db, synchronous=args.synchronous)
    phases = _Phases(Progress(f"importing {path.name}", source.stat().st_size, unit="bytes"))
    try:
        result = import_file(
            store, source, actor, phases.read, fold_progress=phases.fold, from_line=first
        )
    finally:
        phases.finish()
        store.close()
    span = _span(result)
    if result.views_skipped:
        sys.stderr.write(
            "ledger import: the views were not brought up to date (a second Ctrl-C); they "
            "catch up at the next append or when the ledger is next opened\n"
        )
    if result.views_failure is not None:
        sys.stderr.write(
            f"ledger import: the views could not be brought up to date "
            f"({_why(result.views_failure)}); "
            "they catch up at the next append or when the ledger is next opened\n"
        )
    if result.failure is not None:
        sys.stderr.write(
            f"ledger import: stopped, the ledger could not take more ({_why(result.failure)}); "
            f"{_kept(result, first, span)}\n"
        )
        return 1
    if result.read_failure is not None:
        sys.stderr.write(
            f"ledger import: stopped, {path} was not read to the end: {result.read_failure}; "
            f"{_kept(result, first, span)}\n"
        )
        return 1
    if result.interrupted and result.error is None:
        sys.stderr.write(f"ledger import: interrupted; {_kept(result, first, span)}\n")
        return 128 + result.signum  # 130 for Ctrl-C, 143 for SIGTERM
    if result.error is not None:
        line = result.error.line
        taken = any("already taken" in e.message for e in result.error.errors)
        through = line
        if taken:  # how far the file is in the log already, as far as it can be told
            conn = connect_reader(Path(args.db))
            try:
                through = max(line, in_log_through(conn, source, line))
            finally:
                conn.close()
        rest = (
            f"`--from-line {through + 1}` imports the rest"
            if has_lines_after(source, through)
            else "the whole file is in"
        )
        held = (
            f"lines {line}..{through} are in the log already (their ids and sources are "
            "held for the same subjects and properties)"
            if through > line
            else f"line {line} is in the log already"
        )
        resume = (
            f" (if {held}, from an earlier import of this file, {rest}; if not, once line "
            f"{line} is mended, `--from-line {line}`)"
            if taken
            else _resume(line, mended=True)
        )
        sys.stderr.write(f"ledger import: {path}: {result.error.describe()}\n")
        sys.stderr.write(
            f"ledger import: stopped; {counted(result.appended, 'event')} from the lines before it "
            f"were appended{span}, nothing from line {line} on{resume}\n"
        )
        return 1
    lines = counted(result.lines, "line") if first == 1 else f"lines {first}..{result.lines}"
    print(f"imported {lines}: {counted(result.appended, 'event')} appended{span}")
    if result.views_skipped:
        return 128 + result.signum
    return 1 if result.views_failure is not None else 0


def _why(failure: LedgerError) -> str:
    """Why the ledger could not take a write, in the import's words."""
    return "the database is full" if isinstance(failure, StorageFull) else str(failure)


def _span(result: ImportResult) -> str:
    """Where the import's events are in the log: one span of seqs, which holds others'
    events too where another writer appended meanwhile (a server, another import)."""
    if not result.appended or result.first_seq is None or result.last_seq is None:
        return ""
    others = result.last_seq - result.first_seq + 1 - result.appended
    among = f", among {counted(others, 'event')} appended by others meanwhile" if others else ""
    return f" (seq {result.first_seq}..{result.last_seq}{among})"


def _kept(result: ImportResult, first: int, span: str) -> str:
    """What an import that stopped before a bad line kept, and where to go on from."""
    done = result.done_lines
    return (
        f"{_lines_in(first, done)} ({counted(result.appended, 'event')} appended{span}); "
        f"nothing from line {done + 1} on was appended{_resume(done + 1)}"
    )


def _lines_in(first: int, done: int) -> str:
    """What a stopped import kept: the lines `first` to `done`."""
    return f"lines {first}..{done} are in the log" if done >= first else "no line was imported"


def _resume(line: int, *, mended: bool = False) -> str:
    """How to import the rest of the file once the cause is dealt with."""
    fix = "once it is mended, " if mended else ""
    return f" ({fix}`--from-line {line}` imports the rest)"


class _Phases:
    """An import's two bars: the lines read, then the events folded into the views."""

    def __init__(self, reading: Progress) -> None:
        self.current = self._reading = reading
        self._folding: Progress | None = None

    def read(self, done: int, total: int) -> None:
        if self._folding is None:  # once folding, the reading bar is finished as it stood
            self._reading(done, total)

    def fold(self, done: int, total: int) -> None:
        if self._folding is None:
            self._reading.flush()  # where reading got to: the end, or where it was stopped
            self._reading.finish()
            self._folding = self.current = Progress(
                "folding the views", total, self._reading.stream
            )
        self._folding(done, total)

    def finish(self) -> None:
        self.current.finish()


def two_passes(bar: Progress) -> Callable[[int, int], None]:
    """The audit reports its two passes as one count of twice the events (`done` of
    `2 x events`); this shows them as two bars of the events each, verifying then
    replaying, so no bar counts more events than the log holds."""

    def report(done: int, total: int) -> None:
        half = max(total // 2, 1)
        if done > half and bar.label.endswith("verifying"):
            bar(half, half)
            bar.flush()
            bar.restart("auditing: replaying", half)
        bar(done - half if bar.label.endswith("replaying") else done, half)

    return report


def cmd_events(args: argparse.Namespace) -> int:
    store = existing_store(args.db)
    try:
        check_resume_point(store.size(), "--after", args.after)
        altered: list[int] = []
        missing: list[str] = []  # seqs run 1, 2, ...: a gap is events deleted from the file
        expected = args.after + 1
        for event in itertools.islice(store.scan(args.after, as_stored=True), args.limit):
            if event.seq != expected:
                gap = f"{expected}" if event.seq == expected + 1 else f"{expected}-{event.seq - 1}"
                missing.append(gap)
            expected = event.seq + 1
            if isinstance(event.data, msgspec.Raw):
                altered.append(event.seq)
            sys.stdout.write(_json.encode(event).decode() + "\n")
    finally:
        store.close()
    if not altered and not missing:
        return 0
    sys.stdout.flush()
    if altered:  # written as stored: the caller still gets the whole log, and is told
        sys.stderr.write(
            f"ledger events: payloads that do not decode as their events' types, at seq "
            f"{_first_few(altered)}: the log was altered; they are written as stored; run "
            "`ledger verify`\n"
        )
    if missing:
        sys.stderr.write(
            f"ledger events: no event at seq {_first_few(missing)}: the log was altered "
            "(events deleted); run `ledger verify`\n"
        )
    return 1


def _first_few(items: Sequence[object]) -> str:
    return ", ".join(map(str, items[:5])) + (", ..." if len(items) > 5 else "")


def cmd_verify(args: argparse.Namespace) -> int:
    from ledger.verify import verify_log

    store = existing_store(args.db)
    bar = Progress("verifying", max(store.size(), 1))
    try:
        report = verify_log(store.reader(), bar)
    finally:
        bar.finish()
        store.close()
    _print_json(report)
    if not report.ok:
        sys.stderr.write(f"ledger verify: FAILED at seq {report.first_bad_seq}\n")
        return 1
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from ledger.layout import Drift
    from ledger.replay import rebuild

    store = existing_store(args.db)
    bar = Progress("rebuilding", max(store.size(), 1))
    stop = threading.Event()

    def progress(done: int, total: int) -> None:  # on the writer's thread
        if stop.is_set():
            raise _Stopped
        bar(done, total)

    size: int | None = None
    mended: list[Drift] = []
    try:
        rebuild(store, store.projectors, progress, mended=mended)
        size = store.size()
    except KeyboardInterrupt:  # the rebuild is one transaction: stop it at its next chunk,
        stop.set()  # and wait (in close, below) while it rolls back, not for its end
    finally:
        bar.finish()
        store.close()
    if size is None:
        sys.stderr.write("ledger rebuild: interrupted; nothing was changed\n")
        return 130
    for item in mended:
        print(item.mended())
    print(f"rebuilt every projection from {counted(size, 'event')}")
    return 0


class _Stopped(Exception):
    """Raised inside a rebuild after Ctrl-C: its one transaction rolls back."""


def cmd_audit(args: argparse.Namespace) -> int:
    from ledger.replay import audit

    store = existing_store(args.db)
    bar = Progress("auditing: verifying", max(store.size(), 1))
    try:
        report = audit(store, all_projectors, two_passes(bar))
    finally:
        bar.finish()
        store.close()
    _print_json(report)
    if not report.ok:
        where = (
            f"seq {report.first_bad_seq}"
            if report.first_bad_seq is not None
            else "; ".join(report.problems[:1])
        )
        sys.stderr.write(f"ledger audit: FAILED at {where}\n")
        return 1
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from ledger.erasure import EraseRequest, cited_by, copies_left, erase, still_cited
    from ledger.validation import convert_all

    actor = keys.checked_actor(args.actor, "--actor")
    try:
        request = convert_all({"seq": args.seq, "reason": args.reason}, EraseRequest)
    except InvalidInput as exc:
        raise _flags(exc) from None
    store = existing_store(args.db)
    try:
        try:
            result = erase(store, request, actor)
        except InvalidInput as exc:
            raise _flags(exc) from None
        erasure, kept = result.erasure, result.erasure.kept
        print(
            f"erased the payload of seq {erasure.seq} (assertion {kept.assertion_id} on "
            f"{kept.subject} / {kept.property}) at {erasure.erased_at}; every hash and "
            "proof still verifies"
        )
        emptied = result.wal_emptied
        if args.vacuum:
            try:
                store.vacuum()
            except LedgerError as exc:
                sys.stderr.write(f"ledger erase: the erasure is done, but {exc.detail}\n")
                return 1
            emptied = store.empty_wal()
            print(f"rewrote {args.db} from its live rows (VACUUM)")
        shared = still_cited(store.reader(), result.texts)
    finally:
        store.close()
    for text in shared:
        print(f"not looked for, since another payload still holds it: {_clip(text)}")
    wanted = [t for t in result.texts if t not in shared]
    path = Path(args.db)
    bar = Progress(f"checking {path.name}", path.stat().st_size, unit="bytes")
    try:
        left = copies_left(path, wanted, bar, cited=cited_by(path))
    finally:
        bar.finish()
    if not emptied:
        sys.stderr.write(
            "ledger erase: another connection (a running server?) holds an older snapshot "
            "of the ledger, so the WAL and the file may keep old pages with the text until "
            f"it is closed; then run `ledger vacuum --db {args.db}`\n"
        )
    if left:
        for text in left:
            sys.stderr.write(f"ledger erase: still in the file: {_clip(text)}\n")
        cause = "free space left by earlier writes" if emptied else "old pages or free space"
        sys.stderr.write(
            f"ledger erase: the erased text is still in the database file ({cause}): run "
            f"`ledger vacuum --db {args.db}` to rewrite it\n"
        )
        return 1
    if not emptied:
        print(f"looked for {len(wanted)} of its texts in {args.db}: none found in the file")
        return 1
    print(f"looked for {len(wanted)} of its texts in {args.db}: none is left")
    return 0


def cmd_vacuum(args: argparse.Namespace) -> int:
    store = existing_store(args.db)
    before = Path(args.db).stat().st_size
    try:
        store.vacuum()
        emptied = store.empty_wal()
    finally:
        store.close()
    after = Path(args.db).stat().st_size
    print(f"rewrote {args.db}: {before:,} -> {after:,} bytes")
    if not emptied:
        sys.stderr.write("ledger vacuum: another connection kept the WAL from emptying\n")
        return 1
    return 0


def _flags(exc: InvalidInput) -> InvalidInput:
    """`exc` with its fields named as the command line's flags."""
    return InvalidInput([FieldError(f"--{e.field}", e.message) for e in exc.errors])


def _clip(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def cmd_backup(args: argparse.Namespace) -> int:
    from ledger.verify import VerifyReport, verify_log

    dest = Path(args.dest)
    with _looking_at_paths():
        if dest.exists() or dest.is_symlink():
            _fail(f"{dest} already exists (a backup never replaces a file)", 2)
        if not dest.parent.is_dir():
            _fail(f"{dest.parent}: no such folder", 2)
        ledger_file = Path(args.db).resolve()
        for suffix in SIDE_FILES:  # SQLite makes these beside the ledger
            if dest.resolve() == ledger_file.with_name(ledger_file.name + suffix):
                _fail(f"{dest} is where SQLite keeps the ledger's own {suffix} file", 2)
        try:  # SQLite takes a file name as UTF-8 text
            str(dest.resolve()).encode()
        except UnicodeEncodeError:
            _fail("DEST: the path is not UTF-8 text, which SQLite cannot write a copy to", 2)
    store = existing_store(args.db)
    checked: list[VerifyReport] = []

    def verify(partial: Path) -> None:  # before the copy takes its name: never half checked
        size = partial.stat().st_size
        bar(size, size)  # the copy holds live rows only: smaller than the file
        bar.restart("verifying the copy", store.size())
        copy = connect(partial)
        try:
            checked.append(verify_log(copy, bar))
        finally:
            copy.close()

    stopped: list[int] = []

    def stop(signum: int, frame: object) -> None:  # SIGTERM as Ctrl-C: the copy is removed
        stopped.append(signum)
        raise KeyboardInterrupt

    try:
        bar = Progress("copying", store.file_bytes(), unit="bytes")
        previous = signal.signal(signal.SIGTERM, stop)
        try:
            written = store.backup(dest, bar, verify)
        except LedgerError as exc:
            _fail(f"backup: {exc}")
        except KeyboardInterrupt:
            bar.finish()  # before the message, on a line of its own
            bar.enabled = False
            said = (  # stopped between the link and its return: the copy was verified
                f"the verified copy is at {dest}, but its root was not compared"
                if dest.exists()
                else f"nothing was written at {dest}"
            )
            sys.stderr.write(f"ledger backup: stopped; {said}\n")
            return 128 + (stopped[0] if stopped else signal.SIGINT)
        finally:
            signal.signal(signal.SIGTERM, previous)
            bar.finish()
        [report] = checked
        problems = list(report.problems)
        if report.ok and store.root(report.events) != report.root:
            problems.append("the copy's root is not the ledger's at the same size")
    finally:
        store.close()
    ok = report.ok and not problems
    _print_json(
        {
            "ok": ok,
            "backup": str(dest),
            "bytes": written,
            "events": report.events,
            "root": report.root,
            "first_bad_seq": report.first_bad_seq,
            "problems": problems,
        }
    )
    if not ok:
        sys.stderr.write(
            f"ledger backup: the copy at {dest} does not verify; it is kept as written\n"
        )
        return 1
    return 0


def _views_stuck(reach: int, size: int, refusal: str | None, first: str = "") -> str:
    from api.server import views_stuck  # litestar's import, only where it is needed

    return views_stuck(reach, size, refusal, first)


def cmd_state(args: argparse.Namespace) -> int:
    from projections.pit import head_and_reach, resolve
    from projections.views import property_kind, property_view

    store = existing_store(args.db)
    try:
        conn = store.reader()
        head, _ = head_and_reach(conn)  # before the view: an append meanwhile only adds
        try:
            at = resolve(conn, args.as_of, args.known_at, args.seq)
        except InvalidInput as exc:  # named as the flags the user typed
            flags = {"as_of": "--as-of", "known_at": "--known-at", "seq": "--seq"}
            named = [FieldError(flags.get(e.field, e.field), e.message) for e in exc.errors]
            raise InvalidInput(named) from None
        except LedgerUnavailable:  # past what the views hold: said below, with the way out
            at = None
        reach = store.views_reach()
        if at is None or at.seq > reach:  # the views could not catch up: not an older view
            first = "ask with --seq at most that, or "
            _fail(_views_stuck(reach, store.size(), store.write_refusal, first))
        kind = property_kind(conn, args.subject, args.property, at.seq)
        if args.kind is not None and kind not in (None, args.kind):
            _fail(f"{args.subject}/{args.property} holds {kind} values, not {args.kind} ones")
        view = property_view(conn, args.subject, args.property, at, kind=args.kind)
        refusal = store.write_refusal
    finally:
        store.close()
    # asked for the latest while the views are behind the log: the answer is the view
    # where they are, and why they are there
    behind = None
    if args.seq is None and args.known_at is None and at.seq < head:
        behind = (
            _views_stuck(at.seq, head, refusal)
            if refusal is not None
            else f"the views reach seq {at.seq} of the log's {head} events (an import "
            "appending beside folds the rest when it ends; a ledger whose disk filled, once "
            "opened with room)"
        )
    if view is None:
        _fail(
            f"no property {args.property!r} on subject {args.subject!r}: nothing claimed it "
            + (f"by seq {at.seq}, since {behind}" if behind else "yet")
            + " (--kind quantity or --kind status prints the empty view, as HTTP does)"
        )
    _print_json(view)
    if behind:
        sys.stderr.write(f"ledger state: this is the view at seq {at.seq}: {behind}\n")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_command == "create":  # a refused name creates no ledger
        name = None if args.name is None else keys.checked_actor(args.name, "--name")
        store = open_store(args.db)  # the ledger exists and is migrated
    else:  # nothing to list or revoke in a ledger that is not there
        store = existing_store(args.db)
    store.close()
    if args.keys_command == "list":
        conn = connect_reader(Path(args.db))
    elif store.snapshot is not None and store.write_refusal is not None:
        _fail(store.write_refusal.replace("appends are", "key changes are", 1))
    else:
        conn = connect(args.db)
    try:
        if args.keys_command == "create":
            key, token = keys.create_key(conn, args.role, name)
            try:
                print(f"created {key.role} key {key.name!r}; the token is shown only once:")
                print(token)
                sys.stdout.flush()
            except BaseException:  # a full disk, a reader gone: nobody has the token
                keys.revoke_key(conn, key.name)
                sys.stderr.write(
                    f"ledger keys create: the token could not be written out, so key "
                    f"{key.name!r} was revoked at once\n"
                )
                raise
        elif args.keys_command == "list":
            for k in keys.list_keys(conn):
                _print_json(k)
        else:
            # looked up as given: a key an earlier version let through must stay revocable
            try:
                args.name.encode()
            except UnicodeEncodeError:  # bytes that are not UTF-8: no key can have it
                raise InvalidInput([FieldError("NAME", "not UTF-8 text")]) from None
            key = keys.revoke_key(conn, args.name)
            print(f"revoked {key.name!r}")
    finally:
        conn.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from api.server import serve

    refuse_foreign(args.db)
    return serve(
        db=args.db,
        host=args.host,
        port=args.port,
        public_read=args.public_read,
        demo=args.demo,
        synchronous=args.synchronous,
        rate_limit=args.rate_limit,
        writer_process=args.writer == "process",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ledger", description="An append-only, verifiable ledger of sourced claims."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--db",
            type=_db_path,
            default=_FromEnv("LEDGER_DB", "./ledger.db", _db_path).default(),
            help="database file ($LEDGER_DB, else ./ledger.db)",
        )
        return p

    add("init", "create an empty ledger (or check an existing one)").set_defaults(fn=cmd_init)

    p = add("import", "append a JSON Lines file of sources, assertions, retractions, ranks")
    p.add_argument("file")
    p.add_argument("--actor", default=_user().default(), help="who appends ($USER, else cli)")
    p.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL", help=_SYNCHRONOUS)
    p.add_argument(
        "--from-line",
        dest="from_line",
        type=_positive,
        default=1,
        metavar="N",
        help="start at line N (1 is the first): resumes an import that stopped, whose "
        "message names N",
    )
    p.set_defaults(fn=cmd_import)

    p = add("events", "print the log as JSON lines")
    p.add_argument("--after", type=_nonneg, default=0, help="start after this seq")
    p.add_argument("--limit", type=_positive, default=None, help="at most this many events")
    p.set_defaults(fn=cmd_events)

    add("verify", "check seqs, digests, the hash chain and the Merkle tree").set_defaults(
        fn=cmd_verify
    )
    add("rebuild", "drop the projections and replay the log from seq 1").set_defaults(
        fn=cmd_rebuild
    )
    add("audit", "verify the log, re-derive every projection and compare").set_defaults(
        fn=cmd_audit
    )

    p = add("erase", "erase the payload of an assertion by law: its text goes, every proof stays")
    p.add_argument("--seq", type=_nonneg, required=True, help="the event whose payload goes")
    p.add_argument("--reason", required=True, help="why (kept in the erasure record)")
    p.add_argument("--actor", default=_user().default(), help="who erases ($USER, else cli)")
    p.add_argument("--vacuum", action="store_true", help="also rewrite the file without free space")
    p.set_defaults(fn=cmd_erase)
    add("vacuum", "rewrite the database file without free space (SQLite's VACUUM)").set_defaults(
        fn=cmd_vacuum
    )

    p = add("backup", "copy the ledger, as of one moment and while it is in use, to DEST")
    p.add_argument("dest", type=_db_path, help="the new file (never an existing one)")
    p.set_defaults(fn=cmd_backup)

    p = add("state", "print the view of SUBJECT's PROPERTY (the JSON the HTTP view returns)")
    p.add_argument("subject", type=_slug(SubjectRef, "subject slug", SUBJECT))
    p.add_argument("property", type=_slug(PropertyRef, "property slug", PROPERTY))
    p.add_argument("--as-of", dest="as_of", help="statement-time cutoff")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--known-at", dest="known_at", help="record-time cutoff (a time, as --as-of takes)"
    )
    when.add_argument("--seq", type=_nonneg, help="log position cutoff")
    p.add_argument(
        "--kind",
        choices=("quantity", "status"),
        help="the view to print: needed only for a property nothing has claimed yet "
        "(its empty view); another kind than the property's is an error",
    )
    p.set_defaults(fn=cmd_state)

    p = add("keys", "manage API keys")
    p.set_defaults(fn=cmd_keys)
    ks = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    db_help = "database file ($LEDGER_DB, else ./ledger.db)"
    c = ks.add_parser(
        "create",
        help="create a key; prints its token on the last line",
        description="Create an API key; its token is printed once, on the last line.",
    )
    c.add_argument("--role", required=True, choices=keys.ROLES)
    c.add_argument(
        "--name", help="the key's name, its actor in the log (default: ROLE-<8 hex digits>)"
    )
    c.add_argument("--db", type=_db_path, default=argparse.SUPPRESS, help=db_help)
    ks.add_parser(
        "list",
        help="list keys (never their tokens)",
        description="List the API keys (never their tokens) as JSON lines.",
    ).add_argument("--db", type=_db_path, default=argparse.SUPPRESS, help=db_help)
    r = ks.add_parser(
        "revoke", help="revoke a key by name", description="Revoke an API key by its name."
    )
    r.add_argument("name")
    r.add_argument("--db", type=_db_path, default=argparse.SUPPRESS, help=db_help)

    p = add("serve", "run the HTTP API")
    p.add_argument(
        "--host",
        type=_host,
        default=_FromEnv("HOST", "127.0.0.1", _host).default(),
        help="$HOST, else 127.0.0.1 (0.0.0.0 or :: for every interface)",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=_FromEnv("PORT", "8000", _port).default(),
        help="$PORT, else 8000",
    )
    p.add_argument("--public-read", action="store_true", help="let anonymous GETs through")
    p.add_argument("--demo", action="store_true", help="load fixtures/ into an empty ledger")
    p.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL", help=_SYNCHRONOUS)
    p.add_argument(
        "--rate-limit",
        type=_nonneg,
        default=0,
        help="requests per minute per key or client (0: off)",
    )
    p.add_argument(
        "--writer",
        choices=["process", "thread"],
        default="thread" if sys.platform == "win32" else "process",
        help="run appends in a child process (default: uses a second core) or on a "
        "thread of the server process",
    )
    p.set_defaults(fn=cmd_serve)
    return parser


_SYNCHRONOUS = (
    "FULL (the default): an append is acknowledged once it is on disk; NORMAL: faster, "
    "but the last commits can be lost on a power failure"
)


def _nonneg(text: str) -> int:
    """ASCII digits only (see :func:`ledger.text.whole_number`), named in the message."""
    rest = text[1:]
    if text.startswith("-") and rest.isascii() and rest.isdigit() and rest.strip("0"):
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    if not text.isascii() or not text.isdigit() or (text.startswith("0") and text != "0"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number (digits 0-9, no leading 0)"
        )
    value = whole_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is too large (at most {MAX_WHOLE})")
    return value


def _positive(text: str) -> int:
    value = _nonneg(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _slug(kind: Any, what: str, rule: str) -> Callable[[str], str]:
    """An argument checked as the HTTP API checks the same name (`kind`'s pattern)."""

    def check(text: str) -> str:
        try:
            return str(msgspec.convert(text, kind))
        except msgspec.ValidationError:
            words = SLUG_WORDS[rule]
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what} ({words})") from None

    return check


def _host(text: str) -> str:
    """A host name or address to listen on: an empty one would mean every interface, and
    one that does not resolve is refused here rather than by the server once started."""
    if not text.strip() or not text.isprintable() or " " in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a host name or address (0.0.0.0 or :: listens everywhere)"
        )
    try:
        socket.getaddrinfo(text, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a label IDNA cannot encode
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address of this machine's or a name it resolves ({exc})"
        ) from None
    return text


def _port(text: str) -> int:
    value = _nonneg(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return value


class OutputFailed(Exception):
    """Standard output could not be written (a full disk, a closed descriptor)."""


class _Output(io.TextIOBase):
    """Standard output whose failures, other than a reader that left, are OutputFailed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputFailed(exc.strerror or str(exc)) from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputFailed(exc.strerror or str(exc)) from None

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()


def _silence_stdout() -> None:
    """Point descriptor 1 at /dev/null, so the interpreter's last flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)


def _stderr_kept() -> None:
    """`ledger ... 2>&-`: the command still runs and writes its result; its messages, and
    the server's children's, go to /dev/null instead of failing on a closed descriptor."""
    if sys.stderr is not None:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != 2:
        os.dup2(devnull, 2)
        os.close(devnull)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - it is the process's stderr


def main(argv: Sequence[str] | None = None) -> int:
    _stderr_kept()
    try:
        level = level_from_env("WARNING")
    except ValueError as exc:  # before anything is done, as a bad flag is
        sys.stderr.write(f"ledger: {exc}\n")
        return 2
    configure_logging(level)
    if sys.stdout is None:  # `ledger ... >&-`: a token or a report would be lost
        sys.stderr.write("ledger: standard output is closed: nothing was done\n")
        return 2
    real_stdout = sys.stdout
    # before parsing: argparse ignores a failed write of its help, this wrapper does not
    sys.stdout = cast("TextIO", _Output(real_stdout))
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as leaving:  # after --help, or a usage error on standard error
            if leaving.code not in (0, None):
                raise
            sys.stdout.flush()
            return 0
        _from_environment(args)
        code: int = args.fn(args)
        sys.stdout.flush()  # here, not at exit, so a reader that left is met below
    except BrokenPipeError:  # `ledger events | head`: the reader left; stop quietly
        _silence_stdout()
        return 128 + 13  # as if killed by SIGPIPE, like other Unix tools
    except OutputFailed as exc:
        _silence_stdout()
        sys.stderr.write(
            f"ledger: cannot write to standard output ({exc}): the output is incomplete; "
            "what the command wrote to the ledger stays\n"
        )
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(
            "ledger: interrupted; what was committed before stays (`ledger verify` gives "
            "the log's size)\n"
        )
        return 130
    except sqlite3.Error as exc:  # a read-only file, a locked or damaged database
        sys.stderr.write(f"ledger: {args.db}: {_database_problem(exc, Path(args.db))}\n")
        return 1
    except InvalidInput as exc:
        for err in exc.errors:
            sys.stderr.write(f"ledger: {err.field}: {err.message}\n")
        return 2
    except LedgerError as exc:
        sys.stderr.write(f"ledger: {exc.detail}\n")
        return 1
    except OSError as exc:  # what the system refused, said in one line, never a traceback
        sys.stderr.write(f"ledger: {_refused(exc)}\n")
        return 1
    finally:
        sys.stdout = real_stdout
    return code


def _database_problem(exc: sqlite3.Error, db: Path) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        cause = read_only_cause(db).removeprefix("the database file is read-only")
        if cause:  # the file is writable: the files SQLite keeps beside it are not
            return f"{cause}; this command writes to it, so nothing was changed"
        return "the file is read-only, and this command writes to it; nothing was changed"
    return f"the database refused: {text}"


if __name__ == "__main__":
    sys.exit(main())
