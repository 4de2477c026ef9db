"""`python -m bench [SCENARIO ...] [--quick] [--n N]`: run the benchmark scenarios.

Scenarios: import (target 2), rebuild (3), views (4), proofs and audit (5), http (1),
peer (6), postgres (context: the PostgreSQL store against the SQLite one), memory (7);
none named runs them all, in that order, so the large ledger the
import builds is reused by the ones after it. `--quick` runs every one at small sizes
(a smoke run, not figures). Results print as a Markdown table and are written as JSON
to `bench/results/`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import HEADER, ROOT, Result, machine, say, to_json

SCENARIOS = (
    "import",
    "rebuild",
    "views",
    "proofs",
    "audit",
    "http",
    "peer",
    "postgres",
    "memory",
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "scenarios",
        nargs="*",
        choices=[*SCENARIOS, []],
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--n", type=int, help="assertions in the large ledger (default 1,000,000)")
    p.add_argument("--small", type=int, help="events in the small ledger (default 10,000)")
    p.add_argument("--peer-events", type=int, help="events for the peer jobs (default 20,000)")
    p.add_argument("--seconds", type=float, help="length of one HTTP load run (default 10)")
    p.add_argument(
        "--load",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="HTTP load generator (auto: wrk when installed)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where ledgers, files and results go",
    )
    p.add_argument("--out", type=Path, help="results JSON (default: in --work)")
    return p


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[[], list[Result]]]]:
    from bench import http, peer, postgres, storage

    quick = args.quick
    n = args.n or (20_000 if quick else 1_000_000)
    small = args.small or (2_000 if quick else 10_000)
    peer_events = args.peer_events or (1_000 if quick else 20_000)
    seconds = args.seconds or (2.0 if quick else 10.0)
    queries = 300 if quick else 2_000
    work: Path = args.work
    steps: dict[str, Callable[[], list[Result]]] = {
        "import": lambda: storage.bench_import(work, n),
        "rebuild": lambda: storage.bench_rebuild(work, n),
        "views": lambda: storage.bench_views(work, n, small, queries),
        "proofs": lambda: storage.bench_proofs(work, n, small, queries // 2),
        "audit": lambda: storage.bench_audit(work, n),
        "http": lambda: http.bench_http(work, seconds, args.load),
        "peer": lambda: peer.bench_peer(work, peer_events),
        "postgres": lambda: postgres.bench_postgres(work, peer_events),
        "memory": lambda: storage.bench_memory(work, n, small, 50 if quick else 1_000),
    }
    chosen = args.scenarios or list(SCENARIOS)
    return [(name, steps[name]) for name in SCENARIOS if name in chosen]


def run(argv: list[str] | None = None) -> list[Result]:
    args = parser().parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    info = machine()
    say(f"{info['cpu']}, {info['cores']} cores, load {info['load_average_at_start']}")
    results: list[Result] = []
    for name, step in plan(args):
        started = time.perf_counter()
        results += step()
        say(f"{name}: done in {time.perf_counter() - started:.1f} s")
    out = args.out or args.work / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps({"machine": info, "quick": args.quick, "results": to_json(results)}, indent=2)
    )
    print(HEADER)
    for result in results:
        print(result.row())
    for result in results:
        for note in result.notes:
            print(f"- {result.target} {result.name}: {note}")
    print(f"\nresults: {out}")
    return results


def main() -> int:
    run(sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
