"""Large ledgers for the benchmarks, built once through the real `ledger import` path."""

from __future__ import annotations

from pathlib import Path

from bench import gen
from bench.common import ChildRun, event_count, ledger_args, remove_db, run_child, say


def ledger_path(work: Path, n: int, subjects: int = gen.SUBJECTS) -> Path:
    spread = "" if subjects == gen.SUBJECTS else f"-{subjects}s"
    return work / f"ledger-v{gen.GENERATOR_VERSION}-{n}{spread}.db"


def import_into(work: Path, n: int, db: Path, subjects: int = gen.SUBJECTS) -> tuple[ChildRun, int]:
    """`ledger import` of the generated file for `n` assertions into a fresh `db`."""
    source = gen.ensure(work, n, subjects)
    remove_db(db)
    run = run_child(ledger_args("import", str(source), "--db", str(db), "--actor", "bench"))
    if run.returncode != 0:
        raise RuntimeError(f"ledger import failed: {run.stderr.strip()[-2000:]}")
    return run, event_count(db)


def ensure_ledger(work: Path, n: int, subjects: int = gen.SUBJECTS) -> Path:
    """The ledger of `n` generated assertions over `subjects` subjects, imported once and
    reused by later scenarios."""
    db = ledger_path(work, n, subjects)
    done = db.with_suffix(".done")
    if done.exists() and db.exists():
        return db
    say(f"building a ledger of {n:,} assertions ({db.name})")
    tmp = db.with_suffix(".building.db")
    import_into(work, n, tmp, subjects)
    remove_db(db)
    tmp.replace(db)
    remove_db(tmp)
    done.write_text("ok\n")
    return db


def adopt(work: Path, n: int, db: Path) -> None:
    """Keep a freshly imported `db` as the reusable ledger of `n` assertions."""
    target = ledger_path(work, n)
    remove_db(target)
    db.replace(target)
    remove_db(db)
    target.with_suffix(".done").write_text("ok\n")
