"""Verify a stored log from its bytes alone: seqs, payload digests, the hash chain, the Merkle tree.

:func:`verify_log` streams the log in chunks (memory stays O(chunk) however long the log
is) and recomputes everything the store committed to at append: each payload's digest,
each event's chain hash, each Merkle leaf and every complete node. It trusts no stored
hash it can recompute, so a file edited by someone who dropped the append-only triggers
is caught at the first event the edit touched.

A payload row that is absent was erased by law (`ledger erase`): the envelope and its
`data_sha256` still commit to it, so that is noted, not counted as a problem, when a later
`PayloadErased` event in the chain logs the erasure (or, for an erasure made before they
were logged, an erasure record holds it). A payload gone with neither was deleted by other
means, and is a problem; so is a `PayloadErased` that names an event whose payload is
still there, is not before it, or cannot be erased.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from hashlib import sha256
from typing import Any, cast

import msgspec

from ledger import merkle
from ledger.backend import DECODE_ERRORS, digest_words, fetch_all
from ledger.codec import ZERO_HASH, envelope_bytes
from ledger.erasure import ERASABLE, Erasure, erasure_problems, erasures
from ledger.events import PAYLOAD_TYPES, PayloadErased
from ledger.layout import drift

Progress = Callable[[int, int], None]
"""Called as `progress(done, total)` after each chunk."""

UNDECODED: Any = object()
"""In the payloads handed to a :data:`ChunkConsumer`: a payload the verification did not
decode (one that fails to, or is not stored as bytes)."""

ChunkConsumer = Callable[[list[Any], list[Any]], None]
"""Called as `consume(rows, payloads)` after each chunk is checked: the rows as
`_EVENT_SQL` reads them and, for each, its payload decoded, None where it was erased, or
:data:`UNDECODED`. Lets a caller fold the log in the same pass that verifies it."""

CHUNK = 10_000
MAX_PROBLEMS = 100
"""Problems (and notes) listed in a report; more are counted in one last line."""

_EVENT_SQL = (
    "SELECT e.seq, e.type, e.stream, e.version, e.recorded_at, e.actor, e.data_sha256, e.hash,"
    " p.data FROM events e LEFT JOIN payloads p ON p.seq = e.seq"
    " WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
)


class VerifyReport(msgspec.Struct, frozen=True):
    """The outcome of :func:`verify_log`.

    `root` is the hex MTH recomputed from the events' canonical bytes (what the log's
    content commits to); `first_bad_seq` is the smallest seq at which anything is wrong.
    """

    ok: bool
    events: int
    root: str
    first_bad_seq: int | None
    problems: list[str]
    erased: int = 0
    notes: list[str] = msgspec.field(default_factory=list)


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Hold one read transaction, so every query sees the same state of the log.

    Reuses a transaction the caller already holds (and then leaves it open).
    """
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        yield
    finally:
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")


