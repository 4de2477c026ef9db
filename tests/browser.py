"""Helpers for the page's end-to-end tests: a live `ledger serve` and a headless Chromium.

The server is the real command line (`ledger serve --demo`), run as a subprocess on a free
loopback port, with its own database in a temporary folder. The browser is the system's
Chromium (Debian's `chromium` package), driven by Playwright for Python with
`executable_path`, since Playwright's own browser downloads are not used here.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LEDGER = Path(sys.executable).parent / "ledger"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "no Chromium on PATH (install Debian's `chromium` package to run the page tests)"

# as root in a container: no sandbox; and nothing in the background that calls outside hosts
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

DEPLOYMENT = "north-korea.russia-deployment"
TROOPS = "troops.deployed"
STATUS = "deployment.status"
_TOKEN_LINE = re.compile(r"admin token \(shown once\): (\S+)")


@functools.cache
def page_wired() -> bool:
    """True once `create_app` serves the page at `/` itself."""
    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings(db=Path("unused.db")))  # the store opens only at start-up
    return any(route.path == "/" for route in app.routes)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """`ledger serve --demo` on a loopback port; `token` is the admin token it printed."""

    base: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    public_read: bool
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.base, timeout=10)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **params: Any) -> Any:
        response = self._http.get(path, params=params, headers=self.auth())
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._http.post(path, json=body, headers=self.auth())
        assert response.status_code in (200, 201), response.text
        return response.json()

    def stop(self) -> None:
        self._http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class StartingServer:
    """`ledger serve --demo` on a fresh database, started but maybe not answering yet:
    several start at once, and `server()` waits for one when a test first needs it."""

    def __init__(
        self, directory: Path, *, public_read: bool = True, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.public_read = public_read
        self.base = f"http://127.0.0.1:{self.port}"
        args = ["serve", "--demo", "--db", str(directory / "l.db"), "--host", "127.0.0.1"]
        args += ["--port", str(self.port)]
        if public_read:
            args.append("--public-read")
        command = [str(LEDGER), *args]
        self.log = directory / "server.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self._ready: LiveServer | None = None

    def server(self, timeout: float = 30) -> LiveServer:
        if self._ready is not None:
            return self._ready
        deadline = time.monotonic() + timeout
        token = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"ledger serve exited {self.process.returncode}:\n{self._output()}"
                )
            if token is None:
                found = _TOKEN_LINE.search(self._output())
                token = found.group(1) if found else None
            if token is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.base}/v1/health", timeout=1).status_code == 200:
                        self._ready = LiveServer(
                            self.base, token, self.process, self.log, self.public_read
                        )
                        return self._ready
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ledger serve did not answer within {timeout} s:\n{self._output()}")

    def _output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self._ready is not None:
            self._ready.stop()
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def start_server(directory: Path, *, public_read: bool = True) -> LiveServer:
    """Start `ledger serve --demo` on a fresh database in `directory`; wait until it answers."""
    return StartingServer(directory, public_read=public_read).server()


@contextlib.contextmanager
def running_server(directory: Path, *, public_read: bool = True) -> Iterator[LiveServer]:
    starting = StartingServer(directory, public_read=public_read)
    try:
        yield starting.server()
    finally:
        starting.stop()


@contextlib.contextmanager
def chromium_context(profile: Path) -> Iterator[Any]:
    """A Playwright browser context on the system Chromium, with a fresh profile folder."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=LAUNCH_ARGS,
            viewport={"width": 1366, "height": 900},
            locale="en-US",
            timezone_id="UTC",
        )
        try:
            yield context
        finally:
            context.close()


def assertion_body(**changes: Any) -> dict[str, Any]:
    """A valid assertion on the seed's troop figure; `changes` replace or add fields."""
    body: dict[str, Any] = {
        "subject": DEPLOYMENT,
        "property": TROOPS,
        "value": {"low": 14000, "high": 16000, "best": 15000},
        "mode": "total",
        "claimants": ["kr-jcs"],
        "stated_at": "2025-06",
        "document": {
            "publisher": "Example Wire",
            "published_at": "2025-06-02",
            "url": "https://example.org/troops",
            "title": "A later troop figure",
        },
        "quote": "Officials now put the number at about 15,000 troops.",
    }
    body.update(changes)
    return body


# A contrast check over every element that holds text, run in the page: the WCAG formula
# on the computed colour and the first opaque background found up the tree.
CONTRAST_SCRIPT = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = ({ r, g, b }) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const bg = parse(getComputedStyle(node).backgroundColor);
      if (bg && bg.a >= 0.99) return bg;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest("svg")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.clipPath === "inset(50%)") continue;
    const fg = parse(style.color);
    const bg = background(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const text = el.textContent.trim().slice(0, 30);
    if (ratio < 4.5) bad.push(`${el.tagName}.${el.className} "${text}" ${ratio.toFixed(2)}`);
  }
  return bad;
}
"""

# Every form control has an accessible name: a <label>, aria-label or aria-labelledby.
UNLABELLED_SCRIPT = """
() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((el) => el.type !== "hidden")
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
    && !el.getAttribute("aria-labelledby") && !(el.tagName === "BUTTON" && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))
"""
