"""Lawful erasure of a payload: the text goes, the envelope and every proof stay.

The log commits to a payload only through its `data_sha256`, so the payload of an event
can be deleted while every hash, Merkle proof and `ledger verify` still holds. What the
domain rules still need of it (an assertion's id, subject, property and kind) is kept in
the append-only `erasures` record beside the reason, and every replay folds that in
place of the payload (:func:`with_erasures`): after an erasure, a rebuild or an audit
gives exactly the tables the erasure left, the id can never be taken again and the
subject's counts do not move.

The erasure itself is one unit of work on the writer: the record, the payload's delete
and each projector's own `erase` (the read side drops its copies of the text) commit
together, with SQLite's `secure_delete` on so the freed bytes are zeroed; then a
TRUNCATE checkpoint empties the WAL, which would otherwise still hold old page images.
:func:`copies_left` then looks for the erased text in the database file itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import msgspec

from ledger.codec import encode_json
from ledger.errors import FieldError, InvalidInput, LedgerError
from ledger.events import (
    AssertionRecorded,
    ErasedAssertion,
    Event,
    NewEvent,
    PayloadErased,
    subject_stream,
)
from ledger.sqlite_store import SqliteStore, SqliteTransaction, event_at, events_where, log_size
from ledger.text import MAX_WHOLE, one_line_problem

ERASABLE = ("AssertionRecorded",)
"""The event types whose payload can be erased: an assertion's carries the quote, the
document and the note. A source's registration is what claims cite, and retractions and
rankings carry only an analyst's reason; those are refused for now."""

MIN_NEEDLE = 8
"""Texts shorter than this are not looked for in the file: they would match by chance."""

_decode_kept = msgspec.json.Decoder(ErasedAssertion)


class EraseRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an erasure needs, checked at the edge (CLI flags)."""

    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_WHOLE)]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2_000)]

    def problems(self) -> list[FieldError]:
        reason: object = self.reason  # beside a bad `seq`, whatever the flag held
        if not isinstance(reason, str):
            return []
        problem = one_line_problem(reason)
        if problem is not None:
            return [FieldError("reason", f"why the payload is erased: {problem}")]
        return []


class Erasure(msgspec.Struct, frozen=True):
    """One erasure, as recorded. `logged_seq` is the seq of its :class:`PayloadErased`
    event (None for an erasure made before erasures were logged: see :func:`erase`)."""

    seq: int
    erased_at: str
    actor: str
    reason: str
    kept: ErasedAssertion
    logged_seq: int | None = None


class EraseResult(msgspec.Struct, frozen=True):
    """What :func:`erase` did: the record, and whether the WAL could be emptied (another
    connection reading from it keeps its frames until it is done)."""

    erasure: Erasure
    wal_emptied: bool
    texts: list[str]
    """The erased payload's longer texts (quote, note, document title and URL), to look
    for with :func:`copies_left`."""


def _records(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Every erasure record with its event's type (None for a seq not in the log); none
    where the table does not exist (a ledger from before erasures)."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'erasures'"
    ).fetchone()
    if has_table is None:
        return []
    return conn.execute(
        "SELECT r.seq, e.type, r.erased_at, r.actor, r.reason, r.kept, p.seq IS NOT NULL,"
        " e.stream FROM erasures r LEFT JOIN events e ON e.seq = r.seq"
        " LEFT JOIN payloads p ON p.seq = r.seq ORDER BY r.seq"
    ).fetchall()


def _sound(record: tuple[Any, ...]) -> tuple[Erasure | None, str | None]:
    """The erasure a record holds, or what is wrong with it (the envelope, which the hash
    chain protects, must agree with it)."""
    seq, event_type, erased_at, actor, reason, kept, _, stream = record
    if event_type not in ERASABLE:
        what = "no event" if event_type is None else _a(event_type)
        return None, f"an erasure is recorded for {what}, whose payload cannot be erased"
    try:
        facts = _decode_kept.decode(kept)
    except (msgspec.DecodeError, TypeError) as exc:
        return None, f"its erasure record does not decode: {exc}"
    if stream != subject_stream(facts.subject):
        return None, f"its erasure record names subject {facts.subject!r}, its event {stream!r}"
    return Erasure(seq, erased_at, actor, reason, facts), None


def logged_on(conn: sqlite3.Connection, subject: str) -> dict[int, int]:
    """The erasures logged on `subject`'s stream: the seq of each :class:`PayloadErased`
    event by the seq it names (one index range of the stream, not a scan of the log)."""
    logged: dict[int, int] = {}
    where = "WHERE e.stream = ? AND e.type = 'PayloadErased' ORDER BY e.seq"
    for event in events_where(conn, where, (subject_stream(subject),)):
        if isinstance(event.data, PayloadErased):
            logged.setdefault(event.data.seq, event.seq)
    return logged


def erasures(conn: sqlite3.Connection, *, with_logs: bool = True) -> dict[int, Erasure]:
    """Every sound erasure of the ledger on `conn`, by seq (see :func:`erasure_problems`),
    each with the seq of the event that logged it (not looked up without `with_logs`, for
    a caller that needs only the records: a replay's kept facts, a verify that reads the
    events itself)."""
    found: dict[int, Erasure] = {}
    logged: dict[str, dict[int, int]] = {}
    for record in _records(conn):
        erasure, _ = _sound(record)
        if erasure is not None and not with_logs:
            found[erasure.seq] = erasure
        elif erasure is not None:
            subject = erasure.kept.subject
            if subject not in logged:
                logged[subject] = logged_on(conn, subject)
            at = logged[subject].get(erasure.seq)
            found[erasure.seq] = msgspec.structs.replace(erasure, logged_seq=at)
    return found


def erasure_problems(conn: sqlite3.Connection) -> tuple[list[tuple[int, str]], list[int]]:
    """Records that are not sound, as (seq, problem): for an event that cannot be erased,
    that do not decode, whose subject is not their event's, or whose id another live
    assertion (or another record) holds; only edits of the file by other means make them.
    And the seqs recorded as erased whose payload is still there."""
    problems: list[tuple[int, str]] = []
    still_there: list[int] = []
    ids: dict[str, int] = {}
    for record in _records(conn):
        erasure, problem = _sound(record)
        if erasure is not None:
            taken = ids.setdefault(erasure.kept.assertion_id, erasure.seq)
            if taken != erasure.seq or _recorded_elsewhere(conn, erasure):
                problem = f"its erasure record names assertion {erasure.kept.assertion_id!r}, "
                problem += "which another assertion holds"
        if problem is not None:
            problems.append((record[0], problem))
        elif record[6]:
            still_there.append(record[0])
    return problems, still_there


def _recorded_elsewhere(conn: sqlite3.Connection, erasure: Erasure) -> bool:
    """Whether another event's live `AssertionRecorded` payload records the id the
    erasure kept (JCS: no spaces, `assertion_id` first)."""
    key = b'{"assertion_id":' + encode_json(erasure.kept.assertion_id) + b","
    row = conn.execute(
        "SELECT 1 FROM payloads p JOIN events e ON e.seq = p.seq"
        " WHERE e.type = 'AssertionRecorded' AND p.seq != ? AND instr(p.data, ?) > 0 LIMIT 1",
        (erasure.seq, key),
    ).fetchone()
    return row is not None


def kept_facts(conn: sqlite3.Connection) -> dict[int, ErasedAssertion]:
    """What each erased payload's replay folds in its place, by seq."""
    return {seq: erasure.kept for seq, erasure in erasures(conn, with_logs=False).items()}


def with_erasures(events: list[Event], kept: dict[int, ErasedAssertion]) -> list[Event]:
    """`events` with each erased assertion's payload (None) replaced by what was kept."""
    if not kept:
        return events
    return [
        msgspec.structs.replace(event, data=kept[event.seq])
        if event.data is None and event.type in ERASABLE and event.seq in kept
        else event
        for event in events
    ]


def _texts(payload: AssertionRecorded) -> list[str]:
    document = payload.document
    found = [payload.quote, payload.note, document.title, document.url]
    return [t for t in dict.fromkeys(found) if t is not None and len(t.encode()) >= MIN_NEEDLE]


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "AEIOU" else f"a {word}"


