"""Domain rules: what each command appends, decided against the current write state.

Pure decisions: given a command and a read-only view of what the log already holds, return
the events to append (possibly none) or raise a domain error. The store runs them inside
its write transaction, so the state they see is exactly the state they append onto.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from ledger.commands import (
    AnyCommand,
    RankAssertion,
    RecordAssertion,
    RecordPrepared,
    RegisterSource,
    RetractAssertion,
    SourceIdRef,
    UpdateSource,
)
from ledger.errors import Conflict, FieldError, InvalidInput, NotFound
from ledger.events import (
    AssertionRanked,
    AssertionRecorded,
    AssertionRetracted,
    ClearableSourceField,
    Document,
    NewEvent,
    SourceRegistered,
    SourceUpdated,
    Value,
    source_stream,
    subject_stream,
)

PropertyKind = Literal["quantity", "status"]


@dataclass(frozen=True, slots=True)
class AssertionInfo:
    assertion_id: str
    subject: str
    property: str
    retracted: bool


class WriteState(Protocol):
    """What the domain rules may ask of the log before appending."""

    def source(self, source_id: str) -> SourceRegistered | None: ...
    def missing_sources(self, source_ids: list[str]) -> list[str]: ...
    def assertion(self, assertion_id: str) -> AssertionInfo | None: ...
    def property_kind(self, subject: str, prop: str) -> PropertyKind | None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """The events to append and what the caller is told about them."""

    events: list[NewEvent]
    stream: str
    assertion_id: str | None = None
    existing: bool = False  # the command restated something the log already holds


class _RandomPool:
    """Random bytes from the OS drawn 4 KiB at a time: one system call per ~400 ids
    instead of one per id (under load a system call is where a busy writer loses its
    core). A forked child starts with an empty pool, so it never repeats its parent's."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._at + count > len(self._bytes):
                self._bytes = os.urandom(self.SIZE)
                self._at = 0
            start = self._at
            self._at = start + count
            return self._bytes[start : self._at]

    def forget(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0


_random = _RandomPool()
os.register_at_fork(after_in_child=_random.forget)


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7), as the id of server-named assertions."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_random.take(10), "big")
    value = (ms & (2**48 - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 64) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & (2**62 - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def decide(command: AnyCommand, state: WriteState) -> Decision:
    """The events `command` appends onto `state`, or a domain error."""
    if isinstance(command, RecordAssertion):
        return _record(prepare_assertion(command), state)
    if isinstance(command, RecordPrepared):
        return _record(command, state)
    if isinstance(command, RegisterSource):
        return _register(command, state)
    if isinstance(command, UpdateSource):
        return _update(command, state)
    if isinstance(command, RetractAssertion):
        return _retract(command, state)
    return _rank(command, state)


def _register(cmd: RegisterSource, state: WriteState) -> Decision:
    stream = source_stream(cmd.id)
    wanted = SourceRegistered(
        id=cmd.id, name=cmd.name, kind=cmd.kind, country=cmd.country, reliability=cmd.reliability
    )
    current = state.source(cmd.id)
    if current is None:
        return Decision([NewEvent(stream, wanted)], stream)
    if current == wanted:
        return Decision([], stream, existing=True)
    raise Conflict(f"source {cmd.id!r} is already registered with other details")


_Text = TypeVar("_Text", bound=str)


def _changed(new: _Text | msgspec.UnsetType | None, old: _Text | None) -> _Text | None:
    """`new` where it sets a value other than `old`; None where it is left out, removed
    (see `cleared`) or the same."""
    return new if isinstance(new, str) and new != old else None


def _update(cmd: UpdateSource, state: WriteState) -> Decision:
    stream = source_stream(cmd.id)
    current = state.source(cmd.id)
    if current is None:
        raise NotFound(f"no source {cmd.id!r}")
    c = cmd.changes
    removable: tuple[tuple[ClearableSourceField, object, object], ...] = (
        ("country", c.country, current.country),
        ("reliability", c.reliability, current.reliability),
    )
    cleared = tuple(field for field, new, old in removable if new is None and old is not None)
    changed = SourceUpdated(
        id=cmd.id,
        name=_changed(c.name, current.name),
        kind=_changed(c.kind, current.kind),
        country=_changed(c.country, current.country),
        reliability=_changed(c.reliability, current.reliability),
        cleared=cleared,
    )
    if changed == SourceUpdated(id=cmd.id):
        return Decision([], stream, existing=True)
    return Decision([NewEvent(stream, changed)], stream)


def ledger_problems(
    state: WriteState,
    *,
    claimants: Sequence[str | None] = (),
    subject: str | None = None,
    prop: str | None = None,
    kind: PropertyKind | None = None,
    supersedes: str | None = None,
) -> list[FieldError]:
    """What an assertion's fields get wrong against what the ledger holds: unknown
    claimants, a value of the other kind than the property's, an unknown `supersedes` or
    one of another subject or property. Each check runs on the fields it is given (a
    request refused for other reasons is judged on the fields that are well-formed; a
    claimant that is None is one already refused for its form, and is not looked up)."""
    errors: list[FieldError] = []
    names = [c for c in claimants if c is not None]
    missing = set(state.missing_sources(names)) if names else set()
    errors += [
        FieldError(f"claimants[{i}]", f"unknown source {c!r}: register it first")
        for i, c in enumerate(claimants)
        if c in missing
    ]
    if subject is not None and prop is not None and kind is not None:
        known_kind = state.property_kind(subject, prop)
        if known_kind is not None and known_kind != kind:
            where = f"{subject}/{prop}"
            errors.append(FieldError("value", f"{where} holds {known_kind} values, not {kind}"))
    if supersedes is not None:
        old = state.assertion(supersedes)
        if old is None:
            errors.append(FieldError("supersedes", f"unknown assertion {supersedes!r}"))
        elif (
            subject is not None
            and prop is not None
            and (old.subject, old.property) != (subject, prop)
        ):
            errors.append(
                FieldError("supersedes", "must name an assertion of the same subject and property")
            )
    return errors


_ASSERTION_FIELDS = {f.name: f.type for f in msgspec.structs.fields(RecordAssertion)}


def _well_formed(raw: dict[str, Any], name: str) -> Any:
    """Field `name` of an assertion body, converted, when it is there and well-formed."""
    if name not in raw:
        return None
    try:
        return msgspec.convert(raw[name], _ASSERTION_FIELDS[name], strict=True)
    except msgspec.ValidationError:
        return None


def _well_formed_claimants(raw: dict[str, Any]) -> list[str | None]:
    """The body's claimants, each one converted when it is well-formed and None when it
    is not, so an unknown claimant is named beside another that is malformed."""
    given = raw.get("claimants")
    if not isinstance(given, list):
        return []
    out: list[str | None] = []
    for c in given:
        try:
            out.append(msgspec.convert(c, SourceIdRef, strict=True))
        except msgspec.ValidationError:
            out.append(None)
    return out


def problems_beside(
    state: WriteState, raw: object, problems: Sequence[FieldError]
) -> list[FieldError]:
    """:func:`ledger_problems` of an assertion body (decoded JSON, `raw`) already refused
    for `problems` (its shape, a header, its query), judged on its fields that are
    well-formed: so one answer names every bad field, not the body's shape first and what
    the ledger holds in a second round. A field a problem already names is not named again
    (a value above its high bound is not also of the wrong kind)."""
    if not isinstance(raw, dict):
        return []
    value = _well_formed(raw, "value")
    kind: PropertyKind | None = None
    if value is not None:
        kind = "status" if value.status is not None else "quantity"
    found = ledger_problems(
        state,
        claimants=_well_formed_claimants(raw),
        subject=_well_formed(raw, "subject"),
        prop=_well_formed(raw, "property"),
        kind=kind,
        supersedes=_well_formed(raw, "supersedes"),
    )
    given = {p.field for p in problems}
    return [e for e in found if e.field not in given]


def prepare_assertion(cmd: RecordAssertion) -> RecordPrepared:
    """The event `cmd` records, with its defaults filled in and an id made when it names
    none: everything of an assertion that needs none of the ledger's state, so it can be
    done away from the writer (see :class:`ledger.commands.RecordPrepared`)."""
    kind: PropertyKind = "status" if cmd.value.status is not None else "quantity"
    v, d = cmd.value, cmd.document
    event = AssertionRecorded(
        assertion_id=cmd.assertion_id or uuid7(),
        subject=cmd.subject,
        property=cmd.property,
        value=Value(low=v.low, high=v.high, best=v.best, status=v.status),
        claimants=tuple(cmd.claimants),
        stated_at=cmd.stated_at,
        document=Document(
            publisher=d.publisher,
            published_at=d.published_at,
            url=d.url,
            title=d.title,
            retrieved_at=d.retrieved_at,
            sha256=d.sha256,
        ),
        quote=cmd.quote,
        mode=(cmd.mode or "total") if kind == "quantity" else None,
        qualifier=cmd.qualifier or "about",
        valid_from=cmd.valid_from,
        valid_to=cmd.valid_to,
        credibility=cmd.credibility,
        supersedes=cmd.supersedes,
        note=cmd.note,
    )
    return RecordPrepared(event, chosen_id=cmd.assertion_id is not None)


def _record(prepared: RecordPrepared, state: WriteState) -> Decision:
    event = prepared.event
    errors = ledger_problems(
        state,
        claimants=event.claimants,
        subject=event.subject,
        prop=event.property,
        kind="status" if event.value.status is not None else "quantity",
        supersedes=event.supersedes,
    )
    if errors:
        raise InvalidInput(errors)
    assertion_id = event.assertion_id
    if prepared.chosen_id and state.assertion(assertion_id) is not None:
        raise Conflict(f"assertion id {assertion_id!r} is already taken")
    stream = subject_stream(event.subject)
    return Decision([NewEvent(stream, event)], stream, assertion_id=assertion_id)


def _known(assertion_id: str, state: WriteState) -> AssertionInfo:
    info = state.assertion(assertion_id)
    if info is None:
        raise NotFound(f"no assertion {assertion_id!r}")
    return info


def _retract(cmd: RetractAssertion, state: WriteState) -> Decision:
    info = _known(cmd.assertion_id, state)
    if info.retracted:
        raise Conflict(f"assertion {cmd.assertion_id!r} is already retracted")
    stream = subject_stream(info.subject)
    event = AssertionRetracted(assertion_id=cmd.assertion_id, reason=cmd.reason)
    return Decision([NewEvent(stream, event)], stream, assertion_id=cmd.assertion_id)


def _rank(cmd: RankAssertion, state: WriteState) -> Decision:
    info = _known(cmd.assertion_id, state)
    stream = subject_stream(info.subject)
    event = AssertionRanked(assertion_id=cmd.assertion_id, rank=cmd.rank, reason=cmd.reason)
    return Decision([NewEvent(stream, event)], stream, assertion_id=cmd.assertion_id)
