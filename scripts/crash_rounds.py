"""Crash rounds: `kill -9` the server while clients append; no acknowledged append is lost.

Each round: 32 clients (httpx, async) append assertions as fast as the server answers,
each request with its own Idempotency-Key; after a random moment the server process gets
SIGKILL. It is started again on the same file, and then:

- every append acknowledged with a 201 is there (`GET /v1/assertions/{id}`, same seq and
  hash), the seqs run 1..size with no gap, and the chain recomputes;
- every request that was in flight at the kill is sent again with its key and body: it
  is answered 201 and, whether or not it had committed, appended exactly once;
- `ledger verify` and `ledger audit` exit 0 and `PRAGMA integrity_check` says ok
  (every `--check-every` rounds and after the last).

Usage: .venv/bin/python scripts/crash_rounds.py [--rounds 200] [--clients 32] [--dir DIR]
Prints one line per round and a JSON summary (the figures in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import rfc8785

BIN = Path(sys.executable).parent
LEDGER = str(BIN / "ledger")
SOURCE = {"id": "crash-src", "name": "Crash test source", "kind": "intelligence"}
SUBJECTS = [f"crash-{i}" for i in range(8)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ledger_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEDGER_LOG_LEVEL": "WARNING"}
    return subprocess.run([LEDGER, *args], capture_output=True, text=True, env=env, check=False)


def create_token(db: Path, role: str, name: str) -> str:
    """`ledger keys create`; the token is the last line of its stdout."""
    done = ledger_cli("keys", "create", "--role", role, "--name", name, "--db", str(db))
    if done.returncode != 0:
        raise RuntimeError(f"ledger keys create failed: {done.stderr}")
    return done.stdout.strip().splitlines()[-1]


class ServerFailed(RuntimeError):
    """The server did not come up; carries the end of its log."""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log: TextIO
    log_path: Path

    @classmethod
    def start(cls, db: Path, log_path: Path, attempts: int = 5, level: str = "WARNING") -> Server:
        """Start `ledger serve` on a free port and wait for /v1/health.

        Another process can take the port between our probe and the server's bind; only
        that failure is retried, on a new port.
        """
        for _ in range(attempts):
            port = free_port()
            log = log_path.open("a")
            mark = log.tell()
            process = subprocess.Popen(
                [LEDGER, "serve", "--db", str(db), "--port", str(port)],
                stdout=log,
                stderr=log,
                env={**os.environ, "LEDGER_LOG_LEVEL": level},
            )
            server = cls(process, f"http://127.0.0.1:{port}", log, log_path)
            try:
                server.wait_healthy()
            except ServerFailed as failed:
                server.log.close()
                if "address already in use" not in log_path.read_text()[mark:].lower():
                    raise
                del failed
                continue
            return server
        raise ServerFailed("no free port after several attempts")

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.log.flush()
                tail = self.log_path.read_text()[-3000:]
                raise ServerFailed(f"the server exited with {self.process.returncode}:\n{tail}")
            try:
                answer = httpx.get(f"{self.base}/v1/health", timeout=1)
                if answer.status_code == 200:
                    health: dict[str, Any] = answer.json()
                    return health
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.process.kill()
                raise ServerFailed("the server never answered /v1/health")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code


@dataclass(frozen=True)
class Ack:
    key: str
    assertion_id: str
    seq: int
    hash: str


@dataclass
class Burst:
    """What the clients saw during one round."""

    acked: list[Ack] = field(default_factory=list)
    in_flight: list[tuple[str, bytes]] = field(default_factory=list)  # (key, body)
    refused: int = 0


def _body(rng: random.Random, n: int) -> bytes:
    low = rng.randrange(0, 10_000)
    body = {
        "subject": rng.choice(SUBJECTS),
        "property": "troops.deployed",
        "value": {"low": low, "high": low + rng.randrange(0, 500)},
        "claimants": [SOURCE["id"]],
        "stated_at": f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        "document": {"publisher": "Crash Wire", "published_at": "2025-05-01"},
        "quote": f"append {n}: " + "x" * rng.randrange(0, 400),
    }
    return json.dumps(body).encode()


async def burst(
    server: Server, token: str, clients: int, kill_after: float, rng: random.Random, tag: str
) -> Burst:
    """`clients` appenders until the server is killed `kill_after` seconds in."""
    seen = Burst()
    counter = iter(range(10**9))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            n = next(counter)
            key = f"{tag}-{n}"
            body = _body(rng, n)
            try:
                answer = await http.post(
                    "/v1/assertions", content=body, headers={**headers, "Idempotency-Key": key}
                )
            except httpx.TransportError:
                seen.in_flight.append((key, body))
                return
            if answer.status_code == 201:
                got = answer.json()
                seen.acked.append(Ack(key, got["assertion_id"], got["seq"], got["hash"]))
            else:
                seen.refused += 1

    async with httpx.AsyncClient(base_url=server.base, timeout=10, limits=limits) as http:
        tasks = [asyncio.create_task(client(http)) for _ in range(clients)]
        await asyncio.sleep(kill_after)
        await asyncio.to_thread(server.kill)
        await asyncio.gather(*tasks)
    return seen


async def events(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = await http.get("/v1/events", params={"after": after, "limit": 1000})
        page.raise_for_status()
        out += page.json()["items"]
        after = page.json()["next"]
    return out


def _canonical(event: dict[str, Any]) -> bytes:
    keys = ("seq", "type", "stream", "version", "recorded_at", "actor", "data_sha256")
    encoded: bytes = rfc8785.dumps({k: event[k] for k in keys})
    return encoded


def check_chain(log: list[dict[str, Any]]) -> None:
    """Seqs 1..n without a gap, and the hash chain recomputed from the envelopes."""
    previous = bytes(32)
    for expected, event in enumerate(log, start=1):
        if event["seq"] != expected:
            raise AssertionError(f"seq {expected} missing (found {event['seq']})")
        previous = hashlib.sha256(previous + _canonical(event)).digest()
        if previous.hex() != event["hash"]:
            raise AssertionError(f"the chain breaks at seq {expected}")


async def check_after_restart(server: Server, token: str, seen: Burst) -> dict[str, int]:
    """Every acknowledged append is there; in-flight ones, retried, land exactly once."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.base, timeout=30, headers=headers) as http:
        before = await events(http)
        check_chain(before)
        by_seq = {e["seq"]: e for e in before}
        for ack in seen.acked:
            got = await http.get(f"/v1/assertions/{ack.assertion_id}")
            if got.status_code != 200 or got.json()["recorded_seq"] != ack.seq:
                raise AssertionError(f"acknowledged {ack} is lost: {got.status_code} {got.text}")
            if by_seq[ack.seq]["hash"] != ack.hash:
                raise AssertionError(f"acknowledged seq {ack.seq} has another hash")
        retried = 0
        committed_unacked = 0
        for key, body in seen.in_flight:
            again = await http.post(
                "/v1/assertions",
                content=body,
                headers={"Idempotency-Key": key, "Content-Type": "application/json"},
            )
            if again.status_code != 201:
                raise AssertionError(f"retry of {key}: {again.status_code} {again.text}")
            retried += 1
            if again.json()["seq"] <= len(before):
                committed_unacked += 1  # it had committed; its 201 never arrived
        after = await events(http)
        check_chain(after)
        if len(after) != len(before) + retried - committed_unacked:
            raise AssertionError("a retried request was appended twice")
    return {
        "acked": len(seen.acked),
        "in_flight": len(seen.in_flight),
        "committed_unacked": committed_unacked,
        "size": len(after),
    }


