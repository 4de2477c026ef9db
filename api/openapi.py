"""OpenAPI details shared by the handlers: the problem responses each may give."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from api.schemas import Problem

_WHY = {
    401: "no, unknown or revoked token",
    403: "the key's role does not allow this",
    404: "not found",
    409: "conflicts with what the log holds",
    412: "the subject moved on since the If-Match version",
    413: "body over 1 MiB",
    422: "invalid input; `errors` names every bad field",
    429: "rate limit reached; see Retry-After",
    503: "writes are refused",
    507: "the database is full; nothing was appended",
}


def errors_for(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        s: ResponseSpec(
            data_container=Problem, description=_WHY[s], media_type="application/problem+json"
        )
        for s in statuses
    }
