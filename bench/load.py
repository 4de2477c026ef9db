"""Load generators for loopback HTTP: `wrk` when installed, else a raw-socket asyncio client.

Both keep `connections` keep-alive connections busy for `seconds`, cycling through the same
request list, and report requests/s, latency percentiles and how many answers were not
the expected status. Every request goes to 127.0.0.1 and the run stops by itself.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import percentile


@dataclass
class Load:
    tool: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int  # answers other than the expected status, and socket errors


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _wrk_script(path: str, bodies: list[bytes], headers: dict[str, str]) -> str:
    items = ",\n".join(_lua_string(b.decode()) for b in bodies)
    head = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
    return f"""
local bodies = {{
{items}
}}
local headers = {{ {head} }}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", {_lua_string(path)}, headers, bodies[(i % #bodies) + 1])
end
"""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    port: int,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
    threads: int = 1,
) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_wrk_script(path, bodies, headers))
        script = fh.name
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "--timeout",
                "10s",
                "-s",
                script,
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(script).unlink(missing_ok=True)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (total and rps and p50 and p99):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = int(bad.group(1)) if bad else 0
    if errors:
        failed += sum(int(x) for x in errors.groups())
    requests = int(total.group(1))
    return Load(
        "wrk",
        requests,
        requests / float(rps.group(1)),
        float(rps.group(1)),
        _ms(p50.group(1)),
        _ms(p99.group(1)),
        failed,
    )


def _request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _client(
    port: int,
    requests: list[bytes],
    offset: int,
    deadline: float,
    status: bytes,
    latencies: list[float],
    bad: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if match is None:
                raise RuntimeError("the load generator needs Content-Length answers")
            await reader.readexactly(int(match.group(1)))
            latencies.append((time.perf_counter() - start) * 1000)
            if not head.startswith(b"HTTP/1.1 " + status):
                bad[0] += 1
    except (OSError, asyncio.IncompleteReadError):
        bad[0] += 1
    finally:
        writer.close()


async def _python_load(
    port: int,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
) -> Load:
    requests = [_request(path, b, headers) for b in bodies]
    latencies: list[float] = []
    bad = [0]
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(_client(port, requests, i, deadline, b"201", latencies, bad) for i in range(connections))
    )
    elapsed = time.perf_counter() - start
    return Load(
        "python",
        len(latencies),
        elapsed,
        len(latencies) / elapsed,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        bad[0],
    )


def run_python(
    port: int,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
) -> Load:
    coroutine = _python_load(port, path, bodies, headers, connections, seconds)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with the ledger
        return asyncio.run(coroutine)
    result: Load = uvloop.run(coroutine)
    return result


def run_load(
    port: int,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
    tool: str = "auto",
) -> Load:
    """Drive `POST path` on loopback with `connections` connections for `seconds`."""
    if tool == "wrk" or (tool == "auto" and have_wrk()):
        return run_wrk(port, path, bodies, headers, connections, seconds)
    return run_python(port, path, bodies, headers, connections, seconds)
