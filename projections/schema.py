"""The read side's tables: numbered steps, never edited once shipped.

Every table keeps history rather than current state, so a view at any (`as_of`, `seq`) is
a few indexed range reads and never a replay of the log:

- `proj_source_versions`: one row per source event, the full source as it stood from `seq`
  until `until_seq` (exclusive; NULL while current).
- `proj_assertions`: one row per recorded assertion (rowid = `recorded_seq`), with parsed
  time bounds and the seq of its retraction, if any.
- `proj_ranks`: every ranking, by subject and property, so the rank of any assertion at any
  seq is the latest row at or before it.
- `proj_claimants`: who made each assertion, for per-claimant listings.
- `proj_properties`: each subject's properties, their kind and the seq of their first claim.
- `proj_subject_counts`: a subject's running count of recorded assertions, one row per
  record, so the count at any seq is one probe.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from ledger.migrations import Migration

SOURCE_TABLES = ("proj_source_versions",)
ASSERTION_TABLES = (
    "proj_assertions",
    "proj_ranks",
    "proj_claimants",
    "proj_properties",
    "proj_subject_counts",
)

DEFERRED_INDEXES = (
    "proj_assertions_view",
    "proj_assertions_property",
    "proj_assertions_supersedes",
    "proj_ranks_assertion",
)
"""Indexes only the views read (never a projector's `apply`), so a replay builds them last."""

_SOURCES = (
    """
    CREATE TABLE IF NOT EXISTS proj_source_versions (
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        until_seq INTEGER,
        recorded_at TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        country TEXT,
        reliability TEXT,
        PRIMARY KEY (id, seq)
    ) WITHOUT ROWID
    """,
)

# The view index covers every column a quantity or status view reads, so loading one
# (subject, property) is a single contiguous index range and never touches the wide rows.
# Its (subject) prefix also serves every per-subject read, so there is no second index.
_VIEW_COLUMNS = (
    "subject, property, recorded_seq, kind, stated_start, retracted_seq, assertion_id, "
    "stated_at, mode, value_low, value_high, value_best, status, claimants, "
    "valid_from_start, valid_to_end, supersedes"
)

_ASSERTIONS = (
    """
    CREATE TABLE IF NOT EXISTS proj_assertions (
        recorded_seq INTEGER PRIMARY KEY,
        assertion_id TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        property TEXT NOT NULL,
        kind TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        value_low INTEGER,
        value_high INTEGER,
        value_best INTEGER,
        status TEXT,
        mode TEXT,
        qualifier TEXT NOT NULL,
        claimants TEXT NOT NULL,
        stated_at TEXT NOT NULL,
        stated_start INTEGER NOT NULL,
        stated_end INTEGER NOT NULL,
        valid_from TEXT,
        valid_from_start INTEGER,
        valid_to TEXT,
        valid_to_end INTEGER,
        document TEXT NOT NULL,
        quote TEXT NOT NULL,
        credibility INTEGER,
        supersedes TEXT,
        note TEXT,
        retracted_seq INTEGER,
        retracted_reason TEXT,
        retracted_at TEXT
    )
    """,
    f"CREATE INDEX IF NOT EXISTS proj_assertions_view ON proj_assertions ({_VIEW_COLUMNS})",
    "CREATE INDEX IF NOT EXISTS proj_assertions_property "
    "ON proj_assertions (property, recorded_seq)",
    "CREATE INDEX IF NOT EXISTS proj_assertions_supersedes "
    "ON proj_assertions (supersedes, recorded_seq) WHERE supersedes IS NOT NULL",
    """
    CREATE TABLE IF NOT EXISTS proj_ranks (
        subject TEXT NOT NULL,
        property TEXT NOT NULL,
        seq INTEGER NOT NULL,
        assertion_id TEXT NOT NULL,
        rank TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (subject, property, seq)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS proj_ranks_assertion ON proj_ranks (assertion_id, seq)",
    """
    CREATE TABLE IF NOT EXISTS proj_claimants (
        claimant TEXT NOT NULL,
        recorded_seq INTEGER NOT NULL,
        PRIMARY KEY (claimant, recorded_seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS proj_properties (
        subject TEXT NOT NULL,
        property TEXT NOT NULL,
        kind TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        PRIMARY KEY (subject, property)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS proj_subject_counts (
        subject TEXT NOT NULL,
        seq INTEGER NOT NULL,
        assertions INTEGER NOT NULL,
        PRIMARY KEY (subject, seq)
    ) WITHOUT ROWID
    """,
)


def _steps(statements: tuple[str, ...]) -> Callable[[sqlite_utils.Database], None]:
    def apply(db: sqlite_utils.Database) -> None:
        # one statement at a time: executescript would COMMIT an enclosing transaction
        for sql in statements:
            db.execute(sql)

    return apply


SOURCE_MIGRATIONS = [Migration("projections-0001-sources", _steps(_SOURCES))]
ASSERTION_MIGRATIONS = [Migration("projections-0001-assertions", _steps(_ASSERTIONS))]
