"""The status rules: status, since, by, basis and history.

`confirmed` and `denied` are decisive; `reported` only says that something was claimed.
The status is the value of the latest-stated live decisive assertion (`disputed` when both
values share that statement time), else `reported` while any assertion is live, else
`unreported`. Statement times compare by their first instant.
"""

from __future__ import annotations

import heapq
from typing import Literal

from projections.facts import Fact, Liveness
from projections.rows import Status, StatusChange

Decisive = Literal["confirmed", "denied"]
_OTHER: dict[str, Decisive] = {"confirmed": "denied", "denied": "confirmed"}


class RunningStatus:
    """The status of live assertions fed in statement order, and what it rests on.

    A `disputed` status rests on its run: the decisive assertions of every statement time,
    up to the latest, at which both values were stated with no time between them holding
    one value alone. It began with the first of them, as `confirmed` begins with the first
    confirmation after the last denial.
    """

    __slots__ = ("_disputed", "_group", "_group_start", "_last", "_reports", "_runs")

    def __init__(self) -> None:
        self._reports: list[Fact] = []
        # per decisive value: its latest statement time, and its assertions stated after
        # the latest assertion of the other value (the run the current status rests on)
        self._last: dict[str, int] = {}
        self._runs: dict[str, list[Fact]] = {"confirmed": [], "denied": []}
        self._group: list[Fact] = []  # decisive assertions at the latest decisive time
        self._group_start: int | None = None
        self._disputed: list[Fact] = []  # the disputed run before the latest time's group

    def add(self, fact: Fact) -> None:
        value = fact.status
        if value not in _OTHER:
            self._reports.append(fact)
            return
        other = _OTHER[value]
        start = fact.stated_start
        self._runs[other] = []
        if other not in self._last or start > self._last[other]:
            self._runs[value].append(fact)
        self._last[value] = start
        if start != self._group_start:  # the group before is whole: did it hold both?
            if len({f.status for f in self._group}) > 1:
                self._disputed += self._group
            else:
                self._disputed = []
            self._group_start, self._group = start, []
        self._group.append(fact)

    def current(self) -> tuple[Status, list[Fact]]:
        """The status and the assertions behind it, in statement order (first: since)."""
        if not self._last:
            return ("reported", self._reports) if self._reports else ("unreported", [])
        latest = max(self._last.values())
        values = [v for v, start in self._last.items() if start == latest]
        if len(values) > 1:
            return "disputed", self._disputed + self._group
        value: Status = "confirmed" if values[0] == "confirmed" else "denied"
        return value, self._runs[values[0]]


def status_parts(
    facts: list[Fact],
) -> tuple[Status, str | None, list[str], list[str], list[StatusChange]]:
    """`(status, since, by, basis, history)` of eligible assertions given in statement order.

    The history is the status as the view would give it at each statement time, in turn:
    liveness is taken over the assertions stated by then, so a correction stated later has
    not yet displaced what it corrects, and a status that held before it shows. Changes
    are taken between statement times, not between assertions stated at the same time, so
    it never shows a status that held at no statement time.
    """
    liveness = Liveness()
    running = RunningStatus()
    history: list[StatusChange] = []
    previous: Status = "unreported"
    for i, fact in enumerate(facts):
        changes = liveness.add(fact)
        if len(changes) == 1:  # the new assertion alone became live: it comes last
            running.add(fact)
        elif changes:  # others stopped (or started again) being live: refold in order
            running = RunningStatus()
            for earlier in facts[: i + 1]:
                if earlier.assertion_id in liveness.live:
                    running.add(earlier)
        if i + 1 < len(facts) and facts[i + 1].stated_start == fact.stated_start:
            continue
        status, behind = running.current()
        if status != previous:
            history.append(StatusChange(status, behind[0].stated_at, behind[0].assertion_id))
            previous = status
    status, behind = running.current()
    since = behind[0].stated_at if behind else None
    by = sorted({c for f in behind for c in f.claimant_ids()})
    return status, since, by, [f.assertion_id for f in behind], history


class StatusState:
    """The status of a changing live set (the timeline), kept in O(log n) per change."""

    __slots__ = ("_count", "_decisive", "_starts")

    def __init__(self) -> None:
        self._count = 0
        self._decisive: dict[int, dict[str, int]] = {}
        self._starts: list[int] = []  # max-heap of decisive statement times (negated)

    def change(self, fact: Fact, live: bool) -> None:
        step = 1 if live else -1
        self._count += step
        if fact.status not in _OTHER:
            return
        start = fact.stated_start
        values = self._decisive.setdefault(start, {})
        left = values.get(fact.status, 0) + step
        if left:
            values[fact.status] = left
        else:
            values.pop(fact.status, None)
            if not values:
                del self._decisive[start]
        if live:
            heapq.heappush(self._starts, -start)

    def value(self) -> Status:
        while self._starts and -self._starts[0] not in self._decisive:
            heapq.heappop(self._starts)
        if self._starts:
            values = self._decisive[-self._starts[0]]
            if len(values) > 1:
                return "disputed"
            return "confirmed" if "confirmed" in values else "denied"
        return "reported" if self._count else "unreported"
