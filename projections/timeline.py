"""The timeline: every live assertion on a subject, with its property's value around it.

Items come in statement order (ties: record order). Each carries its property's view
value just before its statement time and at it, computed over the timeline's prefix with
liveness re-evaluated there: a correction stated later has not yet displaced what it
corrects. The prefix runs over every eligible assertion, so an assertion that is not live
at the end (one corrected later) still shapes the values of the items around it.
Assertions of one property stated at the same time share those two values: the view
never held what one of them alone would give, so no item shows it.

Beside its items, a timeline gives each property's value changes (`changes`): the value
from every statement time at which it changed (from the first instant of that time),
those of assertions since corrected included.

A timeline is paged like every list when a `limit` is given (without one it holds every
item, and every change): the cursor names the last item of the page before by its place
in statement order, `<stated_start>.<recorded_seq>`, so the next page starts right after
that place even if the item itself is no longer live at the point in time the next page
is read at. The values around a page's items are those of the whole timeline: the prefix
is folded from the subject's first assertion whichever page is asked for. A page's
changes are those placed (by the last assertion of their time) after the cursor and up to
its last item, so the pages' changes put together are the whole timeline's.
"""

from __future__ import annotations

import re
import sqlite3

from projections.details import DETAIL_COLUMNS, check_limit, details, not_a_cursor
from projections.facts import Fact, Liveness, eligible
from projections.pit import PointInTime, echo, subject_version
from projections.quantity import QuantityState
from projections.rows import Estimate, Status, Timeline, TimelineItem, ValueChange
from projections.status import LiveStatuses

Value = Estimate | Status | None


class _Property:
    """One property's liveness and view value as the prefix grows."""

    __slots__ = ("liveness", "state", "value")

    def __init__(self, kind: str) -> None:
        self.liveness = Liveness()
        self.state: QuantityState | LiveStatuses = (
            QuantityState() if kind == "quantity" else LiveStatuses()
        )
        self.value: Value = self.state.value()

    def add(self, fact: Fact) -> tuple[Value, Value]:
        before = self.value
        for changed, live in self.liveness.add(fact):
            self.state.change(changed, live)
        self.value = self.state.value()
        return before, self.value


_CURSOR = re.compile(r"(-?[0-9]{1,19})\.([0-9]{1,18})")


def _place(cursor: str | None) -> tuple[int, int] | None:
    """The place in statement order a cursor names (None: the start)."""
    if cursor is None:
        return None
    found = _CURSOR.fullmatch(cursor)
    if found is None:
        raise not_a_cursor()
    return int(found[1]), int(found[2])


def _cursor(fact: Fact) -> str:
    return f"{fact.stated_start}.{fact.recorded_seq}"


def timeline(
    conn: sqlite3.Connection,
    subject: str,
    at: PointInTime,
    prop: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Timeline:
    """Every live assertion on `subject` at `at` (only on `prop`, if given), each with its
    property's value around it. A property's items and values are the same whether the
    timeline covers one property or all: each property's values depend on its own
    assertions alone.

    With `limit`, at most that many items after `cursor` (see the module), and the cursor
    of the next page in `next` if more follow."""
    if limit is not None:
        check_limit(limit)
    place = _place(cursor)
    facts = eligible(conn, subject, prop, at)
    properties: dict[str, _Property] = {}
    steps: list[tuple[Fact, Value, Value]] = []
    for fact in facts:
        state = properties.get(fact.prop)
        if state is None:
            state = properties[fact.prop] = _Property(fact.kind)
        before, after = state.add(fact)
        steps.append((fact, before, after))
    # one statement time of one property: before the first of it, after the last of it
    at_time: dict[tuple[str, int], tuple[Value, Value]] = {}
    first_at: dict[tuple[str, int], Fact] = {}
    last_at: dict[tuple[str, int], Fact] = {}
    for fact, before, after in steps:
        key = (fact.prop, fact.stated_start)
        at_time[key] = (at_time[key][0] if key in at_time else before, after)
        first_at.setdefault(key, fact)
        last_at[key] = fact
    # the value's changes, each placed at the last assertion of its time, and in that
    # order, so that the pages' changes put together are the whole timeline's
    changes = sorted(
        (
            (last_at[key], ValueChange(key[0], first_at[key].stated_at, after))
            for key, (before, after) in at_time.items()
            if after != before
        ),
        key=lambda change: change[0].order,
    )
    steps = [
        (fact, *at_time[fact.prop, fact.stated_start])
        for fact, _, _ in steps
        if fact.assertion_id in properties[fact.prop].liveness.live
    ]
    if place is not None:
        steps = [s for s in steps if s[0].order > place]
        changes = [c for c in changes if c[0].order > place]
    following: str | None = None
    if limit is not None and len(steps) > limit:
        steps = steps[:limit]
        following = _cursor(steps[-1][0])
        changes = [c for c in changes if c[0].order <= steps[-1][0].order]
    seqs = ",".join(str(fact.recorded_seq) for fact, _, _ in steps)  # integers from the index
    rows = conn.execute(
        f"SELECT {DETAIL_COLUMNS} FROM proj_assertions a WHERE a.recorded_seq IN ({seqs})"
    ).fetchall()
    by_id = {d.assertion_id: d for d in details(conn, rows, at.seq)}
    items = [
        TimelineItem(
            assertion=by_id[fact.assertion_id],
            property=fact.prop,
            kind="status" if fact.kind == "status" else "quantity",
            before=before,
            after=after,
        )
        for fact, before, after in steps
    ]
    return Timeline(
        subject=subject,
        **echo(at),
        version=subject_version(conn, subject, at.seq),
        items=items,
        changes=[change for _, change in changes],
        next=following,
    )
