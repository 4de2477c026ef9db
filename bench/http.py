"""Target 1: durable HTTP appends against a bare litestar app under the same server, A B A B."""

from __future__ import annotations

from pathlib import Path

import msgspec

from api.importer import import_file
from bench import gen
from bench.common import (
    PYTHON,
    Result,
    cpu_seconds,
    flush_disk,
    free_port,
    ledger_args,
    remove_db,
    say,
    servers,
)
from bench.load import Load, have_wrk, run_load
from ledger import keys
from ledger.sqlite_store import SqliteStore, connect
from projections import all_projectors

CONNECTIONS = 64


def _bodies(count: int = 100) -> list[bytes]:
    """Assertion bodies over many subjects, with server-made ids (none supersedes)."""
    out: list[bytes] = []
    for line in gen.lines(count, subjects=1000, seed=11):
        if line["record"] != "assertion":
            continue
        for key in ("record", "assertion_id", "supersedes"):
            line.pop(key, None)
        out.append(msgspec.json.encode(line))
    return out[:count]


def _prepare(work: Path) -> tuple[Path, str]:
    """A fresh ledger with the generator's sources and a writer key; returns its token."""
    db = work / "http.db"
    remove_db(db)
    store = SqliteStore(db, all_projectors())
    try:
        result = import_file(store, gen.ensure(work, 0), "bench")
        if (problem := result.problem()) is not None:
            raise RuntimeError(f"import of the sources failed: {problem}")
    finally:
        store.close()
    conn = connect(db)
    try:
        _, token = keys.create_key(conn, "writer", "bench")
    finally:
        conn.close()
    return db, token


def bench_http(work: Path, seconds: float, tool: str = "auto") -> list[Result]:
    db, token = _prepare(work)
    bodies = _bodies()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    bare_port, ledger_port = free_port(), free_port()
    bare_args = [PYTHON, "-m", "bench.bare_app", "--port", str(bare_port)]
    ledger_cmd = ledger_args("serve", "--db", str(db), "--port", str(ledger_port))
    used = "wrk" if tool == "wrk" or (tool == "auto" and have_wrk()) else "python"
    say(f"http: {CONNECTIONS} connections, {seconds:.0f} s a run, load by {used}, A B A B")
    flush_disk("http")
    bare_runs: list[Load] = []
    ledger_runs: list[Load] = []
    specs = [
        (bare_args, f"http://127.0.0.1:{bare_port}/v1/health", work / "bare.log"),
        (ledger_cmd, f"http://127.0.0.1:{ledger_port}/v1/health", work / "serve-http.log"),
    ]
    cpu = {"bare": 0.0, "ledger": 0.0}  # CPU seconds each server spent in the measured runs

    def measured(name: str, pid: int, port: int) -> Load:
        before = cpu_seconds(pid)
        load = run_load(port, "/v1/assertions", bodies, headers, CONNECTIONS, seconds, used)
        cpu[name] += cpu_seconds(pid) - before
        return load

    with servers(specs) as (bare_proc, ledger_proc):
        warm = min(1.0, seconds / 2)
        run_load(bare_port, "/v1/assertions", bodies, headers, CONNECTIONS, warm, used)
        run_load(ledger_port, "/v1/assertions", bodies, headers, CONNECTIONS, warm, used)
        for _ in range(2):
            bare_runs.append(measured("bare", bare_proc.pid, bare_port))
            ledger_runs.append(measured("ledger", ledger_proc.pid, ledger_port))
    bare = sum(r.rps for r in bare_runs) / len(bare_runs)
    ours = sum(r.rps for r in ledger_runs) / len(ledger_runs)
    p99 = max(r.p99_ms for r in ledger_runs)
    bad = sum(r.bad for r in ledger_runs) + sum(r.bad for r in bare_runs)
    notes = [
        "runs (ledger/bare req/s): "
        + ", ".join(
            f"{a.rps:,.0f}/{b.rps:,.0f}" for a, b in zip(ledger_runs, bare_runs, strict=True)
        ),
        f"load generator: {used}; p50 {max(r.p50_ms for r in ledger_runs):.1f} ms",
    ]
    if bad:
        notes.append(f"{bad} answers were not 201 or failed")
    if cpu["bare"] > 0 and cpu["ledger"] > 0:
        per_bare = cpu["bare"] / sum(r.requests for r in bare_runs) * 1e6
        per_ours = cpu["ledger"] / sum(r.requests for r in ledger_runs) * 1e6
        notes.append(
            f"server CPU per request: ledger {per_ours:,.0f} us, bare {per_bare:,.0f} us "
            f"({per_ours / per_bare:.1f}x), the ledger's writer process included"
        )
    return [
        Result(
            "1",
            "POST /v1/assertions, durable, 64 connections",
            ours,
            "req/s",
            ">= 0.75x",
            ours / bare >= 0.75 and not bad,
            bare,
            "bare litestar decode + 201",
            ours / bare,
            notes,
        ),
        Result("1", "POST /v1/assertions p99", p99, "ms", "<= 50 ms", p99 <= 50),
    ]