class _Findings:
    """Problems and notes, capped, with the smallest bad seq."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.first_bad_seq: int | None = None
        self.problem_count = 0
        self.note_count = 0

    def bad(self, seq: int, message: str) -> None:
        if self.first_bad_seq is None or seq < self.first_bad_seq:
            self.first_bad_seq = seq
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"seq {seq}: {message}")

    def general(self, message: str) -> None:
        """A problem that points at no event (e.g. the stored root of an unchecked tree)."""
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    def note(self, message: str) -> None:
        self.note_count += 1
        if len(self.notes) < MAX_PROBLEMS:
            self.notes.append(message)

    def finish(self) -> tuple[list[str], list[str]]:
        problems, notes = list(self.problems), list(self.notes)
        if self.problem_count > len(problems):
            problems.append(f"... and {self.problem_count - len(problems)} more problems")
        if self.note_count > len(notes):
            notes.append(f"... and {self.note_count - len(notes)} more notes")
        return problems, notes


def _first_seq(level: int, idx: int) -> int:
    """The seq of the first leaf under node `(level, idx)`."""
    return (idx << level) + 1


_NODE_SQL = (
    "SELECT idx, hash FROM merkle_nodes WHERE level = ? AND idx BETWEEN ? AND ? ORDER BY idx"
)


class _Tree:
    """Recomputes the Merkle tree a chunk of leaves at a time and compares the stored nodes.

    This is :class:`ledger.merkle.MerkleFrontier` worked level by level over a whole chunk:
    `pending` holds the frontier (the complete node of each level still waiting for its
    right sibling), and each level's new complete nodes are paired into the next level's
    with one range query per level to compare them, so no Python code runs per node on
    an intact log beyond one hash.

    A stored node that differs is reported only when its recomputed children matched the
    stored ones: otherwise the difference follows from an edit below it, reported there.
    So an edited envelope is reported once, at its own seq, and an edited node at the
    first leaf it covers.
    """

    def __init__(self, conn: sqlite3.Connection, findings: _Findings) -> None:
        self.conn = conn
        self.findings = findings
        self.size = 0
        self.pending: dict[int, tuple[bytes, bool]] = {}  # level -> (hash, differs)

    def add(self, leaves: list[bytes | None]) -> bool:
        """Append leaves `size, size + 1, ...`; None where only the stored leaf is known.

        Returns False when such a stored leaf is missing too: the tree cannot go on.
        """
        stored = self._stored(0, self.size, len(leaves))
        if None in leaves:
            leaves = [
                leaf if leaf is not None else s for leaf, s in zip(leaves, stored, strict=True)
            ]
            if None in leaves:
                return False
        hashes = cast(list[bytes], leaves)
        level, first = 0, self.size
        below: list[bool] | None = None  # per new node: does a child differ from storage?
        node_hash = merkle.node_hash
        while hashes:
            if level:
                stored = self._stored(level, first, len(hashes))
            flags = None
            if stored != hashes or below is not None:
                flags = self._compare(level, first, hashes, stored, below)
            pending = self.pending.pop(level, None)
            if pending is not None:  # `first` is odd: its left sibling was waiting
                hashes = [pending[0], *hashes]
                if flags is not None or pending[1]:
                    flags = [pending[1], *(flags or [False] * (len(hashes) - 1))]
                first -= 1
            if len(hashes) & 1:
                self.pending[level] = (hashes[-1], bool(flags and flags[-1]))
            pairs = range(0, len(hashes) - 1, 2)
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in pairs]
            below = [flags[i] or flags[i + 1] for i in pairs] if flags is not None else None
            if below is not None and not any(below):
                below = None
            level, first = level + 1, first >> 1
        self.size += len(leaves)
        return True

    def root(self) -> bytes:
        stack = [self.pending[level][0] for level in sorted(self.pending, reverse=True)]
        return merkle.MerkleFrontier(self.size, stack).root()

    def _stored(self, level: int, first: int, count: int) -> list[bytes | None]:
        rows = self.conn.execute(_NODE_SQL, (level, first, first + count - 1)).fetchall()
        if len(rows) == count:
            return [h for _, h in rows]
        found = dict(rows)
        return [found.get(idx) for idx in range(first, first + count)]

    def _compare(
        self,
        level: int,
        first: int,
        hashes: list[bytes],
        stored: list[bytes | None],
        below: list[bool] | None,
    ) -> list[bool]:
        """Which of the new nodes differ from the stored ones; reports those to blame."""
        flags = []
        for i, (h, have) in enumerate(zip(hashes, stored, strict=True)):
            differs = h != have
            flags.append(differs)
            if not differs:
                continue
            idx = first + i
            node = (level, idx)
            if have is None:
                self.findings.bad(_first_seq(level, idx), f"Merkle node {node} is missing")
            elif below is None or not below[i]:
                what = "leaf" if level == 0 else "node"
                self.findings.bad(
                    _first_seq(level, idx),
                    f"stored Merkle {what} {node} is {_hex(have)}, recomputed {_hex(h)}",
                )
        return flags


def _hex(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


def _check_node_counts(conn: sqlite3.Connection, size: int, findings: _Findings) -> None:
    """Every level holds exactly `size >> level` nodes, so no stored node is extra."""
    for level, count in conn.execute(
        "SELECT level, count(*) FROM merkle_nodes GROUP BY level ORDER BY level"
    ).fetchall():
        expected = size >> level if isinstance(level, int) and level >= 0 else 0
        if count <= expected:
            continue
        idx = conn.execute(
            "SELECT idx FROM merkle_nodes WHERE level = ? AND NOT (idx >= 0 AND idx < ?)"
            " ORDER BY idx LIMIT 1",
            (level, expected),
        ).fetchone()[0]
        # a node past the tree claims leaves the log lacks: the first of them is missing
        seq = size + 1
        if isinstance(idx, int) and isinstance(level, int) and idx >= 0 and level >= 0:
            seq = max(_first_seq(level, idx), seq)
        findings.bad(
            seq,
            f"{count - expected} Merkle node(s) stored at level {level!r} beyond a tree of "
            f"{size} leaves, e.g. {(level, idx)!r}",
        )


def _check_strays(conn: sqlite3.Connection, size: int, findings: _Findings) -> None:
    """Rows outside 1..size: events with a seq below 1, payloads of no event."""
    row = conn.execute("SELECT min(seq), count(*) FROM events WHERE seq < 1").fetchone()
    if row[1]:
        findings.bad(1, f"{row[1]} event(s) stored with a seq below 1, e.g. {row[0]}")
    row = conn.execute(
        "SELECT min(seq), count(*) FROM payloads WHERE seq < 1 OR seq > ?", (size,)
    ).fetchone()
    if row[1]:
        findings.bad(size + 1, f"{row[1]} payload(s) of no event, e.g. seq {row[0]}")


_decoders = {name: msgspec.json.Decoder(cls) for name, cls in PAYLOAD_TYPES.items()}


class _Logged(msgspec.Struct, frozen=True):
    """A `PayloadErased` event as the chain holds it."""

    seq: int
    recorded_at: str
    actor: str
    reason: str


def _erased_note(seq: int, logged: _Logged | None, erasure: Erasure | None) -> str | None:
    """The note for the erased payload of `seq`, or None where nothing accounts for it."""
    if logged is not None and erasure is not None and erasure.erased_at != logged.recorded_at:
        # erased before erasures were logged, logged later: each says when and by whom
        how = f"erased at {erasure.erased_at} by {erasure.actor} ({erasure.reason}), logged"
        how += f" at seq {logged.seq} at {logged.recorded_at} by {logged.actor}"
    elif logged is not None:
        how = f"erased at {logged.recorded_at} by {logged.actor} ({logged.reason})"
        how += f", logged at seq {logged.seq}"
    elif erasure is not None:
        how = f"erased at {erasure.erased_at} by {erasure.actor} ({erasure.reason})"
        how += f" before erasures were logged (`ledger erase --seq {seq}` logs it)"
    else:
        return None
    return f"seq {seq}: payload {how}; its data_sha256 still commits to it"


class _Verifier:
    """One pass over the log: the state carried from one chunk of events to the next."""

    def __init__(self, conn: sqlite3.Connection, findings: _Findings, tree: bool = True) -> None:
        self.findings = findings
        self.tree: _Tree | None = _Tree(conn, findings) if tree else None
        self.expected = 1
        self.prev: bytes | None = ZERO_HASH
        self.count = 0
        self.erased = 0
        self.missing: dict[int, str] = {}  # seq -> type, of each payload not there
        self.logged: dict[int, _Logged] = {}  # erased seq -> the event that logged it
        self.erasures = erasures(conn, with_logs=False)  # the events are read below
        unsound, still_there = erasure_problems(conn)
        self.unsound = {seq for seq, _ in unsound}  # reported here, not again as deleted
        for seq, problem in unsound:
            findings.bad(seq, problem)
        for seq in still_there:
            findings.note(f"seq {seq}: an erasure is recorded, but its payload is still there")

    def chunk(self, rows: list[Any], payloads: list[Any] | None = None) -> None:
        """Check consecutive rows (`_EVENT_SQL`), then the Merkle nodes they complete.

        Each decoded payload (None if erased, :data:`UNDECODED` if not decoded) is added
        to `payloads` when given.
        """
        findings = self.findings
        leaves: list[bytes | None] = []
        add_leaf = leaves.append
        keep = payloads.append if payloads is not None else None
        expected, prev = self.expected, self.prev
        leaf_hash = merkle.leaf_hash
        decoders = _decoders
        for seq, etype, stream, version, recorded_at, actor, dsha, hhex, data in rows:
            if seq != expected:
                gap = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
                findings.bad(expected, f"event(s) missing: seq {gap}")
                if seq - expected > max(len(rows), CHUNK):  # keep memory O(chunk)
                    self._stop_tree(expected - 1, f"{seq - expected} events missing in a row")
                if self.tree is not None:
                    leaves += [None] * (seq - expected)
                prev = None  # the link into `seq` cannot be checked
            expected = seq + 1
            payload = UNDECODED
            if type(data) is bytes:
                if sha256(data).hexdigest() != dsha:
                    findings.bad(seq, digest_words(etype, data, dsha))
                try:
                    payload = decoders[etype].decode(data)
                except DECODE_ERRORS as exc:
                    findings.bad(seq, f"payload does not decode as {etype!r}: {exc}")
                if type(payload) is PayloadErased:
                    self._logs(seq, recorded_at, actor, payload)
            elif data is None:
                payload = None
                self.missing[seq] = etype
            else:
                findings.bad(seq, digest_words(etype, data, dsha))
            if keep is not None:
                keep(payload)
            try:
                canonical = envelope_bytes(seq, etype, stream, version, recorded_at, actor, dsha)
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                findings.bad(seq, f"envelope cannot be encoded: {exc}")
                prev = None
                add_leaf(None)
                continue
            if self.tree is not None:
                add_leaf(leaf_hash(canonical))
            if prev is not None:
                link = sha256(prev + canonical).digest()
                if link.hex() == hhex:
                    prev = link
                    continue
                findings.bad(seq, "hash does not chain from the previous event")
            try:
                prev = bytes.fromhex(hhex)
            except (TypeError, ValueError):
                findings.bad(seq, f"hash {hhex!r} is not hex")
                prev = None
        self.count += len(rows)
        self.expected, self.prev = expected, prev
        if self.tree is not None and not self.tree.add(leaves):
            self._stop_tree(self.tree.size, "an event is missing and so is its stored leaf")

    def _logs(self, seq: int, recorded_at: str, actor: str, payload: PayloadErased) -> None:
        """Take in event `seq`, which logs the erasure of `payload.seq`."""
        target, findings = payload.seq, self.findings
        first = self.logged.get(target)
        if target >= seq:
            findings.bad(seq, f"it logs the erasure of seq {target}, which is not before it")
        elif first is not None:
            findings.bad(seq, f"it logs the erasure of seq {target} again (first at {first.seq})")
        else:
            self.logged[target] = _Logged(seq, recorded_at, actor, payload.reason)

    def finish(self) -> None:
        """Match the payloads not there with the erasures logged and recorded."""
        findings, logged = self.findings, self.logged
        for seq, etype in self.missing.items():
            log = logged.get(seq)
            note = _erased_note(seq, log, self.erasures.get(seq))
            if log is not None and etype not in ERASABLE:
                findings.bad(log.seq, f"it logs the erasure of seq {seq}, whose {etype} cannot be")
            elif seq in self.unsound:  # reported where its record was read
                continue
            elif log is not None and seq not in self.erasures:
                # an erasure writes its record with its event: the facts the views keep
                # of the assertion went with the record, by other means
                findings.bad(
                    seq,
                    f"payload erased (logged at seq {log.seq}), but its erasure record is "
                    "not there (deleted by other means)",
                )
            elif note is not None:
                findings.note(note)
                self.erased += 1  # a payload deleted by other means is a problem, not this
            else:
                findings.bad(
                    seq,
                    "payload not there, and no erasure of it is logged or recorded "
                    "(deleted by other means)",
                )
        for seq, log in logged.items():
            if seq not in self.missing:
                findings.bad(log.seq, f"it logs the erasure of seq {seq}, whose payload is there")

    def _stop_tree(self, after: int, why: str) -> None:
        if self.tree is not None:
            self.findings.general(f"Merkle tree not checked past seq {after}: {why}")
        self.tree = None


_GONE = {
    "erasures": "the records of lawful erasures are lost with it, and the file refuses "
    "every erasure (`ledger rebuild` makes it again, empty, when the log verifies without it)",
    "api_keys": "every API key with it, so the server fails (500) every request that sends "
    "a token (`ledger rebuild` or `ledger keys create` makes it again, empty)",
    "idempotency": "the remembered answers with it, and the server fails (500, appending "
    "nothing) every write that sends an Idempotency-Key (`ledger rebuild` makes it again, "
    "empty)",
}
"""What each table of records that a rebuild makes again, empty, takes with it when gone
(:data:`ledger.layout.REMADE_WHEN_GONE`)."""


def _note_guards(conn: sqlite3.Connection, findings: _Findings) -> None:
    """Notes (the log itself is not changed by them) where the tables that hold records
    (the log's, the keys, the remembered answers) are not as this version makes them:
    without its guards the file would take an UPDATE or DELETE without a word, a trigger
    added there could refuse or alter an append (or keep a revoked key alive), and without
    the `erasures` table a lawful erasure could not be told from a deletion."""
    off = [d for d in drift(conn, ()) if d.table != "checkpoints"]  # a view's, not the log's
    gone = {d.table for d in off if (d.kind, d.what) == ("table", "missing")}
    for table, what in _GONE.items():
        if table in gone:
            findings.note(f"table {table} is gone: {what}")
    changed = [d.name for d in off if (d.kind, d.what) == ("table", "changed")]
    if changed:
        findings.note(
            f"the definition of table {', '.join(changed)} is not this version's: its rows "
            "are records, so no command makes it again (compare with a new ledger's schema)"
        )
    missing = [d.name for d in off if d.kind == "trigger" and d.what == "missing"]
    if missing:
        findings.note(
            f"the log's append-only guards are gone ({', '.join(missing)}): the file no longer "
            "refuses an edit of the log (the checks above still find one; `ledger rebuild` "
            "puts them back)"
        )
    other = [str(d) for d in off if d.kind == "trigger" and d.what != "missing"]
    if other:
        findings.note(
            f"triggers on the tables of records are not this version's ({'; '.join(other)}): "
            "they may let an edit of the log through, change what is appended or keep a "
            "revoked key alive (`ledger rebuild` puts them right)"
        )


def verify_log(
    conn: sqlite3.Connection,
    progress: Progress | None = None,
    *,
    chunk: int = CHUNK,
    consume: ChunkConsumer | None = None,
    tree: bool = True,
) -> VerifyReport:
    """Check the whole stored log on `conn` and report what is wrong, if anything.

    Checks that seqs run 1, 2, ... without a gap; that each payload hashes to its
    `data_sha256` and decodes; that every chain link `hash(n) = SHA-256(hash(n-1) ||
    canonical(n))` holds (each link against the stored previous hash, so an edit shows
    at the event it touched); that every stored Merkle leaf and complete node equals the
    one recomputed from the canonical bytes, that no node is missing or extra, and that
    the stored root equals the recomputed one. Reads run in one snapshot, in chunks of
    `chunk` events and one range query per tree level, never one query per event.
    `consume`, when given, is handed each chunk once checked (see :data:`ChunkConsumer`).
    Without `tree` the Merkle nodes are not checked (nor is `root` given): what the
    events hold, their digests and their chain still are.
    """
    findings = _Findings()
    with read_snapshot(conn):
        total = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        verifier = _Verifier(conn, findings, tree)
        after = 0
        while rows := fetch_all(conn, _EVENT_SQL, (after, chunk)):
            if consume is None:
                verifier.chunk(rows)
            else:
                payloads: list[Any] = []
                verifier.chunk(rows, payloads)
                consume(rows, payloads)
            after = int(rows[-1][0])
            if progress is not None:
                progress(after, total)
        verifier.finish()
        _note_guards(conn, findings)
        if verifier.tree is not None:
            root = verifier.tree.root()
            stored_root = _stored_root(conn, total, findings)
            if stored_root not in (None, root) and not findings.problem_count:
                findings.general(
                    f"stored Merkle root {_hex(stored_root)} differs from {root.hex()}"
                )
        elif tree:
            root = _stored_root(conn, total, findings) or b""
        else:
            root = b""
        if tree:
            _check_node_counts(conn, total, findings)
            _check_strays(conn, total, findings)
    problems, notes = findings.finish()
    return VerifyReport(
        ok=not problems,
        events=verifier.count,
        root=root.hex(),
        first_bad_seq=findings.first_bad_seq,
        problems=problems,
        erased=verifier.erased,
        notes=notes,
    )


def _stored_root(conn: sqlite3.Connection, size: int, findings: _Findings) -> bytes | None:
    """MTH of the stored tree of `size` leaves, read from its popcount(size) frontier nodes."""

    def fetch(ids: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        found: dict[merkle.NodeId, bytes] = {}
        for level, idx in ids:
            row = conn.execute(
                "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, idx)
            ).fetchone()
            if row is not None and isinstance(row[0], bytes):
                found[(level, idx)] = row[0]
        return found

    try:
        return merkle.root(size, fetch)
    except KeyError:
        findings.general(f"the stored Merkle root of size {size} cannot be read")
        return None
