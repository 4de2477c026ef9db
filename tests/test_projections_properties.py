"""Properties over random command sequences.

(a) The tables built one command at a time equal a rebuild from the log in one batch.
(b) Every view at `seq=N` equals the view of a ledger that only ever had the first N events.
(c) Every view at `as_of=T` equals the view of a ledger holding only what was stated by T.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.commands import (
    AnyCommand,
    RecordAssertion,
    SourceChanges,
    UpdateSource,
)
from ledger.sqlite_store import SqliteStore
from ledger.times import cutoff, parse_time
from projections import views
from projections.facts import Fact, Liveness, eligible, live_facts
from projections.pit import PointInTime
from projections.quantity import quantity_parts
from projections.rows import ValueChange
from projections.status import status_parts
from tests.factories import (
    at,
    ledger,
    plain,
    quantity,
    rank,
    retract,
    run_all,
    run_in_one_unit,
    source,
    status,
)
from tests.test_projections import all_tables, rebuild_in, table_rows

SOURCES = ("src-a", "src-b", "src-c")
SUBJECTS = ("x", "y")
PROPS = {"quantity": "q", "status": "st"}
TIMES = (
    "2024",
    "2024-01",
    "2024-06",
    "2024-06-15",
    "2024-06-15T10:00:00Z",
    "2024-06-15T12:00:00+02:00",  # the same instant as the one above
    "2024-06-15T09:00:00-03:00",
    "2025",
    "2025-01-01",
)
VALID = (
    (None, None),
    ("2024-01", "2024-05"),
    ("2024-06", None),
    (None, "2024-06"),
    ("2024-06-16", "2024-12"),
    ("2025-01", "2025-02"),
)
AS_OF = ("2023", "2024", "2024-05", "2024-06-15", "2024-06-15T10:00:00Z", "2024-12", "2025")
QUANTITIES = ((10, 20, 15), (5, 5, None), (100, 150, 120), (0, 0, 0))
STATUSES = ("reported", "confirmed", "denied")
NO_RECORD_TIME = frozenset({"recorded_at"})
FAST = settings(max_examples=40, deadline=None)

record_op = st.tuples(
    st.just("record"),
    st.sampled_from(SUBJECTS),
    st.sampled_from(("quantity", "status")),
    st.integers(0, len(TIMES) - 1),
    st.integers(0, len(VALID) - 1),
    st.booleans(),
    st.integers(0, 11),
    st.sets(st.sampled_from(SOURCES), min_size=1, max_size=2),
    st.none() | st.integers(0, 20),
)
retract_op = st.tuples(st.just("retract"), st.integers(0, 20))
rank_op = st.tuples(
    st.just("rank"), st.integers(0, 20), st.sampled_from(("preferred", "normal", "deprecated"))
)
update_op = st.tuples(st.just("update"), st.sampled_from(SOURCES), st.sampled_from("ACE"))
ops_strategy = st.lists(
    st.one_of(record_op, record_op, record_op, retract_op, rank_op, update_op), max_size=9
)


@dataclass(frozen=True)
class Step:
    command: AnyCommand
    about: str | None = None  # the assertion a record, retraction or rank is about


def materialize(ops: list[tuple[Any, ...]]) -> list[Step]:
    """Commands for `ops`: sources first, ids a0, a1, ..., targets among earlier records."""
    steps = [Step(source(s)) for s in SOURCES]
    recorded: list[tuple[str, str, str]] = []  # (id, subject, property)
    for op in ops:
        if op[0] == "record":
            _, subject, kind, t, v, increment, value, claimants, pick = op
            prop = PROPS[kind]
            aid = f"a{len(recorded)}"
            same = [r[0] for r in recorded if r[1:] == (subject, prop)]
            supersedes = same[pick % len(same)] if same and pick is not None else None
            common: dict[str, Any] = {
                "stated_at": TIMES[t],
                "subject": subject,
                "prop": prop,
                "claimants": tuple(sorted(claimants)),
                "assertion_id": aid,
                "supersedes": supersedes,
            }
            if kind == "quantity":
                low, high, best = QUANTITIES[value % len(QUANTITIES)]
                command: AnyCommand = quantity(
                    low,
                    high,
                    best,
                    mode="increment" if increment else "total",
                    valid_from=VALID[v][0],
                    valid_to=VALID[v][1],
                    **common,
                )
            else:
                command = status(STATUSES[value % 3], **common)
            recorded.append((aid, subject, prop))
            steps.append(Step(command, aid))
        elif op[0] in ("retract", "rank") and recorded:
            target = recorded[op[1] % len(recorded)][0]
            command = retract(target) if op[0] == "retract" else rank(target, op[2])
            steps.append(Step(command, target))
        elif op[0] == "update":
            steps.append(Step(UpdateSource(id=op[1], changes=SourceChanges(reliability=op[2]))))
    return steps


@contextmanager
def ledgers(count: int) -> Iterator[list[SqliteStore]]:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        yield [stack.enter_context(ledger(Path(tmp) / f"{i}.db")) for i in range(count)]


def snapshot(store: SqliteStore, pit: PointInTime) -> dict[str, Any]:
    """Every view at `pit`, as builtins without record times (each ledger has its own)."""
    conn = store.reader()
    out: dict[str, Any] = {}
    for subject in SUBJECTS:
        out[f"{subject}/q"] = views.quantity_view(conn, subject, "q", pit)
        out[f"{subject}/st"] = views.status_view(conn, subject, "st", pit)
        out[f"{subject}/timeline"] = views.timeline(conn, subject, pit)
    ids = [f"a{i}" for i in range(12)]
    out["details"] = [views.assertion_detail(conn, aid, pit) for aid in ids]
    out["assertions"] = views.list_assertions(conn, pit, limit=1000)
    out["by-claimant"] = views.list_assertions(conn, pit, claimant="src-a", limit=1000)
    out["subjects"] = views.list_subjects(conn, pit)
    out["sources"] = views.list_sources(conn, pit)
    return {k: plain(v, NO_RECORD_TIME) for k, v in out.items()}


@FAST
@given(ops=ops_strategy)
def test_incremental_tables_equal_a_rebuild(ops: list[tuple[Any, ...]]) -> None:
    with ledgers(1) as (store,), tempfile.TemporaryDirectory() as tmp:
        run_in_one_unit(store, (s.command for s in materialize(ops)))
        events = store.read(limit=10_000)
        scratch = rebuild_in(Path(tmp) / "scratch.db", events)
        try:
            assert table_rows(scratch, all_tables()) == table_rows(store.reader(), all_tables())
        finally:
            scratch.close()


@FAST
@given(ops=ops_strategy)
def test_a_view_at_seq_n_is_the_view_of_the_first_n_events(ops: list[tuple[Any, ...]]) -> None:
    steps = materialize(ops)
    with ledgers(2) as (whole, prefix):
        run_in_one_unit(whole, (s.command for s in steps))
        assert snapshot(prefix, at(prefix)) == snapshot(whole, at(whole, seq=0))
        for step in steps:
            if run_all(prefix, [step.command]):
                head = at(prefix)
                assert snapshot(prefix, head) == snapshot(whole, at(whole, seq=head.seq))


def _stated_by(steps: list[Step], as_of: str) -> list[AnyCommand]:
    """The commands of a ledger that only ever heard statements made by `as_of`."""
    end = cutoff(as_of)
    kept: set[str] = set()
    out: list[AnyCommand] = []
    for step in steps:
        command = step.command
        if isinstance(command, RecordAssertion):
            if parse_time(command.stated_at).start > end:
                continue
            kept.add(command.assertion_id or "")
            if command.supersedes is not None and command.supersedes not in kept:
                command = _without_supersedes(command)
        elif step.about is not None and step.about not in kept:
            continue
        out.append(command)
    return out


def _without_supersedes(command: RecordAssertion) -> RecordAssertion:
    return msgspec.structs.replace(command, supersedes=None)


def _view_values(snap: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for subject in SUBJECTS:
        q, s = snap[f"{subject}/q"], snap[f"{subject}/st"]
        out[f"{subject}/q"] = {k: q[k] for k in ("estimate", "basis", "spread", "claimants")}
        out[f"{subject}/st"] = {k: s[k] for k in ("status", "since", "by", "basis", "history")}
        out[f"{subject}/timeline"] = [
            (i["assertion"]["assertion_id"], i["property"], i["before"], i["after"])
            for i in snap[f"{subject}/timeline"]["items"]
        ]
    return out


@FAST
@given(ops=ops_strategy, as_of=st.sampled_from(AS_OF))
def test_a_view_as_of_t_is_the_view_of_what_was_stated_by_t(
    ops: list[tuple[Any, ...]], as_of: str
) -> None:
    steps = materialize(ops)
    with ledgers(2) as (whole, early):
        run_in_one_unit(whole, (s.command for s in steps))
        run_in_one_unit(early, _stated_by(steps, as_of))
        assert _view_values(snapshot(whole, at(whole, as_of))) == _view_values(
            snapshot(early, at(early))
        )


def test_the_timeline_ends_where_the_view_is(tmp_path: Path) -> None:
    """For any property whose last eligible assertion is live, its last `after` is the view."""
    ops = [
        ("record", "x", "quantity", 0, 1, False, 0, {"src-a"}, None),
        ("record", "x", "quantity", 4, 4, True, 1, {"src-b"}, None),
        ("record", "x", "quantity", 7, 0, False, 2, {"src-a"}, 0),
        ("record", "x", "status", 2, 0, False, 1, {"src-c"}, None),
        ("record", "x", "status", 5, 0, False, 2, {"src-a"}, None),
    ]
    with ledger(tmp_path / "l.db") as store:
        run_in_one_unit(store, (s.command for s in materialize(ops)))
        conn = store.reader()
        items = views.timeline(conn, "x", at(store)).items
        last = {i.property: i.after for i in items}
        assert last["q"] == views.quantity_view(conn, "x", "q", at(store)).estimate
        assert last["st"] == views.status_view(conn, "x", "st", at(store)).status


def _live_by_definition(facts: list[Fact]) -> set[str]:
    """The contract's recursive rule, evaluated naively."""
    by_id = {f.assertion_id: f for f in facts}

    def live(aid: str) -> bool:
        return not any(live(f.assertion_id) for f in facts if f.supersedes == aid)

    return {aid for aid in by_id if live(aid)}


