"""The view rows: what the read side returns, shaped exactly as the contract's JSON.

These are neither events nor API schemas. Field order is the contract's key order. A key
the contract lists is always present (null when empty), except inside an assertion's
`value` and `document`, which echo what was recorded and so omit what was never given.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal["quantity", "status"]
Status = Literal["unreported", "reported", "confirmed", "denied", "disputed"]


class Row(msgspec.Struct, frozen=True):
    """Base of the view rows."""


class Page(Row, frozen=True):
    """A page of a listing, with the point in time it was read at: `seq` is the log
    position, so a client that passes it back (`?seq=`) reads every later page at the
    same position, whatever is appended meanwhile."""

    as_of: str | None
    known_at: str | None
    seq: int


# ---- assertions ----


class AssertionValue(Row, frozen=True, omit_defaults=True):
    """`{low, high, best?}` or `{status}`, as recorded."""

    low: int | None = None
    high: int | None = None
    best: int | None = None
    status: Literal["reported", "confirmed", "denied"] | None = None


class DocumentRow(Row, frozen=True, omit_defaults=True):
    publisher: str
    published_at: str
    url: str | None = None
    title: str | None = None
    retrieved_at: str | None = None
    sha256: str | None = None


class Retraction(Row, frozen=True):
    seq: int
    reason: str
    recorded_at: str


class RankRow(Row, frozen=True):
    """The rank as known at a seq; `normal` with null reason and seq until ranked."""

    rank: Literal["preferred", "normal", "deprecated"] = "normal"
    reason: str | None = None
    seq: int | None = None


UNRANKED = RankRow()


class AssertionDetail(Row, frozen=True):
    """One assertion with its lifecycle (retraction, supersession, rank) as known at a seq."""

    assertion_id: str
    subject: str
    property: str
    value: AssertionValue
    mode: Literal["total", "increment"] | None
    qualifier: str
    claimants: list[str]
    stated_at: str
    valid_from: str | None
    valid_to: str | None
    document: DocumentRow
    quote: str
    credibility: int | None
    supersedes: str | None
    note: str | None
    recorded_seq: int
    recorded_at: str
    retracted: Retraction | None
    superseded_by: str | None
    rank: RankRow


class AssertionAt(AssertionDetail, frozen=True, kw_only=True):
    """An assertion read alone, with the point in time it was read at, as a view echoes it."""

    as_of: str | None
    known_at: str | None
    seq: int


class AssertionPage(Page, frozen=True, kw_only=True):
    items: list[AssertionDetail]
    next: str | None


# ---- the quantity view ----


class Estimate(Row, frozen=True):
    low: int
    high: int
    best: int | None


class Spread(Row, frozen=True):
    low: int
    high: int


class ClaimantTotal(Row, frozen=True):
    claimant: str
    low: int
    high: int
    best: int | None
    stated_at: str
    assertion_id: str


class QuantityView(Row, frozen=True):
    subject: str
    property: str
    as_of: str | None
    known_at: str | None
    seq: int
    version: int
    estimate: Estimate | None
    basis: list[str]
    spread: Spread | None
    claimants: list[ClaimantTotal]


# ---- the status view ----


class StatusChange(Row, frozen=True):
    status: Status
    since: str
    assertion_id: str


class StatusView(Row, frozen=True):
    subject: str
    property: str
    as_of: str | None
    known_at: str | None
    seq: int
    version: int
    status: Status
    since: str | None
    by: list[str]
    basis: list[str]
    history: list[StatusChange]


# ---- the timeline ----


class TimelineItem(Row, frozen=True):
    """A live assertion and its property's view value just before and just after it."""

    assertion: AssertionDetail
    property: str
    kind: Kind
    before: Estimate | Status | None
    after: Estimate | Status | None


class ValueChange(Row, frozen=True):
    """A property's view value from one statement time on, until its next change."""

    property: str
    stated_at: str
    value: Estimate | Status | None


class Timeline(Row, frozen=True):
    subject: str
    as_of: str | None
    known_at: str | None
    seq: int
    version: int
    items: list[TimelineItem]
    changes: list[ValueChange]
    """Each property's view value from every statement time at which it changed (from the
    first instant of its `stated_at`), in statement order (ties: the record order of the
    time's last assertion). Unlike `items`, it counts what assertions since corrected gave
    while they held: the view's value over statement time."""
    next: str | None
    """The cursor of the next page: only with a `limit`, and only when more items follow."""


# ---- catalogues ----


class SubjectRow(Row, frozen=True):
    subject: str
    properties: list[str]
    property_kinds: dict[str, Kind]
    assertions: int
    version: int


class SubjectPage(Page, frozen=True, kw_only=True):
    items: list[SubjectRow]
    next: str | None


class SourceVersion(Row, frozen=True):
    seq: int
    recorded_at: str
    name: str
    kind: str
    country: str | None
    reliability: str | None


class SourceView(Row, frozen=True):
    id: str
    name: str
    kind: str
    country: str | None
    reliability: str | None
    registered_seq: int
    version: int
    history: list[SourceVersion]


class SourceAt(SourceView, frozen=True, kw_only=True):
    """A source read alone, with the point in time it was read at, as a view echoes it."""

    as_of: str | None
    known_at: str | None
    seq: int


class SourcePage(Page, frozen=True, kw_only=True):
    items: list[SourceView]
    next: str | None
