"""Helpers the handlers share: the store, point-in-time parameters, writes."""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.params import HeaderParameter, Parameter, ParameterKwarg, QueryParameter

from api.middleware import header, request_path
from api.schemas import AssertionReceipt, EventReceipt
from api.writer import Writer
from ledger.commands import (
    ASSERTION_ID_REF,
    PROPERTY_REF,
    SOURCE_ID_REF,
    SUBJECT_REF,
    AnyCommand,
    in_words,
    published,
)
from ledger.domain import problems_beside
from ledger.errors import FieldError, InvalidInput
from ledger.service import Idempotency, Receipt, Reply
from ledger.sqlite_store import SqliteStore
from ledger.text import PLAIN_WHOLE, plain_whole_number
from ledger.times import TIME_PATTERN, TimeFormatError, parse_time
from ledger.validation import decode_all
from ledger.writemodel import SqliteWriteState
from projections.pit import PointInTime, resolve

# The time forms are published in the schema but checked by `resolve`, which names the
# problem in words rather than quoting the pattern.
AsOf = Annotated[
    str | None,
    QueryParameter(
        name="as_of",
        description="statement-time cutoff: YYYY, YYYY-MM, YYYY-MM-DD or RFC 3339; "
        "a reduced value means the end of its period",
        schema_extra={"pattern": TIME_PATTERN},
    ),
]
KnownAt = Annotated[
    str | None,
    QueryParameter(
        name="known_at",
        description="record-time cutoff (RFC 3339); not with seq",
        schema_extra={"pattern": TIME_PATTERN},
    ),
]
SeqParam = Annotated[
    int | None,
    QueryParameter(name="seq", ge=0, description="log position cutoff; not with known_at"),
]
Limit = Annotated[
    int, QueryParameter(name="limit", ge=1, le=1000, description="page size, 1..1000")
]
OptionalLimit = Annotated[
    int | None,
    QueryParameter(name="limit", ge=1, le=1000, description="page size, 1..1000; none: all"),
]


def _named(kind: Callable[..., ParameterKwarg], pattern: str, description: str) -> ParameterKwarg:
    """A name's parameter: checked with `pattern`, published as :func:`published` says.

    Path parameters and list filters take the slug rules of the body's fields; the gate
    checks them (see `query_check`), so a malformed one is a 422 naming it, not a 404 or
    an empty answer."""
    extra = {"pattern": published(pattern)}
    return kind(pattern=pattern, schema_extra=extra, description=description)


SourceIdPath = Annotated[str, _named(Parameter, SOURCE_ID_REF, "source id, a slug")]
AssertionIdPath = Annotated[str, _named(Parameter, ASSERTION_ID_REF, "assertion id")]
SubjectPath = Annotated[str, _named(Parameter, SUBJECT_REF, "subject slug")]
PropertyPath = Annotated[str, _named(Parameter, PROPERTY_REF, "property slug with dots")]
SubjectFilter = Annotated[
    str | None, _named(QueryParameter, SUBJECT_REF, "only this subject's assertions")
]
PropertyFilter = Annotated[
    str | None, _named(QueryParameter, PROPERTY_REF, "only assertions on this property")
]
ClaimantFilter = Annotated[
    str | None, _named(QueryParameter, SOURCE_ID_REF, "only assertions this source claims")
]
Cursor = Annotated[
    str | None, QueryParameter(name="cursor", max_length=200, description="next page")
]
IDEMPOTENCY_KEY = re.compile(r"[ -~]{1,255}")
"""What an Idempotency-Key may be: the header parameter's pattern and the gate's check."""
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        pattern=f"^{IDEMPOTENCY_KEY.pattern}$",
        description="1..255 printable ASCII characters: retrying with the same key and body "
        "returns the first answer and appends nothing; the same key with another body is a 422",
    ),
]
IF_MATCH_PATTERN = r'^\s*(W/)?("(0|[1-9][0-9]*)"|(0|[1-9][0-9]*))\s*$'
"""What the If-Match header parameter takes (litestar checks it after the gate): a version
in quotes (or bare), written as a plain whole number, so `"03"` is refused rather than
taken for `"3"`."""
IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        pattern=IF_MATCH_PATTERN,
        description="`\"<version>\"` of the stream the write appends to (a subject's: a view's "
        "ETag; a source's: its events' version): 412 once it moved on",
    ),
]

