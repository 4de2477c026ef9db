"""Verify a stored log from its bytes alone: seqs, payload digests, the hash chain, the Merkle tree.

:func:`verify_log` streams the log in chunks (memory stays O(chunk) however long the log
is) and recomputes everything the store committed to at append: each payload's digest,
each event's chain hash, each Merkle leaf and every complete node. It trusts no stored
hash it can recompute, so a file edited by someone who dropped the append-only triggers
is caught at the first event the edit touched.

A payload row that is absent was erased (by law, say): the envelope and its `data_sha256`
still commit to it, so that is noted, not counted as a problem.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from hashlib import sha256
from typing import Any

import msgspec

from ledger import merkle
from ledger.codec import ZERO_HASH, decode_payload, envelope_bytes

Progress = Callable[[int, int], None]
"""Called as `progress(done, total)` after each chunk."""

CHUNK = 10_000
MAX_PROBLEMS = 100
"""Problems (and notes) listed in a report; more are counted in one last line."""

_EVENT_SQL = (
    "SELECT e.seq, e.type, e.stream, e.version, e.recorded_at, e.actor, e.data_sha256, e.hash,"
    " p.data FROM events e LEFT JOIN payloads p ON p.seq = e.seq"
    " WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
)
_NODE_SQL = "SELECT idx, hash FROM merkle_nodes WHERE level = ? AND idx BETWEEN ? AND ?"


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


def _fetch_completed(
    conn: sqlite3.Connection, lo: int, hi: int, levels: int
) -> dict[merkle.NodeId, bytes]:
    """Stored nodes completed by appending leaves [lo, hi): one range query per level."""
    nodes: dict[merkle.NodeId, bytes] = {}
    for level in range(levels):
        first = -(-(lo + 1) >> level) - 1  # ceil((lo + 1) / 2**level) - 1
        last = (hi >> level) - 1
        if first > last:
            continue
        for idx, h in conn.execute(_NODE_SQL, (level, first, last)):
            nodes[(level, idx)] = h
    return nodes


class _Tree:
    """Recomputes the Merkle tree leaf by leaf and compares it with the stored nodes.

    A stored node that differs is reported only when its recomputed children matched the
    stored ones: otherwise the difference is the consequence of an edit below it, which
    was reported there. So an edited envelope is reported once, at its own seq, and an
    edited node at the first leaf it covers.
    """

    def __init__(self, findings: _Findings) -> None:
        self.frontier = merkle.MerkleFrontier.empty()
        self.findings = findings
        self.differing: set[merkle.NodeId] = set()

    def add(self, leaf: bytes, stored: dict[merkle.NodeId, bytes]) -> None:
        differing = self.differing
        for level, idx, h in self.frontier.append(leaf):
            node = (level, idx)
            below = False
            if level:
                left, right = (level - 1, 2 * idx), (level - 1, 2 * idx + 1)
                below = left in differing or right in differing
                differing.discard(left)
                differing.discard(right)
            have = stored.get(node)
            if have == h:
                continue
            differing.add(node)
            if have is None:
                self.findings.bad(_first_seq(level, idx), f"Merkle node {node} is missing")
            elif not below:
                what = "leaf" if level == 0 else "node"
                self.findings.bad(
                    _first_seq(level, idx),
                    f"stored Merkle {what} {node} is {_hex(have)}, recomputed {h.hex()}",
                )


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


class _Verifier:
    """One pass over the log: the state carried from one event to the next."""

    def __init__(self, conn: sqlite3.Connection, findings: _Findings, total: int) -> None:
        self.conn = conn
        self.findings = findings
        self.levels = max(total.bit_length(), 1)
        self.tree: _Tree | None = _Tree(findings)
        self.expected = 1
        self.prev: bytes | None = ZERO_HASH
        self.count = 0
        self.erased = 0

    def chunk(self, after: int, rows: list[Any]) -> None:
        last = int(rows[-1][0])
        stored: dict[merkle.NodeId, bytes] = {}
        if self.tree is not None:
            if last - after > 2 * len(rows) + 2:
                self._stop_tree(f"{last - after - len(rows)} events missing after seq {after}")
            else:
                stored = _fetch_completed(self.conn, after, last, self.levels)
        for row in rows:
            self.event(row, stored)

    def _stop_tree(self, why: str) -> None:
        self.findings.general(f"Merkle tree not checked past seq {self.expected - 1}: {why}")
        self.tree = None

    def _add_stored_leaf(self, seq: int, stored: dict[merkle.NodeId, bytes]) -> None:
        """Carry the tree past an event it cannot recompute, on the stored leaf if any."""
        if self.tree is None:
            return
        leaf = stored.get((0, seq - 1))
        if leaf is None:
            self._stop_tree("no event and no stored leaf to carry on from")
        else:
            self.tree.add(leaf, stored)

    def event(self, row: Sequence[Any], stored: dict[merkle.NodeId, bytes]) -> None:
        seq, etype, stream, version, recorded_at, actor, dsha, hhex, data = row
        findings = self.findings
        self.count += 1
        if seq > self.expected:
            gap = f"{self.expected}" if seq == self.expected + 1 else f"{self.expected}..{seq - 1}"
            findings.bad(self.expected, f"event(s) missing: seq {gap}")
            for missing in range(self.expected, seq):
                self._add_stored_leaf(missing, stored)
            self.prev = None  # the link into `seq` cannot be checked
        self.expected = seq + 1
        if data is None:
            self.erased += 1
            findings.note(f"seq {seq}: payload erased; its data_sha256 still commits to it")
        elif not isinstance(data, bytes):
            findings.bad(seq, f"payload stored as {type(data).__name__}, not bytes")
        else:
            if sha256(data).hexdigest() != dsha:
                findings.bad(seq, "payload does not hash to its data_sha256")
            try:
                decode_payload(etype, data)
            except (KeyError, msgspec.DecodeError) as exc:
                findings.bad(seq, f"payload does not decode as {etype!r}: {exc}")
        try:
            canonical = envelope_bytes(seq, etype, stream, version, recorded_at, actor, dsha)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            findings.bad(seq, f"envelope cannot be encoded: {exc}")
            self.prev = None
            self._add_stored_leaf(seq, stored)
            return
        try:
            stored_hash: bytes | None = bytes.fromhex(hhex)
        except (TypeError, ValueError):
            stored_hash = None
            findings.bad(seq, f"hash {hhex!r} is not hex")
        if (
            self.prev is not None
            and stored_hash is not None
            and sha256(self.prev + canonical).digest() != stored_hash
        ):
            findings.bad(seq, "hash does not chain from the previous event")
        self.prev = stored_hash
        if self.tree is not None:
            self.tree.add(merkle.leaf_hash(canonical), stored)


def verify_log(
    conn: sqlite3.Connection,
    progress: Progress | None = None,
    *,
    chunk: int = CHUNK,
) -> VerifyReport:
    """Check the whole stored log on `conn` and report what is wrong, if anything.

    Checks that seqs run 1, 2, ... without a gap; that each payload hashes to its
    `data_sha256` and decodes; that every chain link `hash(n) = SHA-256(hash(n-1) ||
    canonical(n))` holds (each link against the stored previous hash, so an edit shows
    at the event it touched); that every stored Merkle leaf and complete node equals the
    one recomputed from the canonical bytes, that no node is missing or extra, and that
    the stored root equals the recomputed one. Reads run in one snapshot, in chunks of
    `chunk` events and one range query per tree level, never one query per event.
    """
    findings = _Findings()
    with read_snapshot(conn):
        total = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        verifier = _Verifier(conn, findings, total)
        after = 0
        while rows := conn.execute(_EVENT_SQL, (after, chunk)).fetchall():
            verifier.chunk(after, rows)
            after = int(rows[-1][0])
            if progress is not None:
                progress(after, total)
        if verifier.tree is not None:
            root = verifier.tree.frontier.root()
            stored_root = _stored_root(conn, total, findings)
            if stored_root not in (None, root) and not findings.problem_count:
                findings.general(
                    f"stored Merkle root {_hex(stored_root)} differs from {root.hex()}"
                )
        else:
            root = _stored_root(conn, total, findings) or b""
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
