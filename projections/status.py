"""The status rules: status, since, by, basis and history.

`confirmed` and `denied` are decisive; `reported` only says that something was claimed.
The status is the value of the latest-stated live decisive assertion (`disputed` when both
values share that statement time), else `reported` while any assertion is live, else
`unreported`. Statement times compare by their first instant.
"""

from __future__ import annotations

import bisect
from typing import Literal

from projections.facts import Fact, Liveness
from projections.rows import Status, StatusChange

Decisive = Literal["confirmed", "denied"]
_OTHER: dict[str, Decisive] = {"confirmed": "denied", "denied": "confirmed"}


class LiveStatuses:
    """The live assertions of a status property in statement order, one sorted list per
    value, so the status and what it rests on are read in O(log n) while assertions come
    and go (a correction displaces what it corrects, and may bring back what that one had
    displaced). The status view folds with it, and the timeline reads the status it gives
    after each assertion.

    The assertions behind `confirmed` are the confirmations stated after the last denial
    (and the reverse for `denied`). A `disputed` status rests on its run: the decisive
    assertions of every statement time, up to the latest, at which both values were
    stated with no time between them holding one value alone. It began with the first of
    them, as `confirmed` begins with the first confirmation after the last denial.
    """

    __slots__ = ("_facts", "_keys", "_single", "_values")

    def __init__(self) -> None:
        # (stated_start, recorded_seq) of each live assertion, per value, in order
        self._keys: dict[str, list[tuple[int, int]]] = {
            "confirmed": [],
            "denied": [],
            "reported": [],
        }
        self._facts: dict[tuple[int, int], Fact] = {}
        # per decisive statement time, how many live assertions of each value; and, in
        # order, the times where only one value is live (where a dispute cannot reach back)
        self._values: dict[int, dict[str, int]] = {}
        self._single: list[int] = []

    def change(self, fact: Fact, live: bool) -> None:
        key = fact.order
        keys = self._keys[fact.status if fact.status in _OTHER else "reported"]
        if live:
            bisect.insort(keys, key)
            self._facts[key] = fact
        else:
            del keys[bisect.bisect_left(keys, key)]
            del self._facts[key]
        if fact.status in _OTHER:
            self._count(fact.stated_start, fact.status, 1 if live else -1)

    def _count(self, start: int, value: str, step: int) -> None:
        values = self._values.setdefault(start, {})
        was_single = len(values) == 1
        left = values.get(value, 0) + step
        if left:
            values[value] = left
        else:
            del values[value]
        if not values:
            del self._values[start]
        if was_single != (len(values) == 1):
            if was_single:
                del self._single[bisect.bisect_left(self._single, start)]
            else:
                bisect.insort(self._single, start)

    def current(self) -> tuple[Status, list[Fact]]:
        """The status and the assertions behind it, in statement order (first: since)."""
        status, keys = self._behind(first_only=False)
        return status, [self._facts[k] for k in keys]

    def value(self) -> Status:
        """The status alone (what the timeline shows around each assertion)."""
        return self._behind(first_only=True)[0]

    def first(self) -> tuple[Status, Fact | None]:
        """The status and the first assertion behind it (its since), without the rest."""
        status, keys = self._behind(first_only=True)
        return status, self._facts[keys[0]] if keys else None

    def _behind(self, *, first_only: bool) -> tuple[Status, list[tuple[int, int]]]:
        confirmed, denied = self._keys["confirmed"], self._keys["denied"]
        if not confirmed and not denied:
            reports = self._keys["reported"]
            if not reports:
                return "unreported", []
            return "reported", reports[:1] if first_only else list(reports)
        last_c = confirmed[-1][0] if confirmed else None
        last_d = denied[-1][0] if denied else None
        if last_c is not None and last_d is not None and last_c == last_d:
            start = self._dispute_began(last_c)
            i = bisect.bisect_left(confirmed, (start, -1))
            j = bisect.bisect_left(denied, (start, -1))
            if first_only:
                return "disputed", [min(confirmed[i], denied[j])]
            return "disputed", sorted(confirmed[i:] + denied[j:])
        value: Status
        if last_d is None or (last_c is not None and last_c > last_d):
            value, run, other = "confirmed", confirmed, last_d
        else:
            value, run, other = "denied", denied, last_c
        i = 0 if other is None else bisect.bisect_right(run, (other, _AFTER_ANY_SEQ))
        return value, run[i : i + 1] if first_only else run[i:]

    def _dispute_began(self, latest: int) -> int:
        """The first statement time of the dispute at `latest`: the first decisive time
        after the last one before it where only one value was live (every time between
        holds both)."""
        confirmed, denied = self._keys["confirmed"], self._keys["denied"]
        i = bisect.bisect_left(self._single, latest)
        if not i:
            return min(confirmed[0][0], denied[0][0])
        single = self._single[i - 1]
        after_c = confirmed[bisect.bisect_right(confirmed, (single, _AFTER_ANY_SEQ))][0]
        after_d = denied[bisect.bisect_right(denied, (single, _AFTER_ANY_SEQ))][0]
        return min(after_c, after_d)


_AFTER_ANY_SEQ = 2**63


def status_parts(
    facts: list[Fact],
) -> tuple[Status, str | None, list[str], list[str], list[StatusChange]]:
    """`(status, since, by, basis, history)` of eligible assertions given in statement order.

    The history is the status as the view would give it at each statement time, in turn:
    liveness is taken over the assertions stated by then, so a correction stated later has
    not yet displaced what it corrects, and a status that held before it shows. Changes
    are taken between statement times, not between assertions stated at the same time, so
    it never shows a status that held at no statement time. Each change is dated at its
    statement time, so the history runs oldest first: with the view's first basis, stated
    then; or, when a correction stated then let an older assertion count again (the view's
    own `since` then lies before it), with :func:`_stated_then`.
    """
    liveness = Liveness()
    live = LiveStatuses()
    history: list[StatusChange] = []
    previous: Status = "unreported"
    began = 0  # where the assertions of the current statement time begin
    for i, fact in enumerate(facts):
        if fact.stated_start != facts[began].stated_start:
            began = i
        for changed, now in liveness.add(fact):
            live.change(changed, now)
        if i + 1 < len(facts) and facts[i + 1].stated_start == fact.stated_start:
            continue
        status, first = live.first()
        if status != previous and first is not None:
            if first.stated_start != fact.stated_start:
                first = _stated_then(facts[began : i + 1], status, liveness.live)
            history.append(StatusChange(status, first.stated_at, first.assertion_id))
            previous = status
    status, behind = live.current()
    since = behind[0].stated_at if behind else None
    by = sorted({c for f in behind for c in f.claimant_ids()})
    return status, since, by, [f.assertion_id for f in behind], history


def _stated_then(now: list[Fact], status: Status, live: set[str]) -> Fact:
    """The assertion a change of status at one statement time is dated by, when what the
    status rests on was stated before it: the first assertion of that time that counts and
    holds the new status (for `disputed`, either decisive value), else the first of that
    time (the correction that brought the change)."""
    for fact in now:
        if fact.assertion_id in live and (
            status == "reported"
            or fact.status == status
            or (status == "disputed" and fact.status in _OTHER)
        ):
            return fact
    return now[0]