def _refuse(field: str, message: str) -> InvalidInput:
    return InvalidInput([FieldError(field, message)])


def _erase_in(
    txn: SqliteTransaction, request: EraseRequest, actor: str
) -> tuple[Erasure, list[str]]:
    conn = txn.connection
    seq = request.seq
    size = log_size(conn)
    event = event_at(conn, seq) if 1 <= seq <= size else None
    if event is None:
        where = f"1..{size}" if size else "it is empty"
        raise _refuse("seq", f"seq {seq} is not in the log ({where})")
    if event.type not in ERASABLE:
        raise _refuse(
            "seq",
            f"seq {seq} is {_a(event.type)}; only the payload of an "
            f"{' or '.join(ERASABLE)} can be erased",
        )
    earlier = erasures(conn).get(seq)
    payload = event.data
    if payload is None:
        if earlier is not None and earlier.logged_seq is None:
            return _log_earlier(txn, earlier, actor), []
        when = "" if earlier is None else f" at {earlier.erased_at} by {earlier.actor}"
        raise _refuse(
            "seq",
            f"the payload of seq {seq} was already erased{when} (if that command was "
            "stopped before it finished, `ledger vacuum` makes sure no copy of the text is "
            "left in the file)",
        )
    if not isinstance(payload, AssertionRecorded):  # pragma: no cover - ERASABLE says so
        raise LedgerError(f"seq {seq}: not an assertion")
    # a record whose payload is still there (written by other means) is finished, not
    # written twice: it is append-only, and it already lets the payload go
    recorded = conn.execute("SELECT 1 FROM erasures WHERE seq = ?", (seq,)).fetchone()
    if earlier is None and recorded is not None:
        raise _refuse("seq", f"seq {seq} has an erasure record that does not fit its event")
    kept = ErasedAssertion(
        payload.assertion_id, payload.subject, payload.property, payload.value.kind
    )
    reason = request.reason if earlier is None else earlier.reason
    logged = _log(txn, kept.subject, seq, reason, actor)
    erasure = Erasure(seq, logged.recorded_at, actor, reason, kept, logged.seq)
    previous = conn.execute("PRAGMA secure_delete").fetchone()[0]
    conn.execute("PRAGMA secure_delete = ON")
    try:
        if earlier is None:
            conn.execute(
                "INSERT INTO erasures (seq, erased_at, actor, reason, kept) VALUES (?, ?, ?, ?, ?)",
                (seq, erasure.erased_at, actor, reason, encode_json(kept).decode()),
            )
        else:
            erasure = msgspec.structs.replace(earlier, logged_seq=logged.seq)
        conn.execute("DELETE FROM payloads WHERE seq = ?", (seq,))
        for projector in txn.projectors:
            forget = getattr(projector, "erase", None)
            if forget is not None:
                forget(conn, event)
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(previous)}")
    return erasure, _texts(payload)


def _log(txn: SqliteTransaction, subject: str, seq: int, reason: str, actor: str) -> Event:
    """Append the :class:`PayloadErased` event that logs the erasure of `seq`."""
    new = NewEvent(subject_stream(subject), PayloadErased(seq=seq, reason=reason))
    (logged,) = txn.append_many([new], actor)
    return logged


def _log_earlier(txn: SqliteTransaction, earlier: Erasure, actor: str) -> Erasure:
    """Log an erasure made before erasures were logged: its :class:`PayloadErased`
    event, with the reason recorded then, appended now by `actor`."""
    logged = _log(txn, earlier.kept.subject, earlier.seq, earlier.reason, actor)
    return msgspec.structs.replace(earlier, logged_seq=logged.seq)


def erase(store: SqliteStore, request: EraseRequest, actor: str) -> EraseResult:
    """Erase the payload of event `request.seq` and every copy the projections hold, and
    log the erasure: a :class:`PayloadErased` event on the assertion's subject stream,
    appended in the same transaction (its record time is the erasure's `erased_at`).

    Refuses (:class:`InvalidInput` naming `seq`) a seq outside the log, an event type not
    in :data:`ERASABLE`, a payload already erased and a seq whose erasure record does not
    fit its event; nothing is written then. A record whose payload is still there is
    finished (the payload goes, the record stays as it was). A payload erased before
    erasures were logged (a record and no event) is not refused: its event is appended,
    with the reason recorded then, and nothing else changes.
    """
    erasure, texts = store.run_sync(lambda txn: _erase_in(txn, request, actor))
    return EraseResult(erasure, store.empty_wal(), texts)


