"""Targets 2-5 and 7: import, rebuild, point-in-time views, proofs and audit, serve memory."""

from __future__ import annotations

import http.client
import json
import random
import shutil
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from bench import gen
from bench.common import (
    Result,
    event_count,
    flush_disk,
    free_port,
    ledger_args,
    median,
    percentile,
    remove_db,
    rss_mb,
    run_child,
    say,
    servers,
)
from bench.ledgers import adopt, ensure_ledger, import_into, ledger_path
from ledger import merkle, replay
from ledger.events import PAYLOAD_TYPES
from ledger.sqlite_store import SqliteStore, connect
from projections.pit import resolve
from projections.schema import DEFERRED_INDEXES
from projections.views import property_view

_decoders = {name: msgspec.json.Decoder(cls) for name, cls in PAYLOAD_TYPES.items()}
_json = msgspec.json.Encoder()


# ---- baselines ----


def raw_inserts(work: Path, path: Path, per_commit: int = 100) -> float:
    """Rows/s of plain SQLite WAL inserts of the file's lines, `per_commit` rows per commit."""
    db = work / "baseline-inserts.db"
    remove_db(db)
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    count = 0
    start = time.perf_counter()
    with path.open("rb") as fh:
        batch: list[tuple[bytes]] = []
        for line in fh:
            batch.append((line,))
            if len(batch) == per_commit:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO rows (data) VALUES (?)", batch)
                conn.execute("COMMIT")
                count += len(batch)
                batch = []
        if batch:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO rows (data) VALUES (?)", batch)
            conn.execute("COMMIT")
            count += len(batch)
    elapsed = time.perf_counter() - start
    conn.close()
    remove_db(db)
    return count / elapsed


LOG_TABLES = ("events", "payloads", "merkle_nodes")
FLOOR_CHUNK = 5_000


def rows_floor(
    db: Path,
    target: Path,
    prefixes: Sequence[str],
    *,
    whole: Sequence[str] = (),
    cache_mib: int = 64,
) -> float:
    """Seconds to write the rows `db` holds in the tables named with `prefixes` into
    `target`, a new database of the same schema (tables, indexes, append-only triggers),
    with no logic: `executemany` of 5,000 rows at a time, durable.

    The tables named with `whole` are written in one transaction, as a replay folds the
    read side, with the view-only indexes built at its end; the others in a commit for
    every 5,000 rows, as an import appends the log. `cache_mib` is the page cache the
    command measured against gives its writer. Only the writes are timed, not reading
    the rows from `db`; keyed tables are written in key order, the cheapest order, so the
    floor is low. A floor for what an import (every table) or a rebuild (the write model
    and the read side) must write.
    """
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    remove_db(target)
    dest = connect(target, cache_mib=cache_mib)
    try:
        schema = source.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
        tables = [n for t, n, _, _ in schema if t == "table" and n.startswith(tuple(prefixes))]
        deferred = [
            sql
            for t, name, table, sql in schema
            if t == "index" and name in DEFERRED_INDEXES and table in tables
        ]
        for kind in ("table", "index", "trigger"):
            for t, name, table, sql in schema:
                if t == kind and table in tables and name not in DEFERRED_INDEXES:
                    dest.execute(sql)
        spent = 0.0
        ordered = sorted(tables, key=lambda t: (t.startswith(tuple(whole)), t not in LOG_TABLES, t))
        for table in ordered:
            in_one = table.startswith(tuple(whole))
            width = len(source.execute(f"SELECT * FROM {table} LIMIT 0").description)
            insert = f"INSERT INTO {table} VALUES ({', '.join('?' * width)})"
            cursor = source.execute(f"SELECT * FROM {table}")  # the primary key's order
            while rows := cursor.fetchmany(FLOOR_CHUNK):
                start = time.perf_counter()
                if not dest.in_transaction:
                    dest.execute("BEGIN")
                dest.executemany(insert, rows)
                if not in_one:
                    dest.execute("COMMIT")
                spent += time.perf_counter() - start
        start = time.perf_counter()
        if not dest.in_transaction:
            dest.execute("BEGIN")
        for sql in deferred:
            dest.execute(sql)
        dest.execute("COMMIT")
        return spent + time.perf_counter() - start
    finally:
        source.close()
        dest.close()


FLOOR_RUNS = 2
"""The floor is the faster of this many runs: a floor, and these machines are noisy."""