def _status_by_the_rules(live: list[Fact]) -> tuple[str, str | None, list[str]]:
    """`(status, since, basis)` of live status assertions, by the contract's words: the
    value of the latest-stated decisive one (disputed if both share that time), else
    reported; since the first of the run it rests on (for a dispute: of every time, back
    from the latest, that holds both values)."""
    ordered = sorted(live, key=lambda f: f.order)
    decisive = [f for f in ordered if f.status in ("confirmed", "denied")]
    if not decisive:
        if not ordered:
            return "unreported", None, []
        return "reported", ordered[0].stated_at, [f.assertion_id for f in ordered]
    times: dict[int, set[str | None]] = {}
    for f in decisive:
        times.setdefault(f.stated_start, set()).add(f.status)
    latest = max(times)
    if len(times[latest]) == 2:
        began = latest
        for t in sorted(times, reverse=True)[1:]:
            if len(times[t]) < 2:
                break
            began = t
        run = [f for f in decisive if f.stated_start >= began]
        return "disputed", run[0].stated_at, [f.assertion_id for f in run]
    [value] = times[latest]
    other = max((f.stated_start for f in decisive if f.status != value), default=None)
    run = [f for f in decisive if f.status == value and (other is None or f.stated_start > other)]
    return str(value), run[0].stated_at, [f.assertion_id for f in run]


