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


class NewerSchema(Exception):
    """The database has a schema step of this family that this version does not know:
    a newer version wrote it, and this one might undo what that step relies on."""


def migrate(
    conn: sqlite3.Connection, steps: Sequence[Migration], *, family: str | None = None
) -> list[str]:
    """Apply the steps not yet applied; return their names.

    With `family`, a step named `<family>-...` that is not among `steps` raises
    :class:`NewerSchema` before anything is applied.
    """
    db = sqlite_utils.Database(conn)
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name")  # type: ignore[union-attr]
    done = applied(conn)
    if family is not None:
        known = {step.name for step in steps}
        unknown = sorted(n for n in done if n.startswith(f"{family}-") and n not in known)
        if unknown:
            raise NewerSchema(
                f"its schema has step {unknown[-1]!r}, which this version does not know: "
                "it was written by a newer version of the ledger"
            )
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
