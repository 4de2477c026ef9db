"""The log's own tables: events, payloads, Merkle nodes and the write model."""

from __future__ import annotations

import sqlite_utils

from ledger.migrations import Migration

APPEND_ONLY_TABLES = ("events", "payloads", "merkle_nodes")

API_KEYS_SQL = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


def _log(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            type TEXT NOT NULL,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            recorded_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            data_sha256 TEXT NOT NULL,
            hash TEXT NOT NULL,
            UNIQUE (stream, version)
        );
        CREATE INDEX events_recorded_at ON events (recorded_at);
        -- payloads live apart from the envelope so that one can be erased by law
        -- while the envelope and its data_sha256 keep every proof valid
        CREATE TABLE payloads (
            seq INTEGER PRIMARY KEY,
            data BLOB NOT NULL
        );
        -- every complete Merkle subtree: (level, idx) covers leaves
        -- [idx * 2^level, (idx + 1) * 2^level); level 0 holds the leaf hashes
        CREATE TABLE merkle_nodes (
            level INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            hash BLOB NOT NULL,
            PRIMARY KEY (level, idx)
        ) WITHOUT ROWID;
        """
    )
    for table in APPEND_ONLY_TABLES:
        db.executescript(
            f"""
            CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END;
            CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END;
            """
        )


def _write_model(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE wm_sources (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            country TEXT,
            reliability TEXT
        ) WITHOUT ROWID;
        CREATE TABLE wm_assertions (
            assertion_id TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            property TEXT NOT NULL,
            retracted INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE TABLE wm_properties (
            subject TEXT NOT NULL,
            property TEXT NOT NULL,
            kind TEXT NOT NULL,
            PRIMARY KEY (subject, property)
        ) WITHOUT ROWID;
        CREATE TABLE checkpoints (
            name TEXT PRIMARY KEY,
            seq INTEGER NOT NULL
        );
        -- the first response to each (actor, Idempotency-Key), kept durably
        CREATE TABLE idempotency (
            actor TEXT NOT NULL,
            key TEXT NOT NULL,
            request_sha256 TEXT NOT NULL,
            status INTEGER NOT NULL,
            body BLOB NOT NULL,
            PRIMARY KEY (actor, key)
        ) WITHOUT ROWID;
        """
    )


def _no_replace(db: sqlite_utils.Database) -> None:
    """Refuse REPLACE even on a connection without recursive_triggers.

    Without recursive triggers, REPLACE deletes the conflicting row without firing the
    DELETE trigger; an INSERT that would collide is refused before it gets that far.
    """
    keys = {
        "events": "seq = NEW.seq OR (stream = NEW.stream AND version = NEW.version)",
        "payloads": "seq = NEW.seq",
        "merkle_nodes": "level = NEW.level AND idx = NEW.idx",
    }
    for table, match in keys.items():
        db.executescript(
            f"""
            CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table}
            WHEN EXISTS (SELECT 1 FROM {table} WHERE {match})
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: REPLACE refused'); END;
            """
        )


def _api_keys(db: sqlite_utils.Database) -> None:
    """API keys: a SHA-256 of each token, never the token (see :mod:`ledger.keys`)."""
    db.execute(API_KEYS_SQL)


def _no_recorded_at_index(db: sqlite_utils.Database) -> None:
    """`seq_at` bisects over seq instead (record times never go back): one B-tree fewer
    to write on every append."""
    db.execute("DROP INDEX IF EXISTS events_recorded_at")


def _erasures(db: sqlite_utils.Database) -> None:
    """Lawful erasure of a payload: a record of each, and the only DELETE `payloads` allows.

    `kept` is the JSON of what the rules still need of the erased payload (for an
    assertion: its id, subject, property and kind), so a replay keeps the id taken and
    the subject's counts as they were. The record is append-only like the log.
    """
    statements = (
        """
        CREATE TABLE erasures (
            seq INTEGER PRIMARY KEY REFERENCES events (seq),
            erased_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            kept TEXT NOT NULL
        )
        """,
        "CREATE TRIGGER erasures_no_update BEFORE UPDATE ON erasures "
        "BEGIN SELECT RAISE(ABORT, 'erasures is append-only: UPDATE refused'); END",
        "CREATE TRIGGER erasures_no_delete BEFORE DELETE ON erasures "
        "BEGIN SELECT RAISE(ABORT, 'erasures is append-only: DELETE refused'); END",
        "CREATE TRIGGER erasures_no_replace BEFORE INSERT ON erasures "
        "WHEN EXISTS (SELECT 1 FROM erasures WHERE seq = NEW.seq) "
        "BEGIN SELECT RAISE(ABORT, 'erasures is append-only: REPLACE refused'); END",
        "CREATE TRIGGER erasures_only_assertions BEFORE INSERT ON erasures "
        "WHEN (SELECT type FROM events WHERE seq = NEW.seq) IS NOT 'AssertionRecorded' "
        "BEGIN SELECT RAISE(ABORT, 'erasures: only an AssertionRecorded payload can be erased');"
        " END",
        "DROP TRIGGER payloads_no_delete",
        "CREATE TRIGGER payloads_no_delete BEFORE DELETE ON payloads "
        "WHEN NOT EXISTS (SELECT 1 FROM erasures WHERE seq = OLD.seq) "
        "BEGIN SELECT RAISE(ABORT, 'payloads is append-only: DELETE refused'); END",
    )
    for sql in statements:  # one at a time: executescript would commit the migration's transaction
        db.execute(sql)


def _erasures_of_assertions_only(db: sqlite_utils.Database) -> None:
    """The trigger of step 0006 that refuses a record for another event: a ledger that
    took step 0006 before the trigger was part of it gets it here."""
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS erasures_only_assertions BEFORE INSERT ON erasures "
        "WHEN (SELECT type FROM events WHERE seq = NEW.seq) IS NOT 'AssertionRecorded' "
        "BEGIN SELECT RAISE(ABORT, 'erasures: only an AssertionRecorded payload can be erased');"
        " END"
    )


LOG_MIGRATIONS = [
    Migration("ledger-0001-log", _log),
    Migration("ledger-0002-write-model", _write_model),
    Migration("ledger-0003-no-replace", _no_replace),
    Migration("ledger-0004-api-keys", _api_keys),
    Migration("ledger-0005-no-recorded-at-index", _no_recorded_at_index),
    Migration("ledger-0006-erasures", _erasures),
    Migration("ledger-0007-erasures-of-assertions-only", _erasures_of_assertions_only),
]