def _direct_value(prefix: list[Fact], kind: str) -> Any:
    live = [f for f in prefix if f.assertion_id in _live_by_definition(prefix)]
    if kind == "quantity":
        return quantity_parts(live)[0]
    return status_parts(live)[0]


@FAST
@given(ops=ops_strategy, as_of=st.sampled_from((None, *AS_OF)))
@example(  # a correction stated at the same time as what it corrects: that never held
    ops=[
        ("record", "x", "quantity", 4, 0, False, 0, {"src-a"}, None),
        ("record", "x", "quantity", 5, 0, False, 1, {"src-b"}, 0),
    ],
    as_of=None,
)
@example(  # two at one time, one of them corrected later: both show the value at that time
    ops=[
        ("record", "x", "quantity", 4, 0, False, 0, {"src-a"}, None),
        ("record", "x", "quantity", 5, 0, False, 1, {"src-b"}, None),
        ("record", "x", "quantity", 7, 0, False, 2, {"src-b"}, 1),
    ],
    as_of=None,
)
@example(  # two properties at one time, one of them twice: pages give changes in order
    ops=[
        ("record", "x", "quantity", 0, 0, False, 0, {"src-a"}, None),
        ("record", "x", "status", 0, 0, False, 1, {"src-a"}, None),
        ("record", "x", "quantity", 0, 0, False, 2, {"src-b"}, None),
    ],
    as_of=None,
)
def test_the_timeline_agrees_with_the_rules_applied_to_each_prefix(
    ops: list[tuple[Any, ...]], as_of: str | None
) -> None:
    """...and a timeline of one property (`?property=`) is that property's part of it, and
    its pages (`?limit=`, `?cursor=`) put together are the whole of it."""
    with ledgers(1) as (store,):
        run_in_one_unit(store, (s.command for s in materialize(ops)))
        conn = store.reader()
        pit = at(store, as_of)
        for subject in SUBJECTS:
            facts = eligible(conn, subject, None, pit)
            whole = views.timeline(conn, subject, pit)
            assert whole.next is None
            for limit in (1, 2, 5):
                paged: list[views.TimelineItem] = []
                changes: list[ValueChange] = []
                cursor: str | None = None
                for _ in range(len(whole.items) + 1):  # a cursor that does not move on fails
                    page = views.timeline(conn, subject, pit, limit=limit, cursor=cursor)
                    assert len(page.items) <= limit
                    paged += page.items
                    changes += page.changes
                    if page.next is None:
                        break
                    cursor = page.next
                assert page.next is None
                assert paged == whole.items, limit
                assert changes == whole.changes, limit
            for name in (*PROPS.values(), "never-claimed"):
                part = views.timeline(conn, subject, pit, name)
                assert part.items == [i for i in whole.items if i.property == name]
                assert part.changes == [c for c in whole.changes if c.property == name]
                assert msgspec.structs.replace(
                    part, items=[], changes=[]
                ) == msgspec.structs.replace(whole, items=[], changes=[])
            for prop in PROPS.values():  # the value at every statement time: the last change
                mine = [f for f in facts if f.prop == prop]
                steps = [c for c in whole.changes if c.property == prop]
                assert all(a.value != b.value for a, b in pairwise(steps))
                starts = [parse_time(c.stated_at).start for c in steps]
                assert starts == sorted(set(starts))
                for t in sorted({f.stated_start for f in mine}):
                    held = [c.value for c, start in zip(steps, starts, strict=True) if start <= t]
                    value = _direct_value([f for f in mine if f.stated_start <= t], mine[0].kind)
                    assert (held[-1] if held else _direct_value([], mine[0].kind)) == value
            items = {i.assertion.assertion_id: i for i in whole.items}
            for prop in PROPS.values():
                mine = [f for f in facts if f.prop == prop]
                assert {f.assertion_id for f in live_facts(mine)} == _live_by_definition(mine)
            live_ids = {
                f.assertion_id
                for prop in PROPS.values()
                for f in live_facts([g for g in facts if g.prop == prop])
            }
            assert list(items) == [f.assertion_id for f in facts if f.assertion_id in live_ids]
            for fact in facts:  # the view just before its statement time, and at it
                if fact.assertion_id not in items:
                    continue
                mine = [f for f in facts if f.prop == fact.prop]
                item = items[fact.assertion_id]
                at_it = [f for f in mine if f.stated_start <= fact.stated_start]
                before_it = [f for f in mine if f.stated_start < fact.stated_start]
                assert item.after == _direct_value(at_it, fact.kind)
                assert item.before == _direct_value(before_it, fact.kind)