def floor_rate(
    db: Path,
    work: Path,
    prefixes: Sequence[str],
    *,
    whole: Sequence[str] = (),
    cache_mib: int = 64,
) -> float:
    """Events/s of the fastest of :data:`FLOOR_RUNS` runs of :func:`rows_floor`."""
    target = work / "floor.db"
    try:
        best = min(
            rows_floor(db, target, prefixes, whole=whole, cache_mib=cache_mib)
            for _ in range(FLOOR_RUNS)
        )
        return event_count(db) / best
    finally:
        remove_db(target)


def scan_and_decode(db: Path) -> float:
    """Events/s of an ordered scan of the log with every payload decoded to its struct."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    count = 0
    start = time.perf_counter()
    cursor = conn.execute(
        "SELECT e.seq, e.type, p.data FROM events e JOIN payloads p ON p.seq = e.seq ORDER BY e.seq"
    )
    decoders = _decoders
    while rows := cursor.fetchmany(10_000):
        for _, etype, data in rows:
            decoders[etype].decode(data)
        count += len(rows)
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed


# ---- target 2: import ----

IMPORT_TABLES = (*LOG_TABLES, "wm_", "proj_")
REBUILD_TABLES = ("wm_", "proj_")


def _against_floor(
    target: str, what: str, rate: float, floor: float, rows: str = "the rows it writes"
) -> Result:
    """Context for a bulk figure: the rate at which SQLite alone writes the same rows."""
    return Result(
        target,
        f"{what} against {rows}, written with no logic",
        rate,
        "events/s",
        "(context)",
        None,
        floor,
        "the same rows, executemany, 5,000 a commit",
        rate / floor,
    )


def bench_import(work: Path, n: int) -> list[Result]:
    source = gen.ensure(work, n)
    say(f"import: baseline, plain inserts of {n:,} rows, 100 per commit")
    baseline = raw_inserts(work, source)
    flush_disk("import")  # the baseline's rows, not yet on disk, would hold up its commits
    say(f"import: `ledger import` of {n:,} assertions")
    db = work / f"import-{n}.db"
    run, events = import_into(work, n, db)
    rate = events / run.wall
    adopt(work, n, db)
    say("import: the same rows written with no logic (the floor)")
    # the import appends the log in chunks and folds the read side in one unit at the end
    floor = floor_rate(ledger_path(work, n), work, IMPORT_TABLES, whole=("proj_",))
    say("import: the log's own tables alone, written with no logic")
    log_floor = floor_rate(ledger_path(work, n), work, LOG_TABLES)
    notes = [f"{events:,} events in {run.wall:.1f} s wall, {run.cpu:.1f} s CPU"]
    return [
        Result(
            "2",
            f"`ledger import`, {n:,} assertions (events/s)",
            rate,
            "events/s",
            ">= 25,000/s",
            rate >= 25_000,
            baseline,
            "SQLite inserts, 100 rows/commit",
            rate / baseline,
            notes,
        ),
        _against_floor("2", "`ledger import`", rate, floor),
        _against_floor(
            "2", "`ledger import`", rate, log_floor, "the log's own rows (events, payloads, Merkle)"
        ),
        Result("2", "import peak memory", run.max_rss_mb, "MB", "< 300 MB", run.max_rss_mb < 300),
    ]


# ---- target 3: rebuild ----


def _scratch_copy(db: Path, scratch: Path) -> None:
    """A copy of `db` to rebuild: an interrupted rebuild must not leave the shared ledger,
    which later scenarios reuse, with its read side half built."""
    remove_db(scratch)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    shutil.copyfile(db, scratch)


def bench_rebuild(work: Path, n: int) -> list[Result]:
    db = ensure_ledger(work, n)
    events = event_count(db)
    say(f"rebuild: raw scan and decode of {events:,} events (A)")
    scans = [scan_and_decode(db)]
    scratch = work / "rebuild-scratch.db"
    _scratch_copy(db, scratch)
    say("rebuild: `ledger rebuild` of a copy (B)")
    try:
        run = run_child(ledger_args("rebuild", "--db", str(scratch)))
    finally:
        remove_db(scratch)
    if run.returncode != 0:
        raise RuntimeError(f"ledger rebuild failed: {run.stderr[-2000:]}")
    say("rebuild: raw scan and decode (A)")
    scans.append(scan_and_decode(db))
    baseline = median(scans)
    rate = events / run.wall
    say("rebuild: the rows it writes, written with no logic (the floor)")
    # the rebuild writes everything in one transaction, with a larger page cache
    floor = floor_rate(
        db, work, REBUILD_TABLES, whole=REBUILD_TABLES, cache_mib=replay.REBUILD_CACHE_MIB
    )
    notes = [f"{events:,} events in {run.wall:.1f} s (process start and store open included)"]
    return [
        Result(
            "3",
            f"`ledger rebuild`, {events:,} events",
            rate,
            "events/s",
            ">= 150,000/s and >= 0.4x",
            rate >= 150_000 and rate / baseline >= 0.4,
            baseline,
            "ordered scan + msgspec decode",
            rate / baseline,
            notes,
        ),
        _against_floor("3", "`ledger rebuild`", rate, floor),
    ]


# ---- target 4: point-in-time views ----


def _random_as_of(rng: random.Random) -> str:
    y = rng.randint(2014, 2026)
    r = rng.random()
    if r < 0.2:
        return f"{y}"
    if r < 0.6:
        return f"{y}-{rng.randint(1, 12):02d}"
    return f"{y}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


class _ViewProbe:
    """Random views of one ledger, on a read-only connection, timed one by one."""

    def __init__(self, db: Path, seed: int) -> None:
        self.conn = connect(db)
        self.conn.execute("PRAGMA query_only = ON")
        self.head = int(self.conn.execute("SELECT max(seq) FROM events").fetchone()[0])
        self.pairs = self.conn.execute("SELECT subject, property FROM proj_properties").fetchall()
        self.rng = random.Random(seed)
        self.times: list[float] = []

    def run(self, count: int, keep: bool = True) -> None:
        rng, conn = self.rng, self.conn
        for _ in range(count):
            subject, prop = rng.choice(self.pairs)
            as_of = _random_as_of(rng)
            seq = rng.randint(1, self.head)
            start = time.perf_counter()
            at = resolve(conn, as_of, None, seq)
            view = property_view(conn, subject, prop, at)
            _json.encode(view)
            elapsed = time.perf_counter() - start
            if keep:
                self.times.append(elapsed * 1000)

    def close(self) -> None:
        self.conn.close()


def _depth(conn: sqlite3.Connection) -> float:
    """Recorded assertions per (subject, property): how much history one view reads."""
    assertions = int(conn.execute("SELECT count(*) FROM proj_assertions").fetchone()[0])
    pairs = int(conn.execute("SELECT count(*) FROM proj_properties").fetchone()[0])
    return assertions / max(1, pairs)


WARM_CHUNK = 1 << 24


def warm(db: Path) -> None:
    """Read the ledger's file once, so its pages are in the OS cache as they are for a
    server that has been running: the small ledgers always are, and a large one left cold
    by the scenarios before (an import and a rebuild write ~5 GB) would time the disk."""
    with db.open("rb") as file:
        while file.read(WARM_CHUNK):
            pass


def bench_views(work: Path, n: int, small: int, queries: int) -> list[Result]:
    """Target 4 against two small ledgers of `small` assertions: one over the same 1,000
    subjects (a property holds ~1,000x less history than on the large ledger), and one over
    `subjects * small / n` subjects, so a property holds as much history as on the large
    one and only the log's length differs."""
    deep_subjects = max(1, round(gen.SUBJECTS * small / n))
    big_db = ensure_ledger(work, n)
    small_db = ensure_ledger(work, small)
    deep_db = ensure_ledger(work, small, deep_subjects)
    for db in (big_db, small_db, deep_db):
        warm(db)
    big, little = _ViewProbe(big_db, 1), _ViewProbe(small_db, 2)
    deep = _ViewProbe(deep_db, 3)
    probes = (big, little, deep)
    say(
        f"views: {queries:,} random views on each of {big.head:,}, {little.head:,} and "
        f"{deep.head:,} events ({deep_subjects} subjects)"
    )
    try:
        depths = [_depth(probe.conn) for probe in probes]
        for probe in probes:
            probe.run(200, keep=False)
        block = 100
        for _ in range(max(1, queries // block)):  # A B C A B C
            for probe in probes:
                probe.run(block)
        p50, p99 = percentile(big.times, 0.5), percentile(big.times, 0.99)
        s50, s99 = percentile(little.times, 0.5), percentile(little.times, 0.99)
        d50, d99 = percentile(deep.times, 0.5), percentile(deep.times, 0.99)
    finally:
        for probe in probes:
            probe.close()
    label = f"{big.head:,} events"
    small_label = f"same on {little.head:,} events"
    deep_label = f"{deep.head:,} events over {deep_subjects} subjects"
    history = (
        f"assertions per (subject, property): {depths[0]:.1f} on {big.head:,} events, "
        f"{depths[1]:.1f} on {little.head:,}, {depths[2]:.1f} on {deep.head:,} over "
        f"{deep_subjects} subjects; p99 there {d99:.2f} ms ({p99 / d99:.2f}x)"
    )
    return [
        Result(
            "4",
            f"view p50, {label}",
            p50,
            "ms",
            "<= 2 ms, <= 1.5x",
            p50 <= 2 and p50 / s50 <= 1.5,
            s50,
            small_label,
            p50 / s50,
        ),
        Result(
            "4", f"view p99, {label}", p99, "ms", "<= 10 ms", p99 <= 10, s99, small_label, p99 / s99
        ),
        Result(
            "4",
            f"view p50, {label}, against the same history per property",
            p50,
            "ms",
            "<= 1.5x",
            p50 / d50 <= 1.5,
            d50,
            deep_label,
            p50 / d50,
            notes=[history],
        ),
    ]


# ---- target 5: proofs and audit ----


def probe_nodes(
    conn: sqlite3.Connection, ids: Sequence[merkle.NodeId]
) -> dict[merkle.NodeId, bytes]:
    """Merkle nodes by one primary-key probe each: the read `docs/benchmarks.md` proposes
    for `ledger.sqlite_store.fetch_nodes` (whose row-value IN list scans the table)."""
    rows = conn.execute(
        "SELECT n.level, n.idx, n.hash FROM json_each(?) j JOIN merkle_nodes n"
        " ON n.level = json_extract(j.value, '$[0]') AND n.idx = json_extract(j.value, '$[1]')",
        (_json.encode(list(ids)).decode(),),
    )
    return {(level, idx): h for level, idx, h in rows}


def _probe_times(db: Path, count: int, seed: int) -> list[float]:
    """Inclusion plus consistency proofs through :func:`probe_nodes`, in ms each."""
    conn = connect(db)
    rng = random.Random(seed)
    times: list[float] = []
    try:
        size = int(conn.execute("SELECT max(seq) FROM events").fetchone()[0])

        def fetch(ids: Sequence[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
            return probe_nodes(conn, ids)

        for _ in range(count):
            seq, old = rng.randint(1, size), rng.randint(1, size)
            start = time.perf_counter()
            merkle.inclusion_proof(seq - 1, size, fetch)
            merkle.consistency_proof(old, size, fetch)
            times.append((time.perf_counter() - start) * 1000 / 2)
    finally:
        conn.close()
    return times


def _proof_times(
    db: Path, count: int, seed: int, budget: float = 60.0
) -> tuple[list[float], list[float]]:
    """`count` inclusion and consistency proofs at the head (fewer if `budget` s runs out)."""
    store = SqliteStore(db, tail_check=0)
    deadline = time.monotonic() + budget
    rng = random.Random(seed)
    inclusion: list[float] = []
    consistency: list[float] = []
    try:
        size = store.size()
        root = bytes.fromhex(store.root(size))
        for i in range(count):
            seq = rng.randint(1, size)
            start = time.perf_counter()
            proof = store.inclusion_proof(seq, size)
            inclusion.append((time.perf_counter() - start) * 1000)
            old = rng.randint(1, size)
            start = time.perf_counter()
            cons = store.consistency_proof(old, size)
            consistency.append((time.perf_counter() - start) * 1000)
            if i < 5:  # the proofs are right, not only fast
                path = [bytes.fromhex(p) for p in proof.path]
                leaf = bytes.fromhex(proof.leaf_hash)
                assert merkle.verify_inclusion(leaf, seq - 1, size, path, root)
                old_root = bytes.fromhex(store.root(old))
                cpath = [bytes.fromhex(p) for p in cons.path]
                assert merkle.verify_consistency(old, size, old_root, root, cpath)
            if time.monotonic() > deadline:
                break
    finally:
        store.close()
    return inclusion, consistency


def bench_proofs(work: Path, n: int, small: int, count: int) -> list[Result]:
    big_db, small_db = ensure_ledger(work, n), ensure_ledger(work, small)
    for db in (big_db, small_db):
        warm(db)
    say(f"proofs: {count:,} inclusion and consistency proofs on each ledger")
    _proof_times(big_db, 20, 0, budget=10)
    b_inc, b_con = _proof_times(big_db, count, 1)
    s_inc, s_con = _proof_times(small_db, count, 2)
    events = event_count(big_db)
    if len(b_inc) < count:
        say(f"proofs: time budget spent after {len(b_inc):,} proofs on the large ledger")
    probed = _probe_times(big_db, count, 3)
    proposed = (
        f"the node reads alone, one key probe per node (as fetch_nodes does): "
        f"p50 {percentile(probed, 0.5):.3f} ms, p99 {percentile(probed, 0.99):.3f} ms a proof"
    )
    results = []
    for name, times, small_times in (("inclusion", b_inc, s_inc), ("consistency", b_con, s_con)):
        p99 = percentile(times, 0.99)
        base = percentile(small_times, 0.99)
        results.append(
            Result(
                "5",
                f"{name} proof p99, {events:,} events",
                p99,
                "ms",
                "<= 2 ms",
                p99 <= 2,
                base,
                f"p99 on {event_count(small_db):,} events",
                p99 / base if base else None,
                [f"p50 {percentile(times, 0.5):.3f} ms over {len(times):,} proofs", proposed],
            )
        )
    return results


def bench_audit(work: Path, n: int) -> list[Result]:
    db = ensure_ledger(work, n)
    events = event_count(db)
    say(f"audit: `ledger audit` of {events:,} events")
    baseline = events / scan_and_decode(db)
    run = run_child(ledger_args("audit", "--db", str(db)))
    report = json.loads(run.stdout or "{}")
    ok = run.returncode == 0 and bool(report.get("ok"))
    notes = [] if ok else [f"audit did not pass: exit {run.returncode} {run.stderr[-500:]}"]
    return [
        Result(
            "5",
            f"`ledger audit`, {events:,} events",
            run.wall,
            "s",
            "<= 60 s",
            ok and run.wall <= 60,
            baseline,
            "s for a raw scan + decode",
            run.wall / baseline,
            notes,
        )
    ]


# ---- target 7: memory of `ledger serve` ----


def _reads(db: Path, port: int, requests: int) -> None:
    """`requests` GETs of views, timelines, listings, event pages and a few proofs."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    pairs = conn.execute("SELECT subject, property FROM proj_properties").fetchall()
    head = int(conn.execute("SELECT max(seq) FROM events").fetchone()[0])
    conn.close()
    rng = random.Random(7)
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for i in range(requests):
            subject, prop = rng.choice(pairs)
            kind = "statuses" if prop in gen.STATUSES else "estimates"
            paths = [
                f"/v1/subjects/{subject}/{kind}/{prop}?seq={rng.randint(1, head)}",
                f"/v1/subjects/{subject}/timeline",
                f"/v1/assertions?subject={subject}&limit=100",
                f"/v1/events?after={rng.randint(0, head)}&limit=1000",
            ]
            path = paths[i % len(paths)]
            if i % 50 == 49:
                path = f"/v1/log/inclusion?seq={rng.randint(1, head)}&size={head}"
            client.request("GET", path)
            response = client.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status}")
    finally:
        client.close()


def _serve_rss(work: Path, dbs: list[Path], requests: int) -> list[tuple[float, float]]:
    """`(VmRSS, VmHWM)` of a `ledger serve` on each of `dbs` after `requests` reads."""
    ports = [free_port() for _ in dbs]
    specs = [
        (
            ledger_args("serve", "--db", str(db), "--port", str(port), "--public-read"),
            f"http://127.0.0.1:{port}/v1/health",
            work / f"serve-{port}.log",
        )
        for db, port in zip(dbs, ports, strict=True)
    ]
    with servers(specs) as procs:
        for db, port in zip(dbs, ports, strict=True):
            _reads(db, port, requests)
        return [rss_mb(proc.pid) for proc in procs]


def bench_memory(work: Path, n: int, small: int, requests: int) -> list[Result]:
    big_db, small_db = ensure_ledger(work, n), ensure_ledger(work, small)
    say(f"memory: `ledger serve` after {requests:,} reads")
    (_, s_hwm), (rss, hwm) = _serve_rss(work, [small_db, big_db], requests)
    events = event_count(big_db)
    return [
        Result(
            "7",
            f"`ledger serve` peak RSS, {events:,} events",
            hwm,
            "MB",
            "< 150 MB",
            hwm < 150,
            s_hwm,
            f"on {event_count(small_db):,} events",
            hwm / s_hwm,
            [f"resident after the reads {rss:.0f} MB"],
        )
    ]
