"""OpenAPI details shared by the handlers: the problem responses each may give."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin

from api.schemas import Problem
from ledger.codec import MAX_SAFE_INT

_WHY = {
    401: "no, unknown or revoked token",
    403: "the key's role does not allow this",
    404: "not found",
    409: "conflicts with what the log holds",
    412: "the stream (the subject's, or the source's) moved on since the If-Match version; "
    "the answer's `ETag` is its version now",
    413: "body over 1 MiB",
    415: "the body is not sent as JSON (Content-Type: application/json)",
    422: "invalid input; `errors` names every bad field",
    429: "rate limit reached; see Retry-After",
    503: "writes are refused",
    507: "the database is full; nothing was appended",
}
GUARDED = (401, 403, 429)
"""What any endpoint behind a token may answer."""
WRITES = (*GUARDED, 413, 415, 422, 503, 507)
"""What any append may answer besides its own conflicts."""


VIEWS_BEHIND = (
    "the views are catching up with the log (another process appending, an import), or the "
    "ledger, read as a snapshot of its file (a full disk, a read-only mount), was written since"
)


TREE_BROKEN = (
    "the stored Merkle tree failed a check (at start-up, or in what a root or proof read of "
    "it): no root or proof is given out from it until it is mended (`ledger verify` names "
    "what is wrong) and the server started again"
)


def errors_for(*statuses: int, why: dict[int, str] | None = None) -> dict[int, ResponseSpec]:
    """The problem responses of `statuses`; `why` gives a status a description of its own."""
    reasons = {**_WHY, **(why or {})}
    return {
        s: ResponseSpec(
            data_container=Problem,
            description=reasons[s],
            media_type="application/problem+json",
            generate_examples=False,  # random examples would change the schema every build
        )
        for s in sorted(set(statuses))
    }


def _count(description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INT, "description": description}


VALUE_IN: dict[str, Any] = {
    "title": "ValueIn",
    "description": "a quantity (low, high and optionally best, 0 <= low <= best <= high) or a "
    "status; the property keeps the kind its first assertion gave it",
    "oneOf": [
        {
            "title": "Quantity",
            "type": "object",
            "required": ["low", "high"],
            "properties": {
                "low": _count("the lowest figure"),
                "high": _count("the highest figure, at least low"),
                "best": {
                    **_count("the central figure, between low and high"),
                    "type": ["integer", "null"],
                },
            },
            "additionalProperties": False,
        },
        {
            "title": "Status",
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["reported", "confirmed", "denied"]}
            },
            "additionalProperties": False,
        },
    ],
}
"""An assertion's `value` as the server takes it: litestar describes the one struct behind
both kinds with every field optional and nullable, and drops `minimum: 0`, so a client
made from that schema would send values the server refuses."""


class SchemaJson(JsonRenderPlugin):
    """Serves `/schema/openapi.json` without litestar's stock `400` responses.

    Litestar documents a `400` for every handler that validates input, but this API
    answers invalid input with a 422 problem (see :mod:`api.problems`) and never a 400.
    """

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        for item in openapi_schema.get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict):
                    operation.get("responses", {}).pop("400", None)
        schemas = openapi_schema.get("components", {}).get("schemas", {})
        if "ValueIn" in schemas:
            schemas["ValueIn"] = VALUE_IN
        return self.render_json(request, openapi_schema)
