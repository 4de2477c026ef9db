"""The rules for recording an assertion, as the in-process writer runs them and as the
writer process gets them: the event built first, with no state read
(:func:`ledger.domain.prepare_assertion`), then judged against the ledger."""

from __future__ import annotations

import msgspec
import pytest

from ledger.commands import RecordAssertion
from ledger.domain import AssertionInfo, PropertyKind, decide, prepare_assertion
from ledger.errors import Conflict, InvalidInput
from ledger.events import AssertionRecorded, Document, NewEvent, SourceRegistered, Value
from tests.factories import DOCUMENT, quantity, status


class _State:
    """A WriteState over a few known facts, which notes every assertion it is asked for."""

    def __init__(
        self,
        sources: tuple[str, ...] = ("src-a",),
        assertions: tuple[AssertionInfo, ...] = (),
        kinds: dict[tuple[str, str], PropertyKind] | None = None,
    ) -> None:
        self.sources = set(sources)
        self.assertions = {a.assertion_id: a for a in assertions}
        self.kinds = kinds or {}
        self.asked: list[str] = []

    def source(self, source_id: str) -> SourceRegistered | None:
        return None

    def missing_sources(self, source_ids: list[str]) -> list[str]:
        return [s for s in source_ids if s not in self.sources]

    def assertion(self, assertion_id: str) -> AssertionInfo | None:
        self.asked.append(assertion_id)
        return self.assertions.get(assertion_id)

    def property_kind(self, subject: str, prop: str) -> PropertyKind | None:
        return self.kinds.get((subject, prop))


def _unnamed(command: RecordAssertion) -> RecordAssertion:
    return msgspec.structs.replace(command, assertion_id=None)


def test_an_assertion_records_the_event_its_fields_give() -> None:
    """Both forms decide the same: the event holds the command's fields, defaults filled."""
    command = quantity(
        100,
        200,
        150,
        stated_at="2025-03",
        valid_from="2025-01",
        valid_to="2025-02",
        claimants=("src-a", "src-b"),
        assertion_id="a-chosen",
    )
    expected = AssertionRecorded(
        assertion_id="a-chosen",
        subject="s",
        property="troops",
        value=Value(low=100, high=200, best=150),
        claimants=("src-a", "src-b"),
        stated_at="2025-03",
        document=Document(publisher=DOCUMENT.publisher, published_at=DOCUMENT.published_at),
        quote="a figure",
        mode="total",
        qualifier="about",
        valid_from="2025-01",
        valid_to="2025-02",
    )
    state = _State(sources=("src-a", "src-b"))
    for form in (command, prepare_assertion(command)):
        decision = decide(form, state)
        assert decision.events == [NewEvent("subject:s", expected)]
        assert (decision.stream, decision.assertion_id) == ("subject:s", "a-chosen")
    assert state.asked == ["a-chosen", "a-chosen"]  # a chosen id is looked up


def test_preparing_fills_in_the_defaults() -> None:
    figure = prepare_assertion(quantity(1, 2, stated_at="2025-03")).event
    assert (figure.mode, figure.qualifier) == ("total", "about")
    report = prepare_assertion(status("reported", stated_at="2025-03")).event
    assert (report.mode, report.qualifier) == (None, "about")


def test_a_server_made_id_is_made_when_prepared_and_never_looked_up() -> None:
    state = _State()
    prepared = prepare_assertion(_unnamed(quantity(1, 2, stated_at="2025-03")))
    assert prepared.chosen_id is False
    made = prepared.event.assertion_id
    assert len(made) == 36
    assert made[14] == "7"  # a UUIDv7
    decision = decide(prepared, state)
    assert decision.assertion_id == made
    assert state.asked == []


def test_a_chosen_id_already_taken_is_a_conflict() -> None:
    taken = AssertionInfo("a-taken", "s", "troops", retracted=False)
    state = _State(assertions=(taken,))
    command = quantity(1, 2, stated_at="2025-03", assertion_id="a-taken")
    with pytest.raises(Conflict, match="a-taken"):
        decide(prepare_assertion(command), state)
    with pytest.raises(Conflict, match="a-taken"):
        decide(command, state)


def test_the_ledger_rules_judge_the_prepared_event_and_name_every_field() -> None:
    state = _State(kinds={("s", "troops"): "status"})
    command = quantity(
        1, 2, stated_at="2025-03", claimants=("src-a", "src-unknown"), supersedes="a-missing"
    )
    with pytest.raises(InvalidInput) as raised:
        decide(prepare_assertion(command), state)
    assert [e.field for e in raised.value.errors] == ["claimants[1]", "value", "supersedes"]


def test_a_status_for_a_quantity_property_is_refused_when_prepared() -> None:
    state = _State(kinds={("s", "deployment"): "quantity"})
    with pytest.raises(InvalidInput) as raised:
        decide(prepare_assertion(status("confirmed", stated_at="2025-03")), state)
    assert [(e.field, e.message) for e in raised.value.errors] == [
        ("value", "s/deployment holds quantity values, not status")
    ]