@FAST
@given(ops=ops_strategy, as_of=st.sampled_from((None, *AS_OF)))
@example(  # a correction stated later, to another value: what held before it stays
    ops=[
        ("record", "x", "status", 1, 0, False, 0, {"src-a"}, None),
        ("record", "x", "status", 2, 0, False, 1, {"src-b"}, None),
        ("record", "x", "status", 7, 0, False, 2, {"src-b"}, 1),
    ],
    as_of=None,
)
@example(  # disputed at two times in a row: it began at the first
    ops=[
        ("record", "x", "status", 1, 0, False, 1, {"src-a"}, None),
        ("record", "x", "status", 1, 0, False, 2, {"src-b"}, None),
        ("record", "x", "status", 7, 0, False, 1, {"src-a"}, None),
        ("record", "x", "status", 7, 0, False, 2, {"src-b"}, None),
    ],
    as_of=None,
)
@example(  # to the same value: the status began with the first one
    ops=[
        ("record", "y", "status", 0, 0, False, 0, {"src-a"}, None),
        ("record", "y", "status", 2, 0, False, 0, {"src-a"}, 0),
    ],
    as_of=None,
)
@example(  # a correction of a denial: confirmed again from the correction's time, by it
    ops=[
        ("record", "x", "status", 1, 0, False, 1, {"src-a"}, None),
        ("record", "x", "status", 2, 0, False, 2, {"src-b"}, None),
        ("record", "x", "status", 7, 0, False, 1, {"src-b"}, 1),
    ],
    as_of=None,
)
@example(  # a report correcting a confirmation: reported again from the report's time
    ops=[
        ("record", "x", "status", 1, 0, False, 0, {"src-a"}, None),
        ("record", "x", "status", 2, 0, False, 1, {"src-b"}, None),
        ("record", "x", "status", 7, 0, False, 0, {"src-b"}, 1),
    ],
    as_of=None,
)
@example(  # a report correcting a denial: confirmed again, dated by the report
    ops=[
        ("record", "x", "status", 1, 0, False, 1, {"src-a"}, None),
        ("record", "x", "status", 2, 0, False, 2, {"src-b"}, None),
        ("record", "x", "status", 7, 0, False, 0, {"src-b"}, 1),
    ],
    as_of=None,
)
def test_the_status_history_is_the_view_at_each_statement_time(
    ops: list[tuple[Any, ...]], as_of: str | None
) -> None:
    """A status view's history is what the contract's rules, applied by the letter to what
    was live at each statement time up to its `as_of` (at the same seq), gave as status,
    since and first basis, kept where the status changed: a correction stated later does
    not take back the status that held before it. A change is dated at its own statement
    time, oldest first: where the rules' since lies before it (a correction stated then
    let an older assertion count again), by the first assertion of that time that counts
    and holds the new status, else the first of that time. And the view itself is those
    rules at its own point."""
    with ledgers(1) as (store,):
        run_in_one_unit(store, (s.command for s in materialize(ops)))
        conn = store.reader()
        pit = at(store, as_of)
        for subject in SUBJECTS:
            facts = eligible(conn, subject, "st", pit)
            expected: list[tuple[str, str | None, str | None]] = []
            for start in sorted({f.stated_start for f in facts}):
                by_then = [f for f in facts if f.stated_start <= start]
                counted = _live_by_definition(by_then)
                live = [f for f in by_then if f.assertion_id in counted]
                status, _since, basis = _status_by_the_rules(live)
                if status != (expected[-1][0] if expected else "unreported"):
                    first = next(f for f in live if f.assertion_id == basis[0])
                    if first.stated_start != start:  # dated by what was stated then
                        now = [f for f in by_then if f.stated_start == start]
                        first = next(
                            (
                                f
                                for f in now
                                if f.assertion_id in counted
                                and (
                                    status == "reported"
                                    or f.status == status
                                    or (status == "disputed" and f.status != "reported")
                                )
                            ),
                            now[0],
                        )
                    expected.append((status, first.stated_at, first.assertion_id))
            view = views.status_view(conn, subject, "st", pit)
            assert [(h.status, h.since, h.assertion_id) for h in view.history] == expected
            starts = [parse_time(h.since).start for h in view.history]
            assert starts == sorted(starts)  # oldest first, each change at its own time
            live = [f for f in facts if f.assertion_id in _live_by_definition(facts)]
            assert (view.status, view.since, view.basis) == _status_by_the_rules(live)
            # with no correction, a status keeps its `since` while it lasts
            if all(f.supersedes is None for f in facts):
                assert view.since == (expected[-1][1] if expected else None)


