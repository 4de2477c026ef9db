"""The quantity rules: baseline, increments, estimate, per-claimant totals and spread.

Two forms of the same rules: :func:`quantity_parts` over a finished live set (the view),
and :class:`QuantityState`, which keeps the estimate while assertions come and go (the
timeline, where each step would otherwise recompute the whole prefix).
"""

from __future__ import annotations

import heapq

from projections.facts import Fact
from projections.rows import ClaimantTotal, Estimate, Spread


def counts_after(increment: Fact, baseline: Fact) -> bool:
    """Whether `increment` adds to `baseline`.

    Its `valid_from` must be at or after the end of the baseline's `valid_to`; when either
    is missing, its `stated_at` must be after the baseline's.
    """
    if increment.valid_from_start is not None and baseline.valid_to_end is not None:
        return increment.valid_from_start >= baseline.valid_to_end
    return increment.stated_start > baseline.stated_start


def _latest(facts: list[Fact]) -> Fact | None:
    best: Fact | None = None
    for fact in facts:
        if best is None or fact.order > best.order:
            best = fact
    return best


def baseline_of(live: list[Fact]) -> Fact | None:
    """The latest-stated live total (ties: highest seq), among the preferred ones if any."""
    totals = [f for f in live if f.is_total]
    preferred = [f for f in totals if f.preferred]
    return _latest(preferred or totals)


def estimate_of(baseline: Fact, increments: list[Fact]) -> Estimate:
    low, high, best = baseline.low or 0, baseline.high or 0, baseline.best
    for inc in increments:
        low += inc.low or 0
        high += inc.high or 0
        best = None if best is None or inc.best is None else best + inc.best
    return Estimate(low=low, high=high, best=best)


def quantity_parts(
    live: list[Fact],
) -> tuple[Estimate | None, list[str], Spread | None, list[ClaimantTotal]]:
    """`(estimate, basis, spread, claimants)` of live assertions given in statement order."""
    baseline = baseline_of(live)
    estimate: Estimate | None = None
    basis: list[str] = []
    if baseline is not None:
        increments = [f for f in live if f.is_increment and counts_after(f, baseline)]
        estimate = estimate_of(baseline, increments)
        basis = [baseline.assertion_id, *(f.assertion_id for f in increments)]
    latest: dict[str, Fact] = {}
    for fact in live:  # statement order, so the last one seen per claimant is its latest
        if fact.is_total:
            for claimant in fact.claimant_ids():
                latest[claimant] = fact
    claimants = [
        ClaimantTotal(
            claimant=c,
            low=f.low or 0,
            high=f.high or 0,
            best=f.best,
            stated_at=f.stated_at,
            assertion_id=f.assertion_id,
        )
        for c, f in sorted(latest.items())
    ]
    spread = (
        Spread(low=min(c.low for c in claimants), high=max(c.high for c in claimants))
        if claimants
        else None
    )
    return estimate, basis, spread, claimants


class QuantityState:
    """The estimate of a changing live set, kept in O(log n) per change.

    Totals sit in heaps by statement order (stale entries dropped lazily), so the baseline
    is the top of the preferred heap or else of the whole one. The increments' sum is kept
    against the current baseline and recounted only when the baseline changes.
    """

    __slots__ = (
        "_base",
        "_best",
        "_counted",
        "_high",
        "_increments",
        "_live",
        "_low",
        "_no_best",
        "_preferred",
        "_totals",
    )

    def __init__(self) -> None:
        self._live: dict[str, Fact] = {}
        self._totals: list[tuple[int, int, str]] = []
        self._preferred: list[tuple[int, int, str]] = []
        self._increments: dict[str, Fact] = {}
        self._base: Fact | None = None
        self._counted: set[str] = set()
        self._low = self._high = self._best = self._no_best = 0

    def change(self, fact: Fact, live: bool) -> None:
        fid = fact.assertion_id
        if live:
            self._live[fid] = fact
            if fact.is_total:
                entry = (-fact.stated_start, -fact.recorded_seq, fid)
                heapq.heappush(self._totals, entry)
                if fact.preferred:
                    heapq.heappush(self._preferred, entry)
            else:
                self._increments[fid] = fact
                if self._base is not None and counts_after(fact, self._base):
                    self._count(fact, 1)
        else:
            self._live.pop(fid, None)
            if self._increments.pop(fid, None) is not None and fid in self._counted:
                self._count(fact, -1)

    def _count(self, fact: Fact, sign: int) -> None:
        if sign > 0:
            self._counted.add(fact.assertion_id)
        else:
            self._counted.discard(fact.assertion_id)
        self._low += sign * (fact.low or 0)
        self._high += sign * (fact.high or 0)
        if fact.best is None:
            self._no_best += sign
        else:
            self._best += sign * fact.best

    def _top(self, heap: list[tuple[int, int, str]]) -> Fact | None:
        while heap and heap[0][2] not in self._live:
            heapq.heappop(heap)
        return self._live[heap[0][2]] if heap else None

    def value(self) -> Estimate | None:
        base = self._top(self._preferred) or self._top(self._totals)
        if base is not self._base:
            self._base = base
            self._counted.clear()
            self._low = self._high = self._best = self._no_best = 0
            if base is not None:
                for inc in self._increments.values():
                    if counts_after(inc, base):
                        self._count(inc, 1)
        if base is None:
            return None
        best = None
        if base.best is not None and self._no_best == 0:
            best = base.best + self._best
        return Estimate(
            low=(base.low or 0) + self._low, high=(base.high or 0) + self._high, best=best
        )
