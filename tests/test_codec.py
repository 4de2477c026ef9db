"""The codec writes RFC 8785 (JCS) bytes: checked against the independent `rfc8785` package."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest
import rfc8785
from hypothesis import example, given
from hypothesis import strategies as st

from ledger.codec import (
    MAX_SAFE_INT,
    ZERO_HASH,
    canonical,
    chain_hash,
    decode_payload,
    encode_payload,
    envelope_bytes,
    event_envelope_bytes,
    event_to_json,
)
from ledger.events import (
    PAYLOAD_TYPES,
    TYPE_OF,
    AnyPayload,
    AssertionRanked,
    AssertionRecorded,
    AssertionRetracted,
    Document,
    Event,
    PayloadErased,
    SourceRegistered,
    SourceUpdated,
    Value,
)

PUBLIC_KEYS = {
    "seq",
    "type",
    "stream",
    "version",
    "recorded_at",
    "actor",
    "data",
    "data_sha256",
    "hash",
}
TRICKY = ["", "\x00", "\x1f", "\x7f", "\u2028", "\u2029", "\U0001f600", '"\\/', "\ufeff", "é"]

texts = st.text() | st.sampled_from(TRICKY)
ascii_keys = st.text(st.characters(max_codepoint=127), max_size=6)
ints = st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)
json_values = st.recursive(
    st.none() | st.booleans() | ints | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(ascii_keys, inner, max_size=5),
    max_leaves=25,
)


@given(json_values)
@example({"b": 1, "a": [True, None], "B": "\u2028", "": -MAX_SAFE_INT})
@example("\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f\u2028\U0001f600")
@example([MAX_SAFE_INT, -MAX_SAFE_INT, 0])
def test_canonical_equals_jcs(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


# ---- payloads ----

opt_text = st.none() | texts
reliability = st.none() | st.sampled_from("ABCDEF")
counts = st.integers(0, MAX_SAFE_INT)

payloads: dict[type[Any], st.SearchStrategy[Any]] = {
    SourceRegistered: st.builds(
        SourceRegistered,
        id=texts,
        name=texts,
        kind=texts,
        country=opt_text,
        reliability=reliability,
    ),
    SourceUpdated: st.builds(
        SourceUpdated,
        id=texts,
        name=opt_text,
        kind=opt_text,
        country=opt_text,
        reliability=reliability,
    ),
    AssertionRecorded: st.builds(
        AssertionRecorded,
        assertion_id=texts,
        subject=texts,
        property=texts,
        value=st.builds(Value, low=counts, high=counts, best=st.none() | counts)
        | st.builds(Value, status=st.sampled_from(["reported", "confirmed", "denied"])),
        claimants=st.lists(texts, min_size=1, max_size=4).map(tuple),
        stated_at=texts,
        document=st.builds(
            Document,
            publisher=texts,
            published_at=texts,
            url=opt_text,
            title=opt_text,
            retrieved_at=opt_text,
            sha256=opt_text,
        ),
        quote=texts,
        mode=st.none() | st.sampled_from(["total", "increment"]),
        qualifier=st.sampled_from(["about", "exactly", "at least", "more than"]),
        valid_from=opt_text,
        valid_to=opt_text,
        credibility=st.none() | st.integers(1, 6),
        supersedes=opt_text,
        note=opt_text,
    ),
    AssertionRetracted: st.builds(AssertionRetracted, assertion_id=texts, reason=texts),
    AssertionRanked: st.builds(
        AssertionRanked,
        assertion_id=texts,
        rank=st.sampled_from(["preferred", "normal", "deprecated"]),
        reason=texts,
    ),
    PayloadErased: st.builds(PayloadErased, seq=st.integers(1, 2**53 - 1), reason=texts),
}


def test_every_payload_type_is_covered() -> None:
    assert set(payloads) == set(PAYLOAD_TYPES.values())


@given(st.one_of(*payloads.values()))
def test_payload_round_trips_as_jcs(payload: AnyPayload) -> None:
    data = encode_payload(payload)
    assert data == rfc8785.dumps(msgspec.to_builtins(payload))
    assert decode_payload(TYPE_OF[type(payload)], data) == payload


def test_absent_optional_fields_are_not_written() -> None:
    data = encode_payload(SourceUpdated(id="s1", reliability="B"))
    assert data == b'{"id":"s1","reliability":"B"}'


def test_an_older_reader_ignores_fields_added_later() -> None:
    data = b'{"assertion_id":"a1","reason":"typo","added_in_v2":1}'
    assert decode_payload("AssertionRetracted", data) == AssertionRetracted("a1", "typo")


# ---- envelopes ----

EVENT = Event(
    seq=7,
    type="AssertionRetracted",
    stream="subject:x",
    version=2,
    recorded_at="2025-01-02T03:04:05.000006Z",
    actor="alice \u2028",
    data=AssertionRetracted("a1", "wrong entry"),
    data_sha256=hashlib.sha256(b'{"assertion_id":"a1","reason":"wrong entry"}').hexdigest(),
    hash="ab" * 32,
)


def test_envelope_is_jcs_of_the_seven_keys() -> None:
    keys = ("seq", "type", "stream", "version", "recorded_at", "actor", "data_sha256")
    expected = rfc8785.dumps({k: getattr(EVENT, k) for k in keys})
    assert event_envelope_bytes(EVENT) == expected
    assert envelope_bytes(*(getattr(EVENT, k) for k in keys)) == expected


def test_chain_hash_concatenates_raw_bytes() -> None:
    body = event_envelope_bytes(EVENT)
    assert chain_hash(ZERO_HASH, body) == hashlib.sha256(bytes(32) + body).digest()


@pytest.mark.parametrize("data", [EVENT.data, None])
def test_public_json_has_exactly_the_contract_keys(data: AnyPayload | None) -> None:
    event = msgspec.structs.replace(EVENT, data=data)
    public = msgspec.json.decode(event_to_json(event))
    assert set(public) == PUBLIC_KEYS
    assert public["data"] == (None if data is None else msgspec.to_builtins(data))
    assert {k: public[k] for k in PUBLIC_KEYS - {"data"}} == {
        k: getattr(event, k) for k in PUBLIC_KEYS - {"data"}
    }
