"""The benchmark suite runs end to end at tiny sizes: a check that it works, not figures.

No timing is asserted; every scenario must finish, report a figure and leave a results
file, and the HTTP run must see only 201s.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

from bench.__main__ import run
from bench.ledgers import ensure_ledger
from bench.storage import IMPORT_TABLES, LOG_TABLES, REBUILD_TABLES, rows_floor


def test_every_scenario_runs_at_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    results = run(
        [
            "--quick",
            "--n",
            "300",
            "--small",
            "120",
            "--peer-events",
            "64",
            "--seconds",
            "0.5",
            "--load",
            "python",
            "--work",
            str(tmp_path),
            "--out",
            str(out),
        ]
    )
    targets = {r.target for r in results}
    assert targets == {"1", "2", "3", "4", "5", "6", "7", "pg"}
    for result in results:
        assert math.isfinite(result.value)
        if result.ok is not None:  # a skipped peer reports no verdict
            assert result.value > 0, result
    http = next(r for r in results if r.target == "1" and r.baseline is not None)
    assert not any("not 201" in note for note in http.notes), http.notes
    views = [r for r in results if r.target == "4"]
    deep = next(r for r in views if "same history per property" in r.name)
    assert deep.baseline_name.endswith("over 400 subjects"), deep  # 1,000 x 120 / 300
    assert "assertions per (subject, property)" in deep.notes[0]
    floors = [r for r in results if "written with no logic" in r.name]
    assert sorted(r.target for r in floors) == ["2", "2", "3"]
    assert all(r.baseline and r.baseline > 0 for r in floors), floors
    audit = next(r for r in results if "audit" in r.name)
    assert not audit.notes, audit.notes  # the audit of the imported ledger passed
    postgres = [r for r in results if r.target == "pg"]
    skipped = any("skipped" in note for r in postgres for note in r.notes)
    assert skipped or [r.unit for r in postgres] == ["appends/s", "events/s"], postgres
    assert skipped or all(r.baseline and r.ratio for r in postgres), postgres
    saved = json.loads(out.read_text())
    assert len(saved["results"]) == len(results)
    assert saved["machine"]["cores"]


def _schema(db: Path, prefixes: tuple[str, ...] | None = None) -> set[tuple[str, str, str]]:
    """The file's tables, indexes and triggers; with `prefixes`, those of the tables so named."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return {
        (kind, name, sql)
        for kind, name, table, sql in rows
        if prefixes is None or table.startswith(prefixes)
    }


def _dump(db: Path, tables: list[str]) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables}
    finally:
        conn.close()


def test_the_floor_writes_exactly_the_rows_and_schema_of_the_chosen_tables(
    tmp_path: Path,
) -> None:
    """The floor a bulk figure is set against writes what the ledger holds: the same rows
    in the same tables, indexes and triggers, and no other table."""
    work = tmp_path / "work"
    work.mkdir()
    db = ensure_ledger(work, 200)
    copy = tmp_path / "floor.db"
    seconds = rows_floor(db, copy, REBUILD_TABLES, whole=REBUILD_TABLES)
    assert seconds > 0
    assert _schema(copy) == _schema(db, ("wm_", "proj_"))
    wanted = _schema(db, ("wm_", "proj_"))
    tables = sorted(n for t, n, _ in wanted if t == "table")
    assert "proj_assertions" in tables
    assert "events" not in tables
    copied, held = _dump(copy, tables), _dump(db, tables)
    assert copied == held
    assert sum(len(rows) for rows in copied.values()) > 200

    for prefixes in (IMPORT_TABLES, LOG_TABLES):  # the log alone: no view index to build
        whole = tmp_path / f"{len(prefixes)}.db"
        rows_floor(db, whole, prefixes, whole=("proj_",))
        assert _dump(whole, list(LOG_TABLES)) == _dump(db, list(LOG_TABLES))
        assert _schema(whole) == _schema(db, prefixes)
