"""Which assertions count: loading the candidates of a view and deciding which are live.

An assertion is *eligible* at (`as_of`, `seq`) when it was recorded at or before `seq`,
stated at or before `as_of`, not retracted at `seq` and not ranked `deprecated` at `seq`;
the first three are filtered in SQL, the rank here. It is *live* when it is eligible and
no live eligible assertion supersedes it. Supersession only ever points at an older
record, so the rule has exactly one solution; :class:`Liveness` keeps it as assertions
are added one by one, which the timeline needs (liveness re-evaluated in each prefix).
"""

from __future__ import annotations

import sqlite3
from operator import attrgetter

import msgspec

from projections.pit import PointInTime

_claimants = msgspec.json.Decoder(tuple[str, ...])


class Fact(msgspec.Struct, frozen=True, gc=False):
    """What the views need of one eligible assertion.

    The fields are in the order of `_FACT_SQL`'s columns, so a row becomes a fact without
    naming each field; `claimants` stays JSON until a rule needs the names.
    """

    assertion_id: str
    prop: str
    kind: str
    recorded_seq: int
    stated_at: str
    stated_start: int
    mode: str | None
    low: int | None
    high: int | None
    best: int | None
    status: str | None
    claimants: str
    valid_from_start: int | None
    valid_to_end: int | None
    supersedes: str | None
    preferred: bool = False

    @property
    def order(self) -> tuple[int, int]:
        """Statement order: stated_at's first instant, then record order."""
        return (self.stated_start, self.recorded_seq)

    @property
    def is_total(self) -> bool:
        return self.kind == "quantity" and self.mode != "increment"

    @property
    def is_increment(self) -> bool:
        return self.kind == "quantity" and self.mode == "increment"

    def claimant_ids(self) -> tuple[str, ...]:
        return _claimants.decode(self.claimants)


statement_order = attrgetter("stated_start", "recorded_seq")

# Every column here is in the index `proj_assertions_view`, so the read never leaves it.
_FACT_SQL = (
    "SELECT assertion_id, property, kind, recorded_seq, stated_at, stated_start, mode, "
    "value_low, value_high, value_best, status, claimants, valid_from_start, valid_to_end, "
    "supersedes FROM proj_assertions "
    "WHERE subject = ? {where} AND recorded_seq <= ? AND stated_start <= ? "
    "AND (retracted_seq IS NULL OR retracted_seq > ?)"
)


def ranks_at(conn: sqlite3.Connection, subject: str, prop: str | None, seq: int) -> dict[str, str]:
    """`{assertion_id: rank}` of every ranking in effect at `seq`."""
    if prop is None:
        rows = conn.execute(
            "SELECT assertion_id, rank FROM proj_ranks WHERE subject = ? AND seq <= ? ORDER BY seq",
            (subject, seq),
        )
    else:
        rows = conn.execute(
            "SELECT assertion_id, rank FROM proj_ranks "
            "WHERE subject = ? AND property = ? AND seq <= ? ORDER BY seq",
            (subject, prop, seq),
        )
    return dict(rows.fetchall())


def eligible(
    conn: sqlite3.Connection,
    subject: str,
    prop: str | None,
    at: PointInTime,
    kind: str | None = None,
) -> list[Fact]:
    """The eligible assertions of a subject (or one of its properties), in statement order."""
    ranks = ranks_at(conn, subject, prop, at.seq)
    where, args = "", [subject]
    if prop is not None:
        where, args = "AND property = ?", [subject, prop]
    if kind is not None:
        where += " AND kind = ?"
        args.append(kind)
    rows = conn.execute(
        _FACT_SQL.format(where=where), (*args, at.seq, at.stated_cutoff, at.seq)
    ).fetchall()
    facts = [Fact(*r) for r in rows]
    if ranks:
        ranked = (_ranked(f, ranks.get(f.assertion_id)) for f in facts)
        facts = [f for f in ranked if f is not None]
    facts.sort(key=statement_order)
    return facts


class Liveness:
    """The live subset of a growing set of eligible assertions of one property.

    `add` returns what changed: `(fact, True)` for each assertion that became live and
    `(fact, False)` for each that stopped being live. A new assertion can only change the
    assertions down its own `supersedes` chain, so each step walks that chain and stops
    as soon as nothing changes (or on a cycle, which the write rules already rule out).
    """

    __slots__ = ("facts", "live", "superseders")

    def __init__(self) -> None:
        self.facts: dict[str, Fact] = {}
        self.superseders: dict[str, list[str]] = {}
        self.live: set[str] = set()

    def add(self, fact: Fact) -> list[tuple[Fact, bool]]:
        fid = fact.assertion_id
        self.facts[fid] = fact
        if fact.supersedes is not None:
            self.superseders.setdefault(fact.supersedes, []).append(fid)
        if self._superseded(fid):
            return []
        self.live.add(fid)
        changes = [(fact, True)]
        seen = {fid}
        target = fact.supersedes
        while target is not None and target in self.facts and target not in seen:
            seen.add(target)
            now = not self._superseded(target)
            if now == (target in self.live):
                break
            node = self.facts[target]
            if now:
                self.live.add(target)
            else:
                self.live.discard(target)
            changes.append((node, now))
            target = node.supersedes
        return changes

    def _superseded(self, fid: str) -> bool:
        live = self.live
        return any(s in live for s in self.superseders.get(fid, ()))


def _ranked(fact: Fact, rank: str | None) -> Fact | None:
    if rank == "deprecated":
        return None
    return msgspec.structs.replace(fact, preferred=True) if rank == "preferred" else fact


def live_facts(facts: list[Fact]) -> list[Fact]:
    """The live ones among eligible `facts`, keeping their order.

    Decided once for the whole set: an assertion nothing eligible supersedes is live, and
    one that something supersedes is decided after its superseders (a walk up the
    `supersedes` links with a stack of its own). So a chain of n corrections costs n
    steps, where adding them one by one (:class:`Liveness`) costs n^2 (each new link
    flips every older one), and a set with one correction costs little more than a scan.
    """
    if all(f.supersedes is None for f in facts):
        return facts
    ids = {f.assertion_id for f in facts}
    superseders: dict[str, list[str]] = {}
    for fact in facts:
        if fact.supersedes in ids:
            superseders.setdefault(fact.supersedes, []).append(fact.assertion_id)
    if not superseders:
        return facts
    live: dict[str, bool] = {}

    def is_live(fid: str) -> bool:  # one nothing supersedes is live
        return live.get(fid, fid not in superseders)

    entered: set[str] = set()  # a cycle (which the write rules rule out) ends the walk
    for start in superseders:
        stack = [start]
        while stack:
            top = stack[-1]
            entered.add(top)
            waiting = [s for s in superseders[top] if s in superseders and s not in entered]
            if waiting:
                stack.extend(waiting)
                continue
            stack.pop()
            if top not in live:
                live[top] = not any(is_live(s) for s in superseders[top])
    return [f for f in facts if is_live(f.assertion_id)]
