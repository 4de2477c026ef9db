"""The event types of the log: past-tense facts with stable tags.

A tag never changes and every field added later has a default, so a log written by an
older version always decodes. Payload structs carry only what happened; the envelope
(:class:`Event`) carries where it sits in the log and what commits to it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Reliability = Literal["A", "B", "C", "D", "E", "F"]
StatusValue = Literal["reported", "confirmed", "denied"]
Mode = Literal["total", "increment"]
Qualifier = Literal["about", "exactly", "at least", "at most", "more than", "fewer than"]
Rank = Literal["preferred", "normal", "deprecated"]

EVENT_TYPES = (
    "SourceRegistered",
    "SourceUpdated",
    "AssertionRecorded",
    "AssertionRetracted",
    "AssertionRanked",
    "PayloadErased",
)


class Payload(
    msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=False, gc=False
):
    """Base of every event payload; absent optional fields are not written.

    Frozen and acyclic, so the garbage collector need not track them (`gc=False`).
    """


class Value(Payload, frozen=True):
    """A quantity (`low`, `high`, optional `best`) or a status; never both."""

    low: int | None = None
    high: int | None = None
    best: int | None = None
    status: StatusValue | None = None

    @property
    def kind(self) -> Literal["quantity", "status"]:
        return "status" if self.status is not None else "quantity"


class Document(Payload, frozen=True):
    """The document a claim was read in."""

    publisher: str
    published_at: str
    url: str | None = None
    title: str | None = None
    retrieved_at: str | None = None
    sha256: str | None = None


class SourceRegistered(Payload, frozen=True):
    id: str
    name: str
    kind: str
    country: str | None = None
    reliability: Reliability | None = None


ClearableSourceField = Literal["country", "reliability"]


class SourceUpdated(Payload, frozen=True):
    """Only the fields that changed are present; `cleared` names the fields removed."""

    id: str
    name: str | None = None
    kind: str | None = None
    country: str | None = None
    reliability: Reliability | None = None
    cleared: tuple[ClearableSourceField, ...] = ()


class AssertionRecorded(Payload, frozen=True):
    assertion_id: str
    subject: str
    property: str
    value: Value
    claimants: tuple[str, ...]
    stated_at: str
    document: Document
    quote: str
    mode: Mode | None = None
    qualifier: Qualifier = "about"
    valid_from: str | None = None
    valid_to: str | None = None
    credibility: int | None = None
    supersedes: str | None = None
    note: str | None = None


class AssertionRetracted(Payload, frozen=True):
    assertion_id: str
    reason: str


class AssertionRanked(Payload, frozen=True):
    assertion_id: str
    rank: Rank
    reason: str


class PayloadErased(Payload, frozen=True):
    """The payload of event `seq` was erased by law (`ledger erase`), for `reason`.

    Appended in the same transaction that deletes the payload, on the erased assertion's
    subject stream, so an erasure is part of the hash chain and the Merkle tree: an
    outsider who checks the log can tell a lawful erasure (this event, who appended it,
    when and why) from a payload deleted by other means (no such event). It holds no
    text of the erased payload, and it cannot itself be erased.
    """

    seq: int
    reason: str


def updated(source: SourceRegistered, change: SourceUpdated) -> SourceRegistered:
    """`source` with the fields `change` sets or clears."""
    country = change.country if change.country is not None else source.country
    reliability = change.reliability if change.reliability is not None else source.reliability
    return SourceRegistered(
        id=source.id,
        name=change.name if change.name is not None else source.name,
        kind=change.kind if change.kind is not None else source.kind,
        country=None if "country" in change.cleared else country,
        reliability=None if "reliability" in change.cleared else reliability,
    )


AnyPayload = (
    SourceRegistered
    | SourceUpdated
    | AssertionRecorded
    | AssertionRetracted
    | AssertionRanked
    | PayloadErased
)

PAYLOAD_TYPES: dict[str, type[AnyPayload]] = {
    "SourceRegistered": SourceRegistered,
    "SourceUpdated": SourceUpdated,
    "AssertionRecorded": AssertionRecorded,
    "AssertionRetracted": AssertionRetracted,
    "AssertionRanked": AssertionRanked,
    "PayloadErased": PayloadErased,
}
TYPE_OF: dict[type[AnyPayload], str] = {cls: name for name, cls in PAYLOAD_TYPES.items()}


class ErasedAssertion(msgspec.Struct, frozen=True, gc=False):
    """What the rules still need of an `AssertionRecorded` whose payload was erased.

    Never in the log and never shown: a replay folds it in place of the erased payload
    (from the `erasures` record), so the assertion's id stays taken, its property keeps
    its kind and its subject's counts stay as they were, exactly as before the erasure.
    """

    assertion_id: str
    subject: str
    property: str
    kind: Literal["quantity", "status"]


class NewEvent(msgspec.Struct, frozen=True):
    """An event about to be appended: the store assigns seq, version, time and hashes."""

    stream: str
    payload: AnyPayload

    @property
    def type(self) -> str:
        return TYPE_OF[type(self.payload)]


class Event(msgspec.Struct, frozen=True, gc=False):
    """An appended event, as the log holds it.

    `data` is the decoded payload, or None where the payload was erased; the envelope and
    its `data_sha256` stay, so every hash and proof still verifies. Only a replay sees an
    :class:`ErasedAssertion` there instead of None (see :mod:`ledger.erasure`).
    """

    seq: int
    type: str
    stream: str
    version: int
    recorded_at: str
    actor: str
    data: AnyPayload | ErasedAssertion | msgspec.Raw | None
    data_sha256: str
    hash: str


def subject_stream(subject: str) -> str:
    return f"subject:{subject}"


def source_stream(source_id: str) -> str:
    return f"source:{source_id}"
