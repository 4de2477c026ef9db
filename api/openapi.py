"""OpenAPI details shared by the handlers: the problem responses each may give."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin

from api.schemas import Problem

_WHY = {
    401: "no, unknown or revoked token",
    403: "the key's role does not allow this",
    404: "not found",
    409: "conflicts with what the log holds",
    412: "the stream (the subject's, or the source's) moved on since the If-Match version",
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
        return self.render_json(request, openapi_schema)
