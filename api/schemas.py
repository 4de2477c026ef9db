"""Request and response bodies of the HTTP API (not events, not view rows)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ledger.commands import Reason, blank_problem
from ledger.errors import FieldError
from ledger.events import Rank

Seq = Annotated[int, Meta(ge=0)]
Hash = Annotated[
    str, Meta(pattern="^[0-9a-f]{64}$", description="a SHA-256 hash, 64 lower-case hex digits")
]


class Body(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of request bodies: unknown and server-owned fields are refused."""


class RetractBody(Body, frozen=True):
    reason: Reason

    def problems(self) -> list[FieldError]:
        return blank_problem("reason", self.reason)


class RankBody(Body, frozen=True):
    rank: Rank
    reason: Reason

    def problems(self) -> list[FieldError]:
        return blank_problem("reason", self.reason)


class NoBody(Body, frozen=True):
    """What a POST that takes no body may carry instead of none: an empty JSON object."""


class AssertionReceipt(msgspec.Struct, frozen=True):
    assertion_id: str
    seq: int
    recorded_at: str
    hash: str


class EventReceipt(msgspec.Struct, frozen=True):
    seq: int
    recorded_at: str
    hash: str


class Unchanged(msgspec.Struct, frozen=True):
    """The request restated what the log already holds: nothing was appended."""

    status: Literal["unchanged"]


UNCHANGED = msgspec.json.encode(Unchanged("unchanged"))


class FieldProblem(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem details."""

    status: int
    title: str
    detail: str
    type: str = "about:blank"
    errors: list[FieldProblem] | None = None


class Health(msgspec.Struct, frozen=True, omit_defaults=True):
    """`status` is "ok", or "degraded" while appends are refused or the log's roots and proofs
    are (its stored Merkle tree failed a check); `reason` (only then) says why."""

    status: str
    seq: int
    reason: str | None = None


class Head(msgspec.Struct, frozen=True):
    size: int
    root: Annotated[
        Hash,
        Meta(
            description="RFC 9162 Merkle tree hash of events 1..size (leaf i is seq i + 1: "
            "SHA-256(0x00 || the event's canonical bytes); nodes SHA-256(0x01 || left || "
            "right)), 64 lower-case hex digits; SHA-256 of nothing for size 0"
        ),
    ]


class Inclusion(msgspec.Struct, frozen=True):
    seq: int
    size: int
    leaf_hash: Annotated[
        Hash, Meta(description="SHA-256(0x00 || canonical bytes of event `seq`), hex")
    ]
    path: Annotated[
        list[Hash],
        Meta(
            description="RFC 9162 inclusion proof (section 2.1.3) of leaf seq - 1 in the tree "
            "of `size`: hex hashes in the RFC's order, the leaf's sibling first"
        ),
    ]


class Consistency(msgspec.Struct, frozen=True, rename={"old": "from", "new": "to"}):
    old: int
    new: int
    path: Annotated[
        list[Hash],
        Meta(
            description="RFC 9162 consistency proof (section 2.1.4) from tree `from` to tree "
            "`to`: hex hashes in the RFC's order (SUBPROOF's). Empty when from = to, a case "
            "the RFC leaves out: the trees are the same, so their roots must be equal"
        ),
    ]


class EventPage(msgspec.Struct, frozen=True):
    items: Annotated[
        list[msgspec.Raw],
        Meta(
            description="events in seq order, each {seq, type, stream, version, recorded_at, "
            "actor, data, data_sha256, hash} as the contract gives them (data null once erased)"
        ),
    ]
    next: int | None


class ErasureItem(msgspec.Struct, frozen=True):
    """A payload erased by law: the event it belonged to, when, by whom and why, and the
    assertion it held (whose id stays taken)."""

    seq: int
    erased_at: str
    actor: str
    reason: str
    assertion_id: str
    subject: str
    property: str
    logged_seq: int | None = None
    """The seq of the `PayloadErased` event that logs the erasure in the chain (null for an
    erasure made before erasures were logged: `ledger erase --seq N` logs it)."""


class ErasurePage(msgspec.Struct, frozen=True):
    items: list[ErasureItem]
    next: int | None
