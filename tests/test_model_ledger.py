"""Model check: the store and its views against a reference model in plain Python.

Hypothesis drives a `RuleBasedStateMachine` through registrations, records, retractions,
supersessions, rankings and restarts (close and reopen the store), and queries at random
`as_of` and `seq`. The model is its own small implementation of the contract: which
assertions are live at (`as_of`, `seq`), the quantity view (estimate, basis, claimants,
spread), the status view (status, since, by), each assertion's lifecycle, the log's
envelopes and their Merkle root, recomputed from scratch with `rfc8785` for the JCS bytes.
Statement times are days, months and years, so reduced precision and ties both occur.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest
import rfc8785
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger import merkle
from ledger.commands import (
    AnyCommand,
    DocumentIn,
    RankAssertion,
    RecordAssertion,
    RegisterSource,
    RetractAssertion,
    ValueIn,
)
from ledger.errors import Conflict, InvalidInput
from ledger.service import execute_sync
from ledger.sqlite_store import SqliteStore
from projections import all_projectors, views
from projections.pit import resolve

SUBJECTS = ("alpha", "beta")
QUANTITY, STATUS = "troops.deployed", "deployment.status"
SOURCES = ("src-a", "src-b", "src-c", "src-d")
STATED = ("2024", "2024-01", "2024-01-01", "2024-06", "2024-06-15", "2024-12-31", "2025", "2025-03")
AS_OF = (None, "2023", "2024-01", "2024-06-14", "2024-06", "2024-12", "2025-02", "2025")
ACTOR = "model"
DOC = {"publisher": "Model Wire", "published_at": "2025-01-01"}


def first_day(text: str) -> date:
    parts = [int(p) for p in text.split("-")]
    return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)


def last_day(text: str) -> date:
    parts = [int(p) for p in text.split("-")]
    if len(parts) == 3:
        return date(*parts)
    month = parts[1] if len(parts) > 1 else 12
    return date(parts[0], month, calendar.monthrange(parts[0], month)[1])


@dataclass
class Claim:
    id: str
    subject: str
    prop: str
    seq: int
    stated: str
    claimants: tuple[str, ...]
    mode: str | None = None  # total / increment for quantities
    low: int | None = None
    high: int | None = None
    best: int | None = None
    status: str | None = None
    supersedes: str | None = None

    @property
    def order(self) -> tuple[date, int]:
        return (first_day(self.stated), self.seq)


@dataclass
class Model:
    """The contract, kept as plain data; `log` holds each event's canonical envelope."""

    sources: set[str] = field(default_factory=set)
    claims: dict[str, Claim] = field(default_factory=dict)
    retracted: dict[str, int] = field(default_factory=dict)
    ranks: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, id, rank)
    versions: dict[str, int] = field(default_factory=dict)
    log: list[bytes] = field(default_factory=list)

    def append(self, etype: str, stream: str, recorded_at: str, data: dict[str, Any]) -> int:
        """The event as the model expects it; its canonical bytes go into the log."""
        seq = len(self.log) + 1
        self.versions[stream] = self.versions.get(stream, 0) + 1
        envelope: dict[str, Any] = {
            "seq": seq,
            "type": etype,
            "stream": stream,
            "version": self.versions[stream],
            "recorded_at": recorded_at,
            "actor": ACTOR,
            "data_sha256": hashlib.sha256(rfc8785.dumps(data)).hexdigest(),
        }
        self.log.append(rfc8785.dumps(envelope))
        return seq

    def rank_at(self, claim_id: str, seq: int) -> str:
        rank = "normal"
        for at, cid, value in self.ranks:
            if cid == claim_id and at <= seq:
                rank = value
        return rank

    def live(self, subject: str, prop: str, as_of: str | None, seq: int) -> list[Claim]:
        """Live claims in statement order: eligible, and no live eligible claim supersedes it."""
        cutoff = None if as_of is None else last_day(as_of)
        eligible = [
            c
            for c in self.claims.values()
            if c.subject == subject
            and c.prop == prop
            and c.seq <= seq
            and (cutoff is None or first_day(c.stated) <= cutoff)
            and not (c.id in self.retracted and self.retracted[c.id] <= seq)
            and self.rank_at(c.id, seq) != "deprecated"
        ]
        live: set[str] = set()
        for claim in sorted(eligible, key=lambda c: -c.seq):  # a superseder is always newer
            if not any(o.supersedes == claim.id and o.id in live for o in eligible):
                live.add(claim.id)
        return sorted((c for c in eligible if c.id in live), key=lambda c: c.order)

    def quantity(self, subject: str, as_of: str | None, seq: int) -> dict[str, Any]:
        live = self.live(subject, QUANTITY, as_of, seq)
        totals = [c for c in live if c.mode == "total"]
        preferred = [c for c in totals if self.rank_at(c.id, seq) == "preferred"]
        pool = preferred or totals
        base = max(pool, key=lambda c: c.order) if pool else None
        estimate, basis = None, []
        if base is not None:
            adds = [
                c
                for c in live
                if c.mode == "increment" and first_day(c.stated) > first_day(base.stated)
            ]
            parts = [base, *adds]
            bests = [p.best for p in parts]
            estimate = {
                "low": sum(p.low or 0 for p in parts),
                "high": sum(p.high or 0 for p in parts),
                "best": None if None in bests else sum(b or 0 for b in bests),
            }
            basis = [p.id for p in parts]
        latest: dict[str, Claim] = {}
        for claim in totals:
            for claimant in claim.claimants:
                latest[claimant] = claim
        claimants: list[dict[str, Any]] = [
            {
                "claimant": name,
                "low": c.low,
                "high": c.high,
                "best": c.best,
                "stated_at": c.stated,
                "assertion_id": c.id,
            }
            for name, c in sorted(latest.items())
        ]
        spread = (
            {"low": min(c["low"] for c in claimants), "high": max(c["high"] for c in claimants)}
            if claimants
            else None
        )
        return {"estimate": estimate, "basis": basis, "claimants": claimants, "spread": spread}

    def status(self, subject: str, as_of: str | None, seq: int) -> dict[str, Any]:
        live = self.live(subject, STATUS, as_of, seq)
        decisive = [c for c in live if c.status in ("confirmed", "denied")]
        if not decisive:
            value, behind = ("reported" if live else "unreported"), live
        else:
            latest = max(first_day(c.stated) for c in decisive)
            at_latest = [c for c in decisive if first_day(c.stated) == latest]
            values = {c.status for c in at_latest}
            if len(values) > 1:  # back over every earlier time that held both values too
                held: dict[date, set[str | None]] = {}
                for c in decisive:
                    held.setdefault(first_day(c.stated), set()).add(c.status)
                began = latest
                for day in sorted(held, reverse=True)[1:]:
                    if len(held[day]) < 2:
                        break
                    began = day
                value = "disputed"
                behind = [c for c in decisive if first_day(c.stated) >= began]
            else:
                value = str(values.pop())
                other = [first_day(c.stated) for c in decisive if c.status != value]
                behind = [
                    c
                    for c in decisive
                    if c.status == value and (not other or first_day(c.stated) > max(other))
                ]
        return {
            "status": value,
            "since": behind[0].stated if behind else None,
            "by": sorted({name for c in behind for name in c.claimants}),
        }


