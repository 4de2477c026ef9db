"""The one place that turns events into bytes and back.

Canonical bytes are RFC 8785 (JCS) JSON. Every payload holds only strings, integers,
booleans, null, arrays and objects whose keys are ASCII field names, and for that subset
msgspec with sorted keys writes exactly the JCS form (a test checks this against an
independent JCS implementation), so the hot path needs no slower serialiser.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from ledger.events import PAYLOAD_TYPES, AnyPayload, Event

MAX_SAFE_INT = 2**53 - 1
ZERO_HASH = bytes(32)

_canonical = msgspec.json.Encoder(order="sorted")
_json = msgspec.json.Encoder()
PAYLOAD_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(cls) for name, cls in PAYLOAD_TYPES.items()
}


def canonical(obj: object) -> bytes:
    """JCS bytes of a JSON-able value or msgspec struct."""
    return _canonical.encode(obj)


def encode_json(obj: object) -> bytes:
    return _json.encode(obj)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_payload(payload: AnyPayload) -> bytes:
    """The stored payload bytes: JCS, so `data_sha256` is the digest of exactly them."""
    return _canonical.encode(payload)


def decode_payload(event_type: str, data: bytes) -> AnyPayload:
    result: AnyPayload = PAYLOAD_DECODERS[event_type].decode(data)
    return result


class _Envelope(msgspec.Struct, frozen=True, gc=False):
    """The seven envelope keys, declared in JCS (sorted) order so no sort runs per event."""

    actor: str
    data_sha256: str
    recorded_at: str
    seq: int
    stream: str
    type: str
    version: int


def envelope_bytes(
    seq: int,
    event_type: str,
    stream: str,
    version: int,
    recorded_at: str,
    actor: str,
    data_sha256: str,
) -> bytes:
    """Canonical bytes of an event: JCS of exactly the seven envelope keys."""
    return _json.encode(
        _Envelope(actor, data_sha256, recorded_at, seq, stream, event_type, version)
    )


def event_envelope_bytes(event: Event) -> bytes:
    return envelope_bytes(
        event.seq,
        event.type,
        event.stream,
        event.version,
        event.recorded_at,
        event.actor,
        event.data_sha256,
    )


def chain_hash(previous: bytes, canonical_bytes: bytes) -> bytes:
    """`hash(n) = SHA-256(hash(n-1) || canonical(n))` over raw bytes."""
    return hashlib.sha256(previous + canonical_bytes).digest()


def event_to_json(event: Event) -> bytes:
    """The public JSON form of an event (the contract's envelope with `data`)."""
    return _json.encode(event)
