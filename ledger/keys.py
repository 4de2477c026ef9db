"""API keys: only a SHA-256 of each token is stored; the token is shown once.

Tokens carry 256 bits from the OS's random source, so a plain SHA-256 cannot be reversed
or guessed, and looking one up by its digest leaks nothing about other tokens. The digest
is compared again with `hmac.compare_digest` after the lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import msgspec

from ledger.errors import Conflict, FieldError, InvalidInput, NotFound
from ledger.schema import API_KEYS_SQL
from ledger.text import one_line_problem
from ledger.times import format_record_time, now_us

Role = Literal["reader", "writer", "auditor", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
TOKEN_PREFIX = "ldg_"  # noqa: S105 - a visible prefix, not a secret
Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
"""Who appends, as the log records it (an API key's name, the CLI's `--actor`): 1..100
characters on one printable line (see :func:`ledger.text.one_line_problem`)."""


def checked_actor(value: str, field: str) -> str:
    """`value` as an :data:`Actor`, or :class:`InvalidInput` naming `field`."""
    try:
        actor = msgspec.convert(value, Actor)
    except msgspec.ValidationError:
        raise InvalidInput([FieldError(field, f"1..100 characters, not {len(value)}")]) from None
    wrong = one_line_problem(actor)
    if wrong is not None:
        raise InvalidInput([FieldError(field, wrong)])
    return actor


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    role: Role
    created_at: str
    revoked_at: str | None


def token_digest(token: str) -> str:
    """The SHA-256 (hex) a token is stored and looked up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.execute(API_KEYS_SQL)


def create_key(conn: sqlite3.Connection, role: Role, name: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key; returns it and the token (the only time the token exists)."""
    ensure_schema(conn)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    name = f"{role}-{secrets.token_hex(4)}" if name is None else checked_actor(name, "name")
    created = format_record_time(now_us())
    try:
        with conn:
            conn.execute(
                "INSERT INTO api_keys (name, role, token_sha256, created_at) VALUES (?, ?, ?, ?)",
                (name, role, token_digest(token), created),
            )
    except sqlite3.IntegrityError:
        raise Conflict(f"a key named {name!r} already exists") from None
    return ApiKey(name, role, created, None), token


def list_keys(conn: sqlite3.Connection) -> list[ApiKey]:
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, name"
    )
    return [ApiKey(*row) for row in rows]


def revoke_key(conn: sqlite3.Connection, name: str) -> ApiKey:
    ensure_schema(conn)
    with conn:
        cur = conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (format_record_time(now_us()), name),
        )
    if cur.rowcount == 0:
        known = conn.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone()
        why = f"no key named {name!r}" if known is None else f"{name!r} is already revoked"
        raise NotFound(why)
    return next(k for k in list_keys(conn) if k.name == name)


def authenticate(conn: sqlite3.Connection, token: str) -> ApiKey | None:
    """The live key whose token this is, or None."""
    digest = token_digest(token)
    row = conn.execute(
        "SELECT name, role, created_at, revoked_at, token_sha256 FROM api_keys "
        "WHERE token_sha256 = ?",
        (digest,),
    ).fetchone()
    if row is None or not hmac.compare_digest(row[4], digest) or row[3] is not None:
        return None
    return ApiKey(row[0], row[1], row[2], row[3])
