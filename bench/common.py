"""What every scenario shares: results, percentiles, child processes, the machine."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Result:
    """One figure: what was measured, against what, and whether the target holds.

    `ratio` is `value / baseline` (both measured in the same run); `ok` is None when a
    figure has no target of its own (context for another).
    """

    target: str
    name: str
    value: float
    unit: str
    goal: str
    ok: bool | None
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        verdict = {True: "pass", False: "MISS", None: "-"}[self.ok]
        base = f"{fmt(self.baseline)} ({self.baseline_name})" if self.baseline is not None else ""
        ratio = f"{self.ratio:.2f}x" if self.ratio is not None else ""
        measured = f"{fmt(self.value)} {self.unit}"
        cells = (self.target, self.name, measured, base, ratio, self.goal, verdict)
        return "| " + " | ".join(cells) + " |"


HEADER = (
    "| # | figure | measured | baseline (same run) | ratio | target | |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def fmt(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def say(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def flush_disk(scenario: str) -> None:
    """Write out the dirty pages earlier scenarios left in the OS cache before one whose
    commits wait for the disk. An import and a rebuild leave gigabytes behind, and each
    sync then waits behind their writeback: 2.4 GB of dirty pages took target 1 from 0.78x
    to 0.73x, and its p99 from 21.5 to 164 ms (session 18). The baseline that does not
    sync would not pay it, so the comparison would measure the last scenario, not this."""
    before = _dirty_mb()
    started = time.perf_counter()
    os.sync()
    if before is not None and before >= 1:
        took = time.perf_counter() - started
        say(f"{scenario}: wrote out dirty pages first, {before:,.0f} MB of them ({took:.1f} s)")


def _dirty_mb() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("Dirty:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # not Linux: nothing to report, the sync still runs
        return None
    return None


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def event_count(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    finally:
        conn.close()


@dataclass
class ChildRun:
    """A finished child process: exit code, output, wall and CPU seconds, peak memory."""

    returncode: int
    stdout: str
    stderr: str
    wall: float
    cpu: float
    max_rss_mb: float


def run_child(
    args: Sequence[str], timeout: float = 3600, env: dict[str, str] | None = None
) -> ChildRun:
    """Run `args` through :mod:`bench.child`, which reports the child's own peak RSS."""
    proc = subprocess.run(
        [PYTHON, "-m", "bench.child", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    report_line = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "{}"
    try:
        report = json.loads(report_line)
        stderr = proc.stderr.rsplit(report_line, 1)[0]
    except json.JSONDecodeError:
        report, stderr = {}, proc.stderr
    return ChildRun(
        returncode=int(report.get("returncode", proc.returncode)),
        stdout=proc.stdout,
        stderr=stderr,
        wall=float(report.get("wall", 0.0)),
        cpu=float(report.get("cpu", 0.0)),
        max_rss_mb=float(report.get("max_rss_kb", 0)) / 1024,
    )


def ledger_args(*args: str) -> list[str]:
    return [PYTHON, "-m", "api.cli", *args]


def family(pid: int) -> list[int]:
    """`pid` and its children, grandchildren and so on (Linux's /proc; just `pid` elsewhere)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process and its children have used so far, live ones only
    (Linux's /proc; 0.0 where there is none). `ledger serve` has a writer child."""
    total = 0.0
    for member in family(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
                if response.status < 500:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


@contextmanager
def servers(
    specs: Sequence[tuple[Sequence[str], str, Path]],
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Server children on loopback, `(args, health url, log)` each, started together and
    up once every health url answers; stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        for args, _, log in specs:
            out = stack.enter_context(log.open("wb"))
            procs.append(
                subprocess.Popen(list(args), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            )
        try:
            for _, health, _ in specs:
                wait_http(health)
            yield procs
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@contextmanager
def server(args: Sequence[str], health: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One server child (see :func:`servers`)."""
    with servers([(args, health, log)]) as procs:
        yield procs[0]


def rss_mb(pid: int) -> tuple[float, float]:
    """`(VmRSS, VmHWM)` of a live process and its children together, in MiB (the peaks
    are summed, so the second figure is an upper bound of the family's peak)."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    for member in family(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] += float(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_threads(target: Callable[[int], Any], count: int) -> float:
    """Seconds for `count` threads running `target(0)` .. `target(count - 1)` at once."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    wrk = (
        subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        if _has("wrk")
        else None
    )
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in load],
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {
            n: _version(n)
            for n in ("litestar", "msgspec", "uvicorn", "uvloop", "httptools", "eventsourcing")
        },
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if wrk else "not installed",
    }


def _has(program: str) -> bool:
    from shutil import which

    return which(program) is not None


def to_json(results: Sequence[Result]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