def offline_checks(db: Path) -> dict[str, float]:
    """`ledger verify`, `ledger audit` (exit 0) and `PRAGMA integrity_check` (ok)."""
    timings: dict[str, float] = {}
    for command in ("verify", "audit"):
        started = time.perf_counter()
        done = ledger_cli(command, "--db", str(db))
        timings[command] = time.perf_counter() - started
        if done.returncode != 0:
            raise AssertionError(
                f"ledger {command} exited {done.returncode}: {done.stdout[-2000:]}"
            )
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    if result != [("ok",)]:
        raise AssertionError(f"integrity_check: {result[:5]}")
    return timings


@dataclass
class Figures:
    rounds: int = 0
    acked: list[int] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    committed_unacked: list[int] = field(default_factory=list)
    restart_s: list[float] = field(default_factory=list)
    verify_s: list[float] = field(default_factory=list)
    audit_s: list[float] = field(default_factory=list)
    size: int = 0

    def summary(self) -> dict[str, Any]:
        def spread(values: list[float]) -> dict[str, float]:
            if not values:
                return {}
            ordered = sorted(values)
            return {
                "min": round(ordered[0], 3),
                "median": round(statistics.median(ordered), 3),
                "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3),
                "max": round(ordered[-1], 3),
            }

        return {
            "rounds": self.rounds,
            "acknowledged_appends": sum(self.acked),
            "acknowledged_lost": 0,
            "acked_per_round": spread([float(a) for a in self.acked]),
            "in_flight_at_kill": sum(self.in_flight),
            "committed_but_unacknowledged": sum(self.committed_unacked),
            "duplicates_after_retry": 0,
            "restart_to_healthy_s": spread(self.restart_s),
            "verify_s": spread(self.verify_s),
            "audit_s": spread(self.audit_s),
            "final_log_size": self.size,
        }


