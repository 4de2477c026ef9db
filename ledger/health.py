"""Is the stored log fit to append to? A cheap check at start-up, and the health report.

Appending after a broken chain would bury the break under new, validly chained events, so
the store checks the tail of the log before its writer takes any work: the last `depth`
events' seqs, payload digests and chain links, their Merkle leaves, and that the stored
frontier (the nodes the next append builds on) is what those leaves make of the frontier
before them. It reads `depth` events and O(log n) nodes, whatever the log's length;
`ledger verify` is the full check. A failure does not stop reads: the store refuses
appends and says why (:attr:`ledger.sqlite_store.SqliteStore.write_refusal`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from ledger import merkle
from ledger.backend import DECODE_ERRORS, digest_problem, fetch_all
from ledger.codec import ZERO_HASH, decode_payload, envelope_bytes
from ledger.errors import LedgerUnavailable
from ledger.times import TimeFormatError, parse_record_time

TAIL_DEPTH = 64
"""Events checked at start-up: enough to cover every batch a crash could have cut short."""

_TAIL_SQL = (
    "SELECT e.seq, e.type, e.stream, e.version, e.recorded_at, e.actor, e.data_sha256, e.hash,"
    " p.data FROM events e LEFT JOIN payloads p ON p.seq = e.seq ORDER BY e.seq DESC LIMIT ?"
)


class TailProblem(Exception):
    """What is wrong with the stored tail, and at which seq; `tree` when it is the stored
    Merkle tree (so the roots and proofs read from it cannot be trusted either)."""

    def __init__(self, seq: int, message: str, *, tree: bool = False) -> None:
        super().__init__(f"seq {seq}: {message}")
        self.seq = seq
        self.tree = tree


def _nodes(conn: sqlite3.Connection, ids: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
    found: dict[merkle.NodeId, bytes] = {}
    for level, idx in ids:
        row = conn.execute(
            "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, idx)
        ).fetchone()
        if row is not None and isinstance(row[0], bytes):
            found[(level, idx)] = row[0]
    return found


def _frontier(conn: sqlite3.Connection, size: int) -> merkle.MerkleFrontier:
    ids = merkle.frontier_nodes(size)
    nodes = _nodes(conn, ids)
    missing = [node for node in ids if node not in nodes]
    if missing:
        raise TailProblem(size, f"the stored Merkle frontier lacks node(s) {missing}", tree=True)
    return merkle.MerkleFrontier(size, [nodes[node] for node in ids])


def check_tail(conn: sqlite3.Connection, depth: int = TAIL_DEPTH) -> None:
    """Raise :class:`TailProblem` if the last `depth` events cannot safely be appended to.

    Checks, for those events: seqs run without a gap up to the head (and from 1 when the
    log is that short); each payload is stored, or was removed by an erasure (its record
    says so); each stored payload hashes to its `data_sha256` and decodes; each
    hash chains from the one before (the event just before the window is the anchor);
    each stored Merkle leaf is the leaf of its canonical bytes; the stored frontier at the
    head equals the stored frontier before the window with those leaves appended, and each
    of its nodes is the hash of its two stored children; and no payload or leaf is stored
    past the head.
    """
    if depth <= 0:
        return
    rows = fetch_all(conn, _TAIL_SQL, (depth + 1,))
    if not rows:
        return
    rows.reverse()
    head = int(rows[-1][0])
    if len(rows) > depth:
        anchor_seq, prev_hex = int(rows[0][0]), rows[0][7]
        rows = rows[1:]
        try:
            prev = bytes.fromhex(prev_hex)
        except (TypeError, ValueError):
            raise TailProblem(anchor_seq, f"hash {prev_hex!r} is not hex") from None
        expected = anchor_seq + 1
    else:
        prev, expected = ZERO_HASH, 1
    first = expected
    leaves: list[bytes] = []
    lawful = _erased(conn, [int(row[0]) for row in rows if row[8] is None])
    for seq, etype, stream, version, recorded_at, actor, dsha, hhex, data in rows:
        if seq != expected:
            raise TailProblem(expected, f"event missing (the next stored seq is {seq})")
        expected += 1
        if data is None and seq not in lawful:
            raise TailProblem(
                seq, "payload missing, with no erasure record (deleted by other means)"
            )
        if data is not None:
            if (problem := digest_problem(etype, data, dsha)) is not None:
                raise TailProblem(seq, problem)
            try:
                decode_payload(etype, data)
            except DECODE_ERRORS as exc:
                raise TailProblem(seq, f"payload does not decode as {etype!r}: {exc}") from None
        try:
            canonical = envelope_bytes(seq, etype, stream, version, recorded_at, actor, dsha)
            parse_record_time(recorded_at)
        except (TypeError, ValueError, TimeFormatError, msgspec.EncodeError) as exc:
            raise TailProblem(seq, f"envelope is malformed: {exc}") from None
        prev = hashlib.sha256(prev + canonical).digest()
        if prev.hex() != hhex:
            raise TailProblem(seq, "hash does not chain from the previous event")
        leaves.append(merkle.leaf_hash(canonical))
    stored_leaves = _nodes(conn, [(0, seq - 1) for seq in range(first, head + 1)])
    for seq, leaf in enumerate(leaves, start=first):
        if stored_leaves.get((0, seq - 1)) != leaf:
            raise TailProblem(seq, "stored Merkle leaf is not the leaf of the event", tree=True)
    # a frontier node that is not its children's hash is named first, at its first leaf,
    # as `ledger verify` names it, rather than as a frontier that does not match the head
    _check_frontier_children(conn, head)
    frontier = _frontier(conn, first - 1)
    for leaf in leaves:
        frontier.append(leaf)
    if frontier.hashes != _frontier(conn, head).hashes:
        raise TailProblem(head, "the stored Merkle frontier does not match the events", tree=True)
    _check_nothing_past(conn, head)


def _erased(conn: sqlite3.Connection, seqs: Sequence[int]) -> set[int]:
    """Those of `seqs` whose payload an erasure removed (see :mod:`ledger.erasure`)."""
    if not seqs:
        return set()
    marks = ",".join("?" * len(seqs))
    try:
        rows = conn.execute(f"SELECT seq FROM erasures WHERE seq IN ({marks})", seqs).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return set()  # a ledger from before erasures: none was lawful
    return {int(seq) for (seq,) in rows}


def _check_frontier_children(conn: sqlite3.Connection, head: int) -> None:
    """Each frontier node is the hash of its two stored children (one level down only)."""
    ids = [node for node in merkle.frontier_nodes(head) if node[0] > 0]
    nodes = _nodes(conn, ids + merkle.children(ids))
    for level, idx in ids:
        if (level, idx) not in nodes:  # (named as `ledger verify` names it)
            raise TailProblem(
                (idx << level) + 1, f"Merkle node {(level, idx)} is missing", tree=True
            )
    bad = merkle.unlike_children(ids, nodes)
    if bad is not None:
        level, idx = bad
        raise TailProblem(
            (idx << level) + 1, f"stored Merkle node {bad} {merkle.UNLIKE_CHILDREN}", tree=True
        )


def _check_nothing_past(conn: sqlite3.Connection, head: int) -> None:
    probes = (
        ("SELECT min(seq) FROM payloads WHERE seq > ?", "payload of no event"),
        ("SELECT min(idx) + 1 FROM merkle_nodes WHERE level = 0 AND idx >= ?", "Merkle leaf"),
    )
    for sql, what in probes:
        row = conn.execute(sql, (head,)).fetchone()
        if row[0] is not None:
            raise TailProblem(int(row[0]), f"{what} stored past the head ({head})")


# ---- the health report ----


class HealthReport(msgspec.Struct, frozen=True):
    """`status` is "ok", or "degraded" while appends are refused or the log's roots and
    proofs are (`reason` says why)."""

    status: Literal["ok", "degraded"]
    seq: int
    reason: str | None = None


class _Store(Protocol):
    write_refusal: str | None
    storage_problem: str | None
    tree_refusal: str | None

    def size(self) -> int: ...

    def opened_size(self) -> int: ...


def health_report(store: _Store) -> HealthReport:
    """The store's health: degraded while it refuses appends, its disk was full or its
    stored Merkle tree failed a check (no root or proof is given out), or when
    it cannot read at all (a snapshot whose file was written since: `seq` is then the size
    the log had when it was opened)."""
    try:
        size = store.size()
    except LedgerUnavailable as exc:
        return HealthReport("degraded", store.opened_size(), str(exc))
    reason = store.write_refusal or store.storage_problem or store.tree_refusal
    return HealthReport("ok" if reason is None else "degraded", size, reason)