_json = msgspec.json.Encoder()


TIME_PARAMETERS = frozenset({"as_of", "known_at"})


@dataclass(frozen=True, slots=True)
class QueryCheck:
    """One query parameter of a handler, checked as litestar would parse it, so the gate
    can name every bad one at once (litestar stops at the first)."""

    name: str
    type: Any
    required: bool
    whole: bool = False
    """An integer: ASCII digits only, as :func:`ledger.text.whole_number` reads them
    (msgspec alone would take `5.0` or `1e2`)."""


def query_check(name: str, annotation: Any, kwargs: Any, required: bool) -> QueryCheck:
    """The check of parameter `name` declared as `annotation` with `kwargs` (a litestar
    QueryParameter's constraints)."""
    meta = {
        key: value
        for key in ("ge", "le", "gt", "lt", "min_length", "max_length", "pattern")
        if (value := getattr(kwargs, key, None)) is not None
    }
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = len(args) == 1 and type(None) in typing.get_args(annotation)
    base = args[0] if optional else annotation
    checked: Any = Annotated[base, msgspec.Meta(**meta)] if meta else base
    return QueryCheck(name, checked | None if optional else checked, required, base is int)


def query_problems(query: Mapping[str, str], checks: Sequence[QueryCheck]) -> list[FieldError]:
    """Every declared parameter of `query` that is missing or would not parse."""
    problems: list[FieldError] = []
    for check in checks:
        value = query.get(check.name)
        if value is None:
            if check.required:
                problems.append(FieldError(check.name, "Required parameter is missing"))
        elif check.name in TIME_PARAMETERS:
            try:
                parse_time(value)
            except TimeFormatError as exc:
                problems.append(FieldError(check.name, str(exc)))
        else:
            number = plain_whole_number(value) if check.whole else value
            if number is None:
                problems.append(FieldError(check.name, f"not a whole number ({PLAIN_WHOLE})"))
                continue
            try:
                msgspec.convert(number, check.type, strict=False)
            except msgspec.ValidationError as exc:
                problems.append(FieldError(check.name, in_words(str(exc))))
    return problems


ONCE_HEADERS = {
    b"if-match": "If-Match",
    b"idempotency-key": "Idempotency-Key",
    b"content-type": "Content-Type",
}
"""Headers a write reads once: two copies (which a proxy may join or either may win) are
refused rather than one of them silently taken."""


def header_problems(request: Request[Any, Any, Any], names: frozenset[str]) -> list[FieldError]:
    """The write headers among `names` (If-Match, Idempotency-Key) that are bad, and any
    of :data:`ONCE_HEADERS` given more than once."""
    seen = [name for name, _ in request.scope["headers"] if name in ONCE_HEADERS]
    problems = [
        FieldError(ONCE_HEADERS[name], "given more than once (give it once)")
        for name in dict.fromkeys(seen)
        if seen.count(name) > 1
    ]
    if "If-Match" in names:
        try:
            parse_if_match(request.headers.get("if-match"))
        except InvalidInput as exc:
            problems += exc.errors
    key = request.headers.get("idempotency-key")
    if "Idempotency-Key" in names and key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        problems.append(FieldError("Idempotency-Key", "1..255 printable ASCII characters"))
    return problems


def store_of(state: State) -> SqliteStore:
    store: SqliteStore = state.store
    return store


def point_in_time(
    state: State, as_of: str | None, known_at: str | None, seq: int | None
) -> PointInTime:
    return resolve(store_of(state).reader(), as_of, known_at, seq)


def parse_if_match(header: str | None) -> int | None:
    if header is None:
        return None
    text = header.strip()
    if text.startswith("W/"):
        text = text[2:]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not text.isascii() or not text.isdigit():
        raise InvalidInput([FieldError("If-Match", 'expected "<version>", e.g. "3"')])
    version = plain_whole_number(text)
    if version is None:
        raise InvalidInput([FieldError("If-Match", f'expected "<version>": {PLAIN_WHOLE}')])
    return version