def _fact(index: int, supersedes: int | None) -> Fact:
    return Fact(
        assertion_id=f"a{index}",
        prop="troops.deployed",
        kind="quantity",
        recorded_seq=index + 1,
        stated_at="2025",
        stated_start=index,
        mode="total",
        low=index,
        high=index,
        best=None,
        status=None,
        claimants='["src-a"]',
        valid_from_start=None,
        valid_to_end=None,
        supersedes=None if supersedes is None else f"a{supersedes}",
    )


def _incremental(facts: list[Fact]) -> set[str]:
    liveness = Liveness()
    for fact in facts:
        liveness.add(fact)
    return liveness.live


@FAST
@given(
    links=st.lists(st.one_of(st.none(), st.integers(0, 1_000)), max_size=60),
    missing=st.sets(st.integers(0, 59), max_size=10),
)
def test_live_facts_decided_at_once_agree_with_the_rule_and_with_adding_one_by_one(
    links: list[int | None], missing: set[int]
) -> None:
    """Each assertion may supersede any older one (a forest of corrections, chains among
    them); some targets are not eligible (retracted, stated later), so their links count
    for nothing. The whole-set decision is the contract's rule, and the timeline's."""
    facts = [
        _fact(i, None if target is None else target % i if i else None)
        for i, target in enumerate(links)
    ]
    facts = [f for i, f in enumerate(facts) if i not in missing]
    live = {f.assertion_id for f in live_facts(facts)}
    assert live == _live_by_definition(facts) == _incremental(facts)


def test_a_long_chain_of_corrections_alternates_from_its_newest() -> None:
    """Each correction supersedes the one before: the newest is live, the one it corrects
    is not, the one before that counts again, and so on down the chain (the contract's
    recursive rule), decided in one pass (adding them one by one takes n^2 steps)."""
    n = 5_001
    facts = [_fact(i, i - 1 if i else None) for i in range(n)]
    live = [f.assertion_id for f in live_facts(facts)]
    assert live == [f"a{i}" for i in range(n) if (n - 1 - i) % 2 == 0]
    assert quantity_parts(live_facts(facts))[1] == [f"a{n - 1}"]