def _value(view: Any) -> dict[str, Any]:
    built: dict[str, Any] = msgspec.to_builtins(view)
    return built


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-model-"))
        self.store = self._open()
        self.model = Model()
        self.ids = 0

    def _open(self) -> SqliteStore:
        return SqliteStore(self.dir / "l.db", all_projectors(), synchronous="NORMAL")

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, command: AnyCommand) -> list[Any]:
        return list(execute_sync(self.store, command, ACTOR).events)

    def _expect(self, events: list[Any], etype: str, stream: str, data: dict[str, Any]) -> None:
        [event] = events
        seq = self.model.append(etype, stream, event.recorded_at, data)
        assert (event.seq, event.type, event.stream) == (seq, etype, stream)
        assert event.version == self.model.versions[stream]

    # ---- rules ----

    @rule(source=st.sampled_from(SOURCES))
    def register(self, source: str) -> None:
        events = self._run(RegisterSource(id=source, name=source.upper(), kind="intelligence"))
        if source in self.model.sources:
            assert events == []  # the identical body again appends nothing
            return
        self.model.sources.add(source)
        data = {"id": source, "name": source.upper(), "kind": "intelligence"}
        self._expect(events, "SourceRegistered", f"source:{source}", data)

    def _record(self, data: st.DataObject, prop: str, supersedes: str | None) -> None:
        subject = (
            self.model.claims[supersedes].subject
            if supersedes
            else data.draw(st.sampled_from(SUBJECTS))
        )
        claimants = data.draw(
            st.lists(
                st.sampled_from(sorted(self.model.sources)), min_size=1, max_size=3, unique=True
            )
        )
        stated = data.draw(st.sampled_from(STATED))
        self.ids += 1
        claim_id = f"a{self.ids}"
        claim = Claim(claim_id, subject, prop, 0, stated, tuple(claimants), supersedes=supersedes)
        if prop == QUANTITY:
            claim.mode = data.draw(st.sampled_from(["total", "total", "increment"]))
            claim.low = data.draw(st.integers(0, 50))
            claim.high = claim.low + data.draw(st.integers(0, 20))
            claim.best = data.draw(st.none() | st.integers(claim.low, claim.high))
            value = ValueIn(low=claim.low, high=claim.high, best=claim.best)
            payload_value: dict[str, Any] = {"low": claim.low, "high": claim.high}
            if claim.best is not None:
                payload_value["best"] = claim.best
        else:
            claim.status = data.draw(st.sampled_from(["reported", "confirmed", "denied"]))
            value = ValueIn(status=claim.status)  # type: ignore[arg-type]
            payload_value = {"status": claim.status}
        command = RecordAssertion(
            subject=subject,
            property=prop,
            value=value,
            claimants=list(claimants),
            stated_at=stated,
            document=DocumentIn(**DOC),
            quote=f"claim {claim_id}",
            assertion_id=claim_id,
            mode=claim.mode,  # type: ignore[arg-type]
            supersedes=supersedes,
        )
        events = self._run(command)
        payload: dict[str, Any] = {
            "assertion_id": claim_id,
            "subject": subject,
            "property": prop,
            "value": payload_value,
            "claimants": list(claimants),
            "stated_at": stated,
            "document": DOC,
            "quote": f"claim {claim_id}",
        }
        if claim.mode is not None:
            payload["mode"] = claim.mode
        if supersedes is not None:
            payload["supersedes"] = supersedes
        self._expect(events, "AssertionRecorded", f"subject:{subject}", payload)
        claim.seq = len(self.model.log)
        self.model.claims[claim_id] = claim

    @precondition(lambda self: self.model.sources)
    @rule(data=st.data(), prop=st.sampled_from([QUANTITY, STATUS]))
    def record(self, data: st.DataObject, prop: str) -> None:
        self._record(data, prop, None)

    @precondition(lambda self: self.model.claims)
    @rule(data=st.data())
    def supersede(self, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from(sorted(self.model.claims)))
        self._record(data, self.model.claims[old].prop, old)

    @precondition(lambda self: self.model.claims)
    @rule(data=st.data())
    def retract(self, data: st.DataObject) -> None:
        claim = self.model.claims[data.draw(st.sampled_from(sorted(self.model.claims)))]
        command = RetractAssertion(assertion_id=claim.id, reason="entered by mistake")
        if claim.id in self.model.retracted:
            with pytest.raises(Conflict):
                self._run(command)
            return
        events = self._run(command)
        data_ = {"assertion_id": claim.id, "reason": "entered by mistake"}
        self._expect(events, "AssertionRetracted", f"subject:{claim.subject}", data_)
        self.model.retracted[claim.id] = len(self.model.log)

    @precondition(lambda self: self.model.claims)
    @rule(data=st.data(), rank=st.sampled_from(["preferred", "normal", "deprecated"]))
    def rank(self, data: st.DataObject, rank: str) -> None:
        claim = self.model.claims[data.draw(st.sampled_from(sorted(self.model.claims)))]
        events = self._run(RankAssertion(assertion_id=claim.id, rank=rank, reason="judged"))  # type: ignore[arg-type]
        data_ = {"assertion_id": claim.id, "rank": rank, "reason": "judged"}
        self._expect(events, "AssertionRanked", f"subject:{claim.subject}", data_)
        self.model.ranks.append((len(self.model.log), claim.id, rank))

    @precondition(lambda self: self.model.sources)
    @rule(data=st.data())
    def wrong_kind(self, data: st.DataObject) -> None:
        """A status value for a quantity property (or the reverse) is refused, nothing appended."""
        if not self.model.claims:
            return
        claim = data.draw(st.sampled_from(list(self.model.claims.values())))
        value = ValueIn(status="reported") if claim.prop == QUANTITY else ValueIn(low=1, high=2)
        command = RecordAssertion(
            subject=claim.subject,
            property=claim.prop,
            value=value,
            claimants=[sorted(self.model.sources)[0]],
            stated_at="2024",
            document=DocumentIn(**DOC),
            quote="the wrong kind",
        )
        with pytest.raises(InvalidInput):
            self._run(command)

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = self._open()
        assert self.store.write_refusal is None

    @rule(
        data=st.data(),
        subject=st.sampled_from(SUBJECTS),
        as_of=st.sampled_from(AS_OF),
    )
    def query(self, data: st.DataObject, subject: str, as_of: str | None) -> None:
        seq = data.draw(st.none() | st.integers(0, len(self.model.log)))
        self._compare(subject, as_of, seq)

    # ---- invariants ----

    def _compare(self, subject: str, as_of: str | None, seq: int | None) -> None:
        conn = self.store.reader()
        at = resolve(conn, as_of, None, seq)
        assert at.seq == (len(self.model.log) if seq is None else seq)
        quantity = _value(views.quantity_view(conn, subject, QUANTITY, at))
        got = {k: quantity[k] for k in ("estimate", "basis", "claimants", "spread")}
        assert got == self.model.quantity(subject, as_of, at.seq), (subject, as_of, at.seq)
        status = _value(views.status_view(conn, subject, STATUS, at))
        got = {k: status[k] for k in ("status", "since", "by")}
        assert got == self.model.status(subject, as_of, at.seq), (subject, as_of, at.seq)
        for claim in self.model.claims.values():
            if claim.subject != subject:
                continue
            detail = views.assertion_detail(conn, claim.id, at)
            if claim.seq > at.seq:
                assert detail is None
                continue
            assert detail is not None
            assert detail.recorded_seq == claim.seq
            gone = claim.id in self.model.retracted and self.model.retracted[claim.id] <= at.seq
            assert (detail.retracted is not None) == gone
            assert detail.rank.rank == self.model.rank_at(claim.id, at.seq)

    @invariant()
    def views_equal_the_model_at_the_head(self) -> None:
        for subject in SUBJECTS:
            self._compare(subject, None, None)

    @invariant()
    def merkle_root_is_the_models(self) -> None:
        head = self.store.head()
        assert head.size == len(self.model.log)
        leaves = [merkle.leaf_hash(canonical) for canonical in self.model.log]
        assert head.root == merkle.mth(leaves).hex()
        if self.model.log:
            chained = bytes(32)
            for canonical in self.model.log:
                chained = hashlib.sha256(chained + canonical).digest()
            [last] = self.store.read(after=len(self.model.log) - 1, limit=1)
            assert last.hash == chained.hex()


LedgerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("LEDGER_MODEL_EXAMPLES", "100")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerModel = LedgerMachine.TestCase