def idempotency_of(
    request: Request[Any, Any, Any], key: str | None, body: bytes
) -> Idempotency | None:
    if key is None:
        return None
    return Idempotency(key, request_line(request.method, request_path(request.scope)) + body)


def request_line(method: str, path: str) -> bytes:
    """What an idempotent request's body is stored after, to tell it from another's.

    The line ends at the first newline; a path that holds one (a name an earlier version
    let in) is given with its length, so no path and body can pass for another."""
    line = f"{method} {path}" if "\n" not in path else f"{method} {len(path)}:{path}"
    return f"{line}\n".encode()


def render_assertion(receipt: Receipt) -> Reply:
    event = receipt.last
    assert event is not None
    assert receipt.assertion_id is not None
    body = AssertionReceipt(receipt.assertion_id, event.seq, event.recorded_at, event.hash)
    return Reply(201, _json.encode(body))


class _Created(msgspec.Struct):
    assertion_id: str


_created = msgspec.json.Decoder(_Created)


def created_headers(reply: Reply, root_path: str = "") -> list[tuple[bytes, bytes]]:
    """The `Location` of the assertion a 201 from `render_assertion` recorded, read from its
    body, so a replayed answer (which is the first one's status and bytes) carries it too.
    Ids are `[a-z0-9._-]`, so they need no escaping in a path."""
    if reply.status != 201:
        return []
    created = _created.decode(reply.body).assertion_id
    return [(b"location", f"{root_path}/v1/assertions/{created}".encode())]


def render_event(receipt: Receipt) -> Reply:
    event = receipt.last
    assert event is not None
    return Reply(201, _json.encode(EventReceipt(event.seq, event.recorded_at, event.hash)))


async def run_write(
    request: Request[Any, Any, Any],
    command: AnyCommand,
    render: Any,
    *,
    idempotency_key: str | None,
    if_match: str | None = None,
) -> Reply:
    body = await request.body()
    writer: Writer = request.app.state.writer
    return await writer.execute(
        command,
        request.state.actor,
        render,
        expected_version=parse_if_match(if_match),
        idempotency=idempotency_of(request, idempotency_key, body),
    )


BODY = "body"
"""The handler option naming the struct a write's body must decode into."""
NO_BODY = "no_body"
"""The handler option of a POST that takes no body: a struct a body it is sent anyway must
decode into (`api.schemas.NoBody`), so a stray body is refused as any other write's is."""
CHECKED = "checked_body"
"""Where in the request's state `checked_body` leaves the decoded body for the handler."""


def not_json(media: bytes | None) -> bytes | None:
    """The media type of a Content-Type value (lower case, no parameters) if it is not
    JSON (`application/json` or any `+json`); None when it is, or when there is none."""
    if media is None:
        return None
    kind = media.split(b";", 1)[0].strip().lower()
    return None if kind == b"application/json" or kind.endswith(b"+json") else kind


async def checked_body(request: Request[Any, Any, Any], cls: type[Any]) -> Any:
    """Decode the body naming every bad field, and keep it for the handler.

    Runs in the app's `before_request` gate; the write handlers' request class
    (`api.routes.writes.WriteRequest`) answers `data` with it, so litestar does not
    decode and validate the body a second time.
    """
    kind = not_json(header(request.scope, b"content-type"))
    if kind is not None:
        raise HTTPException(
            status_code=415,
            detail=f"the body must be JSON (Content-Type: application/json), "
            f"not {kind.decode('latin-1')!r}",
        )
    checked = decode_all(await request.body(), cls)
    request.scope.setdefault("state", {})[CHECKED] = checked
    return checked


def assertion_problems_beside(
    state: State, body: bytes, problems: Sequence[FieldError]
) -> list[FieldError]:
    """The ledger's own checks of an assertion body on its well-formed fields, for a
    request already refused for `problems`, so one 422 names every bad field (see
    :func:`ledger.domain.problems_beside`). Reads the write model; nothing is appended."""
    try:
        raw = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return []
    return problems_beside(SqliteWriteState(store_of(state).reader()), raw, problems)
