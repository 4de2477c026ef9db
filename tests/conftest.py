"""Fixtures shared by the test modules: a fresh database path and an open SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.sqlite_store import SqliteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    """A SQLite store on a fresh file, closed after the test."""
    opened = SqliteStore(db_path)
    yield opened
    opened.close()