def run(
    directory: Path,
    rounds: int,
    clients: int = 32,
    kill_window: tuple[float, float] = (0.2, 1.0),
    check_every: int = 1,
    seed: int | None = None,
    out: TextIO | None = sys.stdout,
) -> Figures:
    """Run `rounds` crash rounds on a new ledger in `directory`; raise on any loss."""
    rng = random.Random(seed)
    db = directory / "crash.db"
    log_path = directory / "server.log"
    token = create_token(db, "writer", "crash-writer")
    figures = Figures()
    server = Server.start(db, log_path)
    try:
        answer = httpx.post(
            f"{server.base}/v1/sources",
            json=SOURCE,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"registering the source: {answer.status_code} {answer.text}")
        for number in range(1, rounds + 1):
            kill_after = rng.uniform(*kill_window)
            seen = asyncio.run(burst(server, token, clients, kill_after, rng, f"r{number}"))
            started = time.perf_counter()
            server = Server.start(db, log_path)
            restart = time.perf_counter() - started
            counts = asyncio.run(check_after_restart(server, token, seen))
            figures.rounds = number
            figures.acked.append(counts["acked"])
            figures.in_flight.append(counts["in_flight"])
            figures.committed_unacked.append(counts["committed_unacked"])
            figures.restart_s.append(restart)
            figures.size = counts["size"]
            if number % check_every == 0 or number == rounds:
                timings = offline_checks(db)
                figures.verify_s.append(timings["verify"])
                figures.audit_s.append(timings["audit"])
            if out is not None:
                out.write(
                    f"round {number}: killed after {kill_after:.2f}s, {counts['acked']} acked, "
                    f"{counts['in_flight']} in flight ({counts['committed_unacked']} had "
                    f"committed), restart {restart:.2f}s, log {counts['size']}\n"
                )
                out.flush()
    finally:
        if server.process.poll() is None:
            server.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--check-every", type=int, default=1, help="verify/audit every N rounds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="where the ledger goes (kept)")
    args = parser.parse_args()
    started = time.perf_counter()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="ledger-crash-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        figures = run(
            directory, args.rounds, args.clients, check_every=args.check_every, seed=args.seed
        )
    except Exception:
        sys.stderr.write(f"FAILED; the ledger and server.log are kept in {directory}\n")
        raise
    if args.dir is None:
        shutil.rmtree(directory, ignore_errors=True)
    summary = figures.summary()
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
