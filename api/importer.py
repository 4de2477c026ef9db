"""`ledger import`: append a JSON Lines file of sources, assertions, retractions and ranks.

Lines are decoded and checked one by one and appended in chunks, each chunk one unit of
work on the writer. At the first bad line the import stops: the lines before it are
committed, and nothing from it or after it is appended.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ledger.commands import IMPORT_LINE_TYPES, ImportLine, SourceLine
from ledger.errors import FieldError, InvalidInput, LedgerError
from ledger.service import apply_command
from ledger.sqlite_store import SqliteStore, SqliteTransaction
from ledger.validation import convert_all

_decoder = msgspec.json.Decoder(ImportLine)
CHUNK = 2000


@dataclass
class ImportResult:
    lines: int = 0
    appended: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    error: ImportError_ | None = None


@dataclass
class ImportError_:
    line: int
    errors: list[FieldError] = field(default_factory=list)
    detail: str = ""

    def describe(self) -> str:
        fields = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        return f"line {self.line}: {fields or self.detail}"


class _BadLine(Exception):
    def __init__(self, index: int, problem: ImportError_) -> None:
        super().__init__(problem.describe())
        self.index = index
        self.problem = problem


def decode_line(raw: bytes, number: int) -> ImportLine:
    """One line as a command, or :class:`_BadLine` naming every bad field."""
    try:
        line: ImportLine = _decoder.decode(raw)
    except msgspec.DecodeError:
        try:
            obj = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            problem = ImportError_(number, [FieldError("line", f"not JSON: {exc}")])
            raise _BadLine(0, problem) from None
        if not isinstance(obj, dict) or obj.get("record") not in IMPORT_LINE_TYPES:
            kinds = ", ".join(IMPORT_LINE_TYPES)
            wrong = FieldError("record", f"must be one of {kinds}")
            raise _BadLine(0, ImportError_(number, [wrong])) from None
        try:
            line = convert_all(obj, IMPORT_LINE_TYPES[obj["record"]])
        except InvalidInput as bad:
            raise _BadLine(0, ImportError_(number, bad.errors)) from None
        return line  # pragma: no cover - the fast path would have decoded it
    problems = line.problems()
    if problems:
        raise _BadLine(0, ImportError_(number, problems))
    return line


def import_file(
    store: SqliteStore,
    path: Path,
    actor: str,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Append every line of `path`; stop at the first bad one."""
    result = ImportResult()
    total = os.path.getsize(path)
    done_bytes = 0
    chunk: list[tuple[int, ImportLine]] = []

    def flush() -> ImportError_ | None:
        pending = list(chunk)
        chunk.clear()
        while pending:
            try:
                seqs = store.run_sync(_unit(pending, actor))
            except _BadLine as bad:
                # the unit rolled back whole: append the lines before the bad one, then stop
                if bad.index:
                    seqs = store.run_sync(_unit(pending[: bad.index], actor))
                    _count(result, seqs, bad.index)
                return bad.problem
            _count(result, seqs, len(pending))
            pending = []
        return None

    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            done_bytes += len(raw)
            result.lines = number
            if not raw.strip():
                continue
            try:
                chunk.append((number, decode_line(raw, number)))
            except _BadLine as bad:
                result.error = flush() or bad.problem
                return result
            if len(chunk) >= CHUNK:
                result.error = flush()
                if result.error is not None:
                    return result
                if progress is not None:
                    progress(done_bytes, total)
    result.error = flush()
    if progress is not None:
        progress(total, total)
    return result


def _count(result: ImportResult, seqs: tuple[int, int] | None, lines: int) -> None:
    del lines
    if seqs is None:
        return
    first, last = seqs
    result.appended += last - first + 1
    if result.first_seq is None:
        result.first_seq = first
    result.last_seq = last


def _unit(
    lines: list[tuple[int, ImportLine]], actor: str
) -> Callable[[SqliteTransaction], tuple[int, int] | None]:
    def work(txn: SqliteTransaction) -> tuple[int, int] | None:
        first: int | None = None
        last: int | None = None
        for index, (number, line) in enumerate(lines):
            try:
                receipt = apply_command(txn, line, actor)
            except InvalidInput as exc:
                raise _BadLine(index, ImportError_(number, exc.errors)) from None
            except LedgerError as exc:
                name = "id" if isinstance(line, SourceLine) else "assertion_id"
                problem = ImportError_(number, [FieldError(name, exc.detail)])
                raise _BadLine(index, problem) from None
            if receipt.events:
                first = receipt.events[0].seq if first is None else first
                last = receipt.events[-1].seq
        return None if first is None or last is None else (first, last)

    return work