def _cited(conn: sqlite3.Connection, needle: bytes) -> bool:
    """Whether a live payload holds `needle` (as escaped JSON) or an assertion row of the
    read side does (its quote and note as they are, its document as JSON)."""
    if conn.execute(
        "SELECT 1 FROM payloads WHERE instr(data, ?) > 0 LIMIT 1", (needle,)
    ).fetchone():
        return True
    try:
        row = conn.execute(
            "SELECT 1 FROM proj_assertions WHERE instr(CAST(quote AS BLOB), ?1) > 0"
            " OR instr(CAST(coalesce(note, '') AS BLOB), ?1) > 0"
            " OR instr(CAST(document AS BLOB), ?1) > 0 LIMIT 1",
            (needle,),
        ).fetchone()
    except sqlite3.OperationalError:  # no read side in this file
        return False
    return row is not None


def still_cited(conn: sqlite3.Connection, texts: Sequence[str]) -> list[str]:
    """Which of `texts` another payload still holds (a URL or a quote that several
    assertions share): those are not the erased payload's alone to look for."""
    return [text for text in texts if _cited(conn, encode_json(text)[1:-1])]


SLICE = 64
SLICE_FROM = 128
"""A text longer than `SLICE_FROM` bytes is also looked for as `SLICE`-byte pieces, one
every 32 bytes (every 256 in a text over 1 KiB): a row longer than a page is split across
overflow pages (4-byte page headers between the pieces), so the text may never lie in
one run of bytes, but every run of at least `SLICE` + that stride holds a piece. With
4 KiB pages a text under ~4 KB is cut at most once, so one over 128 bytes is found
wherever the cut."""


def _needles(texts: Sequence[str]) -> dict[bytes, str]:
    """What to look for in the file, and the text each stands for: the text as UTF-8
    and as escaped JSON, and pieces of a longer one."""
    needles: dict[bytes, str] = {}
    for text in texts:
        for form in (text.encode(), encode_json(text)[1:-1]):
            needles.setdefault(form, text)
            if len(form) > SLICE_FROM:
                stride = 32 if len(form) <= 1024 else 256
                for start in range(0, len(form) - SLICE + 1, stride):
                    needles.setdefault(form[start : start + SLICE], text)
    return needles


def copies_left(
    path: Path,
    texts: Sequence[str],
    progress: Callable[[int], None] | None = None,
    chunk: int = 16 << 20,
    *,
    cited: Callable[[bytes], bool] | None = None,
) -> list[str]:
    """Which of `texts` still occur in the file at `path`, whole or in part (see
    :data:`SLICE_FROM`), as UTF-8 or as escaped JSON.

    A piece for which `cited(piece)` is true (another live payload holds it) does not
    count. Reads the file in chunks that overlap by the longest needle, so a copy across
    two chunks is found too; `progress` is told the bytes read so far.
    """
    needles = _needles(texts)
    if not needles:
        return []
    overlap = max(len(n) for n in needles) - 1
    found: dict[str, None] = {}
    with path.open("rb") as file:
        tail = b""
        while block := file.read(chunk):
            window = tail + block
            for needle, text in needles.items():
                if text not in found and needle in window:
                    whole = needle in (text.encode(), encode_json(text)[1:-1])
                    if whole or cited is None or not cited(needle):
                        found[text] = None
            tail = window[-overlap:] if overlap else b""
            if progress is not None:
                progress(file.tell())
    return [text for text in texts if text in found]


def cited_by(path: Path) -> Callable[[bytes], bool]:
    """A `cited` test for :func:`copies_left` that asks the ledger's payloads, read-only."""

    def cited(needle: bytes) -> bool:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _cited(conn, needle)
        finally:
            conn.close()

    return cited
