"""A long schemathesis run against a real server: every phase, every check, many examples.

Builds a ledger from fixtures/seed.jsonl with an admin key, starts `ledger serve` on it,
and runs the schemathesis CLI on `/schema/openapi.json` with the admin token as the
schema's `bearer` scheme (so cases that drop it on purpose go without it). The
in-suite run (`tests/test_fuzz_api.py`) does the same in process with a few examples per
operation and without the coverage phase.

`positive_data_acceptance` also accepts a 422 and a 412 (see tests/test_fuzz_api.py for why).

Usage: .venv/bin/python scripts/fuzz_api.py [--max-examples 200] [--seed 1] [--keep DIR]
Exits with schemathesis' own code; the report is in DIR/report.json and its summary is
printed (the figures in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.crash_rounds import BIN, Server, create_token, ledger_cli

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[auth.openapi.bearer]
bearer = "{token}"

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "429"]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--keep", type=Path, default=None, help="keep the ledger and report here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="ledger-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "fuzz.db"
    if not db.exists():
        imported = ledger_cli("import", str(ROOT / "fixtures" / "seed.jsonl"), "--db", str(db))
        if imported.returncode != 0:
            sys.stderr.write(imported.stderr)
            return 2
    token = create_token(db, "admin", f"fuzz-{int(time.time())}")
    config = work / "schemathesis.toml"
    config.write_text(CONFIG.format(token=token))  # the schema's `bearer` scheme
    report = work / "report.json"
    server = Server.start(db, work / "server.log")
    started = time.perf_counter()
    try:
        run = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "--config-file",
                str(config),
                "run",
                f"{server.base}/schema/openapi.json",
                "--max-examples",
                str(args.max_examples),
                "--seed",
                str(args.seed),
                "--phases",
                args.phases,
                "--checks",
                "all",
                "--workers",  # one: hypothesis' lambda parsing is not thread-safe on 3.11
                "1",
                "--report",
                "json",
                "--report-json-path",
                str(report),
                "--no-color",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
    finally:
        server.stop()
    print(run.stdout[-6000:])
    summary = {
        "schemathesis_exit": run.returncode,
        "max_examples": args.max_examples,
        "seed": args.seed,
        "wall_s": round(time.perf_counter() - started, 1),
        "server_errors_logged": (work / "server.log").read_text().count("unhandled_error"),
    }
    print(json.dumps(summary, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
