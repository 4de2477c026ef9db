"""Every error as RFC 9457 `application/problem+json`, mapped in one place."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from api.middleware import request_path
from api.schemas import FieldProblem, Problem
from ledger.errors import (
    ConcurrencyConflict,
    Conflict,
    InvalidInput,
    LedgerError,
    LedgerUnavailable,
    NotFound,
    StorageFull,
)

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("api")

_STATUS: list[tuple[type[LedgerError], int]] = [
    (InvalidInput, 422),
    (NotFound, 404),
    (ConcurrencyConflict, 412),
    (Conflict, 409),
    (StorageFull, 507),
    (LedgerUnavailable, 503),
]
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
    507: "Insufficient storage",
}


def problem(
    status: int,
    detail: str,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
    title: str | None = None,
) -> Response[bytes]:
    return _response(_body(status, detail, errors, title), headers)


def _body(
    status: int, detail: str, errors: list[FieldProblem] | None = None, title: str | None = None
) -> Problem:
    return Problem(
        status=status, title=title or _TITLES.get(status, "Error"), detail=detail, errors=errors
    )


def _response(body: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(body),
        status_code=body.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def status_of(exc: LedgerError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def _ledger_problem(exc: LedgerError) -> Problem:
    status = status_of(exc)
    errors = None
    if isinstance(exc, InvalidInput):
        errors = [FieldProblem(e.field, e.message) for e in exc.errors]
    return _body(status, exc.detail, errors, title=exc.title if status != 400 else None)


def current_etag(exc: LedgerError | None) -> str | None:
    """The ETag a 412 carries: the stream's version now, which an `If-Match` retried after
    reading again would name (the views' ETag is their subject's stream version)."""
    return f'"{exc.actual}"' if isinstance(exc, ConcurrencyConflict) else None


def ledger_error(_: Request[Any, Any, Any], exc: LedgerError) -> Response[bytes]:
    etag = current_etag(exc)
    return _response(_ledger_problem(exc), None if etag is None else {"ETag": etag})


_FAILED = "the server failed to answer this request"


def problem_reply(exc: LedgerError | None) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Status, media type, body and further headers of what `ledger_error` answers for
    `exc` (None: what `server_error` answers), for a reply sent without litestar
    (`api.fastpath`)."""
    body = _ledger_problem(exc) if exc is not None else _body(500, _FAILED)
    etag = current_etag(exc)
    headers = [] if etag is None else [(b"etag", etag.encode())]
    return body.status, PROBLEM_JSON.encode(), msgspec.json.encode(body), headers


_MISSING = re.compile(r"^Missing required \w+ parameter '([^']+)'")


def _field_of(request: Request[Any, Any, Any], item: dict[str, Any]) -> str:
    """The name the client used: a parameter's alias (`from`), not the handler's (`old`)."""
    key = str(item.get("key") or "")
    if not key:
        return "body"
    try:
        definition = request.route_handler.parsed_fn_signature.parameters[key].kwarg_definition
    except (AttributeError, KeyError):
        return key
    alias = getattr(definition, "name", None)
    return alias if isinstance(alias, str) and alias else key


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    missing = _MISSING.match(str(exc.detail))
    errors = [
        FieldProblem(_field_of(request, item), str(item.get("message", "invalid")))
        for item in extra
        if isinstance(item, dict)
    ]
    if not errors:
        field = missing.group(1) if missing else "body"
        message = "Required parameter is missing" if missing else str(exc.detail)
        errors = [FieldProblem(field, message)]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem(422, detail, errors)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = str(exc.detail) if exc.detail else _TITLES.get(status, "Error")
    if status == 400 and "JSON" in detail:
        return problem(422, detail, [FieldProblem("body", detail)])
    if status == 413:
        limit = request.app.state.settings.max_body_bytes
        detail = f"the body is over the limit of {limit} bytes"
    return problem(status, detail, headers=exc.headers)


def server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unhandled_error", path=request_path(request.scope), error=repr(exc), exc_info=exc)
    return problem(500, _FAILED)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    LedgerError: ledger_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: server_error,
}
