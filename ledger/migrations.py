"""Numbered schema steps, recorded in a table as they are applied.

A schema never changes by hand: each change is a new step with a new name. Steps run in
order inside one transaction with the record that they ran.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlite_utils

from ledger.times import format_record_time, now_us


@dataclass(frozen=True, slots=True)
class Migration:
    name: str  # e.g. "ledger-0001-log"; never reused
    apply: Callable[[sqlite_utils.Database], None]


def applied(conn: sqlite3.Connection) -> set[str]:
    db = sqlite_utils.Database(conn)
    if "_migrations" not in db.table_names():
        return set()
    return {row["name"] for row in db["_migrations"].rows}


def migrate(conn: sqlite3.Connection, steps: Sequence[Migration]) -> list[str]:
    """Apply the steps not yet applied; return their names."""
    db = sqlite_utils.Database(conn)
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name")  # type: ignore[union-attr]
    done = applied(conn)
    ran: list[str] = []
    for step in steps:
        if step.name in done:
            continue
        with conn:
            step.apply(db)
            db["_migrations"].insert(  # type: ignore[union-attr]
                {"name": step.name, "applied_at": format_record_time(now_us())}
            )
        ran.append(step.name)
    return ran
